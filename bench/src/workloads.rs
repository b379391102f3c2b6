//! The workloads, each measured on Iglu and, where it applies, on the floors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::floors::{Floor, Floors};
use super::measure::{closed_loop, cpu_time, histogram, Measure, Sample};
use super::Bench;
use iglu_host::events::payload;
use iglu_host::CallOptions;

pub use super::footprint::{memory, MemoryRow};
pub use super::lifecycle::{lifecycle, LifecycleRow};

/// One call workload row: Iglu next to its floors.
#[derive(Debug, Clone, Serialize)]
pub struct CallRow {
    /// `latency`, `throughput`, `payload` or `plugins`.
    pub workload: String,
    /// Calls in flight.
    pub in_flight: usize,
    /// Argument (and result) size in bytes.
    pub payload_bytes: usize,
    /// Plugins served at once.
    pub plugins: usize,
    /// Iglu's figures.
    pub iglu: Measure,
    /// The bare zeromq echo's figures.
    pub zmq_floor: Option<Measure>,
    /// The bare Unix-socket echo's figures.
    pub uds_floor: Option<Measure>,
    /// CPU used by the bench process (host + load generator) per wall second, in percent.
    pub host_cpu_percent: Option<f64>,
}

pub(super) fn payload_args(size: usize) -> Bytes {
    // A MessagePack bin of `size` bytes: what the bench plugin's echo takes and returns.
    let v = serde_bytes::ByteBuf::from(vec![0x5au8; size]);
    Bytes::from(rmp_serde::to_vec(&v).unwrap_or_default())
}

/// Iglu calls for one slice: `k` in flight spread over `plugins` bench plugins.
pub(super) async fn iglu_calls(
    b: &Bench,
    k: usize,
    size: usize,
    plugins: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Sample, String> {
    let client = b.host.client();
    let args = payload_args(size);
    let ids: Arc<Vec<String>> =
        Arc::new((0..plugins.max(1)).map(|i| format!("bench-{i}")).collect());
    closed_loop(k, warmup, duration, move |i| {
        let client = client.clone();
        let args = args.clone();
        let ids = ids.clone();
        async move {
            let id = &ids[i % ids.len()];
            client
                .call_with(id, "echo", args, CallOptions::new(Duration::from_secs(30)))
                .await
                .map(|_| ())
                .map_err(|e| format!("{id}: {e}"))
        }
    })
    .await
}

/// Slices each configuration is cut into, so that Iglu and its floors take
/// turns: a change in the machine's state between a long Iglu run and a
/// long floor run moved the ratios by up to 2x on the shared CI machine.
pub(crate) fn slices(duration: Duration) -> u32 {
    (duration.as_millis() / SLICE_MIN.as_millis()).clamp(1, MAX_SLICES as u128) as u32
}

/// No slice is shorter than this.
const SLICE_MIN: Duration = Duration::from_millis(125);
/// No configuration is cut into more slices than this.
const MAX_SLICES: u32 = 8;
/// Not counted at the start of every slice after the first (which uses the
/// full warm-up): enough to fill the pipeline again.
pub(crate) const SLICE_WARMUP: Duration = Duration::from_millis(30);

/// One call row: Iglu and the floors with the same K and payload, in
/// alternating slices.
pub async fn call_row(
    b: &Bench,
    workload: &str,
    k: usize,
    size: usize,
    plugins: usize,
) -> Result<CallRow, String> {
    let floors = if plugins == 1 {
        Some(Floors::start(&b.dir).await?)
    } else {
        None
    };
    let result = slices_of(b, floors.as_ref(), k, size, plugins).await;
    if let Some(f) = floors {
        f.stop().await;
    }
    let (iglu, zmq, uds, cpu) = result?;
    Ok(CallRow {
        workload: workload.to_owned(),
        in_flight: k,
        payload_bytes: size,
        plugins,
        iglu: iglu.measure(size),
        zmq_floor: zmq.map(|z| z.measure(size)),
        uds_floor: uds.map(|u| u.measure(size)),
        host_cpu_percent: Some(cpu),
    })
}

/// Iglu's, the zmq floor's and the uds floor's samples, and the bench
/// process's CPU per wall second (in percent) while Iglu ran.
type Slices = (Sample, Option<Sample>, Option<Sample>, f64);

async fn slices_of(
    b: &Bench,
    floors: Option<&Floors>,
    k: usize,
    size: usize,
    plugins: usize,
) -> Result<Slices, String> {
    let n = slices(b.duration);
    let slice = b.duration / n;
    let (mut iglu, mut zmq, mut uds) = (Sample::empty(), Sample::empty(), Sample::empty());
    let (mut cpu, mut wall) = (Duration::ZERO, Duration::ZERO);
    for i in 0..n {
        let warmup = if i == 0 {
            b.warmup
        } else {
            SLICE_WARMUP.min(b.warmup)
        };
        let (cpu0, t0) = (cpu_time(), Instant::now());
        iglu.add(&iglu_calls(b, k, size, plugins, warmup, slice).await?);
        cpu += cpu_time().saturating_sub(cpu0);
        wall += t0.elapsed();
        if let Some(f) = floors {
            zmq.add(&f.run(Floor::Zmq, k, size, warmup, slice).await?);
            uds.add(&f.run(Floor::Uds, k, size, warmup, slice).await?);
        }
    }
    let cpu_percent = cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9) * 100.0;
    let measured = floors.is_some();
    Ok((
        iglu,
        measured.then_some(zmq),
        measured.then_some(uds),
        cpu_percent,
    ))
}

/// Event fan-out figures.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// Subscribers each event reaches.
    pub subscribers: usize,
    /// Events published.
    pub published: u64,
    /// Deliveries acknowledged by subscribers.
    pub delivered: u64,
    /// Deliveries per second (all subscribers).
    pub deliveries_per_s: f64,
    /// Events dropped from subscriber queues.
    pub dropped: u64,
    /// Publish-to-handler latency, merged over the subscribers.
    pub latency: Measure,
}

fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

#[derive(serde::Deserialize)]
struct Buckets {
    values: Vec<(u64, u64)>,
}

/// Adds bench plugin `plugin`'s event latency histogram (its `latency`
/// method) to `h`.
pub(crate) async fn merge_latency(
    host: &iglu_host::HostClient,
    plugin: &str,
    h: &mut hdrhistogram::Histogram<u64>,
) -> Result<(), String> {
    let r = host
        .call_with(
            plugin,
            "latency",
            Bytes::from_static(&[0xc0]),
            CallOptions::new(Duration::from_secs(10)),
        )
        .await
        .map_err(|e| e.to_string())?;
    let buckets: Buckets = rmp_serde::from_slice(&r).map_err(|e| e.to_string())?;
    for (v, c) in buckets.values {
        let _ = h.record_n(v.max(1), c);
    }
    Ok(())
}

/// Publishes 64 B events reaching `n` bench plugins as fast as they keep up.
pub async fn fanout(b: &Bench, n: usize) -> Result<EventRow, String> {
    let host = &b.host;
    let subs: Vec<String> = (0..n).map(|i| format!("bench-{i}")).collect();
    for s in &subs {
        host.call_with(
            s,
            "reset",
            Bytes::from_static(&[0xc0]),
            CallOptions::new(Duration::from_secs(10)),
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    // (delivered, dropped, deepest waiting queue, most in flight)
    let stats = |host: &iglu_host::HostClient| -> (u64, u64, u64, u64) {
        subs.iter()
            .filter_map(|s| host.queue_stats(s))
            .fold((0, 0, 0, 0), |(d, x, q, f), st| {
                (
                    d + st.delivered,
                    x + st.dropped,
                    q.max(st.queued),
                    f.max(st.in_flight),
                )
            })
    };
    let (d0, x0, _, _) = stats(host);
    let topic = format!("fan/{n}");
    let start = Instant::now();
    let end = start + b.duration;
    let mut published = 0u64;
    // Keep every subscriber's waiting queue under half its bound, so that
    // the figure is what subscribers keep up with, without drops.
    let limit = (host.config().event_queue / 2) as u64;
    while Instant::now() < end {
        for _ in 0..32 {
            #[derive(Serialize)]
            struct Stamp {
                t: u64,
                #[serde(with = "serde_bytes")]
                pad: &'static [u8],
            }
            // About 64 bytes of MessagePack with the padding.
            let payload = payload(&Stamp {
                t: now_ns(),
                pad: &[0; 40],
            })
            .map_err(|e| e.to_string())?;
            host.publish(&topic, payload, false)
                .map_err(|e| e.to_string())?;
            published += 1;
        }
        while stats(host).2 > limit && Instant::now() < end {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::task::yield_now().await;
    }
    // Let the queues drain before counting.
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while {
        let (_, _, queued, in_flight) = stats(host);
        queued + in_flight > 0
    } && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    let (d1, x1, _, _) = stats(host);
    let mut h = histogram();
    for s in &subs {
        merge_latency(&host.client(), s, &mut h).await?;
    }
    let delivered = d1 - d0;
    Ok(EventRow {
        subscribers: n,
        published,
        delivered,
        deliveries_per_s: delivered as f64 / elapsed.as_secs_f64(),
        dropped: x1 - x0,
        latency: Measure::of(&h, h.len(), elapsed, 64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_cut_into_slices_of_at_least_125_ms_and_at_most_eight() {
        let ms = Duration::from_millis;
        assert_eq!(slices(ms(100)), 1);
        assert_eq!(slices(ms(200)), 1);
        assert_eq!(slices(ms(250)), 2, "--quick");
        assert_eq!(slices(ms(2000)), 8, "the default");
        assert_eq!(slices(ms(60_000)), 8);
    }
}
