//! Why a session ended, in words for `iglu status`, and the error its
//! waiting calls get.

use std::time::Duration;

use iglu_bus::{ErrorCode, WireError};

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// The socket reported the peer gone.
    Disconnected,
    /// Nothing heard for `liveness` intervals.
    HeartbeatTimeout(Duration),
    /// The process exited (description of the exit).
    Exited(String),
    /// The plugin said GOODBYE.
    Goodbye(String),
    /// The host is stopping the plugin.
    Stopping,
    /// The host could not send to the plugin.
    SendFailed(String),
    /// The plugin's socket queue reached its bound: it stopped reading.
    NotReading(String),
    /// The plugin sent bad frames faster than the host tolerates.
    Misbehaving(String),
}

impl Loss {
    /// The error given to calls that were in flight.
    pub(super) fn to_call_error(&self, plugin: &str) -> WireError {
        match self {
            Loss::Goodbye(_) | Loss::Stopping => WireError::new(
                ErrorCode::NotRunning,
                format!("plugin {plugin} stopped ({self}) before answering"),
            ),
            _ => WireError::new(
                ErrorCode::PluginCrashed,
                format!("plugin {plugin} crashed before answering: {self}"),
            ),
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::Disconnected => write!(f, "connection lost"),
            Loss::HeartbeatTimeout(d) => write!(f, "no heartbeat for {} ms", d.as_millis()),
            Loss::Exited(how) => write!(f, "process {how}"),
            Loss::Goodbye(reason) => write!(f, "said goodbye: {reason}"),
            Loss::Stopping => write!(f, "stopped by the host"),
            Loss::SendFailed(e) => write!(f, "send failed: {e}"),
            Loss::NotReading(e) => write!(f, "stopped reading its socket ({e})"),
            Loss::Misbehaving(e) => write!(f, "cut for misbehaving: {e}"),
        }
    }
}

/// What a session tells the plugin's supervisor: it opened, or it ended.
#[derive(Debug)]
pub enum SessionNews {
    /// A session finished its handshake.
    Opened {
        /// Its launch number (see `plugin::registry`).
        launch: u64,
    },
    /// The session of that launch ended.
    Ended {
        /// Its launch number.
        launch: u64,
        /// Why.
        loss: Loss,
    },
}
