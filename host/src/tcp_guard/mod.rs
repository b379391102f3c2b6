//! The TCP endpoint for external plugins: Iglu's own accept loop in front
//! of the ROUTER.
//!
//! `zeromq` 0.7 cannot face an untrusted network by itself (no frame-size
//! cap — it reserves a claimed length before reading it —, no handshake
//! deadline, no way to drop one peer). So the host never lets it listen on
//! TCP: this guard accepts each connection, enforces a connection limit, a
//! deadline for the plugin's HELLO, an idle timeout and the frame-size cap
//! (see [`zmtp`]) on every byte the client sends, and forwards the bytes to
//! the ROUTER's local ipc socket. Cutting a connection closes its ipc side,
//! which the ROUTER sees as that one peer disconnecting.

pub mod watchdog;
pub mod zmtp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Semaphore;

use crate::config::TcpConfig;
use crate::host::Shared;
use watchdog::Activity;
use zmtp::Inspector;

/// Bytes read from a client at a time.
const CHUNK: usize = 16 * 1024;

/// Limits one connection lives under.
#[derive(Clone, Copy)]
struct Limits {
    max_frame: u64,
    hello_deadline: Duration,
    idle: Duration,
}

/// Accepts connections until the host shuts down.
pub async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    config: TcpConfig,
    router_socket: PathBuf,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let timing = shared.config.timing();
    let limits = Limits {
        max_frame: shared.config.transport_frame_cap() as u64,
        hello_deadline: Duration::from_millis(config.handshake_timeout_ms),
        // A live plugin speaks every interval; twice the liveness timeout of
        // silence means the peer is gone (a network cut sends no FIN).
        idle: (timing.timeout() * 2).max(Duration::from_millis(config.handshake_timeout_ms)),
    };
    let mut refused_logged_at: Option<Instant> = None;
    let mut refused = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            // One line per second at most: a flood must not flood the log too.
            if refused_logged_at.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                tracing::warn!(%peer, refused, limit = config.max_connections, "connection limit reached: closing new connections");
                refused_logged_at = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let socket = router_socket.clone();
        let shutdown = shared.shutdown.clone();
        let clock = shared.clock.clone();
        tokio::spawn(async move {
            let reason = tokio::select! {
                r = serve(stream, peer, &socket, limits, &clock) => r,
                _ = shutdown.cancelled() => "host shutting down".to_owned(),
            };
            tracing::info!(%peer, %reason, "TCP connection closed");
            drop(slot);
        });
    }
}

/// Proxies one connection; returns why it ended.
async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    router_socket: &PathBuf,
    limits: Limits,
    clock: &tokio::runtime::Handle,
) -> String {
    let _ = tcp.set_nodelay(true);
    let ipc = match UnixStream::connect(router_socket).await {
        Ok(s) => s,
        Err(e) => return format!("cannot reach the ROUTER: {e}"),
    };
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (mut ipc_read, mut ipc_write) = ipc.into_split();
    let down = async {
        match tokio::io::copy(&mut ipc_read, &mut tcp_write).await {
            Ok(_) => "the host closed the connection".to_owned(),
            Err(e) => format!("sending to the client failed: {e}"),
        }
    };
    let activity = Activity::new();
    let overdue = watchdog::watch(clock, activity.clone(), limits.hello_deadline, limits.idle);
    let up = async {
        let mut inspector = Inspector::new(limits.max_frame);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match tcp_read.read(&mut buf).await {
                Ok(0) => return "the client closed the connection".to_owned(),
                Ok(n) => n,
                Err(e) => return format!("reading from the client failed: {e}"),
            };
            activity.read();
            if let Err(v) = inspector.feed(&buf[..n]) {
                tracing::warn!(%peer, violation = %v, "cut: protocol violation");
                return format!("cut: {v}");
            }
            if inspector.message_frames > 0 {
                activity.greeted();
            }
            if let Err(e) = ipc_write.write_all(&buf[..n]).await {
                return format!("forwarding to the host failed: {e}");
            }
        }
    };
    tokio::select! {
        r = up => r,
        r = down => r,
        Ok(why) = overdue => {
            tracing::warn!(%peer, reason = %why, "cut: deadline passed");
            why
        }
    }
}
