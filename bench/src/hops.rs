//! Call paths, each next to the plain one in the same run: a typed call
//! (`iglu.echo` through `EchoClient`) beside a raw call from the host to a
//! plugin, and a plugin-to-plugin call (bench-0 calling bench-1 through the
//! host, raw and typed, measured inside bench-0) beside the host-to-plugin
//! call. 64 B payloads, 1 and 64 calls in flight.

use std::time::{Duration, Instant};

use bytes::Bytes;
use iglu_interfaces::echo::EchoClient;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::measure::{closed_loop, histogram, Measure, Sample};
use super::workloads::iglu_calls;
use super::Bench;

/// One call path at one depth.
#[derive(Debug, Clone, Serialize)]
pub struct HopRow {
    /// `host->plugin raw`, `host->plugin typed`, `plugin->plugin raw`, `plugin->plugin typed`.
    pub path: String,
    /// Calls in flight.
    pub in_flight: usize,
    /// What it measured.
    pub measure: Measure,
    /// Its p50 over the raw host-to-plugin p50 at the same depth.
    pub p50_ratio: f64,
    /// Its rate over the raw host-to-plugin rate at the same depth.
    pub rate_ratio: f64,
}

/// A latency histogram as a bench plugin reports it.
#[derive(Deserialize)]
pub(crate) struct Buckets {
    values: Vec<(u64, u64)>,
    pub count: u64,
}

/// What a bench plugin measured inside itself (`call_peer`, `kv_load`).
#[derive(Deserialize)]
pub(crate) struct PeerRun {
    pub latency: Buckets,
    pub elapsed_us: u64,
}

impl PeerRun {
    /// Its measure, for operations of `payload` bytes.
    pub(crate) fn measure(self, payload: usize) -> Measure {
        let mut h = histogram();
        for (v, c) in self.latency.values {
            let _ = h.record_n(v.max(1), c);
        }
        Measure::of(
            &h,
            self.latency.count,
            Duration::from_micros(self.elapsed_us),
            payload,
        )
    }
}

/// Calls `method` of bench-0 with `args` and reads what it measured.
pub(crate) async fn run_in_plugin<A: Serialize>(
    b: &Bench,
    method: &str,
    args: &A,
) -> Result<PeerRun, String> {
    let args = rmp_serde::to_vec_named(args).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let answer = b
        .host
        .call(
            "bench-0",
            method,
            Bytes::from(args),
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| format!("bench-0 {method}: {e}"))?;
    let run: PeerRun = rmp_serde::from_slice(&answer).map_err(|e| e.to_string())?;
    if run.latency.count == 0 {
        return Err(format!(
            "bench-0 {method}: nothing completed in {:?}",
            started.elapsed()
        ));
    }
    Ok(run)
}

/// Every path at 1 and 64 calls in flight.
pub async fn hops(b: &Bench) -> Result<Vec<HopRow>, String> {
    let mut rows = Vec::new();
    for k in [1usize, 64] {
        let raw = iglu_calls(b, k, 64, 1, b.warmup, b.duration)
            .await?
            .measure(64);
        let typed = typed_calls(b, k).await?.measure(64);
        let peer_raw = plugin_to_plugin(b, k, false).await?;
        let peer_typed = plugin_to_plugin(b, k, true).await?;
        for (path, m) in [
            ("host->plugin raw", raw.clone()),
            ("host->plugin typed", typed),
            ("plugin->plugin raw", peer_raw),
            ("plugin->plugin typed", peer_typed),
        ] {
            rows.push(HopRow {
                path: path.to_owned(),
                in_flight: k,
                p50_ratio: m.p50_us as f64 / raw.p50_us.max(1) as f64,
                rate_ratio: m.per_s / raw.per_s.max(1e-9),
                measure: m,
            });
        }
    }
    Ok(rows)
}

async fn typed_calls(b: &Bench, k: usize) -> Result<Sample, String> {
    let client = EchoClient::new(b.host.client(), "bench-0").with_deadline(Duration::from_secs(30));
    let client = std::sync::Arc::new(client);
    let data = ByteBuf::from(vec![0x5au8; 64]);
    closed_loop(k, b.warmup, b.duration, move |_| {
        let client = client.clone();
        let data = data.clone();
        async move {
            client
                .echo(data)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await
}

/// bench-0 calls bench-1 through the host, `k` at a time, for about the
/// bench's duration; measured inside bench-0.
async fn plugin_to_plugin(b: &Bench, k: usize, typed: bool) -> Result<Measure, String> {
    // About as many calls as the host-to-plugin run makes in its time, from
    // a short trial run.
    let trial = peer_run(b, k, typed, (200 * k) as u64).await?;
    let per_s = trial.latency.count as f64 / (trial.elapsed_us.max(1) as f64 / 1e6);
    let calls = ((per_s * b.duration.as_secs_f64()) as u64).max(100 * k as u64);
    Ok(peer_run(b, k, typed, calls).await?.measure(64))
}

async fn peer_run(b: &Bench, k: usize, typed: bool, calls: u64) -> Result<PeerRun, String> {
    #[derive(Serialize)]
    struct CallPeer<'a> {
        plugin: &'a str,
        calls: u64,
        in_flight: u64,
        size: usize,
        typed: bool,
    }
    run_in_plugin(
        b,
        "call_peer",
        &CallPeer {
            plugin: "bench-1",
            calls,
            in_flight: k as u64,
            size: 64,
            typed,
        },
    )
    .await
}
