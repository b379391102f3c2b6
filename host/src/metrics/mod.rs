//! Prometheus metrics (`[metrics] bind`): OpenMetrics text from the
//! `prometheus-client` crate, with Prometheus' naming conventions.
//!
//! - [`calls`]: `iglu_calls_total{plugin,method,outcome}` and
//!   `iglu_call_duration_seconds{plugin,method}`, recorded on the call path
//!   through handles each session resolves once for its declared methods
//!   (label values come from the plugin's HELLO only: a caller naming
//!   methods that do not exist cannot grow the label set);
//! - [`plugins`]: what `iglu status` knows, read at each scrape: up, state,
//!   restarts, events delivered and dropped, queue depth, RSS, CPU seconds,
//!   and the host's own RSS and uptime;
//! - [`serve`]: the HTTP endpoint, `GET /metrics`.

pub mod calls;
pub mod plugins;
pub mod serve;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use calls::{CallMetrics, PluginCalls};

/// Every metric of the host.
pub struct Metrics {
    registry: Registry,
    /// Calls, by plugin, method and outcome.
    pub calls: Arc<CallMetrics>,
}

impl Metrics {
    /// The metrics, with the per-plugin collector reading `source` at scrape.
    pub fn new(source: plugins::Source) -> Metrics {
        let mut registry = Registry::default();
        let calls = Arc::new(CallMetrics::default());
        calls.register(&mut registry);
        registry.register_collector(Box::new(plugins::PluginCollector::new(source)));
        Metrics { registry, calls }
    }

    /// The OpenMetrics text of every metric now.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
