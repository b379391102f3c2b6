//! The Iglu wire protocol, shared by the host and by every plugin.
//!
//! `docs/PROTOCOL.md` is the normative description; the types here mirror it
//! one to one. A message travels through the modules in this order:
//!
//! - [`transport`] moves opaque frames (host ROUTER side, plugin DEALER
//!   side) and reports peers that disconnect, behind one interface with two
//!   implementations: [`transport::zmq`] (ZeroMQ over `ipc://` and `tcp://`,
//!   the only module that names the `zeromq` crate) and
//!   [`transport::memory`] (`mem://name`, in-process, for unit tests of the
//!   host and the SDK under a paused clock).
//! - [`batch`] gathers several messages into one ZeroMQ message.
//! - [`codec`] turns one frame into one [`message::Message`] and back, and
//!   enforces the size cap before anything is decoded.
//! - [`message`] holds every message kind (HELLO, WELCOME, REJECT, CALL,
//!   REPLY, ERROR, CANCEL, HEARTBEAT, GOODBYE) and its fields.
//! - [`handshake`] holds the rules of the opening exchange: the magic
//!   cookie, version negotiation, constant-time token comparison and
//!   manifest validation.
//! - [`heartbeat`] holds liveness timing, the same on both sides.
//! - [`error`] holds the codes that cross the wire ([`error::ErrorCode`],
//!   [`error::RejectCode`]) and the Rust errors of this crate.
//! - [`topic`] holds the MQTT-style topic and filter rules of events.
//! - [`launch`] names the environment variables through which the host
//!   hands a managed plugin its endpoint, cookie and token.
//! - [`interface`] is what a declared interface needs at run time: its
//!   announcement in HELLO, the version rule, typed errors, [`interface::Caller`].
//! - [`host_api`] defines the host API's arguments and results once, for
//!   the host, the SDK and plugins.
#![deny(missing_docs)]

pub mod batch;
pub mod codec;
pub mod error;
pub mod fold_hash;
pub mod handshake;
pub mod heartbeat;
pub mod host_api;
pub mod interface;
pub mod launch;
pub mod message;
pub mod topic;
pub mod transport;

pub use batch::{Batch, MAX_FRAMES_PER_MESSAGE};

/// The reserved method a plugin built on the Rust SDK serves to change its
/// log filter at run time (`iglu log-level`): `{"filter": str}` ->
/// `{"filter": str, "previous": str}`. Declared in HELLO like any method,
/// so a plugin without it is told so before anything is sent.
pub const LOG_LEVEL_METHOD: &str = "iglu.log_level";
pub use codec::{decode, decode_shared, encode, DEFAULT_MAX_MESSAGE_BYTES};
pub use error::{BusError, ErrorCode, RejectCode, WireError};
pub use fold_hash::{CallIdMap, FoldMap, FoldSet};
pub use message::{
    Call, CallId, Cancel, Credit, ErrorReply, EventBody, EventHeader, Goodbye, Heartbeat, Hello,
    Manifest, Message, Reject, Reply, Welcome,
};
