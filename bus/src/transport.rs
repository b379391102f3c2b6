//! Frames over ZeroMQ: the host's ROUTER and a plugin's DEALER.
//!
//! Everything above this module deals in `(peer, frame)` pairs and
//! [`PeerEvent`]s; only this module names `zeromq`. One protocol message is
//! one frame (the ROUTER adds the peer's routing id in front).

use bytes::Bytes;
use futures::StreamExt;
use zeromq::{
    DealerRecvHalf, DealerSendHalf, DealerSocket, RouterRecvHalf, RouterSendHalf, RouterSocket,
    Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqMessage,
};

use crate::error::BusError;

/// A peer's routing id on the host's ROUTER: random, assigned by ZeroMQ,
/// meaningful only once the handshake has bound it to a session.
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

/// The host side: a bound ROUTER split into its halves, plus its monitor.
pub struct RouterEndpoint {
    /// Receives frames from every peer.
    pub inbound: RouterInbound,
    /// Sends frames to one peer; clone it freely.
    pub outbound: RouterOutbound,
    /// Connection events, as fast as the kernel reports them.
    pub events: PeerEvents,
}

impl RouterEndpoint {
    /// Binds a ROUTER on `endpoint` (`ipc://path` or `tcp://addr:port`)
    /// that reads frames of any size a peer claims.
    pub async fn bind(endpoint: &str) -> Result<RouterEndpoint, BusError> {
        Self::bind_with(endpoint, SocketOptions::default()).await
    }

    /// Like [`RouterEndpoint::bind`], with the bounds of [`RouterCaps`]
    /// on what each peer may send and have waiting for it.
    pub async fn bind_capped(endpoint: &str, caps: RouterCaps) -> Result<RouterEndpoint, BusError> {
        let mut options = SocketOptions::default();
        options.max_frame_size(caps.max_frame);
        options.max_message_size(caps.max_message);
        options.peer_queue(caps.queue_messages, caps.queue_bytes);
        Self::bind_with(endpoint, options).await
    }

    async fn bind_with(endpoint: &str, options: SocketOptions) -> Result<RouterEndpoint, BusError> {
        let mut socket = RouterSocket::with_options(options);
        // The monitor must be taken before split(): it lives on the backend.
        let monitor = socket.monitor();
        socket.bind(endpoint).await?;
        let (send, recv) = socket.split();
        Ok(RouterEndpoint {
            inbound: RouterInbound(recv),
            outbound: RouterOutbound(send),
            events: PeerEvents(monitor),
        })
    }
}

/// Receiving half of the host's ROUTER.
pub struct RouterInbound(RouterRecvHalf);

impl RouterInbound {
    /// The next message: its peer and its body frames (one protocol
    /// message per frame: a plugin may batch several). Cancel-safe.
    pub async fn recv(&mut self) -> Result<(PeerId, std::collections::VecDeque<Bytes>), BusError> {
        let message = self.0.recv().await?;
        let mut frames = message.into_vecdeque();
        let Some(peer) = frames.pop_front() else {
            return Err(BusError::FrameCount {
                expected: 2,
                got: 0,
            });
        };
        Ok((peer, frames))
    }
}

/// Sending half of the host's ROUTER.
#[derive(Clone)]
pub struct RouterOutbound(RouterSendHalf);

impl RouterOutbound {
    /// Sends one frame to one peer. Waits only when that peer's socket queue is
    /// full; not cancel-safe (a cancelled send may lose the frame).
    pub async fn send(&mut self, peer: &PeerId, frame: Bytes) -> Result<(), BusError> {
        // Built at its final size: `ZmqMessage::from` then `push_front`
        // reallocates, on the path of every call.
        let mut both = std::collections::VecDeque::with_capacity(2);
        both.push_back(peer.clone());
        both.push_back(frame);
        self.send_routed(both).await
    }

    /// Sends a message of several frames (an EVENT batch: header, body,
    /// header, body...). `frames` must not be empty.
    pub async fn send_frames(&mut self, peer: &PeerId, frames: Vec<Bytes>) -> Result<(), BusError> {
        let mut all = std::collections::VecDeque::with_capacity(frames.len() + 1);
        all.push_back(peer.clone());
        all.extend(frames);
        self.send_routed(all).await
    }

    /// Queues one frame for one peer without waiting: a peer whose socket
    /// queue is at its bound (it stopped reading) gets nothing and
    /// [`BusError::PeerQueueFull`] comes back, as libzmq's ROUTER drops at
    /// its high-water mark. What to do with that peer is the caller's call.
    pub fn try_send(&self, peer: &PeerId, frame: Bytes) -> Result<(), BusError> {
        let mut both = std::collections::VecDeque::with_capacity(2);
        both.push_back(peer.clone());
        both.push_back(frame);
        self.try_send_routed(both)
    }

    /// [`RouterOutbound::try_send`] for a message of several frames.
    pub fn try_send_frames(&self, peer: &PeerId, frames: Vec<Bytes>) -> Result<(), BusError> {
        let mut all = std::collections::VecDeque::with_capacity(frames.len() + 1);
        all.push_back(peer.clone());
        all.extend(frames);
        self.try_send_routed(all)
    }

    fn try_send_routed(&self, frames: std::collections::VecDeque<Bytes>) -> Result<(), BusError> {
        self.0
            .try_send(message_of(frames, 2)?)
            .map_err(|e| match e {
                zeromq::TrySendError::NotFound => BusError::PeerGone,
                zeromq::TrySendError::Full { messages, bytes } => {
                    BusError::PeerQueueFull { messages, bytes }
                }
            })
    }

    /// Closes one peer's connection: nothing more is read from it, and what
    /// waits for it is written for at most `linger` (a REJECT before the
    /// hang-up). [`PeerEvents`] then reports it disconnected.
    pub fn disconnect(&self, peer: &PeerId, linger: std::time::Duration) {
        self.0.disconnect(peer.clone(), linger);
    }

    /// Sends `frames`, the peer's routing id first.
    async fn send_routed(
        &mut self,
        frames: std::collections::VecDeque<Bytes>,
    ) -> Result<(), BusError> {
        self.0.send(message_of(frames, 2)?).await?;
        Ok(())
    }
}

/// One ZeroMQ message of `frames`; refused when there are none (a message
/// needs at least `expected`).
fn message_of<F>(frames: F, expected: usize) -> Result<ZmqMessage, BusError>
where
    ZmqMessage: TryFrom<F>,
{
    ZmqMessage::try_from(frames).map_err(|_| BusError::FrameCount { expected, got: 0 })
}

/// The ROUTER's connection events.
pub struct PeerEvents(futures::channel::mpsc::Receiver<SocketEvent>);

impl PeerEvents {
    /// The next event that matters to Iglu; `None` once the socket is gone.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<PeerEvent> {
        loop {
            match self.0.next().await? {
                SocketEvent::Disconnected(peer) => {
                    return Some(PeerEvent::Disconnected(Bytes::from(peer)))
                }
                _ => continue,
            }
        }
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
    /// Connects a DEALER to `endpoint`. Retries on "connection refused" for
    /// a while (zeromq's own backoff); the caller bounds the wait.
    pub async fn connect(endpoint: &str) -> Result<DealerConnection, BusError> {
        let mut socket = DealerSocket::new();
        socket.connect(endpoint).await?;
        let (send, recv) = socket.split();
        Ok(DealerConnection {
            inbound: DealerInbound(recv),
            outbound: DealerOutbound(send),
        })
    }
}

/// Receiving half of a plugin's DEALER.
pub struct DealerInbound(DealerRecvHalf);

impl DealerInbound {
    /// The next message from the host: its first frame, and the frames
    /// after it (only EVENT has more: its body, then further header/body
    /// pairs of a batch). Cancel-safe.
    pub async fn recv(&mut self) -> Result<(Bytes, std::collections::VecDeque<Bytes>), BusError> {
        let message = self.0.recv().await?;
        let mut frames = message.into_vecdeque();
        match frames.pop_front() {
            Some(head) => Ok((head, frames)),
            None => Err(BusError::FrameCount {
                expected: 1,
                got: 0,
            }),
        }
    }
}

/// What a plugin's DEALER receives, as a stream: one ZeroMQ message at a
/// time, split as [`DealerInbound::recv`] splits it.
pub type DealerStream = futures::stream::BoxStream<
    'static,
    Result<(Bytes, std::collections::VecDeque<Bytes>), BusError>,
>;

impl DealerInbound {
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

/// Sending half of a plugin's DEALER.
pub struct DealerOutbound(DealerSendHalf);

impl DealerOutbound {
    /// Sends several frames as one message (a batch of protocol messages,
    /// one per frame). Not cancel-safe.
    pub async fn send_frames(&mut self, frames: Vec<Bytes>) -> Result<(), BusError> {
        self.0.send(message_of(frames, 1)?).await?;
        Ok(())
    }

    /// Sends one frame to the host. Not cancel-safe.
    pub async fn send(&mut self, frame: Bytes) -> Result<(), BusError> {
        self.0.send(ZmqMessage::from(frame)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use zeromq::{Endpoint, Host};

    /// zeromq is vendored with its endpoint parser rewritten without regex
    /// (vendor/zeromq/IGLU.md): these are the forms Iglu's configs, launch
    /// environments and containers use, and the mistakes people make in them.
    #[test]
    fn zeromq_endpoints_parse_as_before_the_patch() {
        let ok = [
            (
                "ipc:///run/iglu/host.sock",
                Endpoint::Ipc(Some(PathBuf::from("/run/iglu/host.sock"))),
            ),
            (
                "tcp://127.0.0.1:5555",
                Endpoint::Tcp(Host::Ipv4([127, 0, 0, 1].into()), 5555),
            ),
            (
                "tcp://[::1]:0",
                Endpoint::Tcp(Host::Ipv6(std::net::Ipv6Addr::LOCALHOST), 0),
            ),
            (
                "tcp://host:65535",
                Endpoint::Tcp(Host::Domain("host".into()), 65535),
            ),
            (
                "tcp://*:7000",
                Endpoint::Tcp(Host::Domain("*".into()), 7000),
            ),
        ];
        for (text, want) in ok {
            assert_eq!(text.parse::<Endpoint>().ok(), Some(want), "{text}");
        }
        for bad in [
            "",
            "tcp:/127.0.0.1:5555",
            "://127.0.0.1:5555",
            "TCP://127.0.0.1:5555",
            "tcp://",
            "ipc://",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:",
            "tcp://:5555",
            "tcp://127.0.0.1:65536",
            "tcp://127.0.0.1:5x",
            "tcp://127.0.0.1:5555\n",
            "ipc:///tmp/a\nb",
            "udp://127.0.0.1:5555",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} parsed");
        }
    }

    /// The freeze of issue 12: a send waiting on a peer's full queue held
    /// that peer's entry in the ROUTER's peer map, and the peer's disconnect
    /// then waited for the entry synchronously on the only runtime thread.
    /// Here a DEALER that never reads has its queue filled by a waiting
    /// `send`, and then goes away: the runtime must go on (a timer fires,
    /// another peer is served), and a non-waiting send reports the full queue.
    #[test]
    fn a_full_peer_that_disconnects_does_not_stop_the_runtime() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let dir = std::env::temp_dir().join(format!("iglu-full-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("dir");
                let endpoint = format!("ipc://{}", dir.join("r.sock").display());
                let caps = super::RouterCaps {
                    max_frame: 1 << 20,
                    max_message: 1 << 20,
                    queue_messages: 64,
                    queue_bytes: 64 << 10,
                };
                let mut router = super::RouterEndpoint::bind_capped(&endpoint, caps)
                    .await
                    .expect("bind");
                let mut deaf = super::DealerConnection::connect(&endpoint)
                    .await
                    .expect("connect");
                deaf.outbound
                    .send(bytes::Bytes::from_static(b"hi"))
                    .await
                    .expect("send");
                let (peer, _) = router.inbound.recv().await.expect("recv");
                let frame = bytes::Bytes::from(vec![7u8; 16 << 10]);
                // Fill the kernel buffers and the queue until a send waits.
                let mut out = router.outbound.clone();
                let (peer2, frame2) = (peer.clone(), frame.clone());
                let filler = tokio::spawn(async move {
                    loop {
                        if out.send(&peer2, frame2.clone()).await.is_err() {
                            return;
                        }
                    }
                });
                let mut full = false;
                for _ in 0..2000 {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    if let Err(crate::BusError::PeerQueueFull { .. }) =
                        router.outbound.try_send(&peer, frame.clone())
                    {
                        full = true;
                        break;
                    }
                }
                assert!(full, "the deaf peer's queue never filled");
                // The peer leaves while a send waits on its full queue.
                drop(deaf);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), filler).await;
                // Another peer is served as before.
                let mut other = super::DealerConnection::connect(&endpoint)
                    .await
                    .expect("connect");
                other
                    .outbound
                    .send(bytes::Bytes::from_static(b"me"))
                    .await
                    .expect("send");
                let (peer, _) = router.inbound.recv().await.expect("recv");
                router
                    .outbound
                    .try_send(&peer, bytes::Bytes::from_static(b"answer"))
                    .expect("queued");
                let (answer, _) = other.inbound.recv().await.expect("answer");
                assert_eq!(answer.as_ref(), b"answer");
                let _ = std::fs::remove_dir_all(&dir);
            });
            let _ = done_tx.send(());
        });
        let finished = done_rx.recv_timeout(std::time::Duration::from_secs(60));
        assert!(
            finished.is_ok(),
            "the runtime froze after a peer with a full queue disconnected"
        );
        worker.join().expect("the runtime thread panicked");
    }

    /// zeromq 0.7 panicked (`todo!`) on a wildcard ipc path; the vendored
    /// copy refuses it, so a bad endpoint in a config is an error to show.
    #[tokio::test]
    async fn a_wildcard_ipc_endpoint_is_an_error_not_a_panic() {
        assert!(super::RouterEndpoint::bind("ipc://*").await.is_err());
    }
}
