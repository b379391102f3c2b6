//! The sections of the configuration: the TCP endpoint, external and
//! managed plugins, heartbeat and restart timing, the demo's simulator.
//! Every default here is argued for in the README.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The TCP endpoint for external plugins. Iglu's own guard sits in front of
/// the ROUTER: `zeromq` alone must never face an untrusted network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Address to listen on, e.g. `127.0.0.1:7800`, or `0.0.0.0:7800` for every interface.
    pub bind: String,
    /// Connections served at once; more are closed at once (default 256).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection must have sent its HELLO within this, or it is cut (default 5000).
    #[serde(default = "default_tcp_handshake_ms")]
    pub handshake_timeout_ms: u64,
    /// Connections not yet admitted (no WELCOME yet) served at once: a
    /// small budget of its own, so strangers can never take the slots that
    /// admitted plugins need (default 32).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// The same budget for one source address (default 4).
    #[serde(default = "default_max_pending_per_address")]
    pub max_pending_per_address: usize,
}

fn default_max_pending() -> usize {
    32
}

fn default_max_pending_per_address() -> usize {
    4
}

fn default_max_connections() -> usize {
    256
}

fn default_tcp_handshake_ms() -> u64 {
    5000
}

/// A plugin that runs elsewhere and connects to the host by itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    /// The id it must present in HELLO.
    pub id: String,
    /// Its secret token, written in the config.
    #[serde(default)]
    pub token: Option<String>,
    /// Or: the environment variable holding it.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Or: a file holding it (Docker secrets: `/run/secrets/<name>`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Optional: a command the host runs when the plugin is declared dead
    /// (for example `["docker", "restart", "thermostat"]`), under the same
    /// backoff and restart limit as managed plugins.
    #[serde(default)]
    pub restart_command: Vec<String>,
    /// Plugins it may call through the host (`plugins.call`); `"*"` for any.
    #[serde(default)]
    pub calls: Vec<String>,
    /// Interfaces its HELLO must announce (`name@^1.1`, `name@1.2.0` or
    /// `name`); a plugin that does not is refused, with what it offers.
    #[serde(default)]
    pub provides: Vec<String>,
    /// Keys its store may hold (default: `[store] max_keys`).
    #[serde(default)]
    pub store_max_keys: Option<u64>,
    /// Bytes of keys and values its store may hold (default: `[store] max_bytes`).
    #[serde(default)]
    pub store_max_bytes: Option<u64>,
    /// What it may publish, subscribe to and call on the host; absent:
    /// everything (see `permissions`).
    #[serde(default)]
    pub permissions: Option<crate::permissions::Grants>,
}

impl ExternalSpec {
    /// The token, from wherever the config says it is.
    pub fn resolve_token(&self) -> Result<String, ConfigError> {
        let bad = |why: String| ConfigError::Invalid(format!("external plugin {}: {why}", self.id));
        let token = match (&self.token, &self.token_env, &self.token_file) {
            (Some(t), None, None) => t.clone(),
            (None, Some(var), None) => std::env::var(var)
                .map_err(|_| bad(format!("environment variable {var} is not set")))?,
            (None, None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?,
            _ => {
                return Err(bad(
                    "give exactly one of token, token_env, token_file".into()
                ))
            }
        };
        let token = token.trim().to_owned();
        if token.len() < 16 {
            return Err(bad("the token must be at least 16 characters".into()));
        }
        Ok(token)
    }
}

/// Heartbeat timing, announced to plugins in WELCOME.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// Interval between heartbeats, in ms (default 1000).
    pub interval_ms: u64,
    /// Silent intervals before a plugin is dead (default 3).
    pub liveness: u32,
}

/// When and how often a crashed plugin is restarted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// Wait before the first restart, in ms (default 250); doubles per
    /// crash within the window.
    pub backoff_initial_ms: u64,
    /// Longest wait between restarts, in ms (default 30000).
    pub backoff_max_ms: u64,
    /// More crashes than this within `window_s` make the plugin Failed (default 5).
    pub max_restarts: u32,
    /// The window for `max_restarts`, in seconds (default 60).
    pub window_s: u64,
}

/// The demo's simulated home: motion, temperature and lights in a few rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Run it (default false in a config file; the built-in config turns it on).
    pub enabled: bool,
    /// Milliseconds between simulated readings (default 2000).
    pub interval_ms: u64,
    /// The rooms (default kitchen, living_room, bedroom, hallway).
    pub rooms: Vec<String>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            enabled: false,
            interval_ms: 2000,
            rooms: ["kitchen", "living_room", "bedroom", "hallway"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// One plugin the host starts and supervises.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// The id the host knows the plugin by (`[a-z0-9_-]`, 1-64).
    pub id: String,
    /// Program to run.
    pub command: PathBuf,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Start it with the host (default true); otherwise `iglu start` does.
    #[serde(default = "yes")]
    pub autostart: bool,
    /// Plugins it may call through the host (`plugins.call`); `"*"` for any.
    #[serde(default)]
    pub calls: Vec<String>,
    /// Interfaces its HELLO must announce (`name@^1.1`, `name@1.2.0` or
    /// `name`); a plugin that does not is refused, with what it offers.
    #[serde(default)]
    pub provides: Vec<String>,
    /// Keys its store may hold (default: `[store] max_keys`).
    #[serde(default)]
    pub store_max_keys: Option<u64>,
    /// Bytes of keys and values its store may hold (default: `[store] max_bytes`).
    #[serde(default)]
    pub store_max_bytes: Option<u64>,
    /// What it may publish, subscribe to and call on the host; absent:
    /// everything (see `permissions`).
    #[serde(default)]
    pub permissions: Option<crate::permissions::Grants>,
    /// The sha256 (hex) its executable must have: checked before every
    /// start, and a start refused if the file changed (set for installed
    /// packages; may be set for any plugin).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Its own limits (memory, open files) over `[limits]`.
    #[serde(default)]
    pub limits: Option<crate::limits::PluginLimits>,
    /// Its sandbox: on or off over `[sandbox]`, more paths, network.
    #[serde(default)]
    pub sandbox: Option<crate::limits::sandbox::SandboxSpec>,
    /// The package it was installed from, if any (its manifest: settings
    /// schema, version); not written in a config file.
    #[serde(skip)]
    pub package: Option<std::sync::Arc<crate::package::manifest::PackageManifest>>,
}

impl PluginSpec {
    /// A plugin that runs `command` with no arguments, started with the
    /// host, with every other field at its default.
    pub fn new(id: &str, command: PathBuf) -> PluginSpec {
        PluginSpec {
            id: id.to_owned(),
            command,
            args: Vec::new(),
            env: BTreeMap::new(),
            autostart: true,
            calls: Vec::new(),
            provides: Vec::new(),
            store_max_keys: None,
            store_max_bytes: None,
            permissions: None,
            sha256: None,
            limits: None,
            sandbox: None,
            package: None,
        }
    }
}

fn yes() -> bool {
    true
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval_ms: 1000,
            liveness: 3,
        }
    }
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            max_restarts: 5,
            window_s: 60,
        }
    }
}

/// The store's defaults for every plugin (`[store]`); a plugin's own
/// `store_max_keys` / `store_max_bytes` override them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Keys one plugin's store may hold (default 10,000).
    pub max_keys: u64,
    /// Bytes of keys and values one plugin's store may hold (default 16 MiB).
    pub max_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_keys: 10_000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Installing packages (`[packages]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PackagesConfig {
    /// Public key files (`iglu keygen`'s `.pub`) whose signatures the host
    /// trusts; a signed bundle must be signed by one of them.
    pub trusted_keys: Vec<PathBuf>,
    /// Install bundles with no signature (default false; `iglu install
    /// --allow-unsigned` allows one at a time).
    pub allow_unsigned: bool,
}

/// The Prometheus endpoint (`[metrics]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics`, e.g. `127.0.0.1:9464` (default: off).
    pub bind: Option<String>,
}

/// `[web]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Where to serve the dashboard, e.g. `127.0.0.1:7900` (default: off
    /// in a config file; the built-in config serves it there).
    pub bind: Option<String>,
    /// A file holding the token (default: a new one at every start, in
    /// `<runtime_dir>/web.token`).
    pub token_file: Option<std::path::PathBuf>,
    /// Whether failing to bind is a warning rather than an error (the
    /// built-in config's: a second host on one machine still starts).
    #[serde(skip)]
    pub optional: bool,
}
