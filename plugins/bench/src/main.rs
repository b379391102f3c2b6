//! The plugin `iglu bench` drives.
//!
//! `echo` returns its bytes (the call workloads). As an event subscriber it
//! records, per event, the time from publication to its handler (the
//! publisher puts CLOCK_MONOTONIC nanoseconds in the payload; the clock is
//! shared by every process on the machine), and `latency` reports the
//! histogram. `BENCH_INDEX=i` subscribes it to `fan/N` for every fan-out
//! size N above i, so "publish on fan/8" reaches exactly 8 plugins.
//! It implements `iglu.echo` too (typed calls), and `call_peer` calls
//! another bench plugin through the host, raw or typed, K at a time, and
//! reports what it measured (plugin-to-plugin calls).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iglu_interfaces::echo::{Echo, EchoClient, EchoError, EchoInterface};
use iglu_sdk::{Context, HandlerError, Manifest, Plugin};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Fan-out sizes the bench uses.
const FANOUTS: [usize; 3] = [1, 8, 32];

#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

#[derive(Serialize)]
struct Buckets {
    /// (microseconds, count) for every recorded value.
    values: Vec<(u64, u64)>,
    count: u64,
}

fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits; cannot fail with these bounds.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant, valid histogram bounds")
}

/// The bench plugin's `iglu.echo`.
struct Bytes;

impl Echo for Bytes {
    async fn echo(&self, _ctx: Context, data: ByteBuf) -> Result<ByteBuf, EchoError> {
        Ok(data)
    }
}

/// `call_peer`: what to call, how often, how many at once.
#[derive(Deserialize)]
struct CallPeer {
    plugin: String,
    calls: u64,
    in_flight: u64,
    size: usize,
    typed: bool,
}

/// What `call_peer` measured.
#[derive(Serialize)]
struct PeerRun {
    latency: Buckets,
    elapsed_us: u64,
}

async fn call_peer(ctx: Context, args: CallPeer) -> Result<PeerRun, HandlerError> {
    let data = ByteBuf::from(vec![0x5au8; args.size]);
    let deadline = Duration::from_secs(30);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.in_flight.max(1))
        .map(|w| {
            let ctx = ctx.clone();
            let data = data.clone();
            let plugin = args.plugin.clone();
            let per = args.calls / args.in_flight.max(1)
                + u64::from(w < args.calls % args.in_flight.max(1));
            let typed = args.typed;
            async move {
                let mut h = new_histogram();
                let client =
                    EchoClient::new(ctx.host().clone(), plugin.clone()).with_deadline(deadline);
                for _ in 0..per {
                    let t = Instant::now();
                    if typed {
                        client.echo(data.clone()).await.map_err(HandlerError::msg)?;
                    } else {
                        let _: ByteBuf = ctx
                            .host()
                            .call_plugin(&plugin, "echo", &data, deadline, None)
                            .await?;
                    }
                    let _ = h.record((t.elapsed().as_micros() as u64).max(1));
                }
                Ok::<_, HandlerError>(h)
            }
        })
        .collect();
    measured(started, workers).await
}

/// `kv_load`: durable writes to this plugin's store, `writers` at once.
#[derive(Deserialize)]
struct KvLoad {
    writes: u64,
    writers: u64,
    size: usize,
}

/// Each writer overwrites a key of its own, `writes / writers` times;
/// every write is answered once on disk. Measured here.
async fn kv_load(ctx: Context, args: KvLoad) -> Result<PeerRun, HandlerError> {
    let value = ByteBuf::from(vec![0x5au8; args.size]);
    let writers = args.writers.max(1);
    let started = Instant::now();
    let workers: Vec<_> = (0..writers)
        .map(|w| {
            let ctx = ctx.clone();
            let value = value.clone();
            let per = args.writes / writers + u64::from(w < args.writes % writers);
            async move {
                let mut h = new_histogram();
                let key = format!("writer/{w}");
                for _ in 0..per {
                    let t = Instant::now();
                    ctx.host().kv_set(&key, &value).await?;
                    let _ = h.record((t.elapsed().as_micros() as u64).max(1));
                }
                Ok::<_, HandlerError>(h)
            }
        })
        .collect();
    measured(started, workers).await
}

/// Runs the workers at once and merges what each measured, timed from `started`.
async fn measured<F>(started: Instant, workers: Vec<F>) -> Result<PeerRun, HandlerError>
where
    F: std::future::Future<Output = Result<Histogram<u64>, HandlerError>>,
{
    let mut total = new_histogram();
    for h in futures_join(workers).await {
        let _ = total.add(h?);
    }
    let elapsed_us = started.elapsed().as_micros() as u64;
    let values = total
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    Ok(PeerRun {
        latency: Buckets {
            values,
            count: total.len(),
        },
        elapsed_us,
    })
}

/// Runs `futures` concurrently on this task; their results in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    futures::future::join_all(futures).await
}

fn main() -> ExitCode {
    let histogram = Arc::new(Mutex::new(new_histogram()));
    let (rec, rep, reset) = (histogram.clone(), histogram.clone(), histogram);
    let mut plugin = Plugin::new(Manifest {
        id: "bench".into(),
        name: "Bench".into(),
        author: "Iglu developers".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Byte echo and event latency for iglu bench".into(),
    })
    .event_window(1024)
    // Its handlers only copy bytes or record a number: the fast path is safe.
    .inline_handlers(std::env::var("BENCH_HANDLER_THREADS").is_err());
    if let Some(index) = std::env::var("BENCH_INDEX")
        .ok()
        .and_then(|i| i.parse::<usize>().ok())
    {
        for n in FANOUTS {
            if index < n {
                plugin = plugin.subscribe(&format!("fan/{n}"));
            }
        }
    }
    plugin
        .on_event(move |_ctx: Context, event| {
            let h = rec.clone();
            async move {
                let stamp: Stamp = event.decode()?;
                let us = now_ns().saturating_sub(stamp.t) / 1000;
                let _ = h
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(us.max(1));
                Ok(())
            }
        })
        .method("echo", |_ctx: Context, data: ByteBuf| async move {
            Ok::<_, HandlerError>(data)
        })
        .implement(EchoInterface::server(Bytes))
        .method("call_peer", call_peer)
        .method("kv_load", kv_load)
        .method("latency", move |_ctx: Context, _: IgnoredAny| {
            let h = rep.lock().unwrap_or_else(|p| p.into_inner());
            let values = h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect();
            let count = h.len();
            async move { Ok::<_, HandlerError>(Buckets { values, count }) }
        })
        .method("reset", move |_ctx: Context, _: IgnoredAny| {
            reset.lock().unwrap_or_else(|p| p.into_inner()).reset();
            async move { Ok::<_, HandlerError>(true) }
        })
        .serve()
}
