//! The error a Rust caller of the host gets from a call, apart from the
//! error that crosses the wire.
//!
//! A plugin's ERROR (a code and a sentence) is one thing that can happen to
//! a call; the caller also needs to tell a timeout from a lost plugin or an
//! unknown id without comparing strings. So, as tarpc keeps its local
//! `RpcError` apart from the `ServerError` a server sends, [`CallError`]
//! names each way a call can fail, keeps the plugin's own answer whole in
//! [`CallError::Remote`], and maps back to the wire code with
//! [`CallError::code`] for those (the control socket) that pass it on.

use std::time::Duration;

use iglu_bus::{ErrorCode, WireError};

/// Why a call did not return a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No plugin has that id.
    #[error("no plugin named {0:?}")]
    UnknownPlugin(String),
    /// The plugin is stopped, failed, restarting or starting (and the caller
    /// did not choose to wait, or it did not come back in time to be called).
    #[error("{message}")]
    NotRunning {
        /// The plugin.
        plugin: String,
        /// What state it is in, in words.
        message: String,
    },
    /// The call's deadline passed (the plugin was told to drop the work).
    #[error("{message}")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The deadline the call had.
        deadline: Duration,
        /// The host's or the plugin's sentence.
        message: String,
    },
    /// The plugin died, or was stopped, with the call in flight.
    #[error("{message}")]
    PluginLost {
        /// The plugin.
        plugin: String,
        /// How it was lost (`connection lost`, `no heartbeat for 3012 ms`, ...).
        message: String,
    },
    /// Too much is in flight to the plugin already; nothing was sent.
    #[error("{message}")]
    Overloaded {
        /// The plugin.
        plugin: String,
        /// What bound was reached.
        message: String,
    },
    /// The plugin answered with an error (or the host did on its behalf: a
    /// method it did not declare, arguments over the size cap): its code
    /// and sentence, as sent.
    #[error("{0}")]
    Remote(WireError),
}

impl CallError {
    /// The wire code for this error, for callers that pass it on.
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::UnknownPlugin(_) => ErrorCode::UnknownPlugin,
            CallError::NotRunning { .. } => ErrorCode::NotRunning,
            CallError::Timeout { .. } => ErrorCode::Timeout,
            CallError::PluginLost { .. } => ErrorCode::PluginCrashed,
            CallError::Overloaded { .. } => ErrorCode::Overloaded,
            CallError::Remote(e) => e.code,
        }
    }

    /// Sorts an error that came back as a wire error (from the session or
    /// the registry) into its case.
    pub(crate) fn from_wire(plugin: &str, deadline: Duration, e: WireError) -> CallError {
        let plugin = plugin.to_owned();
        match e.code {
            ErrorCode::UnknownPlugin => CallError::UnknownPlugin(plugin),
            ErrorCode::NotRunning => CallError::NotRunning {
                plugin,
                message: e.message,
            },
            ErrorCode::Timeout => CallError::Timeout {
                plugin,
                deadline,
                message: e.message,
            },
            ErrorCode::PluginCrashed => CallError::PluginLost {
                plugin,
                message: e.message,
            },
            ErrorCode::Overloaded => CallError::Overloaded {
                plugin,
                message: e.message,
            },
            _ => CallError::Remote(e),
        }
    }

    /// The error as it would cross the wire: its code and sentence.
    pub fn to_wire(&self) -> WireError {
        match self {
            CallError::Remote(e) => e.clone(),
            other => WireError::new(other.code(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_maps_back_to_its_wire_code() {
        let d = Duration::from_millis(300);
        for code in [
            ErrorCode::UnknownPlugin,
            ErrorCode::NotRunning,
            ErrorCode::Timeout,
            ErrorCode::PluginCrashed,
            ErrorCode::Overloaded,
            ErrorCode::MethodNotFound,
            ErrorCode::BadArguments,
            ErrorCode::HandlerError,
            ErrorCode::TooLarge,
        ] {
            let e = CallError::from_wire("p", d, WireError::new(code, "why"));
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(e.to_wire().code, code);
        }
        let lost = CallError::from_wire(
            "p",
            d,
            WireError::new(
                ErrorCode::PluginCrashed,
                "plugin p crashed: connection lost",
            ),
        );
        assert!(
            matches!(&lost, CallError::PluginLost { message, .. } if message.contains("connection lost"))
        );
        assert!(matches!(
            CallError::from_wire("p", d, WireError::new(ErrorCode::Timeout, "late")),
            CallError::Timeout { deadline, .. } if deadline == d
        ));
    }
}
