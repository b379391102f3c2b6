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

    /// Like [`RouterEndpoint::bind`], but a peer is disconnected at the
    /// header of a frame that claims more than `max_frame` bytes, or that
    /// would take one multipart message past `max_message`, before anything
    /// is allocated for it. Uncapped, 73 bytes claiming 2^50 make the
    /// process abort on a failed allocation.
    pub async fn bind_capped(
        endpoint: &str,
        max_frame: usize,
        max_message: usize,
    ) -> Result<RouterEndpoint, BusError> {
        let mut options = SocketOptions::default();
        options.max_frame_size(max_frame);
        options.max_message_size(max_message);
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

    /// zeromq 0.7 panicked (`todo!`) on a wildcard ipc path; the vendored
    /// copy refuses it, so a bad endpoint in a config is an error to show.
    #[tokio::test]
    async fn a_wildcard_ipc_endpoint_is_an_error_not_a_panic() {
        assert!(super::RouterEndpoint::bind("ipc://*").await.is_err());
    }
}
