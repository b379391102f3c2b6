//! The host as a library: start it from a config, call plugins, control
//! them, shut it down. The `iglu` binary is a thin shell around this.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::transport::{RouterEndpoint, RouterOutbound};
use iglu_bus::WireError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::call_error::CallError;
use crate::call_options::{self, CallOptions};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::HostError;
use crate::events::lifecycle::{self, LifecycleEvent};
use crate::events::queue::EventQueue;
use crate::events::{Event, EventHub, Source};
use crate::kv::KvStore;
use crate::registry::{Entry, PluginKind, PluginState, Registry};
use crate::runtime_dir::{self, CONTROL_SOCKET, PLUGIN_SOCKET};
use crate::session::liveness;
use crate::status::PluginStatus;
use crate::supervisor::{self, Command};
use crate::{control, events, external, router, simulator, tcp_guard};

/// State every task of the host shares.
pub struct Shared {
    /// The configuration in force.
    pub config: Config,
    /// Every plugin.
    pub registry: Registry,
    /// Plugins' key-value stores.
    pub kv: KvStore,
    /// Retained events and in-process subscribers.
    pub events: EventHub,
    /// Lifecycle changes, for embedding programs.
    pub lifecycle: broadcast::Sender<LifecycleEvent>,
    /// The endpoint plugins connect to.
    pub endpoint: String,
    /// Sends to plugins; each session clones it for its writer.
    pub outbound: RouterOutbound,
    /// Cancelled once, when the host shuts down.
    pub shutdown: CancellationToken,
    /// Where tasks that wait on time run (see [`crate::clock`]).
    pub clock: tokio::runtime::Handle,
}

/// A running host.
pub struct Host {
    shared: Arc<Shared>,
    supervisors: Vec<JoinHandle<()>>,
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
        let tcp = match &config.tcp {
            Some(tcp) => Some(tokio::net::TcpListener::bind(&tcp.bind).await.map_err(
                |source| HostError::TcpBind {
                    bind: tcp.bind.clone(),
                    source,
                },
            )?),
            None => None,
        };
        let clock = Clock::start().map_err(HostError::Clock)?;
        let shared = Arc::new(Shared {
            config,
            registry: Registry::default(),
            kv: KvStore::default(),
            events: EventHub::default(),
            lifecycle: broadcast::channel(lifecycle::BROADCAST).0,
            endpoint,
            outbound: router_socket.outbound,
            shutdown: CancellationToken::new(),
            clock: clock.handle().clone(),
        });
        // Every plugin is in the registry before anything can ask about it:
        // a status request, or an external plugin's HELLO, that came in
        // between would find it missing (and the plugin would be refused).
        let mut managed = Vec::new();
        for spec in plugins {
            let id = spec.id.clone();
            let autostart = spec.autostart;
            let state = if autostart {
                PluginState::Starting
            } else {
                PluginState::Stopped
            };
            let (commands_rx, events_rx) = register(&shared, &id, PluginKind::Managed(spec), state);
            managed.push((id, autostart, commands_rx, events_rx));
        }
        let mut external = Vec::new();
        for (spec, token) in externals {
            let (commands_rx, events_rx) = register(
                &shared,
                &spec.id,
                PluginKind::External(spec.clone()),
                PluginState::Starting,
            );
            external.push((spec, token, commands_rx, events_rx));
        }
        let mut services = vec![
            tokio::spawn(router::run(
                shared.clone(),
                router_socket.inbound,
                router_socket.events,
            )),
            shared.clock.spawn(liveness::run(shared.clone())),
            tokio::spawn(control::server::serve(shared.clone(), listener)),
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
        if shared.config.simulator.enabled {
            services.push(shared.clock.spawn(simulator::run(shared.clone())));
        }
        let mut supervisors = Vec::new();
        for (id, autostart, commands_rx, events_rx) in managed {
            supervisors.push(tokio::spawn(supervisor::supervise(
                shared.clone(),
                id,
                autostart,
                commands_rx,
                events_rx,
            )));
        }
        for (spec, token, commands_rx, events_rx) in external {
            supervisors.push(tokio::spawn(external::supervise(
                shared.clone(),
                spec,
                token,
                commands_rx,
                events_rx,
            )));
        }
        tracing::info!(endpoint = %shared.endpoint, control = %control_socket.display(), plugins = supervisors.len(), "host started");
        Ok(Host {
            shared,
            supervisors,
            services,
            sockets: vec![plugin_socket, control_socket],
            clock,
        })
    }

    /// The shared state, for embedding programs that need more than the methods below.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Every plugin's status.
    pub fn status(&self) -> Vec<PluginStatus> {
        self.shared.registry.status()
    }

    /// Calls `method` on `plugin` with MessagePack `args`; waits for a
    /// restarting plugin only if the config's `call_wait_for_running` says so.
    pub async fn call(
        &self,
        plugin: &str,
        method: &str,
        args: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, CallError> {
        let options =
            CallOptions::new(deadline).wait_for_running(self.shared.config.call_wait_for_running);
        call(&self.shared, plugin, method, args, options).await
    }

    /// [`Host::call`] with every option chosen by the caller.
    pub async fn call_with(
        &self,
        plugin: &str,
        method: &str,
        args: Bytes,
        options: CallOptions,
    ) -> Result<Bytes, CallError> {
        call(&self.shared, plugin, method, args, options).await
    }

    /// Publishes an event from the host (`source` = `host`).
    pub fn publish(&self, topic: &str, payload: Bytes, retain: bool) -> Result<(), WireError> {
        events::publish(&self.shared, Source::Host, topic, payload, retain)
    }

    /// Subscribes in process: retained states first, then live events
    /// matching `filters`. When the channel (of `capacity`) is full, events
    /// are dropped for this subscriber only.
    pub fn subscribe(
        &self,
        filters: Vec<String>,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Event>, WireError> {
        self.shared.events.tap(filters, capacity)
    }

    /// A stream of plugin lifecycle changes (Starting, Running, Crashed, ...).
    pub fn lifecycle(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.shared.lifecycle.subscribe()
    }

    /// Starts a stopped or failed plugin.
    pub async fn start_plugin(&self, id: &str) -> Result<(), HostError> {
        command(&self.shared, id, Command::Start).await
    }

    /// Stops a plugin and keeps it stopped.
    pub async fn stop_plugin(&self, id: &str) -> Result<(), HostError> {
        command(&self.shared, id, Command::Stop).await
    }

    /// Stops a plugin and starts it again.
    pub async fn restart_plugin(&self, id: &str) -> Result<(), HostError> {
        command(&self.shared, id, Command::Restart).await
    }

    /// Resolves when something asked the host to shut down (the control socket cannot, yet; this is for embedders).
    pub async fn stopped(&self) {
        self.shared.shutdown.cancelled().await
    }

    /// Stops every plugin in order (GOODBYE, grace, SIGTERM, SIGKILL), then
    /// the host's own tasks, and removes its sockets. Bounded in time.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shared.shutdown.cancel();
        let grace = Duration::from_millis(self.shared.config.stop_grace_ms);
        // A supervisor needs at most two grace periods to stop its plugin.
        let bound = grace * 2 + Duration::from_secs(1);
        for task in self.supervisors {
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
        self.clock.stop().await;
        for socket in &self.sockets {
            let _ = std::fs::remove_file(socket);
        }
        tracing::info!("host stopped");
    }
}

/// Calls a plugin through its live session.
pub async fn call(
    shared: &Shared,
    plugin: &str,
    method: &str,
    args: Bytes,
    options: CallOptions,
) -> Result<Bytes, CallError> {
    let lost = |e| CallError::from_wire(plugin, options.deadline, e);
    if !options.wait_for_running {
        let session = shared.registry.session(plugin).map_err(lost)?;
        return session
            .call(method, args, options.deadline)
            .await
            .map_err(lost);
    }
    let now = tokio::time::Instant::now();
    let until = now
        .checked_add(options.deadline)
        .unwrap_or(now + Duration::from_secs(86400 * 365));
    let session = call_options::session_by(shared, plugin, until)
        .await
        .map_err(lost)?;
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    session.call(method, args, left).await.map_err(lost)
}

/// Sends a command to a plugin's supervisor and waits until it is carried out.
pub async fn command(
    shared: &Shared,
    id: &str,
    make: fn(oneshot::Sender<()>) -> Command,
) -> Result<(), HostError> {
    let tx = shared
        .registry
        .commands(id)
        .ok_or_else(|| HostError::UnknownPlugin(id.to_owned()))?;
    let (done, wait) = oneshot::channel();
    tx.send(make(done))
        .await
        .map_err(|_| HostError::Supervisor(id.to_owned()))?;
    wait.await.map_err(|_| HostError::Supervisor(id.to_owned()))
}

/// Adds a plugin to the registry with its supervisor's channels; returns the
/// supervisor's ends.
fn register(
    shared: &Shared,
    id: &str,
    kind: PluginKind,
    state: PluginState,
) -> (
    mpsc::Receiver<Command>,
    mpsc::Receiver<supervisor::SupervisorEvent>,
) {
    let (commands_tx, commands_rx) = mpsc::channel(supervisor::QUEUE);
    let (events_tx, events_rx) = mpsc::channel(supervisor::QUEUE);
    shared.registry.insert(Entry {
        id: id.to_owned(),
        kind,
        state,
        pid: None,
        restarts: 0,
        last_exit: None,
        manifest: None,
        methods: Vec::new(),
        launch: 0,
        token: None,
        session: None,
        since: None,
        subscriptions: Vec::new(),
        receive_own: false,
        queue: Arc::new(EventQueue::new(
            shared.config.event_queue,
            shared.config.event_queue_bytes,
        )),
        events: events_tx,
        commands: commands_tx,
    });
    (commands_rx, events_rx)
}
