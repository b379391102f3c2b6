//! What the host knows of each plugin, as metrics read at each scrape
//! (nothing of it is kept twice): a collector over the registry and the
//! event queues.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::events::EventHub;
use crate::plugin::registry::Registry;
use crate::plugin::state::PluginState;

/// Where the collector reads from.
pub struct Source {
    /// The plugins' facts.
    pub registry: Arc<Registry>,
    /// Their event queues.
    pub events: Arc<EventHub>,
    /// When the host started.
    pub started: Instant,
}

/// The collector.
pub struct PluginCollector(Source);

impl std::fmt::Debug for PluginCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginCollector")
    }
}

impl PluginCollector {
    pub(super) fn new(source: Source) -> PluginCollector {
        PluginCollector(source)
    }
}

const STATES: [PluginState; 7] = [
    PluginState::Starting,
    PluginState::Running,
    PluginState::Crashed,
    PluginState::Restarting,
    PluginState::Stopping,
    PluginState::Stopped,
    PluginState::Failed,
];

/// The host's own resident memory, in bytes.
fn host_rss_bytes() -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page)
}

impl Collector for PluginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let plugins =
            crate::plugin::status::collect(&self.0.registry, &self.0.events.subscriptions);
        let gauge = |encoder: &mut DescriptorEncoder<'_>,
                     name: &str,
                     help: &str,
                     values: &mut dyn Iterator<Item = (Vec<(&str, String)>, f64)>|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, v) in values {
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        let counter = |encoder: &mut DescriptorEncoder<'_>,
                       name: &str,
                       help: &str,
                       values: &mut dyn Iterator<Item = (Vec<(&str, String)>, f64)>|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, v) in values {
                ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        let id = |p: &crate::PluginStatus| vec![("plugin", p.id.clone())];
        gauge(
            &mut encoder,
            "iglu_plugin_up",
            "1 if the plugin is running (handshaken), else 0",
            &mut plugins
                .iter()
                .map(|p| (id(p), f64::from(u8::from(p.state == PluginState::Running)))),
        )?;
        gauge(
            &mut encoder,
            "iglu_plugin_state",
            "1 for the plugin's current lifecycle state, 0 for the others",
            &mut plugins.iter().flat_map(|p| {
                STATES.iter().map(move |s| {
                    (
                        vec![("plugin", p.id.clone()), ("state", s.as_str().to_owned())],
                        f64::from(u8::from(p.state == *s)),
                    )
                })
            }),
        )?;
        counter(
            &mut encoder,
            "iglu_plugin_restarts",
            "Restarts after crashes since the host started",
            &mut plugins.iter().map(|p| (id(p), f64::from(p.restarts))),
        )?;
        counter(
            &mut encoder,
            "iglu_events_delivered",
            "Events the plugin acknowledged",
            &mut plugins.iter().map(|p| (id(p), p.events.delivered as f64)),
        )?;
        counter(
            &mut encoder,
            "iglu_events_dropped",
            "Events dropped from the plugin's queue (it was full; oldest first)",
            &mut plugins.iter().map(|p| (id(p), p.events.dropped as f64)),
        )?;
        gauge(
            &mut encoder,
            "iglu_event_queue_depth",
            "Events waiting for the plugin or in flight to it",
            &mut plugins
                .iter()
                .map(|p| (id(p), (p.events.queued + p.events.in_flight) as f64)),
        )?;
        gauge(
            &mut encoder,
            "iglu_plugin_resident_memory_bytes",
            "Resident memory of the plugin's processes, as last read",
            &mut plugins
                .iter()
                .filter_map(|p| p.usage.map(|u| (id(p), (u.rss_kib * 1024) as f64))),
        )?;
        counter(
            &mut encoder,
            "iglu_plugin_cpu_seconds",
            "CPU time the plugin's processes used, as last read",
            &mut plugins
                .iter()
                .filter_map(|p| p.usage.map(|u| (id(p), u.cpu_seconds))),
        )?;
        for (name, help, value) in [
            (
                "iglu_host_resident_memory_bytes",
                "Resident memory of the host process",
                host_rss_bytes() as f64,
            ),
            (
                "iglu_host_uptime_seconds",
                "Time since the host started",
                self.0.started.elapsed().as_secs_f64(),
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        Ok(())
    }
}
