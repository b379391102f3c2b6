//! Where a plugin is in its life, and the changes that move it.
//!
//! ```text
//!            start                handshake
//!  Stopped ────────► Starting ───────────────► Running
//!     ▲                 ▲  │ no handshake        │ exit, disconnect,
//!     │ stop            │  ▼ in time             ▼ silence
//!  Stopping        Restarting ◄── backoff ── Crashed ── too often ──► Failed
//! ```
//!
//! Only [`crate::plugin::registry::Registry::transition`] changes it (see
//! [`crate::plugin::transition`]), so every change is logged, announced and
//! counted once.

use serde::{Deserialize, Serialize};

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
