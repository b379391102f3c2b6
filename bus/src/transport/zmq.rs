//! The real transport: ZeroMQ (the vendored `zeromq` crate) over `ipc://`
//! or `tcp://`. The only module of Iglu that names `zeromq`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use zeromq::{
    DealerRecvHalf, DealerSendHalf, DealerSocket, RouterRecvHalf, RouterSendHalf, RouterSocket,
    Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqMessage,
};

use super::{
    DealerConnection, DealerRecv, DealerSend, PeerEvent, PeerId, PeerMonitor, RouterCaps,
    RouterEndpoint, RouterRecv, RouterSend,
};
use crate::error::BusError;

/// Binds a ROUTER on `endpoint`; with `caps`, bounded as they say,
/// otherwise with zeromq's defaults.
pub(super) async fn bind(endpoint: &str, caps: RouterCaps) -> Result<RouterEndpoint, BusError> {
    let mut options = SocketOptions::default();
    if caps != RouterCaps::UNCAPPED {
        options.max_frame_size(caps.max_frame);
        options.max_message_size(caps.max_message);
        options.peer_queue(caps.queue_messages, caps.queue_bytes);
    }
    let mut socket = RouterSocket::with_options(options);
    // The monitor must be taken before split(): it lives on the backend.
    let monitor = socket.monitor();
    socket.bind(endpoint).await?;
    let (send, recv) = socket.split();
    Ok(RouterEndpoint::from_parts(
        Box::new(Inbound(recv)),
        Arc::new(Outbound(send)),
        Box::new(Monitor(monitor)),
    ))
}

/// Connects a DEALER to `endpoint`.
pub(super) async fn connect(endpoint: &str) -> Result<DealerConnection, BusError> {
    let mut socket = DealerSocket::new();
    socket.connect(endpoint).await?;
    let (send, recv) = socket.split();
    Ok(DealerConnection::from_parts(
        Box::new(DealerIn(recv)),
        Box::new(DealerOut(send)),
    ))
}

struct Inbound(RouterRecvHalf);

impl RouterRecv for Inbound {
    fn recv(&mut self) -> BoxFuture<'_, Result<(PeerId, VecDeque<Bytes>), BusError>> {
        async move {
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
        .boxed()
    }
}

struct Outbound(RouterSendHalf);

impl RouterSend for Outbound {
    fn try_send_routed(&self, routed: VecDeque<Bytes>) -> Result<(), BusError> {
        self.0
            .try_send(message_of(routed, 2)?)
            .map_err(|e| match e {
                zeromq::TrySendError::NotFound => BusError::PeerGone,
                zeromq::TrySendError::Full { messages, bytes } => {
                    BusError::PeerQueueFull { messages, bytes }
                }
            })
    }

    fn send_routed(&self, routed: VecDeque<Bytes>) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            let message = message_of(routed, 2)?;
            // The send half is a cheap handle; sending needs it mutable.
            let mut half = self.0.clone();
            half.send(message).await?;
            Ok(())
        }
        .boxed()
    }

    fn disconnect(&self, peer: &PeerId, linger: Duration) {
        self.0.disconnect(peer.clone(), linger);
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

struct Monitor(futures::channel::mpsc::Receiver<SocketEvent>);

impl PeerMonitor for Monitor {
    fn next(&mut self) -> BoxFuture<'_, Option<PeerEvent>> {
        async move {
            loop {
                if let SocketEvent::Disconnected(peer) = self.0.next().await? {
                    return Some(PeerEvent::Disconnected(Bytes::from(peer)));
                }
            }
        }
        .boxed()
    }
}

struct DealerIn(DealerRecvHalf);

impl DealerRecv for DealerIn {
    fn recv(&mut self) -> BoxFuture<'_, Result<(Bytes, VecDeque<Bytes>), BusError>> {
        async move {
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
        .boxed()
    }
}

struct DealerOut(DealerSendHalf);

impl DealerSend for DealerOut {
    fn send(&mut self, frames: Vec<Bytes>) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            self.0.send(message_of(frames, 1)?).await?;
            Ok(())
        }
        .boxed()
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
                let out = router.outbound.clone();
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
