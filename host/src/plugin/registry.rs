//! Every plugin the host knows, and the facts about it right now.
//!
//! One map under one short-lived lock, never held across an await. Facts
//! change in two ways only: [`Registry::transition`], the one place a state
//! changes (and so the one place that logs it, announces it on
//! `$iglu/plugins/<id>/state` and counts it), and [`Registry::set_pid`].
//! Readers (status, calls, the handshake) take what they need and let go.
//! Channels and tasks are not facts: they live in [`super::handle`];
//! subscriptions live in [`crate::events::subscriptions`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use iglu_bus::handshake::tokens_match;
use iglu_bus::interface::InterfaceInfo;
use iglu_bus::{ErrorCode, Manifest, WireError};

use super::state::PluginState;
use super::transition::Transition;

mod candidate;
mod usage;
use crate::config::{ExternalSpec, PluginSpec};
use crate::events::lifecycle::LifecycleEvent;
use crate::events::EventHub;
use crate::session::{Loss, Session};
use candidate::Candidate;
pub use candidate::{Admission, Ready, SwitchedOver};

/// How a plugin runs.
#[derive(Debug, Clone)]
pub enum PluginKind {
    /// A child process of the host.
    Managed(PluginSpec),
    /// A process elsewhere that connects by itself.
    External(ExternalSpec),
}

impl PluginKind {
    /// What its HELLO must announce.
    pub fn provides(&self) -> &[String] {
        match self {
            PluginKind::Managed(spec) => &spec.provides,
            PluginKind::External(spec) => &spec.provides,
        }
    }

    /// What it may publish, subscribe to and call on the host (`None`: everything).
    pub fn grants(&self) -> Option<crate::permissions::Grants> {
        match self {
            PluginKind::Managed(spec) => spec.permissions.clone(),
            PluginKind::External(spec) => spec.permissions.clone(),
        }
    }
}

/// What the host knows about one plugin.
pub struct Facts {
    kind: PluginKind,
    state: PluginState,
    pid: Option<u32>,
    restarts: u32,
    /// Refusals for lack of a permission, since the host started.
    denied: u64,
    /// Restarts asked for (`iglu restart`, the dashboard), since the host started.
    restarts_requested: u32,
    last_exit: Option<String>,
    manifest: Option<Manifest>,
    methods: Vec<String>,
    interfaces: Vec<InterfaceInfo>,
    /// Counts sessions: each admitted session takes the next number, so
    /// news of an earlier session is recognised as stale.
    launch: u64,
    /// The highest number an upgrade's new version took (see
    /// [`Facts::next_launch`]): numbers are never given twice, even when
    /// that version was discarded.
    burned: u64,
    token: Option<String>,
    session: Option<Arc<Session>>,
    since: Option<Instant>,
    /// Its next version, started beside it during an upgrade.
    candidate: Option<Candidate>,
    /// Its processes' memory and CPU, as the watchdog last read them.
    usage: Option<crate::limits::Usage>,
    /// Why the host killed its current process (its memory limit), with
    /// that process's id: the crash it causes is reported with it.
    kill_reason: Option<(u32, String)>,
}

impl Facts {
    /// How it runs.
    pub fn kind(&self) -> &PluginKind {
        &self.kind
    }
    /// Its lifecycle state.
    pub fn state(&self) -> PluginState {
        self.state
    }
    /// Its process id while a process exists.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
    /// Restarts after crashes since the host started.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
    /// Refusals for lack of a permission.
    pub fn denied(&self) -> u64 {
        self.denied
    }
    /// Restarts asked for.
    pub fn restarts_requested(&self) -> u32 {
        self.restarts_requested
    }
    /// How the last process ended, in words.
    pub fn last_exit(&self) -> Option<&str> {
        self.last_exit.as_deref()
    }
    /// The manifest of the last handshake (kept while it is down).
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }
    /// The methods of the last handshake.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }
    /// The interfaces of the last handshake.
    pub fn interfaces(&self) -> &[InterfaceInfo] {
        &self.interfaces
    }
    /// What the config says it must provide.
    pub fn provides(&self) -> &[String] {
        self.kind.provides()
    }
    /// Its own store quota (keys, bytes), where it has one.
    pub fn store_quota(&self) -> (Option<u64>, Option<u64>) {
        match &self.kind {
            PluginKind::Managed(spec) => (spec.store_max_keys, spec.store_max_bytes),
            PluginKind::External(spec) => (spec.store_max_keys, spec.store_max_bytes),
        }
    }
    /// The number the next session will take.
    fn next_launch(&self) -> u64 {
        self.launch.max(self.burned) + 1
    }
    /// Its processes' memory and CPU, while it runs.
    pub fn usage(&self) -> Option<&crate::limits::Usage> {
        self.usage.as_ref().filter(|_| self.pid.is_some())
    }
    /// The live session, if any.
    pub fn live_session(&self) -> Option<&Arc<Session>> {
        self.session.as_ref().filter(|s| !s.is_closed())
    }
    /// When the current session opened.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }
}

/// Why a HELLO cannot open a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such plugin.
    Unknown,
    /// Not the token of its current launch.
    BadToken,
    /// Stopped on this host.
    Stopped,
    /// It already has a live session.
    Duplicate,
}

/// All plugins, by id.
pub struct Registry {
    plugins: Mutex<BTreeMap<String, Facts>>,
    events: Arc<EventHub>,
}

impl Registry {
    /// An empty registry that announces transitions through `events`.
    pub fn new(events: Arc<EventHub>) -> Registry {
        Registry {
            plugins: Mutex::new(BTreeMap::new()),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Facts>> {
        // Every change is made whole under the lock before it is released:
        // a panicking holder leaves each entry consistent.
        self.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a plugin in `state` (Stopped, or Starting when it starts by
    /// itself); false (and nothing changed) if the id is taken.
    pub fn insert(&self, id: &str, kind: PluginKind, state: PluginState) -> bool {
        let mut plugins = self.lock();
        if plugins.contains_key(id) {
            return false;
        }
        plugins.insert(
            id.to_owned(),
            Facts {
                kind,
                state,
                pid: None,
                restarts: 0,
                denied: 0,
                restarts_requested: 0,
                last_exit: None,
                manifest: None,
                methods: Vec::new(),
                interfaces: Vec::new(),
                launch: 0,
                burned: 0,
                token: None,
                session: None,
                since: None,
                candidate: None,
                usage: None,
                kill_reason: None,
            },
        );
        true
    }

    /// Takes a plugin out (uninstalled, or gone from the watched
    /// `plugin_dir`); its supervisor has stopped it first.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Whether a plugin has this id.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Reads one plugin's facts; `None` if there is no such plugin.
    pub fn read<R>(&self, id: &str, f: impl FnOnce(&Facts) -> R) -> Option<R> {
        self.lock().get(id).map(f)
    }

    /// Reads every plugin's facts, by id.
    pub fn read_all<R>(&self, mut f: impl FnMut(&str, &Facts) -> R) -> Vec<R> {
        self.lock().iter().map(|(id, e)| f(id, e)).collect()
    }

    /// Its state.
    pub fn state(&self, id: &str) -> Option<PluginState> {
        self.read(id, |e| e.state)
    }

    /// The number of its latest session.
    pub fn launch(&self, id: &str) -> u64 {
        self.read(id, |e| e.launch).unwrap_or(0)
    }

    /// Whether plugin `caller` may call plugin `callee` through the host:
    /// the callee is named in the caller's `calls` (or that says `"*"`),
    /// or an interface named there is one the callee announced.
    pub fn may_call(&self, caller: &str, callee: &str) -> bool {
        let plugins = self.lock();
        let Some(e) = plugins.get(caller) else {
            return false;
        };
        let calls = match &e.kind {
            PluginKind::Managed(spec) => &spec.calls,
            PluginKind::External(spec) => &spec.calls,
        };
        let offers = |name: &str| {
            plugins
                .get(callee)
                .is_some_and(|c| c.interfaces.iter().any(|i| i.name == name))
        };
        calls
            .iter()
            .any(|c| c == "*" || c == callee || (c.contains('.') && offers(c)))
    }

    /// What `id` may publish, subscribe to and call on the host (`None`:
    /// everything).
    pub fn grants(&self, id: &str) -> Option<crate::permissions::Grants> {
        self.read(id, |e| e.kind.grants()).flatten()
    }

    /// Counts a refusal for lack of a permission (shown in `iglu status`).
    pub fn count_denial(&self, id: &str) {
        if let Some(e) = self.lock().get_mut(id) {
            e.denied += 1;
        }
    }

    /// Counts a restart asked for (not a crash).
    pub fn count_requested_restart(&self, id: &str) {
        if let Some(e) = self.lock().get_mut(id) {
            e.restarts_requested = e.restarts_requested.saturating_add(1);
        }
    }

    /// Records the process id of the current launch (not a state change).
    pub fn set_pid(&self, id: &str, pid: Option<u32>) {
        if let Some(e) = self.lock().get_mut(id) {
            e.pid = pid;
        }
    }

    /// Whether a HELLO for `id` with `token` may open a session now: as
    /// the plugin's next launch, or as the new version of an upgrade. The
    /// tokens are compared in constant time, before anything else about
    /// the plugin is revealed.
    pub fn expecting(&self, id: &str, token: &str) -> Result<Admission, Refusal> {
        let plugins = self.lock();
        let e = plugins.get(id).ok_or(Refusal::Unknown)?;
        let current = e
            .token
            .as_deref()
            .is_some_and(|expected| tokens_match(expected, token));
        let next = e
            .candidate
            .as_ref()
            .is_some_and(|c| tokens_match(&c.token, token));
        if next {
            return candidate::expecting(e);
        }
        if !current {
            return Err(Refusal::BadToken);
        }
        if e.state == PluginState::Stopped {
            return Err(Refusal::Stopped);
        }
        if e.live_session().is_some() {
            return Err(Refusal::Duplicate);
        }
        Ok(Admission {
            launch: e.next_launch(),
            candidate: false,
        })
    }

    /// Applies a transition; false if it no longer applies (a handshake
    /// overtaken by a stop, a restart or another session) or there is no
    /// such plugin. Logs it, counts it and announces it.
    pub fn transition(&self, id: &str, change: Transition) -> bool {
        let to = change.state();
        let superseded = {
            let mut plugins = self.lock();
            let Some(e) = plugins.get_mut(id) else {
                return false;
            };
            let from = e.state;
            let Some(superseded) = apply(e, change) else {
                return false;
            };
            let event = LifecycleEvent {
                plugin: id.to_owned(),
                state: e.state,
                reason: match to {
                    PluginState::Crashed
                    | PluginState::Failed
                    | PluginState::Stopped
                    | PluginState::Restarting => e.last_exit.clone(),
                    _ => None,
                },
                restarts: e.restarts,
                pid: e.pid,
            };
            let reason = event.reason.as_deref().unwrap_or("");
            match to {
                PluginState::Crashed | PluginState::Failed => {
                    tracing::warn!(plugin = %id, from = from.as_str(), to = to.as_str(), %reason, restarts = event.restarts, "state changed")
                }
                _ => {
                    tracing::info!(plugin = %id, from = from.as_str(), to = to.as_str(), %reason, restarts = event.restarts, "state changed")
                }
            }
            // Announced under the lock, so announcements go out in the order
            // the changes were made (publishing never takes this lock).
            self.events.announce(event);
            superseded
        };
        // A live session the change leaves behind is ended, not forgotten.
        if let Some(session) = superseded {
            session.close(Loss::Stopping);
        }
        true
    }

    /// The live session of a plugin, or the error a caller should get.
    pub fn session(&self, id: &str) -> Result<Arc<Session>, WireError> {
        let plugins = self.lock();
        let Some(e) = plugins.get(id) else {
            return Err(WireError::new(
                ErrorCode::UnknownPlugin,
                format!("no plugin named {id:?}"),
            ));
        };
        e.live_session().cloned().ok_or_else(|| {
            WireError::new(
                ErrorCode::NotRunning,
                format!("plugin {id} is {}", e.state.as_str()),
            )
        })
    }

    /// Every live session (an upgrade's new version's too).
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let plugins = self.lock();
        let mut all: Vec<Arc<Session>> = plugins
            .values()
            .filter_map(|e| e.live_session().cloned())
            .collect();
        all.extend(plugins.values().filter_map(candidate::session));
        all
    }

    /// Why its last session ended, if it has ended.
    pub fn last_loss(&self, id: &str) -> Option<Loss> {
        self.read(id, |e| e.session.as_ref().and_then(|s| s.loss()))
            .flatten()
    }

    /// Ends the plugin's session, if it has one, for `loss`.
    pub fn close_session(&self, id: &str, loss: Loss) {
        let session = self.read(id, |e| e.session.clone()).flatten();
        if let Some(session) = session {
            session.close(loss);
        }
    }
}

/// Changes the facts for `change`: `None` if it does not apply, else the
/// live session it took away (to be closed once the lock is released).
fn apply(e: &mut Facts, change: Transition) -> Option<Option<Arc<Session>>> {
    let live = e.live_session().cloned();
    match change {
        Transition::Starting { token, after_crash } => {
            // A plugin that connected by itself in the meantime is not
            // started over: the caller watches the session instead.
            if live.is_some() {
                return None;
            }
            if after_crash {
                e.restarts += 1;
            }
            e.token = Some(token);
            e.state = PluginState::Starting;
            e.session = None;
            e.pid = None;
            e.kill_reason = None;
            e.usage = None;
            Some(None)
        }
        Transition::Running {
            launch,
            session,
            manifest,
            methods,
            interfaces,
        } => {
            let current = launch == e.next_launch()
                && e.token.is_some()
                && e.state != PluginState::Stopped
                && live.is_none();
            if !current {
                return None;
            }
            e.launch = launch;
            e.session = Some(session);
            e.manifest = Some(manifest);
            e.methods = methods;
            e.interfaces = interfaces;
            e.state = PluginState::Running;
            e.since = Some(Instant::now());
            Some(None)
        }
        Transition::Stopping => {
            e.state = PluginState::Stopping;
            Some(None)
        }
        Transition::Down {
            state,
            last_exit,
            keep_token,
        } => {
            e.state = state;
            e.pid = None;
            if !keep_token {
                e.token = None;
            }
            e.session = None;
            e.since = None;
            if let Some(how) = last_exit {
                e.last_exit = Some(how);
            }
            Some(live)
        }
    }
}
