use crate::async_rt;
use crate::codec::{FramedIo, Message, ZmqFramedRead};
use crate::fair_queue::QueueInner;
use crate::util::PeerIdentity;
use crate::write_queue::{message_bytes, write_message_queue};
use crate::{
    MultiPeerBackend, SocketBackend, SocketEvent, SocketOptions, SocketType, ZmqError, ZmqResult,
};

use async_trait::async_trait;
use crossbeam_queue::SegQueue;
use futures::channel::{mpsc, oneshot};
use futures::SinkExt;
use parking_lot::Mutex;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Sender for notifying reconnection tasks when a peer disconnects.
pub(crate) type DisconnectNotifier = mpsc::Sender<PeerIdentity>;
pub(crate) const PEER_SEND_QUEUE_CAPACITY: usize = 100_000;

/// Iglu patch: one sender per peer, shared, never cloned per send. A
/// `futures` channel gives every `Sender` clone a slot of its own beyond the
/// capacity, so cloning one for each send (as the unpatched code did on its
/// waiting path) made the queue unbounded. A send that waits for room holds
/// this peer's lock alone (asynchronously), never the peer map.
pub(crate) type SharedSender = Arc<futures::lock::Mutex<mpsc::Sender<Message>>>;

pub(crate) struct Peer {
    pub(crate) send_queue: SharedSender,
    /// Iglu patch: bytes in `send_queue` and not yet flushed to the
    /// connection, so a peer that stops reading has a bound in bytes too.
    pub(crate) queued_bytes: Arc<AtomicUsize>,
    /// Iglu patch: dropping it stops the peer's writer task, even one
    /// blocked on a connection the peer no longer reads, which closes it.
    pub(crate) stop_writer: Option<oneshot::Sender<()>>,
}

/// Iglu patch: why a send that must not wait did not happen.
#[derive(Debug)]
pub enum TrySendError {
    /// No such peer (it left, or never was).
    NotFound,
    /// The peer's send queue is at its bound in messages or bytes.
    Full { messages: usize, bytes: usize },
}

#[derive(Clone)]
struct SinglePeer {
    peer_id: PeerIdentity,
    send_queue: SharedSender,
    queued_bytes: Arc<AtomicUsize>,
}

enum CachedSend {
    Sent,
    Full {
        peer_id: PeerIdentity,
        send_queue: SharedSender,
        queued_bytes: Arc<AtomicUsize>,
        message: Message,
    },
    Disconnected {
        peer_id: PeerIdentity,
        error: mpsc::SendError,
    },
    Miss(Message),
}

enum SendResolution {
    Sent,
    Miss(Message),
}

pub(crate) struct GenericSocketBackend {
    /// Iglu patch: a plain map under a short lock instead of `scc::HashMap`.
    /// Its entry guards were held across the await of a send to a full
    /// queue, and `peer_disconnected` (synchronous, on a runtime thread)
    /// then waited for that entry with `remove_sync`: with the sending task
    /// suspended on the same thread, the thread never woke again. This lock
    /// is never held across an await, so no wait on it can outlast one
    /// map operation.
    pub(crate) peers: Mutex<HashMap<PeerIdentity, Peer>>,
    fair_queue_inner: Option<Arc<Mutex<QueueInner<ZmqFramedRead, PeerIdentity>>>>,
    pub(crate) round_robin: SegQueue<PeerIdentity>,
    socket_type: SocketType,
    socket_options: Arc<SocketOptions>,
    pub(crate) socket_monitor: Mutex<Option<mpsc::Sender<SocketEvent>>>,
    single_peer: Mutex<Option<SinglePeer>>,
    peer_count: AtomicUsize,
    /// Notifiers for reconnection tasks - keyed by `peer_id`
    disconnect_notifiers: Mutex<HashMap<PeerIdentity, DisconnectNotifier>>,
}

impl GenericSocketBackend {
    pub(crate) fn with_options(
        fair_queue_inner: Option<Arc<Mutex<QueueInner<ZmqFramedRead, PeerIdentity>>>>,
        socket_type: SocketType,
        options: SocketOptions,
    ) -> Self {
        Self {
            peers: Mutex::new(HashMap::new()),
            fair_queue_inner,
            round_robin: SegQueue::new(),
            socket_type,
            socket_options: Arc::new(options),
            socket_monitor: Mutex::new(None),
            single_peer: Mutex::new(None),
            peer_count: AtomicUsize::new(0),
            disconnect_notifiers: Mutex::new(HashMap::new()),
        }
    }

    /// Register a notifier to be called when a peer disconnects.
    ///
    /// Used by reconnection tasks to be notified when they should attempt reconnection.
    #[allow(dead_code)] // Will be used when reconnection is added to more socket types
    pub(crate) fn register_disconnect_notifier(
        &self,
        peer_id: PeerIdentity,
        notifier: DisconnectNotifier,
    ) {
        self.disconnect_notifiers.lock().insert(peer_id, notifier);
    }

    /// Unregister a disconnect notifier for a peer.
    #[allow(dead_code)] // Will be used when reconnection is added to more socket types
    pub(crate) fn unregister_disconnect_notifier(&self, peer_id: &PeerIdentity) {
        self.disconnect_notifiers.lock().remove(peer_id);
    }

    pub(crate) async fn send_round_robin(&self, message: Message) -> ZmqResult<()> {
        let message = match self
            .finish_cached_send(self.try_send_cached_single_peer(message, None))
            .await?
        {
            SendResolution::Sent => return Ok(()),
            SendResolution::Miss(message) => message,
        };

        // In normal scenario this will always be only 1 iteration
        // There can be special case when peer has disconnected and his id is still in
        // RR queue This happens because SegQueue don't have an api to delete
        // items from queue. So in such case we'll just pop item and skip it if
        // we don't have a matching peer in peers map
        loop {
            let next_peer_id = match self.round_robin.pop() {
                Some(peer) => peer,
                None => match message {
                    Message::Greeting(_) => {
                        return Err(ZmqError::Socket("Sending greeting is not supported"))
                    }
                    Message::Command(_) => {
                        return Err(ZmqError::Socket("Sending commands is not supported"))
                    }
                    Message::Message(m) => {
                        return Err(ZmqError::ReturnToSender {
                            reason: "Not connected to peers. Unable to send messages",
                            message: m,
                        })
                    }
                },
            };
            // The sender is cloned out: no lock is held while it waits.
            let Some((send_queue, queued_bytes)) = self.peer_sender(&next_peer_id) else {
                continue;
            };
            let send_result = send_to_peer_queue(&send_queue, &queued_bytes, message).await;
            return match send_result {
                Ok(()) => {
                    self.round_robin.push(next_peer_id);
                    Ok(())
                }
                Err(e) => {
                    self.peer_disconnected(&next_peer_id);
                    Err(e.into())
                }
            };
        }
    }

    pub(crate) async fn send_to_peer(
        &self,
        peer_id: &PeerIdentity,
        message: Message,
    ) -> ZmqResult<()> {
        let message = match self
            .finish_cached_send(self.try_send_cached_single_peer(message, Some(peer_id)))
            .await?
        {
            SendResolution::Sent => return Ok(()),
            SendResolution::Miss(message) => message,
        };

        // The sender is cloned out: no lock is held while it waits.
        let Some((send_queue, queued_bytes)) = self.peer_sender(peer_id) else {
            return Err(ZmqError::Other("Destination client not found by identity"));
        };
        let send_result = send_to_peer_queue(&send_queue, &queued_bytes, message).await;
        match send_result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.peer_disconnected(peer_id);
                Err(e.into())
            }
        }
    }

    fn peer_sender(
        &self,
        peer_id: &PeerIdentity,
    ) -> Option<(SharedSender, Arc<AtomicUsize>)> {
        self.peers
            .lock()
            .get(peer_id)
            .map(|p| (p.send_queue.clone(), p.queued_bytes.clone()))
    }

    /// Iglu patch: queues `message` for `peer_id` without ever waiting. A
    /// peer whose queue is at its bound (in messages, or in bytes when
    /// `SocketOptions::peer_queue_bytes` is set) is reported `Full` and the
    /// message is not queued, as libzmq's ROUTER does at its high-water
    /// mark; what to do about that peer is the caller's decision.
    pub(crate) fn try_send_to_peer(
        &self,
        peer_id: &PeerIdentity,
        message: Message,
    ) -> Result<(), TrySendError> {
        let size = message_bytes(&message);
        let byte_cap = self.socket_options.peer_queue_bytes;
        let disconnected = {
            let mut peers = self.peers.lock();
            let Some(peer) = peers.get_mut(peer_id) else {
                return Err(TrySendError::NotFound);
            };
            let queued = peer.queued_bytes.load(Ordering::Acquire);
            // One message always fits an empty queue, however big.
            if let Some(cap) = byte_cap {
                if queued > 0 && queued.saturating_add(size) > cap {
                    return Err(TrySendError::Full {
                        messages: self.socket_options.peer_queue_messages,
                        bytes: queued,
                    });
                }
            }
            // Held by a send waiting for room: the queue is full.
            let Some(mut sender) = peer.send_queue.try_lock() else {
                return Err(TrySendError::Full {
                    messages: self.socket_options.peer_queue_messages,
                    bytes: queued,
                });
            };
            peer.queued_bytes.fetch_add(size, Ordering::AcqRel);
            match sender.try_send(message) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    peer.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                    if error.is_full() {
                        return Err(TrySendError::Full {
                            messages: self.socket_options.peer_queue_messages,
                            bytes: queued,
                        });
                    }
                    true
                }
            }
        };
        if disconnected {
            self.peer_disconnected(peer_id);
        }
        Err(TrySendError::NotFound)
    }

    /// Iglu patch: closes one peer's connection. Nothing more is read from
    /// it at once; what is already queued for it may still be written for
    /// up to `linger` (a REJECT before the hang-up), then the writer is
    /// stopped even if the peer does not read. The monitor reports the
    /// peer `Disconnected` as for any other loss.
    pub(crate) fn disconnect_peer(&self, peer_id: &PeerIdentity, linger: std::time::Duration) {
        let removed = self.peers.lock().remove(peer_id);
        let Some(mut peer) = removed else {
            return;
        };
        let stop_writer = peer.stop_writer.take();
        // Dropping the queue's sender lets the writer drain and finish.
        drop(peer);
        if let Some(stop) = stop_writer {
            if linger.is_zero() {
                drop(stop);
            } else {
                async_rt::task::spawn(async move {
                    async_rt::task::sleep(linger).await;
                    drop(stop);
                });
            }
        }
        self.forget_peer(peer_id, true);
    }

    fn try_send_cached_single_peer(
        &self,
        message: Message,
        expected_peer_id: Option<&PeerIdentity>,
    ) -> CachedSend {
        if self.peer_count.load(Ordering::Acquire) != 1 {
            return CachedSend::Miss(message);
        }

        let mut single_peer = self.single_peer.lock();
        let Some(single_peer) = single_peer.as_mut() else {
            return CachedSend::Miss(message);
        };

        if let Some(expected_peer_id) = expected_peer_id {
            if single_peer.peer_id != *expected_peer_id {
                return CachedSend::Miss(message);
            }
        }

        let size = message_bytes(&message);
        let Some(mut sender) = single_peer.send_queue.try_lock() else {
            // A send waits for room already: wait behind it.
            return CachedSend::Full {
                peer_id: single_peer.peer_id.clone(),
                send_queue: single_peer.send_queue.clone(),
                queued_bytes: single_peer.queued_bytes.clone(),
                message,
            };
        };
        single_peer.queued_bytes.fetch_add(size, Ordering::AcqRel);
        match sender.try_send(message) {
            Ok(()) => CachedSend::Sent,
            Err(error) => {
                single_peer.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                if error.is_full() {
                    CachedSend::Full {
                        peer_id: single_peer.peer_id.clone(),
                        send_queue: single_peer.send_queue.clone(),
                        queued_bytes: single_peer.queued_bytes.clone(),
                        message: error.into_inner(),
                    }
                } else {
                    CachedSend::Disconnected {
                        peer_id: single_peer.peer_id.clone(),
                        error: error.into_send_error(),
                    }
                }
            }
        }
    }

    async fn finish_cached_send(&self, cached_send: CachedSend) -> ZmqResult<SendResolution> {
        match cached_send {
            CachedSend::Sent => Ok(SendResolution::Sent),
            CachedSend::Full {
                peer_id,
                send_queue,
                queued_bytes,
                message,
            } => match send_to_peer_queue(&send_queue, &queued_bytes, message).await {
                Ok(()) => Ok(SendResolution::Sent),
                Err(e) => {
                    self.peer_disconnected(&peer_id);
                    Err(e.into())
                }
            },
            CachedSend::Disconnected { peer_id, error } => {
                self.peer_disconnected(&peer_id);
                Err(error.into())
            }
            CachedSend::Miss(message) => Ok(SendResolution::Miss(message)),
        }
    }

    fn refresh_single_peer_cache(&self) {
        let peers = self.peers.lock();
        let peer_count = peers.len();
        self.peer_count.store(peer_count, Ordering::Release);

        let mut single_peer = self.single_peer.lock();
        if peer_count == 1 {
            *single_peer = peers.iter().next().map(|(peer_id, peer)| SinglePeer {
                peer_id: peer_id.clone(),
                send_queue: peer.send_queue.clone(),
                queued_bytes: peer.queued_bytes.clone(),
            });
        } else {
            *single_peer = None;
        }
    }

    /// Everything but the map entry: the single-peer cache, the fair queue,
    /// the monitor event (when the peer was known) and reconnect notifiers.
    fn forget_peer(&self, peer_id: &PeerIdentity, peer_removed: bool) {
        self.refresh_single_peer_cache();
        match &self.fair_queue_inner {
            None => {}
            Some(inner) => {
                inner.lock().remove(peer_id);
            }
        };

        if peer_removed {
            if let Some(monitor) = self.monitor().lock().as_mut() {
                let _ = monitor.try_send(SocketEvent::Disconnected(peer_id.clone()));
            }
        }

        // Notify reconnection task if registered
        if let Some(mut notifier) = self.disconnect_notifiers.lock().remove(peer_id) {
            // Use try_send to avoid blocking - if channel is full, the reconnect task
            // will eventually notice the peer is gone
            let _ = notifier.try_send(peer_id.clone());
        }
    }
}

/// Queues `message`, waiting while the queue is full; counts its bytes
/// until the writer has flushed them (Iglu patch). A send cancelled while
/// it waits takes its bytes back off the count (the message is lost, as
/// upstream documents for a cancelled send).
async fn send_to_peer_queue(
    send_queue: &SharedSender,
    queued_bytes: &AtomicUsize,
    message: Message,
) -> Result<(), mpsc::SendError> {
    struct Counted<'a> {
        bytes: &'a AtomicUsize,
        size: usize,
        queued: bool,
    }
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            if !self.queued {
                self.bytes.fetch_sub(self.size, Ordering::AcqRel);
            }
        }
    }
    let size = message_bytes(&message);
    let mut send_queue = send_queue.lock().await;
    queued_bytes.fetch_add(size, Ordering::AcqRel);
    let mut counted = Counted {
        bytes: queued_bytes,
        size,
        queued: false,
    };
    let result = match send_queue.try_send(message) {
        Ok(()) => Ok(()),
        Err(error) if error.is_full() => send_queue.send(error.into_inner()).await,
        Err(error) => Err(error.into_send_error()),
    };
    counted.queued = result.is_ok();
    result
}

impl SocketBackend for GenericSocketBackend {
    fn socket_type(&self) -> SocketType {
        self.socket_type
    }

    fn socket_options(&self) -> &Arc<SocketOptions> {
        &self.socket_options
    }

    fn shutdown(&self) {
        self.peers.lock().clear();
        self.single_peer.lock().take();
        self.peer_count.store(0, Ordering::Release);
        // Clear fair_queue streams to ensure TCP connections are closed
        // even when reconnect tasks still hold Arc references to the backend
        if let Some(inner) = &self.fair_queue_inner {
            inner.lock().clear();
        }
    }

    fn monitor(&self) -> &Mutex<Option<mpsc::Sender<SocketEvent>>> {
        &self.socket_monitor
    }
}

#[async_trait]
impl MultiPeerBackend for GenericSocketBackend {
    async fn peer_connected(self: Arc<Self>, peer_id: &PeerIdentity, io: FramedIo) {
        let (recv_queue, send_queue) = io.into_parts();
        // A channel with one sender holds its buffer plus one.
        let (queue_sender, queue_receiver) =
            mpsc::channel(self.socket_options.peer_queue_messages.saturating_sub(1));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let (stop_writer, writer_stopped) = oneshot::channel::<()>();
        let replaced = self.peers.lock().insert(
            peer_id.clone(),
            Peer {
                send_queue: Arc::new(futures::lock::Mutex::new(queue_sender)),
                queued_bytes: queued_bytes.clone(),
                stop_writer: Some(stop_writer),
            },
        );
        // A second connection with the same identity replaces the first;
        // the first's writer stops with its entry.
        drop(replaced);
        self.refresh_single_peer_cache();
        let writer_backend = Arc::downgrade(&self);
        let writer_peer_id = peer_id.clone();
        async_rt::task::spawn(async move {
            let write = write_message_queue(queue_receiver, send_queue, queued_bytes);
            futures::pin_mut!(write);
            // Stopped (its peer was disconnected or replaced): the
            // connection's write half is dropped here, whatever it waited for.
            let result = match futures::future::select(write, writer_stopped).await {
                futures::future::Either::Left((result, _)) => result,
                futures::future::Either::Right(_) => return,
            };
            if let Err(error) = result {
                log::debug!(
                    "Error sending message to peer {:?}: {:?}",
                    writer_peer_id,
                    error
                );
                if let Some(backend) = writer_backend.upgrade() {
                    backend.peer_disconnected(&writer_peer_id);
                }
            }
        });
        self.round_robin.push(peer_id.clone());
        match &self.fair_queue_inner {
            None => {}
            Some(inner) => {
                inner.lock().insert(peer_id.clone(), recv_queue);
            }
        };
    }

    fn peer_disconnected(&self, peer_id: &PeerIdentity) {
        // Taken out under the lock, dropped after it (stopping its writer).
        let removed = self.peers.lock().remove(peer_id);
        let peer_removed = removed.is_some();
        drop(removed);
        self.forget_peer(peer_id, peer_removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ZmqMessage;

    use bytes::Bytes;
    use futures::StreamExt;

    fn message_with_frame(frame: &'static [u8]) -> Message {
        Message::Message(ZmqMessage::from(Bytes::from_static(frame)))
    }

    fn first_frame(message: Message) -> Bytes {
        let Message::Message(message) = message else {
            panic!("unexpected queued message type");
        };
        message.get(0).expect("message frame").clone()
    }

    fn test_peer(send_queue: mpsc::Sender<Message>) -> Peer {
        Peer {
            send_queue: Arc::new(futures::lock::Mutex::new(send_queue)),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            stop_writer: None,
        }
    }

    async fn insert_peer(
        backend: &GenericSocketBackend,
        peer_id: PeerIdentity,
    ) -> (PeerIdentity, mpsc::Receiver<Message>) {
        let (send_queue, recv_queue) = mpsc::channel(8);
        backend.peers.lock().insert(peer_id.clone(), test_peer(send_queue));
        backend.refresh_single_peer_cache();
        backend.round_robin.push(peer_id.clone());
        (peer_id, recv_queue)
    }

    #[crate::async_rt::test]
    async fn test_send_round_robin_uses_single_peer_cache() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let (_peer_id, mut recv_queue) =
            insert_peer(&backend, "peer-a".parse().expect("peer id")).await;

        assert_eq!(1, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.single_peer.lock().is_some());

        backend
            .send_round_robin(message_with_frame(b"payload"))
            .await
            .expect("send through single peer cache");

        let queued = recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"payload"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_to_peer_uses_single_peer_cache_for_matching_identity() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (peer_id, mut recv_queue) =
            insert_peer(&backend, "router-peer".parse().expect("peer id")).await;

        assert_eq!(
            Some(peer_id.clone()),
            backend
                .single_peer
                .lock()
                .as_ref()
                .map(|peer| peer.peer_id.clone())
        );

        backend
            .send_to_peer(&peer_id, message_with_frame(b"routed"))
            .await
            .expect("send to cached peer");

        let queued = recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"routed"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_to_peer_routes_by_identity_with_multiple_peers() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (_first_peer_id, mut first_recv_queue) =
            insert_peer(&backend, "router-peer-a".parse().expect("peer id")).await;
        let (second_peer_id, mut second_recv_queue) =
            insert_peer(&backend, "router-peer-b".parse().expect("peer id")).await;

        assert_eq!(2, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.single_peer.lock().is_none());

        backend
            .send_to_peer(&second_peer_id, message_with_frame(b"routed-b"))
            .await
            .expect("send to selected peer");

        assert!(first_recv_queue.try_recv().is_err());
        let queued = second_recv_queue.next().await.expect("queued message");
        assert_eq!(Bytes::from_static(b"routed-b"), first_frame(queued));
    }

    #[crate::async_rt::test]
    async fn test_send_round_robin_waits_when_cached_sender_is_full() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let peer_id: PeerIdentity = "full-peer".parse().expect("peer id");
        let (mut send_queue, mut recv_queue) = mpsc::channel(1);
        send_queue
            .try_send(message_with_frame(b"prefilled"))
            .expect("prefill peer queue");
        backend.peers.lock().insert(peer_id.clone(), test_peer(send_queue));
        backend.refresh_single_peer_cache();
        backend.round_robin.push(peer_id.clone());

        let send_future = backend.send_round_robin(message_with_frame(b"after-full"));
        let recv_future = async {
            let first = recv_queue.next().await.expect("prefilled message");
            let second = recv_queue
                .next()
                .await
                .expect("message sent after capacity frees");
            (first, second)
        };

        let (send_result, (first, second)) = futures::join!(send_future, recv_future);

        send_result.expect("send waits for cached sender capacity");
        assert_eq!(Bytes::from_static(b"prefilled"), first_frame(first));
        assert_eq!(Bytes::from_static(b"after-full"), first_frame(second));
    }

    #[crate::async_rt::test]
    async fn test_single_peer_cache_is_cleared_when_cached_sender_is_disconnected() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::PUSH, SocketOptions::default());
        let peer_id: PeerIdentity = "closed-peer".parse().expect("peer id");
        let (send_queue, recv_queue) = mpsc::channel(1);
        drop(recv_queue);
        backend.peers.lock().insert(peer_id.clone(), test_peer(send_queue));
        backend.refresh_single_peer_cache();
        backend.round_robin.push(peer_id.clone());

        let error = backend
            .send_round_robin(message_with_frame(b"lost"))
            .await
            .expect_err("closed cached sender should fail");

        assert!(matches!(error, ZmqError::BufferFull(_)));
        assert_eq!(0, backend.peer_count.load(Ordering::Acquire));
        assert!(backend.single_peer.lock().is_none());
        assert!(backend.peers.lock().get(&peer_id).is_none());
    }

    #[crate::async_rt::test]
    async fn test_peer_disconnected_emits_one_monitor_event() {
        let backend =
            GenericSocketBackend::with_options(None, SocketType::ROUTER, SocketOptions::default());
        let (monitor_sender, mut monitor_receiver) = mpsc::channel(8);
        backend.socket_monitor.lock().replace(monitor_sender);
        let (peer_id, _recv_queue) =
            insert_peer(&backend, "monitor-peer".parse().expect("peer id")).await;

        backend.peer_disconnected(&peer_id);

        let event = monitor_receiver.next().await.expect("disconnect event");
        assert!(matches!(
            event,
            SocketEvent::Disconnected(disconnected_peer) if disconnected_peer == peer_id
        ));

        backend.peer_disconnected(&peer_id);
        assert!(monitor_receiver.try_recv().is_err());
    }
}
