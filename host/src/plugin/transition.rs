//! The changes of a plugin's state, with the facts that change with them.

use std::sync::Arc;

use iglu_bus::Manifest;

use super::state::PluginState;
use crate::session::Session;

/// One change of a plugin's state, with the facts that change with it.
pub enum Transition {
    /// A launch begins: its HELLO must carry `token`.
    Starting {
        /// The secret of this launch.
        token: String,
        /// It follows a crash: counted as a restart.
        after_crash: bool,
    },
    /// A handshake finished; applied only if nothing changed while WELCOME
    /// went out (same launch, token still valid, not stopped, no live session).
    Running {
        /// The session's launch number: one past the registry's.
        launch: u64,
        /// The new live session.
        session: Arc<Session>,
        /// From the HELLO.
        manifest: Manifest,
        /// From the HELLO.
        methods: Vec<String>,
        /// From the HELLO.
        interfaces: Vec<iglu_bus::interface::InterfaceInfo>,
    },
    /// The host is stopping it.
    Stopping,
    /// No session and no process: Crashed, Restarting, Stopped or Failed.
    Down {
        /// The new state.
        state: PluginState,
        /// How the last process ended, when that is news.
        last_exit: Option<String>,
        /// Whether its token stays valid: a plugin that connects by itself
        /// may come back while down (and is refused as stopped, not as a
        /// stranger, while Stopped).
        keep_token: bool,
    },
}

impl Transition {
    /// The state it leads to.
    pub fn state(&self) -> PluginState {
        match self {
            Transition::Starting { .. } => PluginState::Starting,
            Transition::Running { .. } => PluginState::Running,
            Transition::Stopping => PluginState::Stopping,
            Transition::Down { state, .. } => *state,
        }
    }
}
