//! What the I/O loop serves with, and what reaches it: the plugin's
//! service (handlers, HELLO, timing choices), the messages handlers and host
//! calls hand it, and why it ends.

use std::time::Duration;

use bytes::Bytes;
use iglu_bus::{CallId, FoldMap, Hello};
use tokio::runtime::Handle;

use crate::events::EventHandler;
use crate::handler::ErasedHandler;

/// Frames queued for the host from handlers and host calls. The bound makes
/// a flood of finished calls wait for the socket instead of growing memory.
pub(crate) const OUTGOING_QUEUE: usize = 1024;

/// What flows from handlers, host calls and the event task to the I/O loop.
pub(crate) enum Outgoing {
    /// A call to the host, by id: its frame waits in `pending`.
    Call(CallId),
    /// A call finished; its answer is `frame`.
    Done { id: CallId, frame: Bytes },
    /// Event credit, valid only on the connection it was earned on.
    Credit { connection: u64, frame: Bytes },
}

/// Everything the loop needs that does not change between connections.
pub(crate) struct Service {
    pub hello: Hello,
    pub handlers: FoldMap<String, ErasedHandler>,
    pub handler_runtime: Handle,
    /// How long in-flight calls may run after SIGTERM/SIGINT or the host's GOODBYE.
    pub grace: Duration,
    /// Handles events, one at a time; `None` drops them (still returning credit).
    pub event_handler: Option<EventHandler>,
    /// Events the host may have in flight to this plugin.
    pub event_window: u32,
    /// Run handlers and the event handler on the I/O thread (see `Plugin::inline_handlers`).
    pub inline_handlers: bool,
}

/// Why the loop ended cleanly.
#[derive(Debug)]
pub(crate) enum Ended {
    /// A signal asked us to stop.
    Signal(&'static str),
    /// The host said goodbye.
    HostGoodbye(String),
}
