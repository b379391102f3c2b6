//! What every task of a running host shares.
//!
//! Only the parts at the top of the crate take it (the router, the control
//! server, the TCP guard, the simulator, the embedding API); everything
//! they use (the registry, events, sessions, runners) is given just what it
//! needs, so the lower parts never depend on the whole.

use std::sync::Arc;

use iglu_bus::transport::RouterOutbound;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::EventHub;
use crate::plugin::handle::Handles;
use crate::plugin::registry::Registry;
use crate::plugin::status::{self, PluginStatus};
use crate::settings::Settings;
use crate::store::Store;

/// State every task of the host shares.
pub struct Shared {
    /// The configuration in force.
    pub config: Config,
    /// Every plugin's facts.
    pub registry: Arc<Registry>,
    /// Every plugin's supervisor channels and task.
    pub handles: Handles,
    /// Plugins' key-value stores and the retained events, on disk.
    pub store: Arc<Store>,
    /// Plugins' settings: schema defaults, the config's, run-time changes.
    pub settings: Arc<Settings>,
    /// This host's pids cgroups, where it could make them.
    pub cgroups: Arc<crate::limits::cgroup::Cgroups>,
    /// What a launch needs to sandbox a plugin.
    pub sandboxing: Arc<crate::limits::sandbox::Sandboxing>,
    /// What every managed plugin's launch is given (see `runner::child`).
    pub launching: Arc<crate::runner::child::Launching>,
    /// Plugins' recent log lines.
    pub logs: Arc<crate::logs::LogBook>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Held by each install, upgrade and uninstall: one at a time, so two
    /// never race on one package's files or id.
    pub packages: tokio::sync::Mutex<()>,
    /// Retained events, subscriptions, in-process subscribers, lifecycle.
    pub events: Arc<EventHub>,
    /// The endpoint plugins connect to.
    pub endpoint: String,
    /// Sends to plugins; each session clones it for its writer.
    pub outbound: RouterOutbound,
    /// Cancelled once, when the host shuts down.
    pub shutdown: CancellationToken,
    /// Where tasks that wait on time run (see [`crate::clock`]).
    pub clock: tokio::runtime::Handle,
}

impl Shared {
    /// A host's shared state with no plugins yet, sending through `outbound`,
    /// running timed tasks on `clock`, keeping state in `store` (whose
    /// retained events are the hub's again).
    pub fn new(
        config: Config,
        endpoint: String,
        outbound: RouterOutbound,
        clock: tokio::runtime::Handle,
        store: Arc<Store>,
        settings: Arc<Settings>,
        cgroups: Arc<crate::limits::cgroup::Cgroups>,
    ) -> Arc<Shared> {
        let events = EventHub::new(config.event_queue, config.event_queue_bytes);
        let logs = Arc::new(crate::logs::LogBook::default());
        let sandboxing = Arc::new(crate::limits::sandbox::Sandboxing {
            default_on: config.sandbox.enabled,
            abi: crate::limits::sandbox::abi(),
            data_dir: config.data_dir(),
            nice: config.limits.nice,
            read: config.sandbox.read.clone(),
        });
        let launching = Arc::new(crate::runner::child::Launching {
            endpoint: endpoint.clone(),
            handshake_timeout: std::time::Duration::from_millis(config.handshake_timeout_ms),
            settings: settings.clone(),
            cgroups: cgroups.clone(),
            sandboxing: sandboxing.clone(),
            secret_env: crate::config::mqtt::secret_env(config.mqtt.as_ref()),
            logs: logs.clone(),
        });
        events.retained.restore(store.take_restored());
        events.retained.persist_to(store.clone());
        let registry = Arc::new(Registry::new(events.clone()));
        let metrics = Arc::new(crate::metrics::Metrics::new(
            crate::metrics::plugins::Source {
                registry: registry.clone(),
                events: events.clone(),
                started: std::time::Instant::now(),
            },
        ));
        Arc::new(Shared {
            registry,
            metrics,
            handles: Handles::default(),
            store,
            settings,
            packages: tokio::sync::Mutex::new(()),
            cgroups,
            sandboxing,
            launching,
            logs,
            events,
            config,
            endpoint,
            outbound,
            shutdown: CancellationToken::new(),
            clock,
        })
    }

    /// The store quota of plugin `id`: its own (the config's, or its
    /// package's capped by the config's) over `[store]`.
    pub fn quota(&self, id: &str) -> crate::store::Quota {
        let (keys, bytes) = self
            .registry
            .read(id, |f| f.store_quota())
            .unwrap_or((None, None));
        crate::store::Quota {
            max_keys: keys.unwrap_or(self.config.store.max_keys),
            max_bytes: bytes.unwrap_or(self.config.store.max_bytes),
        }
    }

    /// Every plugin's status, for `iglu status`.
    pub fn status(&self) -> Vec<PluginStatus> {
        let mut all = status::collect(&self.registry, &self.events.subscriptions);
        for p in &mut all {
            let (keys, bytes) = self.store.usage(&p.id);
            let quota = self.quota(&p.id);
            p.store = status::StoreUsage {
                keys,
                bytes,
                max_keys: quota.max_keys,
                max_bytes: quota.max_bytes,
            };
            if p.isolation.is_some() {
                let sandbox = self
                    .registry
                    .read(&p.id, |f| match f.kind() {
                        crate::plugin::registry::PluginKind::Managed(s) => s.sandbox.clone(),
                        crate::plugin::registry::PluginKind::External(_) => None,
                    })
                    .flatten();
                p.isolation = Some(format!(
                    "{}; {}; {}",
                    self.cgroups.mechanism(),
                    crate::limits::MECHANISM,
                    self.sandboxing.mechanism(sandbox.as_ref())
                ));
            }
        }
        all
    }
}
