//! Every message kind of the protocol, field for field as in `docs/PROTOCOL.md`.
//!
//! On the wire a message is a MessagePack map with exactly one entry whose key
//! is the kind (`"call"`) and whose value is a map of the fields (string keys).
//! Call arguments and results are opaque MessagePack documents carried as
//! `bin`, so the host forwards them without decoding them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ErrorCode, RejectCode, WireError};

/// Correlation id of a call: a v4 uuid, 16 raw bytes on the wire (`bin 8`).
pub type CallId = Uuid;

/// One protocol message. The variant name, in snake case, is the map key on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// HELLO is the big one and is sent once per connection; messages are
// decoded and handled one at a time, so boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Message {
    /// Plugin -> host, first message of a connection.
    Hello(Hello),
    /// Host -> plugin, the handshake succeeded.
    Welcome(Welcome),
    /// Host -> plugin, the handshake failed; the connection is unusable.
    Reject(Reject),
    /// Either way: invoke a method.
    Call(Call),
    /// Either way: the successful result of a call.
    Reply(Reply),
    /// Either way: a call failed, or a message could not be handled.
    Error(ErrorReply),
    /// Either way: the caller gave up on a call.
    Cancel(Cancel),
    /// Either way: a sign of life.
    Heartbeat(Heartbeat),
    /// Either way: a clean end of the session.
    Goodbye(Goodbye),
    /// Host -> plugin: an event; the only two-frame message (header, then [`EventBody`]).
    Event(EventHeader),
    /// Plugin -> host: the plugin finished `events` more events and can take that many more.
    Credit(Credit),
}

/// What a plugin says about itself. Cached by the host and shown by `iglu status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// Stable identifier, `[a-z0-9_-]`, 1 to 64 characters.
    pub id: String,
    /// Name for people.
    pub name: String,
    /// Who wrote it.
    pub author: String,
    /// The plugin's own version (free text, semver recommended).
    pub version: String,
    /// One sentence about what it does.
    pub description: String,
}

/// The opening message of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`crate::handshake::COOKIE_VALUE`]; guards against a stray peer, it is not a secret.
    pub cookie: String,
    /// Protocol versions the plugin speaks.
    pub versions: Vec<u32>,
    /// The id under which the host knows this plugin (for managed plugins, `IGLU_PLUGIN_ID`).
    pub plugin_id: String,
    /// The secret the host issued for this launch (`IGLU_TOKEN`).
    pub token: String,
    /// The plugin's manifest.
    pub manifest: Manifest,
    /// Names of the methods the plugin serves.
    pub methods: Vec<String>,
    /// Event filters to subscribe to from the start (optional, default none).
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// Whether to receive events this plugin published itself (optional, default false).
    #[serde(default)]
    pub receive_own: bool,
    /// The interfaces it implements (optional, default none); their methods
    /// are among `methods`, as `<interface>.<method>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<crate::interface::InterfaceInfo>,
}

/// The host accepted the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version both sides now speak.
    pub version: u32,
    /// Identifies this session in logs on both sides.
    pub session: Uuid,
    /// How often each side sends a heartbeat, in milliseconds.
    pub heartbeat_ms: u32,
    /// How many intervals of silence make a peer dead.
    pub liveness: u32,
    /// The largest frame the host accepts, in bytes.
    pub max_message_bytes: u32,
}

/// The host refused the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// Machine-readable reason.
    pub code: RejectCode,
    /// A sentence for people.
    pub message: String,
    /// The protocol versions the host speaks, so the plugin can say what it would need.
    pub host_versions: Vec<u32>,
}

/// Invoke a method on the other side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Correlation id, echoed in the REPLY or ERROR.
    pub id: CallId,
    /// Method name.
    pub method: String,
    /// Time left for the call, relative, so clocks need not agree.
    pub deadline_ms: u32,
    /// The arguments: one MessagePack document.
    pub args: Bytes,
}

/// The result of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The call this answers.
    pub id: CallId,
    /// The result: one MessagePack document.
    pub result: Bytes,
}

/// A failed call, or a complaint about a message that had no call id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ErrorReplyOnWire")]
pub struct ErrorReply {
    /// The call this answers; `nil` when the offending message had no readable id.
    pub id: Option<CallId>,
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

/// ERROR as it is read: a code this version does not know is kept, in
/// words, at the front of the message (`"quota_exceeded: ..."`), so the
/// caller still sees what the callee said.
#[derive(Deserialize)]
struct ErrorReplyOnWire {
    id: Option<CallId>,
    code: String,
    message: String,
}

impl From<ErrorReplyOnWire> for ErrorReply {
    fn from(w: ErrorReplyOnWire) -> Self {
        let code = ErrorCode::parse(&w.code);
        let message = if code == ErrorCode::Unknown && w.code != "unknown" {
            format!("{}: {}", w.code, w.message)
        } else {
            w.message
        };
        ErrorReply {
            id: w.id,
            code,
            message,
        }
    }
}

impl ErrorReply {
    /// The error as a value a caller can handle.
    pub fn into_wire_error(self) -> WireError {
        WireError {
            code: self.code,
            message: self.message,
        }
    }
}

/// The caller gave up on a call; the callee may stop working on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancel {
    /// The call given up on.
    pub id: CallId,
}

/// A sign of life. Carries nothing: any message counts as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Heartbeat {}

/// A clean end of the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Why, for the other side's log.
    pub reason: String,
}

/// The per-subscriber part of an EVENT (frame 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHeader {
    /// This subscriber's sequence number: +1 per event queued for it, so a
    /// gap shows events dropped from its queue.
    pub seq: u64,
    /// Whether this is the retained state of the topic, sent on subscribe,
    /// rather than a live publication.
    pub retained: bool,
}

/// The shared part of an EVENT (frame 2): encoded once per publication and
/// sent as is to every subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBody {
    /// Where it was published.
    pub topic: String,
    /// The event's data: one MessagePack document.
    pub payload: Bytes,
    /// When the host accepted it, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// `host`, or the id of the plugin that published it.
    pub source: String,
}

/// Credit for events (flow control): finished events, each of which frees a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// How many more events the plugin can take.
    pub events: u32,
}
