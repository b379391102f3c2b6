//! What recording each call's metrics costs (`iglu_calls_total`,
//! `iglu_call_duration_seconds`): the same 64 B calls with recording on and
//! off, in alternating slices on the same host, so that a change in the
//! machine's state lands on both.

use serde::Serialize;

use crate::measure::{Measure, Sample};
use crate::workloads::{iglu_calls, slices, SLICE_WARMUP};
use crate::Bench;

/// One depth's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsCostRow {
    /// Calls in flight.
    pub in_flight: usize,
    /// With recording (as the host runs).
    pub on: Measure,
    /// Without.
    pub off: Measure,
    /// on / off calls per second.
    pub rate_ratio: f64,
    /// on / off p50 latency.
    pub p50_ratio: f64,
}

/// Measures at `k` calls in flight.
pub async fn metrics_cost(b: &Bench, k: usize) -> Result<MetricsCostRow, String> {
    let calls = &b.host.shared().metrics.calls;
    let n = slices(b.duration);
    let slice = b.duration / n;
    let (mut on, mut off) = (Sample::empty(), Sample::empty());
    let result = async {
        for i in 0..n {
            let warmup = if i == 0 {
                b.warmup
            } else {
                SLICE_WARMUP.min(b.warmup)
            };
            calls.set_enabled(true);
            on.add(&iglu_calls(b, k, 64, 1, warmup, slice).await?);
            calls.set_enabled(false);
            off.add(&iglu_calls(b, k, 64, 1, warmup, slice).await?);
        }
        Ok::<(), String>(())
    }
    .await;
    calls.set_enabled(true);
    result?;
    let (on, off) = (on.measure(64), off.measure(64));
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(MetricsCostRow {
        in_flight: k,
        rate_ratio: ratio(on.per_s, off.per_s),
        p50_ratio: ratio(on.p50_us as f64, off.p50_us as f64),
        on,
        off,
    })
}

/// The rows as a table for people.
pub fn table(out: &mut String, rows: &[MetricsCostRow]) {
    use std::fmt::Write as _;
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "METRICS COST (64 B calls, per-call metrics recorded vs not, in turns)"
        );
        for m in rows {
            let _ = writeln!(
                out,
                "{:>3} in flight: on {:>9.0}/s p50 {:>5} us | off {:>9.0}/s p50 {:>5} us | rate {:.3}x, p50 {:.3}x",
                m.in_flight, m.on.per_s, m.on.p50_us, m.off.per_s, m.off.p50_us, m.rate_ratio, m.p50_ratio
            );
        }
        let _ = writeln!(out);
    }
}
