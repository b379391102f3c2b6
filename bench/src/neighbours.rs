//! Calls to one plugin while another floods the host and never reads.
//!
//! Issue 12 measured calls to the other plugins going from p50 0.55 ms to
//! 6.6-18 ms (p99 up to 446 ms) while one plugin sent without reading: the
//! host waited on that plugin's full socket queue on the path that serves
//! everyone. This workload keeps such a neighbour going — a DEALER on a
//! thread of its own that handshakes as the external plugin `deaf`, sends
//! `kv.get` calls in batches of 64 and never reads, and connects again
//! whenever the host cuts it for not reading — and measures sequential calls
//! to `bench-0` in slices taken in turns with quiet slices, so both share
//! the machine's state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::transport::DealerConnection;
use iglu_bus::{Call, Hello, Manifest, Message};
use serde::Serialize;

use super::measure::{Measure, Sample};
use super::Bench;

/// The token of the bench host's `deaf` external plugin.
pub const DEAF_TOKEN: &str = "bench-deaf-neighbour-token";

/// The row: the same calls, quiet and next to the flood.
#[derive(Debug, Clone, Serialize)]
pub struct NeighbourRow {
    /// Sequential calls to `bench-0` with nobody flooding.
    pub quiet: Measure,
    /// The same calls while `deaf` floods and never reads.
    pub flooded: Measure,
    /// Frames the neighbour sent in its flooded slices, per second.
    pub flood_frames_per_s: f64,
    /// Times the host cut the neighbour for not reading.
    pub cuts: u64,
}

/// A flooding neighbour, until dropped.
struct Flooder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    frames: Arc<AtomicU64>,
    sessions: Arc<AtomicU64>,
}

impl Flooder {
    fn start(endpoint: String) -> Flooder {
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let sessions = Arc::new(AtomicU64::new(0));
        let (s, f, n) = (stop.clone(), frames.clone(), sessions.clone());
        let thread = std::thread::Builder::new()
            .name("bench-deaf".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    while !s.load(Ordering::Relaxed) {
                        if flood_once(&endpoint, &s, &f, &n).await.is_err() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                });
            })
            .ok();
        Flooder {
            stop,
            thread,
            frames,
            sessions,
        }
    }

    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.frames.load(Ordering::Relaxed),
            self.sessions.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One session of the neighbour: handshake, then flood until cut or stopped.
async fn flood_once(
    endpoint: &str,
    stop: &AtomicBool,
    frames: &AtomicU64,
    sessions: &AtomicU64,
) -> Result<(), String> {
    let e = |e: iglu_bus::BusError| e.to_string();
    let mut conn =
        tokio::time::timeout(Duration::from_secs(5), DealerConnection::connect(endpoint))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(e)?;
    let hello = Message::Hello(Hello {
        cookie: iglu_bus::handshake::COOKIE_VALUE.to_owned(),
        versions: iglu_bus::handshake::PROTOCOL_VERSIONS.to_vec(),
        plugin_id: "deaf".into(),
        token: DEAF_TOKEN.into(),
        manifest: Manifest {
            id: "deaf".into(),
            name: "Deaf neighbour".into(),
            author: "iglu bench".into(),
            version: "0.0.0".into(),
            description: "sends and never reads".into(),
        },
        methods: Vec::new(),
        subscriptions: Vec::new(),
        receive_own: false,
        interfaces: Vec::new(),
    });
    conn.outbound
        .send(iglu_bus::encode(&hello).map_err(e)?)
        .await
        .map_err(e)?;
    let (welcome, _) = tokio::time::timeout(Duration::from_secs(5), conn.inbound.recv())
        .await
        .map_err(|_| "no WELCOME".to_owned())?
        .map_err(e)?;
    if !matches!(
        iglu_bus::decode(&welcome, usize::MAX),
        Ok(Message::Welcome(_))
    ) {
        return Err("refused".into());
    }
    sessions.fetch_add(1, Ordering::Relaxed);
    let args =
        rmp_serde::to_vec_named(&serde_json::json!({"key": "k"})).map_err(|e| e.to_string())?;
    let call = iglu_bus::encode(&Message::Call(Call {
        id: iglu_bus::CallId::new_v4(),
        method: "kv.get".into(),
        deadline_ms: 10_000,
        args: Bytes::from(args),
    }))
    .map_err(e)?;
    let batch = vec![call; 64];
    while !stop.load(Ordering::Relaxed) {
        // Fails once the host has cut us: then a new session.
        tokio::time::timeout(
            Duration::from_secs(1),
            conn.outbound.send_frames(batch.clone()),
        )
        .await
        .map_err(|_| "send stalled".to_owned())?
        .map_err(e)?;
        frames.fetch_add(64, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Quiet and flooded slices in turns, `slices` of each.
pub async fn neighbours(b: &Bench, slices: u32) -> Result<NeighbourRow, String> {
    let slice = b.duration / slices.max(1);
    let (mut quiet, mut flooded) = (Sample::empty(), Sample::empty());
    let (mut frames, mut sessions) = (0u64, 0u64);
    for i in 0..slices.max(1) {
        let warmup = if i == 0 {
            b.warmup
        } else {
            Duration::from_millis(30)
        };
        quiet.add(&sequential(b, warmup, slice).await?);
        let flooder = Flooder::start(b.host.endpoint().to_owned());
        let measured = sequential(b, warmup, slice).await;
        let (f, s) = flooder.stop();
        frames += f;
        sessions += s;
        flooded.add(&measured?);
    }
    let flooded_time = slice.as_secs_f64() * f64::from(slices.max(1));
    Ok(NeighbourRow {
        quiet: quiet.measure(64),
        flooded: flooded.measure(64),
        flood_frames_per_s: if flooded_time > 0.0 {
            frames as f64 / flooded_time
        } else {
            0.0
        },
        cuts: sessions.saturating_sub(u64::from(slices.max(1))),
    })
}

/// Sequential 64 B calls to `bench-0`: the bench's own call loop.
async fn sequential(b: &Bench, warmup: Duration, duration: Duration) -> Result<Sample, String> {
    super::workloads::iglu_calls(b, 1, 64, 1, warmup, duration).await
}
