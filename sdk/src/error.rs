//! Errors a plugin author sees.

use std::fmt;
use std::time::Duration;

use iglu_bus::{ErrorCode, RejectCode, WireError};

/// Why a plugin stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The binary was run by hand, not by an Iglu host.
    #[error("this program is an Iglu plugin: it is started by the iglu host, not run directly (the {key} environment variable is missing or wrong)")]
    NotLaunchedByHost {
        /// The cookie's environment key.
        key: &'static str,
    },
    /// A required launch variable is missing.
    #[error("the launch environment lacks {0}")]
    MissingEnv(&'static str),
    /// The host refused the handshake.
    #[error("the host rejected the handshake ({code}): {message}")]
    Rejected {
        /// Machine-readable reason.
        code: RejectCode,
        /// The host's sentence.
        message: String,
    },
    /// No WELCOME arrived in time.
    #[error("no answer from the host at {endpoint} within {waited:?}: is the host running, and is the endpoint right? (a stale ipc socket file looks like this)")]
    HandshakeTimeout {
        /// Where the plugin tried to connect.
        endpoint: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The host that started this plugin exited before the plugin was ready.
    #[error("the host that started this plugin has already exited")]
    HostGone,
    /// The host stopped answering heartbeats.
    #[error("the host has been silent for {0:?}; exiting so that no plugin is left orphaned")]
    HostSilent(Duration),
    /// The protocol or the transport failed.
    #[error(transparent)]
    Bus(#[from] iglu_bus::BusError),
    /// The runtime could not start.
    #[error("could not start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

impl SdkError {
    /// The process exit code for this error, as documented in PROTOCOL.md.
    pub fn exit_code(&self) -> u8 {
        match self {
            SdkError::NotLaunchedByHost { .. } | SdkError::MissingEnv(_) => 1,
            SdkError::HostGone
            | SdkError::HostSilent(_)
            | SdkError::Bus(_)
            | SdkError::Runtime(_) => 2,
            SdkError::Rejected { .. } => 3,
            SdkError::HandshakeTimeout { .. } => 4,
        }
    }
}

/// The error a handler returns; it reaches the caller as `handler_error` with this message.
///
/// Any `std::error::Error` converts into it, so `?` works in handlers.
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// An error with a message of your own.
    pub fn msg(message: impl fmt::Display) -> Self {
        HandlerError {
            message: message.to_string(),
        }
    }

    /// The message the caller will see.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError::msg(e)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a call from the plugin to the host failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The host answered with an error.
    #[error(transparent)]
    Remote(#[from] WireError),
    /// The arguments could not be encoded.
    #[error("could not encode the arguments: {0}")]
    Encode(String),
    /// The result did not decode into the type asked for.
    #[error("could not decode the result: {0}")]
    Decode(String),
    /// No answer within the deadline.
    #[error("no answer from the host within {0:?}")]
    Timeout(Duration),
    /// The connection to the host is gone.
    #[error("the connection to the host is closed")]
    Disconnected,
}

impl CallError {
    /// The wire code closest to this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::Remote(e) => e.code,
            CallError::Encode(_) | CallError::Decode(_) => ErrorCode::BadArguments,
            CallError::Timeout(_) => ErrorCode::Timeout,
            CallError::Disconnected => ErrorCode::NotRunning,
        }
    }
}
