//! Latency histograms, closed-loop drivers and process figures shared by the workloads.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// One measured configuration: throughput and latency percentiles.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Measure {
    /// Completed operations per second.
    pub per_s: f64,
    /// Payload megabytes per second (one direction).
    pub mb_per_s: f64,
    /// Latency percentiles, in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Worst.
    pub max_us: u64,
    /// Operations counted.
    pub count: u64,
}

/// A histogram of 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant, valid histogram bounds")
}

/// Records a duration in microseconds (at least 1).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record((d.as_micros() as u64).clamp(1, 60_000_000));
}

impl Measure {
    /// Summarises `count` operations of `payload` bytes over `elapsed`.
    pub fn of(h: &Histogram<u64>, count: u64, elapsed: Duration, payload: usize) -> Measure {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let per_s = count as f64 / secs;
        Measure {
            per_s,
            mb_per_s: per_s * payload as f64 / 1e6,
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            count,
        }
    }
}

/// Timed operations of one or more measured slices: merged, they make one
/// [`Measure`], so Iglu and its floors can take turns in short slices and
/// share whatever state the machine is in.
#[derive(Debug, Clone)]
pub struct Sample {
    hist: Histogram<u64>,
    count: u64,
    elapsed: Duration,
}

impl Sample {
    /// `count` operations over `elapsed`, with their latencies in `hist`.
    pub fn new(hist: Histogram<u64>, count: u64, elapsed: Duration) -> Sample {
        Sample {
            hist,
            count,
            elapsed,
        }
    }

    /// Nothing measured yet.
    pub fn empty() -> Sample {
        Sample::new(histogram(), 0, Duration::ZERO)
    }

    /// Adds another slice.
    pub fn add(&mut self, other: &Sample) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.count += other.count;
        self.elapsed += other.elapsed;
    }

    /// The figures of all slices together, for `payload` bytes per operation.
    pub fn measure(&self, payload: usize) -> Measure {
        Measure::of(&self.hist, self.count, self.elapsed, payload)
    }
}

/// Runs `k` tasks, each calling `op` in a loop until `duration` has passed,
/// and measures every call. The first `warmup` is not counted.
pub async fn closed_loop<F, Fut, E>(
    k: usize,
    warmup: Duration,
    duration: Duration,
    op: F,
) -> Result<Sample, E>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(k);
    for i in 0..k {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut n = 0u64;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                op(i).await?;
                if t >= measure_from {
                    record(&mut h, t.elapsed());
                    n += 1;
                }
            }
            Ok::<_, E>((h, n))
        }));
    }
    let mut total = histogram();
    let mut count = 0;
    for t in tasks {
        if let Ok(r) = t.await {
            let (h, n) = r?;
            let _ = total.add(&h);
            count += n;
        }
    }
    Ok(Sample::new(total, count, duration))
}

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> Duration {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// A process's resident memory and its peak, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Median and maximum of some durations, in microseconds.
pub fn median_max(values: &mut [Duration]) -> (u64, u64) {
    if values.is_empty() {
        return (0, 0);
    }
    values.sort();
    let mid = values[values.len() / 2].as_micros() as u64;
    let max = values[values.len() - 1].as_micros() as u64;
    (mid, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_add_up_to_one_measure() {
        let ms = Duration::from_millis;
        let mut first = histogram();
        record(&mut first, Duration::from_micros(10));
        let mut second = histogram();
        record(&mut second, Duration::from_micros(30));
        record(&mut second, Duration::from_micros(30));
        let mut all = Sample::empty();
        all.add(&Sample::new(first, 1, ms(100)));
        all.add(&Sample::new(second, 2, ms(200)));
        let m = all.measure(1_000_000);
        assert_eq!(m.count, 3);
        assert!((m.per_s - 10.0).abs() < 1e-9, "3 operations in 300 ms");
        assert!((m.mb_per_s - 10.0).abs() < 1e-9);
        assert_eq!(m.p50_us, 30);
        assert_eq!(m.max_us, 30);
    }
}
