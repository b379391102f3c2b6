//! Once a second: each plugin's calls per second and p99 latency over the
//! last second, from the call totals; the last [`KEEP`] seconds are kept
//! for the dashboard's chart (bounded: plugins x 300 points).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::calls::PluginTotals;
use crate::shared::Shared;

/// Seconds of history kept.
pub const KEEP: usize = 300;

/// One second of one plugin.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    /// When, ms since the epoch.
    pub t: u64,
    /// Calls finished per second.
    pub calls_per_s: f64,
    /// The p99 latency bucket's bound, in ms (`null`: no call).
    pub p99_ms: Option<f64>,
}

#[derive(Default)]
struct Track {
    last: Option<(u64, Vec<u64>)>,
    points: VecDeque<Point>,
}

/// Every plugin's history.
#[derive(Default)]
pub struct Sampler {
    tracks: Mutex<HashMap<String, Track>>,
}

impl Sampler {
    fn sample(&self, plugins: &[(String, Arc<PluginTotals>)], t: u64) {
        let mut tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        tracks.retain(|id, _| plugins.iter().any(|(p, _)| p == id));
        for (id, totals) in plugins {
            let (calls, buckets) = totals.snapshot();
            let track = tracks.entry(id.clone()).or_default();
            if let Some((c0, b0)) = &track.last {
                let p99 = PluginTotals::quantile(b0, &buckets, 0.99).map(|s| s * 1000.0);
                track.points.push_back(Point {
                    t,
                    calls_per_s: calls.saturating_sub(*c0) as f64,
                    p99_ms: p99.filter(|v| v.is_finite()),
                });
                if track.points.len() > KEEP {
                    track.points.pop_front();
                }
            }
            track.last = Some((calls, buckets));
        }
    }

    /// The newest point of each plugin.
    pub fn latest(&self) -> HashMap<String, Point> {
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        tracks
            .iter()
            .filter_map(|(id, t)| t.points.back().map(|p| (id.clone(), *p)))
            .collect()
    }

    /// Every plugin's kept history.
    pub fn history(&self) -> HashMap<String, Vec<Point>> {
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        tracks
            .iter()
            .map(|(id, t)| (id.clone(), t.points.iter().copied().collect()))
            .collect()
    }
}

/// Samples every second until `stop`.
pub async fn run(sampler: Arc<Sampler>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ids: Vec<String> = shared.status().into_iter().map(|p| p.id).collect();
        let plugins: Vec<(String, Arc<PluginTotals>)> = ids
            .into_iter()
            .map(|id| {
                let t = shared.metrics.calls.totals(&id);
                (id, t)
            })
            .collect();
        sampler.sample(&plugins, now_ms());
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
