//! What reaches the I/O loop from handlers, host calls and the event task,
//! and why the loop ends.

use bytes::Bytes;
use iglu_bus::CallId;

/// Frames queued for the host from handlers and host calls. The bound makes
/// a flood of finished calls wait for the socket instead of growing memory.
pub(crate) const OUTGOING_QUEUE: usize = 1024;

/// What flows from handlers, host calls and the event task to the I/O loop.
pub(crate) enum Outgoing {
    /// A call to the host, by id: its frame waits in `pending`.
    Call(CallId),
    /// A call finished; its answer is `frame`.
    Done { id: CallId, frame: Bytes },
    /// A call to the host that its caller gave up on (dropped, or past its
    /// deadline): the host is told, so a call it forwarded to another
    /// plugin is cancelled there too.
    Cancel(CallId),
    /// Event credit, valid only on the connection it was earned on.
    Credit { connection: u64, frame: Bytes },
}

/// Why the loop ended cleanly.
#[derive(Debug)]
pub(crate) enum Ended {
    /// A signal asked us to stop.
    Signal(&'static str),
    /// The host said goodbye.
    HostGoodbye(String),
}
