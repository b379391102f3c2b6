//! The in-process twin of [`super::zmq`]: a ROUTER bound at `mem://name`
//! and DEALERs that connect to it, over bounded tokio channels.
//!
//! It keeps what the host relies on from the real transport: one queue per
//! peer bounded in messages and bytes (a full one refuses `try_send` with
//! [`BusError::PeerQueueFull`]), oversized frames cut the peer, a peer that
//! goes away (its last half dropped) or is disconnected is reported once as
//! [`PeerEvent::Disconnected`], and what was queued before a disconnect is
//! still delivered (a REJECT before the hang-up). It has no network, no
//! reconnects and no clock of its own, so tests run under tokio's paused
//! time and see the same order of events every run.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;

use super::{
    DealerConnection, DealerRecv, DealerSend, PeerEvent, PeerId, PeerMonitor, RouterCaps,
    RouterEndpoint, RouterRecv, RouterSend,
};
use crate::error::BusError;

/// The scheme of in-memory endpoints.
pub const SCHEME: &str = "mem://";

/// Messages from all peers waiting for the router to read them.
const INBOX: usize = 1024;
/// Connection events waiting for the router's monitor; beyond it they are
/// dropped (and logged). Far more than any test has peers.
const EVENTS: usize = 65_536;

static BOUND: LazyLock<Mutex<HashMap<String, Weak<Router>>>> = LazyLock::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder finishes its one step: a panic mid-way leaves it whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct Peer {
    tx: mpsc::Sender<VecDeque<Bytes>>,
    bytes: Arc<AtomicUsize>,
}

struct Router {
    name: String,
    caps: RouterCaps,
    inbox: mpsc::Sender<(PeerId, VecDeque<Bytes>)>,
    peers: Mutex<HashMap<PeerId, Peer>>,
    /// Peers the router cut whose dealer still exists: what they sent is
    /// not read. A peer that left by itself is not here: what it sent
    /// before leaving is still read, as over a socket.
    cut: Mutex<HashSet<PeerId>>,
    events: mpsc::Sender<PeerEvent>,
    next_id: AtomicU64,
}

impl Router {
    /// Forgets `peer` and reports it, once; `cut` when the router hung up on it.
    fn drop_peer(&self, peer: &PeerId, cut: bool) {
        if cut {
            lock(&self.cut).insert(peer.clone());
        }
        if lock(&self.peers).remove(peer).is_some()
            && self
                .events
                .try_send(PeerEvent::Disconnected(peer.clone()))
                .is_err()
        {
            tracing::debug!(endpoint = %self.name, "in-memory monitor full: a disconnect event was dropped");
        }
    }

    fn has(&self, peer: &PeerId) -> bool {
        lock(&self.peers).contains_key(peer)
    }

    fn was_cut(&self, peer: &PeerId) -> bool {
        lock(&self.cut).contains(peer)
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let mut bound = lock(&BOUND);
        if bound.get(&self.name).is_some_and(|w| w.strong_count() == 0) {
            bound.remove(&self.name);
        }
    }
}

/// Binds `mem://name`; fails if something is bound there already.
pub(super) fn bind(name: &str, caps: RouterCaps) -> Result<RouterEndpoint, BusError> {
    let (inbox, inbox_rx) = mpsc::channel(INBOX);
    let (events, events_rx) = mpsc::channel(EVENTS);
    let router = Arc::new(Router {
        name: name.to_owned(),
        caps,
        inbox,
        peers: Mutex::new(HashMap::new()),
        cut: Mutex::new(HashSet::new()),
        events,
        next_id: AtomicU64::new(1),
    });
    {
        let mut bound = lock(&BOUND);
        if bound.get(name).is_some_and(|w| w.strong_count() > 0) {
            return Err(BusError::NotBound(format!(
                "{SCHEME}{name} (it is bound already)"
            )));
        }
        bound.insert(name.to_owned(), Arc::downgrade(&router));
    }
    Ok(RouterEndpoint::from_parts(
        Box::new(Inbound {
            router: router.clone(),
            rx: inbox_rx,
        }),
        Arc::new(Outbound(router)),
        Box::new(Monitor(events_rx)),
    ))
}

/// Connects to `mem://name`, which must be bound.
pub(super) fn connect(name: &str) -> Result<DealerConnection, BusError> {
    let router = lock(&BOUND)
        .get(name)
        .and_then(Weak::upgrade)
        .ok_or_else(|| BusError::NotBound(format!("{SCHEME}{name}")))?;
    let peer = Bytes::from(format!(
        "mem-{}",
        router.next_id.fetch_add(1, Ordering::Relaxed)
    ));
    let (tx, rx) = mpsc::channel(router.caps.queue_messages.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    lock(&router.peers).insert(
        peer.clone(),
        Peer {
            tx,
            bytes: bytes.clone(),
        },
    );
    let link = Arc::new(Link {
        router: Arc::downgrade(&router),
        peer,
    });
    Ok(DealerConnection::from_parts(
        Box::new(DealerIn {
            rx,
            bytes,
            _link: link.clone(),
        }),
        Box::new(DealerOut {
            inbox: router.inbox.clone(),
            link,
        }),
    ))
}

/// One dealer's tie to its router: when both halves are gone, the router
/// hears that the peer disconnected.
struct Link {
    router: Weak<Router>,
    peer: PeerId,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(router) = self.router.upgrade() {
            router.drop_peer(&self.peer, false);
            lock(&router.cut).remove(&self.peer);
        }
    }
}

fn size(frames: &VecDeque<Bytes>) -> usize {
    frames.iter().map(Bytes::len).sum()
}

struct Inbound {
    router: Arc<Router>,
    rx: mpsc::Receiver<(PeerId, VecDeque<Bytes>)>,
}

impl RouterRecv for Inbound {
    fn recv(&mut self) -> BoxFuture<'_, Result<(PeerId, VecDeque<Bytes>), BusError>> {
        async move {
            loop {
                let (peer, frames) = self.rx.recv().await.ok_or(BusError::Closed)?;
                // Nothing more is read from a peer once it is cut.
                if !self.router.was_cut(&peer) {
                    return Ok((peer, frames));
                }
            }
        }
        .boxed()
    }
}

struct Outbound(Arc<Router>);

impl Outbound {
    /// Takes the peer's id off `routed` and finds the peer.
    fn peer(&self, routed: &mut VecDeque<Bytes>) -> Result<Peer, BusError> {
        let peer = routed.pop_front().ok_or(BusError::FrameCount {
            expected: 2,
            got: 0,
        })?;
        if routed.is_empty() {
            return Err(BusError::FrameCount {
                expected: 2,
                got: 1,
            });
        }
        lock(&self.0.peers)
            .get(&peer)
            .cloned()
            .ok_or(BusError::PeerGone)
    }
}

impl RouterSend for Outbound {
    fn try_send_routed(&self, mut routed: VecDeque<Bytes>) -> Result<(), BusError> {
        let Peer { tx, bytes } = self.peer(&mut routed)?;
        let n = size(&routed);
        let waiting = bytes.load(Ordering::Relaxed);
        let full = BusError::PeerQueueFull {
            messages: self.0.caps.queue_messages,
            bytes: waiting,
        };
        // One message always fits an empty queue.
        if waiting > 0 && waiting.saturating_add(n) > self.0.caps.queue_bytes {
            return Err(full);
        }
        // Counted before it is queued, so the reader never takes away
        // bytes that were not added yet.
        bytes.fetch_add(n, Ordering::Relaxed);
        match tx.try_send(routed) {
            Ok(()) => Ok(()),
            Err(e) => {
                bytes.fetch_sub(n, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(full),
                    mpsc::error::TrySendError::Closed(_) => Err(BusError::PeerGone),
                }
            }
        }
    }

    fn send_routed(&self, mut routed: VecDeque<Bytes>) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            let Peer { tx, bytes } = self.peer(&mut routed)?;
            let n = size(&routed);
            bytes.fetch_add(n, Ordering::Relaxed);
            tx.send(routed).await.map_err(|_| {
                bytes.fetch_sub(n, Ordering::Relaxed);
                BusError::PeerGone
            })
        }
        .boxed()
    }

    fn disconnect(&self, peer: &PeerId, _linger: Duration) {
        // What is queued stays readable by the peer: the linger is "all of it".
        self.0.drop_peer(peer, true);
    }
}

struct Monitor(mpsc::Receiver<PeerEvent>);

impl PeerMonitor for Monitor {
    fn next(&mut self) -> BoxFuture<'_, Option<PeerEvent>> {
        self.0.recv().boxed()
    }
}

struct DealerIn {
    rx: mpsc::Receiver<VecDeque<Bytes>>,
    bytes: Arc<AtomicUsize>,
    _link: Arc<Link>,
}

impl DealerRecv for DealerIn {
    fn recv(&mut self) -> BoxFuture<'_, Result<(Bytes, VecDeque<Bytes>), BusError>> {
        async move {
            let mut frames = self.rx.recv().await.ok_or(BusError::Closed)?;
            self.bytes.fetch_sub(size(&frames), Ordering::Relaxed);
            let head = frames.pop_front().ok_or(BusError::FrameCount {
                expected: 1,
                got: 0,
            })?;
            Ok((head, frames))
        }
        .boxed()
    }
}

struct DealerOut {
    inbox: mpsc::Sender<(PeerId, VecDeque<Bytes>)>,
    link: Arc<Link>,
}

impl DealerSend for DealerOut {
    fn send(&mut self, frames: Vec<Bytes>) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            let router = self.link.router.upgrade().ok_or(BusError::Closed)?;
            let peer = self.link.peer.clone();
            if !router.has(&peer) {
                return Err(BusError::Closed);
            }
            let frames = VecDeque::from(frames);
            let caps = router.caps;
            if frames.iter().any(|f| f.len() > caps.max_frame) || size(&frames) > caps.max_message {
                // As the real transport does: the peer is cut at the header.
                router.drop_peer(&peer, true);
                return Ok(());
            }
            drop(router);
            self.inbox
                .send((peer, frames))
                .await
                .map_err(|_| BusError::Closed)
        }
        .boxed()
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
