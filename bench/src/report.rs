//! The bench report: JSON for machines, tables for people, and the targets.

use std::fmt::Write;

use serde::Serialize;

use super::workloads::{CallRow, EventRow, LifecycleRow, MemoryRow};

/// One performance target and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is targeted.
    pub name: String,
    /// The measured figure.
    pub value: f64,
    /// The bound.
    pub bound: String,
    /// Whether the figure is within the bound.
    pub met: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// CPU count, kernel, CPU model.
    pub machine: serde_json::Value,
    /// Durations and repetitions used.
    pub settings: serde_json::Value,
    /// Call workloads with their floors.
    pub calls: Vec<CallRow>,
    /// Event fan-out.
    pub events: Vec<EventRow>,
    /// Lifecycle timings.
    pub lifecycle: Vec<LifecycleRow>,
    /// Calls next to a neighbour that floods and never reads.
    pub neighbours: Option<super::neighbours::NeighbourRow>,
    /// Typed and plugin-to-plugin calls next to raw host-to-plugin calls.
    pub hops: Vec<super::hops::HopRow>,
    /// Durable writes next to the disk's commit rate.
    pub store: Option<super::store::StoreReport>,
    /// Upgrades of an installed package under load.
    pub upgrade: Option<super::upgrade::UpgradeReport>,
    /// What recording calls' metrics costs.
    pub metrics_cost: Vec<super::metrics_cost::MetricsCostRow>,
    /// Broker -> bridge -> plugin, next to `mosquitto_sub`.
    pub mqtt: Vec<super::mqtt::MqttRow>,
    /// Why the MQTT workload did not run (no Mosquitto here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_skipped: Option<String>,
    /// Memory.
    pub memory: Option<MemoryRow>,
    /// The targets of issue 4, evaluated on this run.
    pub targets: Vec<Target>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl Report {
    fn call(&self, workload: &str, k: usize, size: usize) -> Option<&CallRow> {
        self.calls.iter().find(|r| {
            r.workload == workload && r.in_flight == k && r.payload_bytes == size && r.plugins == 1
        })
    }

    fn life(&self, what: &str) -> Option<&LifecycleRow> {
        self.lifecycle.iter().find(|r| r.what == what)
    }

    /// Fills `targets` from the figures present.
    pub fn evaluate_targets(&mut self) {
        let mut t = Vec::new();
        let mut push = |name: &str, value: f64, bound: String, met: bool| {
            t.push(Target {
                name: name.to_owned(),
                value,
                bound,
                met,
            })
        };
        if let Some(r) = self.call("throughput", 64, 64) {
            let v = ratio(r.iglu.per_s, r.zmq_floor.as_ref().map_or(0.0, |z| z.per_s));
            push(
                "64 B, 64 in flight: calls/s / zeromq floor",
                v,
                ">= 0.8".into(),
                v >= 0.8,
            );
        }
        if let Some(r) = self.call("payload", 64, 4096) {
            let v = ratio(r.iglu.per_s, r.zmq_floor.as_ref().map_or(0.0, |z| z.per_s));
            push(
                "4 KiB, 64 in flight: calls/s / zeromq floor",
                v,
                ">= 0.8".into(),
                v >= 0.8,
            );
        }
        if let Some(r) = self.call("latency", 1, 64) {
            let v = ratio(
                r.iglu.p50_us as f64,
                r.zmq_floor.as_ref().map_or(0.0, |z| z.p50_us as f64),
            );
            push(
                "sequential p50 / zeromq floor p50",
                v,
                "<= 1.2".into(),
                v > 0.0 && v <= 1.2,
            );
        }
        let hop = |path: &str, k: usize| {
            self.hops
                .iter()
                .find(|h| h.path == path && h.in_flight == k)
                .cloned()
        };
        if let Some(h) = hop("plugin->plugin raw", 1) {
            push(
                "plugin->plugin p50 / host->plugin p50, sequential",
                h.p50_ratio,
                "<= 1.5".into(),
                h.p50_ratio <= 1.5,
            );
        }
        // No collapse: 64 calls in flight between plugins give many times the
        // calls/s of one. (Their rate next to a host->plugin call's is in the
        // table: a call between plugins passes the host twice and both
        // plugins once, so at best it gets about half the CPU's calls/s.)
        if let (Some(one), Some(many)) =
            (hop("plugin->plugin raw", 1), hop("plugin->plugin raw", 64))
        {
            let v = many.measure.per_s / one.measure.per_s.max(1e-9);
            push(
                "plugin->plugin calls/s, 64 in flight / 1 in flight",
                v,
                ">= 4 (no collapse)".into(),
                v >= 4.0,
            );
        }
        if let Some(h) = hop("host->plugin typed", 64) {
            push(
                "typed calls/s / raw calls/s, 64 in flight",
                h.rate_ratio,
                ">= 0.95".into(),
                h.rate_ratio >= 0.95,
            );
        }
        if let Some(st) = &self.store {
            let at = |w: usize| st.rows.iter().find(|r| r.writers == w);
            if let Some(r) = at(64) {
                push(
                    "durable kv.set/s, 64 writers / redb commits/s one after another",
                    r.rate_ratio,
                    ">= 10".into(),
                    r.rate_ratio >= 10.0,
                );
            }
            if let Some(r) = at(1) {
                push(
                    "durable kv.set p50, 1 writer / one redb commit p50",
                    r.p50_ratio,
                    "<= 1.5".into(),
                    r.p50_ratio <= 1.5,
                );
            }
        }
        if let Some(u) = &self.upgrade {
            push(
                "failed calls during upgrades, 64 in flight",
                u.failed as f64,
                "= 0".into(),
                u.failed == 0,
            );
        }
        if let Some(r) = self.life("spawn to first call") {
            let v = r.median_us as f64 / 1000.0;
            push("spawn to first call, median ms", v, "<= 3".into(), v <= 3.0);
        }
        if let Some(r) = self.life("sigkill to crashed") {
            let v = r.median_us as f64 / 1000.0;
            push("SIGKILL to crashed, median ms", v, "<= 1".into(), v <= 1.0);
        }
        if let Some(r) = self.life("sigkill to first call after restart") {
            let v = r.median_us as f64 / 1000.0;
            let backoff = r
                .note
                .split_whitespace()
                .find_map(|w| w.parse::<f64>().ok())
                .unwrap_or(0.0);
            push(
                "SIGKILL to first call after restart, median ms",
                v,
                format!("<= 10 + {backoff} (backoff)"),
                v <= 10.0 + backoff,
            );
        }
        if let Some(r) = self.events.iter().find(|e| e.subscribers == 8) {
            push(
                "fan-out to 8, deliveries/s",
                r.deliveries_per_s,
                ">= 500000, 0 dropped".into(),
                r.deliveries_per_s >= 500_000.0 && r.dropped == 0,
            );
        }
        if let Some(m) = &self.memory {
            let host = m.host_idle_16_plugins_kib as f64 / 1024.0;
            push(
                "host RSS with 16 idle plugins, MiB",
                host,
                "<= 32".into(),
                host <= 32.0,
            );
            let plugin = m.plugin_max_kib as f64 / 1024.0;
            push(
                "plugin RSS (largest of 16), MiB",
                plugin,
                "<= 8".into(),
                plugin <= 8.0,
            );
            push(
                "host RSS growth over the long run, %",
                m.long_run_growth_percent,
                "< 5".into(),
                m.long_run_growth_percent < 5.0,
            );
        }
        self.targets = t;
    }
}

fn opt_ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// The whole distribution of sequential calls, for Iglu and both floors:
/// the calls table has room for p50, p99 and max only, and a tail that moves
/// while the median holds is what this workload is for.
fn latency_table(out: &mut String, r: &Report) {
    let rows: Vec<&CallRow> = r.calls.iter().filter(|c| c.workload == "latency").collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "SEQUENTIAL LATENCY (one call at a time, µs)");
    let _ = writeln!(
        out,
        "{:>8} {:<10} | {:>9} | {:>7} {:>7} {:>7} {:>7} {:>8}",
        "bytes", "who", "calls/s", "p50", "p90", "p99", "p99.9", "max"
    );
    for c in rows {
        let who = [
            ("iglu", Some(&c.iglu)),
            ("zmq floor", c.zmq_floor.as_ref()),
            ("uds floor", c.uds_floor.as_ref()),
        ];
        for (name, m) in who {
            let Some(m) = m else { continue };
            let _ = writeln!(
                out,
                "{:>8} {:<10} | {:>9.0} | {:>7} {:>7} {:>7} {:>7} {:>8}",
                c.payload_bytes, name, m.per_s, m.p50_us, m.p90_us, m.p99_us, m.p999_us, m.max_us
            );
        }
    }
    let _ = writeln!(out);
}

/// Tables for people.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "machine: {}", r.machine);
    let _ = writeln!(out, "settings: {}\n", r.settings);
    if !r.calls.is_empty() {
        let _ = writeln!(
            out,
            "CALLS (Iglu = host + real plugin process; floors measured in the same run)"
        );
        let _ = writeln!(
            out,
            "{:<10} {:>4} {:>8} {:>3} | {:>10} {:>9} {:>7} {:>7} {:>8} | {:>10} {:>7} | {:>10} {:>7} | {:>9} {:>9} {:>9}",
            "workload", "K", "bytes", "plg", "iglu/s", "MB/s", "p50us", "p99us", "max us", "zmq/s", "p50us", "uds/s", "p50us", "iglu/zmq", "iglu/uds", "p50/zmq"
        );
        for c in &r.calls {
            let z = c.zmq_floor.as_ref();
            let u = c.uds_floor.as_ref();
            let _ = writeln!(
                out,
                "{:<10} {:>4} {:>8} {:>3} | {:>10.0} {:>9.1} {:>7} {:>7} {:>8} | {:>10} {:>7} | {:>10} {:>7} | {:>9} {:>9} {:>9}",
                c.workload,
                c.in_flight,
                c.payload_bytes,
                c.plugins,
                c.iglu.per_s,
                c.iglu.mb_per_s,
                c.iglu.p50_us,
                c.iglu.p99_us,
                c.iglu.max_us,
                z.map_or("-".into(), |z| format!("{:.0}", z.per_s)),
                z.map_or("-".into(), |z| z.p50_us.to_string()),
                u.map_or("-".into(), |u| format!("{:.0}", u.per_s)),
                u.map_or("-".into(), |u| u.p50_us.to_string()),
                opt_ratio(c.iglu.per_s, z.map(|z| z.per_s)),
                opt_ratio(c.iglu.per_s, u.map(|u| u.per_s)),
                opt_ratio(c.iglu.p50_us as f64, z.map(|z| z.p50_us as f64)),
            );
        }
        let cpu: Vec<String> = r
            .calls
            .iter()
            .filter(|c| c.workload == "plugins")
            .map(|c| {
                format!(
                    "{} plugins: {:.0}%",
                    c.plugins,
                    c.host_cpu_percent.unwrap_or(0.0)
                )
            })
            .collect();
        if !cpu.is_empty() {
            let _ = writeln!(
                out,
                "host process CPU (host + load generator): {}",
                cpu.join(", ")
            );
        }
        let _ = writeln!(out);
        latency_table(&mut out, r);
    }
    if !r.events.is_empty() {
        let _ = writeln!(out, "EVENT FAN-OUT (64 B, published by the host)");
        let _ = writeln!(
            out,
            "{:>5} {:>10} {:>10} {:>12} {:>8} | {:>7} {:>7} {:>7} {:>8}",
            "subs",
            "published",
            "delivered",
            "deliveries/s",
            "dropped",
            "p50us",
            "p99us",
            "p999us",
            "max us"
        );
        for e in &r.events {
            let _ = writeln!(
                out,
                "{:>5} {:>10} {:>10} {:>12.0} {:>8} | {:>7} {:>7} {:>7} {:>8}",
                e.subscribers,
                e.published,
                e.delivered,
                e.deliveries_per_s,
                e.dropped,
                e.latency.p50_us,
                e.latency.p99_us,
                e.latency.p999_us,
                e.latency.max_us
            );
        }
        let _ = writeln!(out);
    }
    super::metrics_cost::table(&mut out, &r.metrics_cost);
    super::mqtt::table(&mut out, &r.mqtt, r.mqtt_skipped.as_deref());
    if !r.lifecycle.is_empty() {
        let _ = writeln!(out, "LIFECYCLE");
        for l in &r.lifecycle {
            let _ = writeln!(
                out,
                "{:<38} median {:>9.2} ms   max {:>9.2} ms   ({} runs) {}",
                l.what,
                l.median_us as f64 / 1000.0,
                l.max_us as f64 / 1000.0,
                l.runs,
                l.note
            );
        }
        let _ = writeln!(out);
    }
    if !r.hops.is_empty() {
        let _ = writeln!(
            out,
            "CALL PATHS (64 B; ratios to the raw host->plugin call at the same depth, same run)"
        );
        for h in &r.hops {
            let m = &h.measure;
            let _ = writeln!(
                out,
                "{:<22} K={:<3} {:>9.0}/s   p50 {:>6} us   p99 {:>6} us   p50 x{:.2}   rate x{:.2}",
                h.path, h.in_flight, m.per_s, m.p50_us, m.p99_us, h.p50_ratio, h.rate_ratio
            );
        }
        let _ = writeln!(out);
    }
    if let Some(st) = &r.store {
        super::store::print(&mut out, st);
    }
    if let Some(u) = &r.upgrade {
        super::upgrade::print(&mut out, u);
    }
    if let Some(n) = &r.neighbours {
        let _ = writeln!(
            out,
            "NEIGHBOURS (sequential 64 B calls to bench-0; flooded = while `deaf` sends {:.0} frames/s and never reads; cut {} times)",
            n.flood_frames_per_s, n.cuts
        );
        for (what, m) in [("quiet", &n.quiet), ("flooded", &n.flooded)] {
            let _ = writeln!(
                out,
                "{:<8} {:>9.0}/s   p50 {:>6} us   p99 {:>6} us   max {:>7} us",
                what, m.per_s, m.p50_us, m.p99_us, m.max_us
            );
        }
        let _ = writeln!(
            out,
            "flooded/quiet: p50 {}   p99 {}\n",
            opt_ratio(n.flooded.p50_us as f64, Some(n.quiet.p50_us as f64)),
            opt_ratio(n.flooded.p99_us as f64, Some(n.quiet.p99_us as f64)),
        );
    }
    if let Some(m) = &r.memory {
        let _ = writeln!(out, "MEMORY");
        let _ = writeln!(
            out,
            "iglu run with 16 idle plugins: RSS {:.1} MiB (peak {:.1} MiB)",
            m.host_idle_16_plugins_kib as f64 / 1024.0,
            m.host_peak_kib as f64 / 1024.0
        );
        let _ = writeln!(
            out,
            "plugin RSS: median {:.1} MiB, largest {:.1} MiB",
            m.plugin_median_kib as f64 / 1024.0,
            m.plugin_max_kib as f64 / 1024.0
        );
        let _ = writeln!(
            out,
            "bench host over {} calls: RSS {:.1} -> {:.1} MiB ({:+.1}%)\n",
            m.long_run_calls,
            m.long_run_rss_before_kib as f64 / 1024.0,
            m.long_run_rss_after_kib as f64 / 1024.0,
            m.long_run_growth_percent
        );
    }
    if !r.targets.is_empty() {
        let _ = writeln!(out, "TARGETS");
        for t in &r.targets {
            let _ = writeln!(
                out,
                "[{}] {:<52} {:>12.2}  (target {})",
                if t.met { "met" } else { "MISSED" },
                t.name,
                t.value,
                t.bound
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
