//! Calls' metrics. The call path pays two atomic additions and a bucket
//! search: each session resolves its declared methods' handles once (at
//! the handshake), so no label set is hashed per call; errors (rare) and
//! methods the plugin did not declare go through the families.

use std::sync::Arc;
use std::time::Duration;

use iglu_bus::FoldMap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The label value for a method the plugin did not declare (and for one
/// past [`MAX_METHODS`], or with a character a label value should not hold).
const UNDECLARED: &str = "(undeclared)";

/// Methods of one plugin that get series of their own: the label set stays
/// bounded however many a plugin declares.
pub const MAX_METHODS: usize = 64;

/// Whether a method name may be a label value as it is (prometheus-client
/// writes label values unescaped).
fn plain_label(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-' | b'/'))
}

/// Buckets of call durations, in seconds: 50 µs (a local call on an idle
/// host) to 10 s (the default deadline).
const BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    plugin: String,
    method: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    plugin: String,
    method: String,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// One plugin's calls in all, for the dashboard's rate and p99 (the
/// families are for Prometheus, which keeps the history itself).
#[derive(Default)]
pub struct PluginTotals {
    /// Calls finished.
    pub calls: std::sync::atomic::AtomicU64,
    /// Calls finished by duration bucket ([`BUCKETS`], and one past the last).
    pub buckets: [std::sync::atomic::AtomicU64; BUCKETS.len() + 1],
}

impl PluginTotals {
    fn record(&self, elapsed: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
    }

    /// The upper bound of the bucket holding the `q` quantile of the
    /// calls counted between `before` and `now` (bucket counts), in seconds.
    pub fn quantile(before: &[u64], now: &[u64], q: f64) -> Option<f64> {
        let deltas: Vec<u64> = now
            .iter()
            .zip(before)
            .map(|(n, b)| n.saturating_sub(*b))
            .collect();
        let total: u64 = deltas.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, d) in deltas.iter().enumerate() {
            seen += d;
            if seen >= want {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }

    /// The bucket counts now.
    pub fn snapshot(&self) -> (u64, Vec<u64>) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.calls.load(Relaxed),
            self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
        )
    }
}

/// The families.
pub struct CallMetrics {
    /// Each plugin's totals, by id (bounded by the plugins the host has had).
    totals: std::sync::Mutex<std::collections::HashMap<String, Arc<PluginTotals>>>,
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// Whether calls are recorded (on; `iglu bench` turns it off in turns
    /// to measure what recording costs).
    enabled: std::sync::atomic::AtomicBool,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics {
            calls: Family::default(),
            durations: Family::new_with_constructor(histogram),
            enabled: std::sync::atomic::AtomicBool::new(true),
            totals: Default::default(),
        }
    }
}

impl CallMetrics {
    /// Plugin `id`'s totals (made on first use).
    pub fn totals(&self, id: &str) -> Arc<PluginTotals> {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.entry(id.to_owned()).or_default().clone()
    }

    /// Turns recording on or off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "iglu_calls",
            "Calls the host made to plugins, by outcome (ok or an error code)",
            self.calls.clone(),
        );
        registry.register(
            "iglu_call_duration_seconds",
            "Time from a call's sending to its answer",
            self.durations.clone(),
        );
    }

    fn handles(&self, plugin: &str, method: &str) -> Handles {
        Handles {
            ok: self
                .calls
                .get_or_create(&CallLabels {
                    plugin: plugin.to_owned(),
                    method: method.to_owned(),
                    outcome: "ok".to_owned(),
                })
                .clone(),
            duration: self
                .durations
                .get_or_create(&MethodLabels {
                    plugin: plugin.to_owned(),
                    method: method.to_owned(),
                })
                .clone(),
        }
    }
}

#[derive(Clone)]
struct Handles {
    ok: Counter,
    duration: Histogram,
}

/// One session's handles: its declared methods', resolved once.
pub struct PluginCalls {
    plugin: String,
    metrics: Arc<CallMetrics>,
    methods: FoldMap<String, Handles>,
    undeclared: Handles,
    totals: Arc<PluginTotals>,
}

impl PluginCalls {
    /// For `plugin`'s session with its declared `methods`.
    pub fn new<'a>(
        metrics: Arc<CallMetrics>,
        plugin: &str,
        methods: impl IntoIterator<Item = &'a String>,
    ) -> PluginCalls {
        let methods = methods
            .into_iter()
            .filter(|m| plain_label(m))
            .take(MAX_METHODS)
            .map(|m| (m.clone(), metrics.handles(plugin, m)))
            .collect();
        PluginCalls {
            undeclared: metrics.handles(plugin, UNDECLARED),
            totals: metrics.totals(plugin),
            plugin: plugin.to_owned(),
            metrics,
            methods,
        }
    }

    /// Records one call to `method` that took `elapsed` and ended with
    /// `error` (an error code's name) or fine.
    pub fn record(&self, method: &str, error: Option<&'static str>, elapsed: Duration) {
        if !self
            .metrics
            .enabled
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let (label, handles) = match self.methods.get(method) {
            Some(h) => (method, h),
            None => (UNDECLARED, &self.undeclared),
        };
        handles.duration.observe(elapsed.as_secs_f64());
        self.totals.record(elapsed);
        match error {
            None => {
                handles.ok.inc();
            }
            Some(code) => {
                self.metrics
                    .calls
                    .get_or_create(&CallLabels {
                        plugin: self.plugin.clone(),
                        method: label.to_owned(),
                        outcome: code.to_owned(),
                    })
                    .inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_or_too_many_methods_share_the_undeclared_series() {
        let metrics = Arc::new(CallMetrics::default());
        let mut methods: Vec<String> = vec!["ok.name".into(), "a\"b".into(), "x\\".into()];
        methods.extend((0..100).map(|i| format!("m{i}")));
        let calls = PluginCalls::new(metrics.clone(), "p", &methods);
        assert!(calls.methods.contains_key("ok.name"));
        assert!(!calls.methods.contains_key("a\"b") && !calls.methods.contains_key("x\\"));
        assert_eq!(calls.methods.len(), MAX_METHODS);
        calls.record("a\"b", None, Duration::from_micros(80));
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(!text.contains("a\"b"), "{text}");
        assert!(
            text.contains(r#"iglu_calls_total{plugin="p",method="(undeclared)",outcome="ok"} 1"#),
            "{text}"
        );
    }
}
