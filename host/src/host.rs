//! The host as a library: start it from a config, call plugins, control
//! them, shut it down. The `iglu` binary is a thin shell around this.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use iglu_bus::transport::RouterEndpoint;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::HostError;
use crate::runtime_dir::{self, CONTROL_SOCKET, PLUGIN_SOCKET};
use crate::session::liveness;
use crate::settings::Settings;
use crate::shared::Shared;
use crate::store::Store;
use crate::{control, roster, router, simulator, tcp_guard};

pub use crate::client::HostClient;

/// A running host.
pub struct Host {
    client: HostClient,
    services: Vec<JoinHandle<()>>,
    sockets: Vec<PathBuf>,
    clock: Clock,
}

impl Host {
    /// Binds the plugin endpoint and the control socket, and starts every
    /// plugin marked `autostart`.
    pub async fn start(config: Config) -> Result<Host, HostError> {
        let plugins = config.all_plugins()?;
        let mut externals = Vec::new();
        for spec in &config.externals {
            externals.push((spec.clone(), spec.resolve_token()?));
        }
        let dir = config.runtime_dir();
        runtime_dir::prepare(&dir)?;
        let plugin_socket = dir.join(PLUGIN_SOCKET);
        let control_socket = dir.join(CONTROL_SOCKET);
        // The control socket is checked first: a live host answers there.
        runtime_dir::clear_stale_socket(&control_socket)?;
        runtime_dir::clear_stale_socket(&plugin_socket)?;
        let endpoint = format!("ipc://{}", plugin_socket.display());
        let router_socket = RouterEndpoint::bind_capped(&endpoint, config.router_caps())
            .await
            .map_err(|source| HostError::Bind {
                endpoint: endpoint.clone(),
                source,
            })?;
        let listener = control::server::bind(&control_socket)?;
        let cookie = control::cookie::create(&dir)?;
        let tcp = match &config.tcp {
            Some(tcp) => Some(tokio::net::TcpListener::bind(&tcp.bind).await.map_err(
                |source| HostError::TcpBind {
                    bind: tcp.bind.clone(),
                    source,
                },
            )?),
            None => None,
        };
        let metrics_listener =
            match &config.metrics.bind {
                Some(bind) => Some(tokio::net::TcpListener::bind(bind).await.map_err(
                    |source| HostError::HttpBind {
                        what: "metrics",
                        bind: bind.clone(),
                        source,
                    },
                )?),
                None => None,
            };
        let web = match &config.web.bind {
            Some(bind) => match tokio::net::TcpListener::bind(bind).await {
                Ok(l) => {
                    let token = crate::web::auth::token(&dir, config.web.token_file.as_deref())
                        .map_err(|source| HostError::HttpBind {
                            what: "the dashboard (its token)",
                            bind: bind.clone(),
                            source,
                        })?;
                    Some((l, token))
                }
                Err(source) if config.web.optional => {
                    tracing::warn!(%bind, error = %source, "no dashboard: its address is taken");
                    None
                }
                Err(source) => {
                    return Err(HostError::HttpBind {
                        what: "the dashboard",
                        bind: bind.clone(),
                        source,
                    })
                }
            },
            None => None,
        };
        let store = Arc::new(Store::open(&config.data_dir())?);
        tracing::info!(file = %store.path().map(|p| p.display().to_string()).unwrap_or_default(), plugins = store.plugins().len(), "store open");
        let settings = Arc::new(Settings::load(
            &config.settings,
            Some(config.data_dir().join("settings.json")),
        )?);
        let mut plugins = plugins;
        for spec in crate::install::installed_specs(&config) {
            if plugins.iter().any(|p| p.id == spec.id) {
                tracing::warn!(plugin = %spec.id, "an installed package has the id of a plugin in the config: the config's runs");
                continue;
            }
            plugins.push(spec);
        }
        for spec in &plugins {
            if let Some(m) = &spec.package {
                settings.set_schema(&spec.id, Some(&m.settings));
            }
            if let Err(e) = settings.check_config(&spec.id) {
                return Err(HostError::Config(crate::error::ConfigError::Invalid(
                    e.to_string(),
                )));
            }
        }
        let cgroups = Arc::new(crate::limits::cgroup::Cgroups::detect(
            config.limits.cgroup_v2,
            config.limits.pids_cgroup_v1,
        ));
        tracing::info!(mechanism = %cgroups.mechanism(), limits = %crate::limits::MECHANISM, "plugin limits");
        let clock = Clock::start().map_err(HostError::Clock)?;
        let shared = Shared::new(
            config,
            endpoint,
            router_socket.outbound,
            clock.handle().clone(),
            store,
            settings,
            cgroups,
        );
        // Every plugin is in the registry before anything can ask about it:
        // a status request, or an external plugin's HELLO, that came in
        // between would find it missing (and the plugin would be refused).
        let mut supervisors = Vec::new();
        for spec in plugins {
            supervisors.push(roster::register_managed(&shared, spec)?);
        }
        for (spec, token) in externals {
            supervisors.push(roster::register_external(&shared, spec, token)?);
        }
        let sessions = shared.registry.clone();
        let mut services = vec![
            tokio::spawn(router::run(
                shared.clone(),
                router_socket.inbound,
                router_socket.events,
            )),
            shared.clock.spawn(liveness::run(
                shared.config.timing(),
                move || sessions.sessions(),
                shared.shutdown.clone(),
            )),
            tokio::spawn(control::server::serve(shared.clone(), listener, cookie)),
        ];
        if let (Some(listener), Some(tcp)) = (tcp, shared.config.tcp.clone()) {
            tracing::info!(bind = %tcp.bind, "listening for external plugins over TCP");
            services.push(tokio::spawn(tcp_guard::run(
                shared.clone(),
                listener,
                tcp,
                plugin_socket.clone(),
            )));
        }
        if let Some((listener, token)) = web {
            tracing::info!(bind = ?shared.config.web.bind, "serving the dashboard (iglu dashboard prints its address)");
            services.push(tokio::spawn(crate::web::serve(
                shared.clone(),
                listener,
                token,
            )));
        }
        if let Some(listener) = metrics_listener {
            tracing::info!(bind = ?shared.config.metrics.bind, "serving Prometheus metrics on /metrics");
            let (metrics, shutdown) = (shared.metrics.clone(), shared.shutdown.clone());
            services.push(tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve::serve(listener, metrics, shutdown).await {
                    tracing::warn!(error = %e, "the metrics endpoint stopped");
                }
            }));
        }
        services.push(tokio::spawn(crate::limits::watchdog::run(
            shared.registry.clone(),
            shared.cgroups.clone(),
            shared.config.limits,
            shared.config.timing().interval,
            shared.shutdown.clone(),
        )));
        if shared.config.simulator.enabled {
            services.push(shared.clock.spawn(simulator::run(shared.clone())));
        }
        let count = supervisors.len();
        for pending in supervisors {
            roster::launch(&shared, pending);
        }
        if let Some(dir) = shared.config.plugin_dir.clone() {
            if shared.config.watch_plugin_dir.unwrap_or(true) {
                services.push(tokio::spawn(crate::watch::run(shared.clone(), dir)));
            }
        }
        tracing::info!(endpoint = %shared.endpoint, control = %control_socket.display(), plugins = count, "host started");
        Ok(Host {
            client: HostClient { shared },
            services,
            sockets: vec![
                plugin_socket,
                control_socket,
                dir.join(control::cookie::FILE),
                dir.join(crate::web::auth::FILE),
            ],
            clock,
        })
    }

    /// The shared state, for embedding programs that need more than the client.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.client.shared
    }

    /// A handle to call and control this host from other tasks.
    pub fn client(&self) -> HostClient {
        self.client.clone()
    }

    /// Resolves when something asked the host to shut down (the control socket cannot, yet; this is for embedders).
    pub async fn stopped(&self) {
        self.client.shared.shutdown.cancelled().await
    }

    /// Stops every plugin in order (GOODBYE, grace, SIGTERM, SIGKILL), then
    /// the host's own tasks, and removes its sockets. Bounded in time.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.client.shared.shutdown.cancel();
        let grace = Duration::from_millis(self.client.shared.config.stop_grace_ms);
        // A supervisor needs at most two grace periods to stop its plugin.
        let bound = grace * 2 + Duration::from_secs(1);
        for task in self.client.shared.handles.take_tasks() {
            let abort = task.abort_handle();
            if tokio::time::timeout(bound, task).await.is_err() {
                // Dropping its process handle SIGKILLs the plugin (kill_on_drop).
                abort.abort();
            }
        }
        for task in self.services {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.client.shared.cgroups.remove();
        // Last: what the plugins wrote while stopping is committed too.
        self.client.shared.store.close().await;
        self.clock.stop().await;
        for socket in &self.sockets {
            let _ = std::fs::remove_file(socket);
        }
        tracing::info!("host stopped");
    }
}

impl std::ops::Deref for Host {
    type Target = HostClient;

    fn deref(&self) -> &HostClient {
        &self.client
    }
}
