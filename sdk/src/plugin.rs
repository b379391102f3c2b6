//! The builder a plugin author uses, and `serve`, which runs everything.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use iglu_bus::{FoldMap, Manifest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::Context;
use crate::error::{HandlerError, SdkError};
use crate::events::{self, Event, EventHandler};
use crate::handler::{erase, ErasedHandler};
use crate::launch::Launch;
use crate::link;
use crate::outgoing::Ended;
use crate::service::Service;

/// Default time in-flight calls get to finish after SIGTERM/SIGINT or GOODBYE.
/// Below the host's own stop grace, so a plugin normally exits by itself.
const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// Default credit window: events the host may have in flight to a plugin.
/// Enough to keep a fast handler busy across a round trip; small enough that
/// a slow one holds little.
const DEFAULT_EVENT_WINDOW: u32 = 256;

/// A plugin under construction: its manifest and its methods.
pub struct Plugin {
    manifest: Manifest,
    handlers: FoldMap<String, ErasedHandler>,
    grace: Duration,
    handler_threads: Option<usize>,
    subscriptions: Vec<String>,
    receive_own: bool,
    event_handler: Option<EventHandler>,
    on_connect: Option<crate::on_connect::ConnectHandler>,
    on_settings: Option<crate::on_connect::ConnectHandler>,
    event_window: u32,
    inline_handlers: bool,
    interfaces: Vec<iglu_bus::interface::InterfaceInfo>,
}

impl Plugin {
    /// Starts a plugin with this manifest and no methods.
    pub fn new(manifest: Manifest) -> Plugin {
        Plugin {
            manifest,
            handlers: FoldMap::default(),
            grace: DEFAULT_GRACE,
            handler_threads: None,
            subscriptions: Vec::new(),
            receive_own: false,
            event_handler: None,
            on_connect: None,
            on_settings: None,
            event_window: DEFAULT_EVENT_WINDOW,
            inline_handlers: false,
            interfaces: Vec::new(),
        }
    }

    /// Runs handlers on the connection's own thread instead of a separate
    /// handler runtime: each call and event saves two thread hand-offs
    /// (about 10-15 µs per call on a 2-core machine), and the plugin uses
    /// one thread. Only for handlers that never block or compute for long:
    /// while one runs, nothing else is received or sent, heartbeats
    /// included, so a handler that holds the thread for `liveness`
    /// intervals gets the plugin declared dead. Default: off.
    pub fn inline_handlers(mut self, yes: bool) -> Plugin {
        self.inline_handlers = yes;
        self
    }

    /// Subscribes to events matching `filter` from the start (MQTT style:
    /// `home/+/motion`, `home/#`). The retained state of every matching
    /// topic arrives first. More can be added at run time with
    /// [`crate::HostClient::subscribe`].
    pub fn subscribe(mut self, filter: &str) -> Plugin {
        self.subscriptions.push(filter.to_owned());
        self
    }

    /// Whether to receive the events this plugin publishes itself (default false).
    pub fn receive_own_events(mut self, yes: bool) -> Plugin {
        self.receive_own = yes;
        self
    }

    /// Handles every event, one at a time, in the order the host sends them.
    /// An error or a panic is logged and the next event is handled.
    pub fn on_event<F, Fut>(mut self, handler: F) -> Plugin
    where
        F: Fn(Context, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.event_handler = Some(events::erase(handler));
        self
    }

    /// Runs `handler` once the plugin is connected, after every WELCOME
    /// (an external plugin reconnects; a restarted host has lost whatever
    /// was not retained): for example to publish its devices' state. It runs
    /// beside the calls; an error is logged.
    pub fn on_connect<F, Fut>(mut self, handler: F) -> Plugin
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.on_connect = Some(crate::on_connect::erase(handler));
        self
    }

    /// Runs `handler` each time the host sends new settings (someone ran
    /// `iglu settings set`); read them in it with `ctx.settings()`. The
    /// settings at start are there before anything runs.
    pub fn on_settings<F, Fut>(mut self, handler: F) -> Plugin
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.on_settings = Some(crate::on_connect::erase(handler));
        self
    }

    /// How many events the host may have in flight to this plugin (default 256).
    pub fn event_window(mut self, window: u32) -> Plugin {
        self.event_window = window.max(1);
        self
    }

    /// Serves `name` with a typed async method. Arguments arrive as
    /// MessagePack and are decoded into `A`; a mismatch answers
    /// `bad_arguments` without calling the method. Registering a name twice
    /// keeps the last one.
    pub fn method<A, R, F, Fut>(mut self, name: &str, method: F) -> Plugin
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.handlers.insert(name.to_owned(), erase(method));
        self
    }

    /// Implements an interface: `server` is `<Trait>Interface::server(imp)`
    /// for a type implementing the trait declared with `#[interface]`. Its
    /// methods are served as `<interface>.<method>` and it is announced in
    /// HELLO, so callers' typed clients can check its version. A plugin may
    /// implement several interfaces and still register plain methods.
    pub fn implement(mut self, server: crate::interface::Server) -> Plugin {
        for (name, handler) in server.handlers {
            self.handlers.insert(name, handler);
        }
        self.interfaces.retain(|i| i.name != server.info.name);
        self.interfaces.push(server.info);
        self
    }

    /// How long calls in flight may run after SIGTERM, SIGINT or the host's
    /// GOODBYE before they are abandoned (default 3 s).
    pub fn grace_period(mut self, grace: Duration) -> Plugin {
        self.grace = grace;
        self
    }

    /// Threads that run handlers (default: one per core).
    pub fn handler_threads(mut self, threads: usize) -> Plugin {
        self.handler_threads = Some(threads.max(1));
        self
    }

    /// Serves until stopped and returns the exit code to end `main` with:
    /// 0 after a clean stop; otherwise the error is printed to stderr and the
    /// code says what happened (see `docs/PROTOCOL.md`, "Exit codes").
    pub fn serve(self) -> ExitCode {
        let id = self.manifest.id.clone();
        match self.run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iglu plugin {id}: {e}");
                ExitCode::from(e.exit_code())
            }
        }
    }

    /// Like [`Plugin::serve`], but hands the error back instead of printing it.
    pub fn run(self) -> Result<(), SdkError> {
        let launch = Launch::from_env(&self.manifest.id)?;
        crate::logging::init();
        let mut plugin = self;
        if !plugin.handlers.contains_key(iglu_bus::LOG_LEVEL_METHOD) {
            plugin = plugin.method(iglu_bus::LOG_LEVEL_METHOD, crate::logging::set_filter);
        }
        let this = plugin;
        // With inline handlers nothing runs here: a thread-less runtime keeps
        // the start-up (and the spawn-to-first-call time) short.
        let handler_runtime = if this.inline_handlers {
            tokio::runtime::Builder::new_current_thread().build()?
        } else {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.enable_all().thread_name("iglu-handler");
            if let Some(n) = this.handler_threads {
                builder.worker_threads(n);
            }
            builder.build()?
        };
        let service = this.into_service(&launch, handler_runtime.handle().clone());
        // The I/O loop gets this thread and a single-threaded runtime of its
        // own: heartbeats must never wait behind a busy handler (handlers run
        // on the handler runtime's threads unless `inline_handlers`).
        let io_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let outcome =
            io_runtime.block_on(link::run(&launch, service, crate::signals::terminated()));
        handler_runtime.shutdown_timeout(Duration::from_millis(100));
        match outcome? {
            Ended::Signal(name) => tracing::info!(signal = name, "stopped cleanly"),
            Ended::HostGoodbye(reason) => tracing::info!(%reason, "stopped at the host's request"),
        }
        Ok(())
    }

    /// What the I/O loop serves, with handlers run on `handler_runtime`.
    pub(crate) fn into_service(
        self,
        launch: &Launch,
        handler_runtime: tokio::runtime::Handle,
    ) -> Arc<Service> {
        let mut methods: Vec<String> = self.handlers.keys().cloned().collect();
        methods.sort();
        Arc::new(Service {
            hello: link::hello(
                launch,
                self.manifest,
                methods,
                self.subscriptions,
                self.receive_own,
                self.interfaces,
            ),
            handlers: self.handlers,
            handler_runtime,
            grace: self.grace,
            event_handler: self.event_handler,
            on_connect: self.on_connect,
            on_settings: self.on_settings,
            settings: Arc::new(crate::settings::SettingsCell::from_env()),
            event_window: self.event_window,
            inline_handlers: self.inline_handlers,
        })
    }
}
