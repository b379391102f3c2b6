//! Frames between the host and its plugins: the host's ROUTER side and a
//! plugin's DEALER side, behind one small interface with two implementations.
//!
//! Everything above this module deals in `(peer, frames)` and
//! [`PeerEvent`]s. [`zmq`] is the real transport (ZeroMQ over `ipc://` or
//! `tcp://`); [`memory`] is its in-process twin (`mem://name`), with the
//! same bounds and the same disconnect reports, so that the host's and the
//! SDK's logic can be unit-tested under tokio's paused clock with no socket.
//! One protocol message is one frame (the ROUTER side adds the peer's
//! routing id in front).
//!
//! The types below are what callers hold; each wraps the implementation the
//! endpoint's scheme chose. The traits are the interface an implementation
//! provides.

pub mod memory;
pub mod zmq;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::error::BusError;

/// A peer's routing id on the host's ROUTER: random, assigned by the
/// transport, meaningful only once the handshake has bound it to a session.
pub type PeerId = Bytes;

/// Something that happened to a peer's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// The peer's connection closed (process exit, kill, or network loss).
    Disconnected(PeerId),
}

/// What one peer of the host's ROUTER may send, and have waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterCaps {
    /// A peer is disconnected at the header of a frame claiming more than
    /// this, before anything is allocated for it. Uncapped, 73 bytes
    /// claiming 2^50 make the process abort on a failed allocation.
    pub max_frame: usize,
    /// The same for the sum of the frames of one multipart message.
    pub max_message: usize,
    /// Messages that may wait in one peer's socket queue.
    pub queue_messages: usize,
    /// Bytes that may wait there, for sends that must not wait
    /// ([`RouterOutbound::try_send`]); one message always fits an empty queue.
    pub queue_bytes: usize,
}

impl RouterCaps {
    /// No bounds beyond the transport's own.
    pub const UNCAPPED: RouterCaps = RouterCaps {
        max_frame: usize::MAX,
        max_message: usize::MAX,
        queue_messages: 65_536,
        queue_bytes: usize::MAX,
    };
}

/// Receiving from every peer of a ROUTER.
pub trait RouterRecv: Send {
    /// The next message: its peer and its body frames. Cancel-safe.
    fn recv(&mut self) -> BoxFuture<'_, Result<(PeerId, VecDeque<Bytes>), BusError>>;
}

/// Sending to one peer of a ROUTER; shared by every session.
pub trait RouterSend: Send + Sync {
    /// Queues `routed` (the peer's id, then the frames) without waiting.
    fn try_send_routed(&self, routed: VecDeque<Bytes>) -> Result<(), BusError>;
    /// Sends `routed`, waiting while the peer's queue is full. Not cancel-safe.
    fn send_routed(&self, routed: VecDeque<Bytes>) -> BoxFuture<'_, Result<(), BusError>>;
    /// Closes one peer's connection after at most `linger` for what waits.
    fn disconnect(&self, peer: &PeerId, linger: Duration);
}

/// A ROUTER's connection events.
pub trait PeerMonitor: Send {
    /// The next event; `None` once the socket is gone. Cancel-safe.
    fn next(&mut self) -> BoxFuture<'_, Option<PeerEvent>>;
}

/// Receiving on a DEALER.
pub trait DealerRecv: Send {
    /// The next message: its first frame and the frames after it. Cancel-safe.
    fn recv(&mut self) -> BoxFuture<'_, Result<(Bytes, VecDeque<Bytes>), BusError>>;
}

/// Sending on a DEALER.
pub trait DealerSend: Send {
    /// Sends `frames` as one message. Not cancel-safe.
    fn send(&mut self, frames: Vec<Bytes>) -> BoxFuture<'_, Result<(), BusError>>;
}

/// The host side: a bound ROUTER split into its halves, plus its monitor.
pub struct RouterEndpoint {
    /// Receives frames from every peer.
    pub inbound: RouterInbound,
    /// Sends frames to one peer; clone it freely.
    pub outbound: RouterOutbound,
    /// Connection events, as fast as the transport reports them.
    pub events: PeerEvents,
}

impl RouterEndpoint {
    /// Binds a ROUTER on `endpoint` (`ipc://path`, `tcp://addr:port` or
    /// `mem://name`) that reads frames of any size a peer claims.
    pub async fn bind(endpoint: &str) -> Result<RouterEndpoint, BusError> {
        Self::bind_capped(endpoint, RouterCaps::UNCAPPED).await
    }

    /// Like [`RouterEndpoint::bind`], with the bounds of [`RouterCaps`]
    /// on what each peer may send and have waiting for it.
    pub async fn bind_capped(endpoint: &str, caps: RouterCaps) -> Result<RouterEndpoint, BusError> {
        match endpoint.strip_prefix(memory::SCHEME) {
            Some(name) => memory::bind(name, caps),
            None => zmq::bind(endpoint, caps).await,
        }
    }

    /// Assembles an endpoint from an implementation's parts.
    pub fn from_parts(
        inbound: Box<dyn RouterRecv>,
        outbound: Arc<dyn RouterSend>,
        events: Box<dyn PeerMonitor>,
    ) -> RouterEndpoint {
        RouterEndpoint {
            inbound: RouterInbound(inbound),
            outbound: RouterOutbound(outbound),
            events: PeerEvents(events),
        }
    }
}

/// Receiving half of the host's ROUTER.
pub struct RouterInbound(Box<dyn RouterRecv>);

impl RouterInbound {
    /// The next message: its peer and its body frames (one protocol
    /// message per frame: a plugin may batch several). Cancel-safe.
    pub async fn recv(&mut self) -> Result<(PeerId, VecDeque<Bytes>), BusError> {
        self.0.recv().await
    }
}

/// Sending half of the host's ROUTER.
#[derive(Clone)]
pub struct RouterOutbound(Arc<dyn RouterSend>);

impl RouterOutbound {
    /// Sends one frame to one peer. Waits only when that peer's socket queue is
    /// full; not cancel-safe (a cancelled send may lose the frame).
    pub async fn send(&self, peer: &PeerId, frame: Bytes) -> Result<(), BusError> {
        self.0.send_routed(routed(peer, [frame])).await
    }

    /// Sends a message of several frames (an EVENT batch: header, body,
    /// header, body...). `frames` must not be empty.
    pub async fn send_frames(&self, peer: &PeerId, frames: Vec<Bytes>) -> Result<(), BusError> {
        self.0.send_routed(routed(peer, frames)).await
    }

    /// Queues one frame for one peer without waiting: a peer whose socket
    /// queue is at its bound (it stopped reading) gets nothing and
    /// [`BusError::PeerQueueFull`] comes back, as libzmq's ROUTER drops at
    /// its high-water mark. What to do with that peer is the caller's call.
    pub fn try_send(&self, peer: &PeerId, frame: Bytes) -> Result<(), BusError> {
        self.0.try_send_routed(routed(peer, [frame]))
    }

    /// [`RouterOutbound::try_send`] for a message of several frames.
    pub fn try_send_frames(&self, peer: &PeerId, frames: Vec<Bytes>) -> Result<(), BusError> {
        self.0.try_send_routed(routed(peer, frames))
    }

    /// Closes one peer's connection: nothing more is read from it, and what
    /// waits for it is written for at most `linger` (a REJECT before the
    /// hang-up). [`PeerEvents`] then reports it disconnected.
    pub fn disconnect(&self, peer: &PeerId, linger: Duration) {
        self.0.disconnect(peer, linger);
    }
}

/// `frames` with the peer's id in front, allocated once at its final size.
fn routed<I>(peer: &PeerId, frames: I) -> VecDeque<Bytes>
where
    I: IntoIterator<Item = Bytes>,
    I::IntoIter: ExactSizeIterator,
{
    let frames = frames.into_iter();
    let mut all = VecDeque::with_capacity(frames.len() + 1);
    all.push_back(peer.clone());
    all.extend(frames);
    all
}

/// The ROUTER's connection events.
pub struct PeerEvents(Box<dyn PeerMonitor>);

impl PeerEvents {
    /// The next event that matters to Iglu; `None` once the socket is gone.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<PeerEvent> {
        self.0.next().await
    }
}

/// The plugin side: a DEALER connected to the host.
pub struct DealerConnection {
    /// Receives frames from the host.
    pub inbound: DealerInbound,
    /// Sends frames to the host.
    pub outbound: DealerOutbound,
}

impl DealerConnection {
    /// Connects a DEALER to `endpoint`. Over ZeroMQ, retries on "connection
    /// refused" for a while (zeromq's own backoff); the caller bounds the wait.
    pub async fn connect(endpoint: &str) -> Result<DealerConnection, BusError> {
        match endpoint.strip_prefix(memory::SCHEME) {
            Some(name) => memory::connect(name),
            None => zmq::connect(endpoint).await,
        }
    }

    /// Assembles a connection from an implementation's halves.
    pub fn from_parts(inbound: Box<dyn DealerRecv>, outbound: Box<dyn DealerSend>) -> Self {
        DealerConnection {
            inbound: DealerInbound(inbound),
            outbound: DealerOutbound(outbound),
        }
    }
}

/// Receiving half of a plugin's DEALER.
pub struct DealerInbound(Box<dyn DealerRecv>);

impl DealerInbound {
    /// The next message from the host: its first frame, and the frames
    /// after it (only EVENT has more: its body, then further header/body
    /// pairs of a batch). Cancel-safe.
    pub async fn recv(&mut self) -> Result<(Bytes, VecDeque<Bytes>), BusError> {
        self.0.recv().await
    }

    /// The receiving half as a stream. A receive in progress survives a
    /// dropped `next()`, so a loop that polls for "anything more?" after
    /// each message does not set up a new receive every time.
    pub fn into_stream(self) -> DealerStream {
        Box::pin(futures::stream::unfold(self, |mut inbound| async move {
            let next = inbound.recv().await;
            Some((next, inbound))
        }))
    }
}

/// What a plugin's DEALER receives, as a stream: one message at a time,
/// split as [`DealerInbound::recv`] splits it.
pub type DealerStream =
    futures::stream::BoxStream<'static, Result<(Bytes, VecDeque<Bytes>), BusError>>;

/// Sending half of a plugin's DEALER.
pub struct DealerOutbound(Box<dyn DealerSend>);

impl DealerOutbound {
    /// Sends several frames as one message (a batch of protocol messages,
    /// one per frame). Not cancel-safe.
    pub async fn send_frames(&mut self, frames: Vec<Bytes>) -> Result<(), BusError> {
        if frames.is_empty() {
            return Err(BusError::FrameCount {
                expected: 1,
                got: 0,
            });
        }
        self.0.send(frames).await
    }

    /// Sends one frame to the host. Not cancel-safe.
    pub async fn send(&mut self, frame: Bytes) -> Result<(), BusError> {
        self.0.send(vec![frame]).await
    }
}
