//! Codes that cross the wire, and the Rust errors of this crate.
//!
//! The wire codes ([`ErrorCode`], [`RejectCode`], [`WireError`]) are values a
//! peer sends; [`BusError`] is what a Rust caller of this crate handles.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a call failed, as sent in an ERROR message (snake case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The callee serves no method by that name.
    MethodNotFound,
    /// The arguments did not decode into what the method takes.
    BadArguments,
    /// The handler returned an error; the message is the handler's.
    HandlerError,
    /// The handler panicked; the plugin caught it and keeps running.
    HandlerPanicked,
    /// The plugin died (exited, was killed, or stopped heartbeating) while the call was in flight.
    PluginCrashed,
    /// The call's deadline passed.
    Timeout,
    /// The plugin is not running (stopped, restarting, failed, or shutting down).
    NotRunning,
    /// A message was larger than the size cap.
    TooLarge,
    /// A frame did not decode as a protocol message, or its kind is unknown.
    BadMessage,
    /// No plugin has that id.
    UnknownPlugin,
    /// The callee failed for a reason of its own (for example a full store).
    Internal,
    /// Too much is already in flight to the callee (calls, or bytes of
    /// calls); nothing was sent. Retry later.
    Overloaded,
    /// The caller may not make this call (a plugin calling a plugin it is
    /// not allowed to, see the `calls` setting).
    Forbidden,
    /// The plugin does not implement the interface a typed call names.
    NotImplemented,
    /// The plugin implements another major version of the interface than
    /// the typed call needs; nothing was sent.
    Incompatible,
    /// The host's store could not write (disk full, read-only, I/O error):
    /// nothing of the write was kept; the host keeps running.
    StorageError,
    /// The write would take the plugin's store past one of its quotas
    /// (keys or bytes; the message names which): nothing of it was kept.
    QuotaExceeded,
    /// The plugin lacks a permission for this (a topic to publish or
    /// subscribe to, a host method); the message names it.
    PermissionDenied,
    /// A code this version does not know; read the message.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code named `code` on the wire; `Unknown` for one this version
    /// does not know.
    pub fn parse(code: &str) -> ErrorCode {
        use serde::de::IntoDeserializer;
        let words: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            code.into_deserializer();
        ErrorCode::deserialize(words).unwrap_or(ErrorCode::Unknown)
    }

    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MethodNotFound => "method_not_found",
            ErrorCode::BadArguments => "bad_arguments",
            ErrorCode::HandlerError => "handler_error",
            ErrorCode::HandlerPanicked => "handler_panicked",
            ErrorCode::PluginCrashed => "plugin_crashed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotRunning => "not_running",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownPlugin => "unknown_plugin",
            ErrorCode::Internal => "internal",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::Incompatible => "incompatible",
            ErrorCode::StorageError => "storage_error",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the host refused a handshake, as sent in a REJECT message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The HELLO's cookie is not Iglu's.
    BadCookie,
    /// The plugin and the host have no protocol version in common.
    UnsupportedVersion,
    /// The host knows no plugin by the id in the HELLO.
    UnknownPlugin,
    /// The token does not match the one the host issued.
    BadToken,
    /// A session for that plugin id is already open.
    DuplicateId,
    /// The manifest or method list is invalid.
    MalformedManifest,
    /// The first message was not a readable HELLO.
    MalformedHello,
    /// The plugin is stopped on the host; it is let in again after `iglu start`.
    Stopped,
    /// The host's config says this plugin must provide an interface (a
    /// version of one) that its HELLO does not announce.
    MissingInterface,
    /// A code this version does not know; read the message.
    #[serde(other)]
    Unknown,
}

impl RejectCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::BadCookie => "bad_cookie",
            RejectCode::UnsupportedVersion => "unsupported_version",
            RejectCode::UnknownPlugin => "unknown_plugin",
            RejectCode::BadToken => "bad_token",
            RejectCode::DuplicateId => "duplicate_id",
            RejectCode::MalformedManifest => "malformed_manifest",
            RejectCode::MalformedHello => "malformed_hello",
            RejectCode::Stopped => "stopped",
            RejectCode::MissingInterface => "missing_interface",
            RejectCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it crosses the wire: a code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

impl WireError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A frame exceeded the size cap; nothing of it was decoded.
    #[error("message of {size} bytes exceeds the cap of {max} bytes")]
    TooLarge {
        /// The frame's size.
        size: usize,
        /// The cap in force.
        max: usize,
    },
    /// A frame did not decode as a protocol message.
    #[error("undecodable message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// A message could not be encoded (a bug, not peer input).
    #[error("could not encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A ZeroMQ message had an unexpected number of frames.
    #[error("expected {expected} frame(s), got {got}")]
    FrameCount {
        /// Frames the protocol expects here.
        expected: usize,
        /// Frames that arrived.
        got: usize,
    },
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] zeromq::ZmqError),
    /// A send that must not wait found the peer's socket queue at its
    /// bound: the peer has stopped reading.
    #[error(
        "the peer is not reading: {messages} messages or {bytes} bytes wait in its socket queue"
    )]
    PeerQueueFull {
        /// The queue's bound in messages.
        messages: usize,
        /// Bytes waiting when the send was refused.
        bytes: usize,
    },
    /// The peer's connection is gone.
    #[error("the peer is gone")]
    PeerGone,
    /// Nothing listens on an in-memory endpoint.
    #[error("nothing is bound at {0}")]
    NotBound(String),
    /// This side's connection is closed.
    #[error("the connection is closed")]
    Closed,
}
