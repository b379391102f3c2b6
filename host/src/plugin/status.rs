//! What `iglu status` shows, as JSON and as a table.

use serde::{Deserialize, Serialize};

use super::registry::{Facts, PluginKind, Registry};
use super::state::PluginState;
use crate::events::queue::QueueStats;
use crate::events::subscriptions::Subscriptions;

/// One plugin as the CLI shows it. Field names are stable: scripts read `--json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginStatus {
    /// The plugin's id.
    pub id: String,
    /// From its manifest (the id until it has handshaken once).
    pub name: String,
    /// From its manifest; empty until it has handshaken once.
    pub version: String,
    /// From its manifest.
    pub author: String,
    /// From its manifest.
    pub description: String,
    /// Lifecycle state.
    pub state: PluginState,
    /// Process id, while a process exists.
    pub pid: Option<u32>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Restarts asked for (`iglu restart`, the dashboard).
    #[serde(default)]
    pub restarts_requested: u32,
    /// How the last process ended.
    pub last_exit: Option<String>,
    /// Milliseconds since the plugin last sent anything; `null` without a session.
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Milliseconds since the session opened; `null` without a session.
    pub uptime_ms: Option<u64>,
    /// Calls from the host waiting for this plugin's answer.
    pub calls_in_flight: usize,
    /// `managed` (a child process of the host) or `external` (connects by itself).
    pub kind: String,
    /// Methods declared in its last handshake.
    pub methods: Vec<String>,
    /// Interfaces it announced in its last handshake, with their methods' shapes.
    #[serde(default)]
    pub interfaces: Vec<iglu_bus::interface::InterfaceInfo>,
    /// Its event subscriptions.
    pub subscriptions: Vec<String>,
    /// Its event queue's counters.
    pub events: QueueStats,
    /// Calls and publications refused for lack of a permission.
    #[serde(default)]
    pub permission_denied: u64,
    /// Its store: what it holds and its quota.
    #[serde(default)]
    pub store: StoreUsage,
    /// Its processes' resident memory and CPU, as last read (every
    /// heartbeat interval), while it runs; `null` for a plugin elsewhere.
    #[serde(default)]
    pub usage: Option<crate::limits::Usage>,
    /// The limits in force for a managed plugin, and how they are held.
    #[serde(default)]
    pub limits: Option<crate::limits::Limits>,
    /// How the limits are held on this host (`null` for a plugin elsewhere).
    #[serde(default)]
    pub isolation: Option<String>,
    /// The plugin's own last `status.report` in this session, if any.
    #[serde(default)]
    pub health: Option<super::health::Health>,
}

/// What a plugin's store holds, next to its quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreUsage {
    /// Keys held.
    pub keys: u64,
    /// Bytes of keys and values held.
    pub bytes: u64,
    /// Its quota of keys.
    pub max_keys: u64,
    /// Its quota of bytes.
    pub max_bytes: u64,
}

/// Every plugin's status, by id.
pub fn collect(registry: &Registry, subscriptions: &Subscriptions) -> Vec<PluginStatus> {
    let mut all = registry.read_all(PluginStatus::of);
    for p in &mut all {
        p.subscriptions = subscriptions.filters(&p.id);
        p.events = subscriptions.stats(&p.id);
    }
    all
}

impl PluginStatus {
    /// The status of one plugin, from its facts (without its subscriptions).
    fn of(id: &str, e: &Facts) -> PluginStatus {
        let live = e.live_session();
        let mut manifest = e.manifest().cloned().unwrap_or_default();
        if let PluginKind::Managed(spec) = e.kind() {
            // An installed package is known by its package's name and version.
            if let Some(p) = &spec.package {
                manifest.name = p.name.clone();
                manifest.version = p.version.clone();
                manifest.author = p.author.clone();
            }
        }
        PluginStatus {
            id: id.to_owned(),
            name: if manifest.name.is_empty() {
                id.to_owned()
            } else {
                manifest.name
            },
            version: manifest.version,
            author: manifest.author,
            description: manifest.description,
            state: e.state(),
            pid: e.pid(),
            restarts: e.restarts(),
            restarts_requested: e.restarts_requested(),
            permission_denied: e.denied(),
            last_exit: e.last_exit().map(str::to_owned),
            last_heartbeat_ms_ago: live.map(|s| millis(s.silent_for())),
            uptime_ms: live.and(e.since()).map(|t| millis(t.elapsed())),
            calls_in_flight: live.map_or(0, |s| s.calls_in_flight()),
            kind: match e.kind() {
                PluginKind::Managed(_) => "managed",
                PluginKind::External(_) => "external",
            }
            .to_owned(),
            methods: e.methods().to_vec(),
            interfaces: e.interfaces().to_vec(),
            subscriptions: Vec::new(),
            events: QueueStats::default(),
            store: StoreUsage::default(),
            usage: e.usage().copied(),
            limits: match e.kind() {
                PluginKind::Managed(spec) => Some(crate::limits::Limits::of(
                    spec.limits.as_ref(),
                    &crate::limits::LimitsConfig::default(),
                )),
                PluginKind::External(_) => None,
            },
            isolation: match e.kind() {
                PluginKind::Managed(_) => Some(crate::limits::MECHANISM.to_owned()),
                PluginKind::External(_) => None,
            },
            health: live.and_then(|s| s.health.get()),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `iglu describe`: a plugin's interfaces and methods, with the shapes of
/// their arguments and results, as a table for people.
pub fn describe(p: &PluginStatus) -> String {
    let mut rows = vec![[
        "INTERFACE".to_owned(),
        "VERSION".to_owned(),
        "METHOD".to_owned(),
        "ARGUMENTS".to_owned(),
        "RESULT".to_owned(),
        "ERROR".to_owned(),
    ]];
    let mut in_interfaces = std::collections::BTreeSet::new();
    for i in &p.interfaces {
        for m in &i.methods {
            in_interfaces.insert(iglu_bus::interface::method_name(&i.name, &m.name));
            let args: Vec<String> = m
                .args
                .iter()
                .map(|a| format!("{}: {}", a.name, a.ty))
                .collect();
            rows.push([
                i.name.clone(),
                i.version.clone(),
                m.name.clone(),
                args.join(", "),
                m.result.clone(),
                m.error.clone(),
            ]);
        }
    }
    for m in p.methods.iter().filter(|m| !in_interfaces.contains(*m)) {
        rows.push([
            "-".into(),
            "-".into(),
            m.clone(),
            "(MessagePack)".into(),
            "(MessagePack)".into(),
            "-".into(),
        ]);
    }
    let mut out = format!(
        "{} {} ({}, {})\n",
        p.id,
        if p.version.is_empty() {
            "-"
        } else {
            &p.version
        },
        p.name,
        p.state.as_str()
    );
    out.push_str(&aligned(&rows));
    out
}

/// Rows as columns padded to their widest cell.
fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A table for people.
pub fn table(plugins: &[PluginStatus]) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "NAME".to_owned(),
        "VERSION".to_owned(),
        "STATE".to_owned(),
        "PID".to_owned(),
        "RESTARTS".to_owned(),
        "HEARTBEAT".to_owned(),
        "RSS".to_owned(),
        "CPU".to_owned(),
        "LAST EXIT".to_owned(),
    ]];
    for p in plugins {
        rows.push([
            p.id.clone(),
            p.name.clone(),
            p.version.clone(),
            p.state.as_str().to_owned(),
            p.pid.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            p.restarts.to_string(),
            p.last_heartbeat_ms_ago
                .map(|x| format!("{x} ms ago"))
                .unwrap_or_else(|| "-".into()),
            p.usage
                .map(|u| format!("{:.1} MiB", u.rss_kib as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
            p.usage
                .map(|u| format!("{:.0}%", u.cpu_percent))
                .unwrap_or_else(|| "-".into()),
            p.last_exit.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = aligned(&rows);
    // What plugins say of themselves, under the table: a bridge's link to
    // its broker does not fit in a column.
    for p in plugins {
        if let Some(h) = &p.health {
            out.push_str(&format!("{}: {}", p.id, h.state));
            if !h.detail.is_empty() {
                out.push_str(&format!(" ({})", h.detail));
            }
            out.push('\n');
        }
    }
    out
}
