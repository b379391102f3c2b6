//! Every supervised plugin and what the host knows about it right now.
//!
//! One map under one short-lived lock, never held across an await. The
//! supervisor writes lifecycle facts (state, pid, exits), the router writes
//! handshake facts (session, manifest), and readers (status, calls) take
//! snapshots.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use iglu_bus::{ErrorCode, Manifest, WireError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{ExternalSpec, PluginSpec};
use crate::events::queue::EventQueue;
use crate::session::Session;
use crate::status::PluginStatus;
use crate::supervisor::{Command, SupervisorEvent};

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// The process is starting and has not finished its handshake.
    Starting,
    /// Handshake done; calls are served.
    Running,
    /// It died; a restart is being decided.
    Crashed,
    /// Waiting out the backoff before the next start.
    Restarting,
    /// Being stopped on request.
    Stopping,
    /// Stopped on request (or never started); `iglu start` starts it.
    Stopped,
    /// Crashed too often; stays down until `iglu start`.
    Failed,
}

impl PluginState {
    /// The state as shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Starting => "starting",
            PluginState::Running => "running",
            PluginState::Crashed => "crashed",
            PluginState::Restarting => "restarting",
            PluginState::Stopping => "stopping",
            PluginState::Stopped => "stopped",
            PluginState::Failed => "failed",
        }
    }
}

/// How a plugin runs.
#[derive(Debug, Clone)]
pub enum PluginKind {
    /// A child process of the host.
    Managed(PluginSpec),
    /// A process elsewhere that connects by itself.
    External(ExternalSpec),
}

/// One plugin's record.
pub struct Entry {
    /// Its id.
    pub id: String,
    /// How it runs.
    pub kind: PluginKind,
    /// Its lifecycle state.
    pub state: PluginState,
    /// Its process id while a process exists.
    pub pid: Option<u32>,
    /// Restarts after crashes since the host started.
    pub restarts: u32,
    /// How the last process ended, in words.
    pub last_exit: Option<String>,
    /// The manifest from the last successful handshake (kept while it is down).
    pub manifest: Option<Manifest>,
    /// Methods from the last successful handshake.
    pub methods: Vec<String>,
    /// Which launch this is; a session or event of another launch is stale.
    pub launch: u64,
    /// The secret of the current launch; `None` when no handshake is expected.
    pub token: Option<String>,
    /// The live session, if any.
    pub session: Option<Arc<Session>>,
    /// When the current session was opened, for uptime.
    pub since: Option<Instant>,
    /// Event filters it subscribes to (kept while it is down, so events wait for it).
    pub subscriptions: Vec<String>,
    /// Whether it receives the events it publishes itself.
    pub receive_own: bool,
    /// Its event queue.
    pub queue: Arc<EventQueue>,
    /// Events for the supervisor (session opened or lost).
    pub events: mpsc::Sender<SupervisorEvent>,
    /// Commands for the supervisor (start, stop, restart).
    pub commands: mpsc::Sender<Command>,
}

/// All plugins, by id.
#[derive(Default)]
pub struct Registry {
    plugins: Mutex<BTreeMap<String, Entry>>,
}

impl Registry {
    /// Exclusive access to the map, for a few non-blocking steps.
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Entries are updated field by field; a panic mid-update leaves each field valid.
        self.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a plugin.
    pub fn insert(&self, entry: Entry) {
        self.lock().insert(entry.id.clone(), entry);
    }

    /// Runs `f` on one entry; `None` if there is no such plugin.
    pub fn with<R>(&self, id: &str, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        self.lock().get_mut(id).map(f)
    }

    /// The live session of a plugin, or the error a caller should get.
    pub fn session(&self, id: &str) -> Result<Arc<Session>, WireError> {
        let plugins = self.lock();
        let Some(entry) = plugins.get(id) else {
            return Err(WireError::new(
                ErrorCode::UnknownPlugin,
                format!("no plugin named {id:?}"),
            ));
        };
        match &entry.session {
            Some(s) if !s.is_closed() => Ok(s.clone()),
            _ => Err(WireError::new(
                ErrorCode::NotRunning,
                format!("plugin {id} is {}", entry.state.as_str()),
            )),
        }
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.lock()
            .values()
            .filter_map(|e| e.session.clone())
            .filter(|s| !s.is_closed())
            .collect()
    }

    /// A snapshot for `iglu status`.
    pub fn status(&self) -> Vec<PluginStatus> {
        self.lock().values().map(PluginStatus::of).collect()
    }

    /// The command channel of a plugin's supervisor.
    pub fn commands(&self, id: &str) -> Option<mpsc::Sender<Command>> {
        self.with(id, |e| e.commands.clone())
    }
}
