//! The host's configuration: TOML on disk, or the built-in default.
//!
//! Every timing default is argued for in the README ("Supervision
//! defaults"); the numbers here must match it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

pub mod mqtt;
pub mod plugin_dir;
mod sections;
pub use sections::{
    ExternalSpec, HeartbeatConfig, MetricsConfig, PackagesConfig, PluginSpec, RestartConfig,
    SimulatorConfig, StoreConfig, TcpConfig, WebConfig,
};

/// Environment variable naming the runtime directory when the config does not.
pub const RUNTIME_DIR_ENV: &str = "IGLU_RUNTIME_DIR";

/// Room over `max_message_bytes` for a frame the host still reads, so that
/// a plugin slightly over the cap hears why (see `Config::transport_frame_cap`).
const FRAME_OVERHEAD: usize = 1024;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory (mode 0700) for the plugin and control sockets. Default:
    /// `$XDG_RUNTIME_DIR/iglu`, else `/tmp/iglu-<uid>`.
    pub runtime_dir: Option<PathBuf>,
    /// Directory (mode 0700) of the host's store: every plugin's key-value
    /// data and the retained events, in `store.redb`. Default:
    /// `$XDG_DATA_HOME/iglu`, else `~/.local/share/iglu`.
    pub data_dir: Option<PathBuf>,
    /// Quotas of every plugin's store.
    pub store: StoreConfig,
    /// Every executable file in this directory is started as a plugin whose
    /// id is the file name.
    pub plugin_dir: Option<PathBuf>,
    /// Largest frame accepted from a plugin, in bytes (default 4 MiB).
    pub max_message_bytes: usize,
    /// Deadline of a call from the CLI when none is given, in ms (default 10 s).
    pub call_timeout_ms: u64,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatConfig,
    /// Restart policy.
    pub restart: RestartConfig,
    /// How long a plugin has to handshake after its process starts, in ms (default 10 s).
    pub handshake_timeout_ms: u64,
    /// How long a plugin has to exit after GOODBYE before SIGTERM, and after
    /// SIGTERM before SIGKILL, in ms (default 5 s).
    pub stop_grace_ms: u64,
    /// Events that may wait in one plugin's queue; beyond it the oldest are dropped (default 1024).
    pub event_queue: usize,
    /// Bytes of events one plugin's queue may hold, waiting and in flight
    /// together; beyond it the oldest waiting are dropped (default 16 MiB).
    pub event_queue_bytes: usize,
    /// Bytes that may wait in one plugin's socket queue, unread by it
    /// (default 64 MiB). A plugin past it has stopped reading: its session is
    /// closed with that reason, as a hung plugin's is.
    pub send_queue_bytes: usize,
    /// The same bound in messages (default 65,536).
    pub send_queue_messages: usize,
    /// Default for calls to a plugin that is starting or restarting: wait
    /// for it to be running, up to the call's deadline, instead of failing
    /// at once with `not_running` (default false; `iglu call --wait` and the
    /// embedding API's `CallOptions` choose per call).
    pub call_wait_for_running: bool,
    /// Threads of the host's async runtime (default: half the CPUs, at
    /// least 1; see [`Config::worker_threads`]).
    pub worker_threads: usize,
    /// The simulated devices of the demo home.
    pub simulator: SimulatorConfig,
    /// Plugins named one by one.
    #[serde(rename = "plugin")]
    pub plugins: Vec<PluginSpec>,
    /// The guarded TCP endpoint for external plugins; absent means local only.
    pub tcp: Option<TcpConfig>,
    /// Plugins the host does not start: containers, other machines.
    #[serde(rename = "external")]
    pub externals: Vec<ExternalSpec>,
    /// Installing packages: trusted keys, unsigned bundles.
    pub packages: PackagesConfig,
    /// What each plugin's processes may use, by default (and at most, for
    /// a package): memory, open files.
    pub limits: crate::limits::LimitsConfig,
    /// The filesystem and network sandbox of managed plugins.
    pub sandbox: crate::limits::sandbox::SandboxConfig,
    /// Plugins' settings, by plugin id: `[settings.lights] rooms = "..."`
    /// (over the defaults of a package's schema; `iglu settings set` goes
    /// over these).
    pub settings: BTreeMap<String, toml::Table>,
    /// Watch `plugin_dir` while the host runs (default true): a new
    /// executable is started, a removed one stopped, a replaced one
    /// restarted.
    pub watch_plugin_dir: Option<bool>,
    /// The bridge to an MQTT broker (run as the plugin `mqtt-bridge`).
    pub mqtt: Option<iglu_mqtt::MqttConfig>,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The dashboard.
    pub web: WebConfig,
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks TOML text; relative paths in it are taken relative
    /// to the directory of `origin` (the file it came from).
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_owned(),
            source: Box::new(source),
        })?;
        if let Some(base) = origin.parent() {
            config.resolve_relative_to(base);
        }
        config.fill_defaults();
        if let Some(mqtt) = config.mqtt.as_mut() {
            let bridge = mqtt::bridge_spec(mqtt)?;
            config.plugins.push(bridge);
        }
        config.validate()?;
        Ok(config)
    }

    /// The built-in configuration: the example plugins that sit beside the
    /// `iglu` executable (as `cargo build` leaves them in `target/<profile>/`).
    pub fn builtin() -> Config {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let plugin = |id: &str, binary: &str| PluginSpec::new(id, dir.join(binary));
        let simulator = SimulatorConfig {
            enabled: true,
            ..SimulatorConfig::default()
        };
        let mut lights = plugin("lights", "iglu-plugin-lights");
        lights
            .env
            .insert("IGLU_LIGHTS_ROOMS".to_owned(), simulator.rooms.join(","));
        lights.provides = vec!["iglu.light@^1".to_owned()];
        let grants = |publish: &[&str], subscribe: &[&str], host_api: &[&str]| {
            let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
            Some(crate::permissions::Grants {
                publish: owned(publish),
                subscribe: owned(subscribe),
                host_api: owned(host_api),
            })
        };
        // What the demo needs, and nothing more (see `permissions`).
        lights.permissions = grants(
            &["home/+/light/state"],
            &["home/+/light/set"],
            &["kv.*", "events.publish"],
        );
        let mut thermostat = plugin("thermostat", "iglu-plugin-thermostat");
        thermostat.provides = vec!["iglu.thermostat@^1".to_owned()];
        let mut automation = plugin("automation", "iglu-plugin-automation");
        automation.calls = vec!["lights".to_owned()];
        automation.permissions = grants(&[], &["home/+/motion"], &["kv.*", "plugins.call"]);
        let mut config = Config {
            plugins: vec![
                plugin("echo", "iglu-plugin-echo"),
                thermostat,
                lights,
                automation,
                plugin("history", "iglu-plugin-history"),
            ],
            simulator,
            // The dashboard, on this machine only; a second host here
            // starts without it.
            web: WebConfig {
                bind: Some("127.0.0.1:7900".to_owned()),
                token_file: None,
                optional: true,
            },
            ..Config::default()
        };
        config.fill_defaults();
        config
    }

    fn resolve_relative_to(&mut self, base: &Path) {
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() && p.components().count() > 1 {
                *p = base.join(&*p);
            }
        };
        if let Some(dir) = self.plugin_dir.as_mut() {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        for dir in [self.runtime_dir.as_mut(), self.data_dir.as_mut()]
            .into_iter()
            .flatten()
        {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        for p in &mut self.plugins {
            absolute(&mut p.command);
        }
        if let Some(m) = self.mqtt.as_mut() {
            mqtt::resolve_relative_to(m, base);
        }
        for dir in &mut self.sandbox.read {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        if let Some(t) = self.web.token_file.as_mut() {
            if t.is_relative() {
                *t = base.join(&*t);
            }
        }
        for key in &mut self.packages.trusted_keys {
            if key.is_relative() {
                *key = base.join(&*key);
            }
        }
    }

    /// The store's directory: `data_dir`, else `$XDG_DATA_HOME/iglu`, else
    /// `~/.local/share/iglu` (else `./iglu-data` with no home at all).
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
            (Some(xdg), _) if !xdg.is_empty() => PathBuf::from(xdg).join("iglu"),
            (_, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".local/share/iglu"),
            _ => PathBuf::from("iglu-data"),
        }
    }

    /// Zero means "not set" for the numbers a file may leave out.
    fn fill_defaults(&mut self) {
        if self.max_message_bytes == 0 {
            self.max_message_bytes = iglu_bus::DEFAULT_MAX_MESSAGE_BYTES;
        }
        if self.call_timeout_ms == 0 {
            self.call_timeout_ms = 10_000;
        }
        if self.handshake_timeout_ms == 0 {
            self.handshake_timeout_ms = 10_000;
        }
        if self.stop_grace_ms == 0 {
            self.stop_grace_ms = 5_000;
        }
        if self.event_queue == 0 {
            self.event_queue = 1024;
        }
        if self.event_queue_bytes == 0 {
            self.event_queue_bytes = 16 << 20;
        }
        if self.send_queue_bytes == 0 {
            self.send_queue_bytes = 64 << 20;
        }
        if self.send_queue_messages == 0 {
            self.send_queue_messages = 65_536;
        }
        if self.simulator.interval_ms == 0 {
            self.simulator.interval_ms = 2000;
        }
    }

    /// The largest frame the host reads off a plugin connection, ipc or
    /// TCP. A frame a little over `max_message_bytes` is still read, so the
    /// plugin gets a `too_large` ERROR with the reason; a frame claiming more
    /// cuts that one connection at its header, before anything is allocated
    /// for it (the plugin is then restarted like any that lost its connection).
    pub fn transport_frame_cap(&self) -> usize {
        self.max_message_bytes.saturating_add(FRAME_OVERHEAD)
    }

    /// The largest ZeroMQ message (all its frames) the host reads off a
    /// plugin connection: [`iglu_bus::MAX_FRAMES_PER_MESSAGE`] frames at
    /// the frame cap. Past it, the connection is cut like one over the frame cap.
    pub fn transport_message_cap(&self) -> usize {
        self.transport_frame_cap()
            .saturating_mul(iglu_bus::MAX_FRAMES_PER_MESSAGE)
    }

    /// Every bound the host's ROUTER puts on one peer.
    pub fn router_caps(&self) -> iglu_bus::transport::RouterCaps {
        iglu_bus::transport::RouterCaps {
            max_frame: self.transport_frame_cap(),
            max_message: self.transport_message_cap(),
            queue_messages: self.send_queue_messages,
            queue_bytes: self.send_queue_bytes,
        }
    }

    /// The host runtime's thread count: `worker_threads` if set, else half
    /// the CPUs, at least 1. The plugins are processes that need CPUs too,
    /// and every wakeup of a thread on another CPU costs tens of
    /// microseconds: `iglu bench` on 2 vCPUs measured 64 calls in flight at
    /// 1.2-1.5x the zeromq floor with one host thread and 0.6-1.0x with two.
    pub fn worker_threads(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cpus / 2).max(1)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.heartbeat.interval_ms == 0 || self.heartbeat.liveness == 0 {
            return bad("heartbeat.interval_ms and heartbeat.liveness must be at least 1");
        }
        if self.restart.backoff_initial_ms > self.restart.backoff_max_ms {
            return bad("restart.backoff_initial_ms is larger than restart.backoff_max_ms");
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > u32::MAX as usize {
            return bad("max_message_bytes must be between 1024 and 4294967295");
        }
        if self.event_queue_bytes < self.max_message_bytes {
            return bad(
                "event_queue_bytes must be at least max_message_bytes (one event must fit)",
            );
        }
        // Calls may fill half the socket queue, events in flight their own
        // bound plus one: a plugin that reads must never reach the queue's
        // bound, which means "not reading".
        let needed = (self.event_queue_bytes + 2 * self.max_message_bytes).saturating_mul(2);
        if self.send_queue_bytes < needed {
            return Err(ConfigError::Invalid(format!(
                "send_queue_bytes must be at least 2 x (event_queue_bytes + 2 x max_message_bytes) = {needed}"
            )));
        }
        // The host's own calls (4,096) and events in flight (`event_queue`)
        // must fit twice over: only a plugin that does not read gets there.
        let messages = 2 * (4096 + self.event_queue);
        if self.send_queue_messages < messages {
            return Err(ConfigError::Invalid(format!(
                "send_queue_messages must be at least 2 x (4096 + event_queue) = {messages}"
            )));
        }
        let l = &self.limits;
        if l.memory_mib < 16
            || l.max_open_files < 16
            || l.max_processes < 4
            || l.cpu_percent.is_some_and(|c| c < 1)
        {
            return bad("[limits]: memory_mib and max_open_files must be at least 16, max_processes at least 4, cpu_percent at least 1");
        }
        for p in &self.plugins {
            if let Some(own) = &p.limits {
                if own.memory_mib.is_some_and(|m| m < 16)
                    || own.max_open_files.is_some_and(|m| m < 16)
                    || own.max_processes.is_some_and(|m| m < 4)
                    || own.cpu_percent.is_some_and(|c| c < 1)
                {
                    return Err(ConfigError::Invalid(format!(
                        "plugin {}: memory_mib and max_open_files must be at least 16, max_processes at least 4, cpu_percent at least 1",
                        p.id
                    )));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        let ids = self
            .plugins
            .iter()
            .map(|p| &p.id)
            .chain(self.externals.iter().map(|e| &e.id));
        for id in ids {
            if !iglu_bus::handshake::valid_plugin_id(id) {
                return Err(ConfigError::Invalid(format!(
                    "plugin id {id:?} is not 1-64 characters of [a-z0-9_-]"
                )));
            }
            if !seen.insert(id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "plugin id {id:?} appears twice"
                )));
            }
        }
        Ok(())
    }

    /// Every plugin to supervise: the explicit ones, then those found in
    /// `plugin_dir` (skipping ids already taken, with a warning).
    pub fn all_plugins(&self) -> Result<Vec<PluginSpec>, ConfigError> {
        let mut all = self.plugins.clone();
        if let Some(dir) = &self.plugin_dir {
            for spec in plugin_dir::scan(dir)? {
                if all.iter().any(|p| p.id == spec.id) {
                    tracing::warn!(plugin = %spec.id, path = %spec.command.display(), "skipping: a plugin with this id is already configured");
                } else {
                    all.push(spec);
                }
            }
        }
        Ok(all)
    }

    /// Heartbeat timing as the protocol crate wants it.
    pub fn timing(&self) -> iglu_bus::heartbeat::Timing {
        iglu_bus::heartbeat::Timing {
            interval: Duration::from_millis(self.heartbeat.interval_ms),
            liveness: self.heartbeat.liveness,
        }
    }

    /// The runtime directory in force: the config's, else `IGLU_RUNTIME_DIR`,
    /// else the per-user default.
    pub fn runtime_dir(&self) -> PathBuf {
        self.runtime_dir
            .clone()
            .or_else(|| {
                std::env::var_os(RUNTIME_DIR_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(crate::runtime_dir::default_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_gets_defaults() {
        let mut c: Config = toml::from_str(
            r#"
            [[plugin]]
            id = "echo"
            command = "/bin/true"
            "#,
        )
        .expect("parses");
        c.fill_defaults();
        c.validate().expect("valid");
        assert_eq!(c.heartbeat.interval_ms, 1000);
        assert_eq!(c.restart.max_restarts, 5);
        assert_eq!(c.max_message_bytes, 4 * 1024 * 1024);
        assert!(c.plugins[0].autostart);
    }

    #[test]
    fn unknown_keys_and_bad_ids_are_refused() {
        assert!(toml::from_str::<Config>("heartbeet = 1").is_err());
        let mut c: Config =
            toml::from_str("[[plugin]]\nid = \"Bad Id\"\ncommand = \"x\"\n").expect("parses");
        c.fill_defaults();
        assert!(c.validate().is_err());
    }
}
