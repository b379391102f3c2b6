//! The TCP endpoint for external plugins: Iglu's own accept loop in front
//! of the ROUTER.
//!
//! `zeromq` 0.7 cannot face an untrusted network by itself (no frame-size
//! cap — it reserves a claimed length before reading it —, no handshake
//! deadline). So the host never lets it listen on TCP: this guard accepts
//! each connection into a small budget for strangers (see [`budget`]),
//! enforces the frame-size cap (see [`zmtp`]) on every byte the client
//! sends, and forwards the bytes to the ROUTER's local ipc socket. It reads
//! the host's first answer on the way back: a REJECT ends the connection
//! at once, a WELCOME moves it to the admitted plugins' slots; a connection
//! not admitted within the handshake deadline is cut, whatever it sends.
//! Cutting a connection closes its ipc side, which the ROUTER sees as that
//! one peer disconnecting.

pub mod budget;
pub mod watchdog;
pub mod zmtp;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iglu_bus::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

use crate::conduct::Conduct;
use crate::config::TcpConfig;
use crate::shared::Shared;
use budget::{Budget, Slot};
use watchdog::Activity;
use zmtp::Inspector;

/// Bytes read from a client at a time.
const CHUNK: usize = 16 * 1024;
/// The host's WELCOME and REJECT are far smaller than this.
const MAX_ANSWER: usize = 64 * 1024;

/// Limits one connection lives under.
#[derive(Clone, Copy)]
struct Limits {
    max_frame: u64,
    hello_deadline: Duration,
    idle: Duration,
}

/// Log lines about strangers share one budget: they come by the thousand.
type StrangerLog = Arc<Mutex<Conduct>>;

/// Accepts connections until the host shuts down.
pub async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    config: TcpConfig,
    router_socket: PathBuf,
) {
    let budget = Budget::new(
        config.max_pending,
        config.max_pending_per_address,
        config.max_connections,
    );
    let timing = shared.config.timing();
    let limits = Limits {
        max_frame: shared.config.transport_frame_cap() as u64,
        hello_deadline: Duration::from_millis(config.handshake_timeout_ms),
        // A live plugin speaks every interval; twice the liveness timeout of
        // silence means the peer is gone (a network cut sends no FIN).
        idle: (timing.timeout() * 2).max(Duration::from_millis(config.handshake_timeout_ms)),
    };
    let log: StrangerLog = Arc::default();
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
        let slot = match budget.admit_pending(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                let verdict = lock(&log).offend(Instant::now());
                if verdict.log {
                    tracing::warn!(%peer, reason = %refusal, suppressed = verdict.suppressed, "closing a new TCP connection");
                }
                drop(stream);
                continue;
            }
        };
        let socket = router_socket.clone();
        let shutdown = shared.shutdown.clone();
        let clock = shared.clock.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let (reason, admitted) = tokio::select! {
                r = serve(stream, &socket, limits, &clock, &slot) => r,
                _ = slot.evicted() => ("cut: a newer connection took its place before it sent a HELLO".to_owned(), false),
                _ = shutdown.cancelled() => ("host shutting down".to_owned(), true),
            };
            // An admitted plugin's connection is worth a line each time; a
            // stranger's only within the shared budget.
            if admitted {
                tracing::info!(%peer, %reason, "TCP connection closed");
            } else {
                let verdict = lock(&log).offend(Instant::now());
                if verdict.log {
                    tracing::warn!(%peer, %reason, suppressed = verdict.suppressed, "TCP connection closed before admission");
                }
            }
            drop(slot);
        });
    }
}

fn lock(log: &StrangerLog) -> std::sync::MutexGuard<'_, Conduct> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the host's first message on a connection said.
enum Answer {
    Welcome,
    Reject(String),
    Other,
}

fn read_answer(body: &[u8]) -> Answer {
    match iglu_bus::decode(body, MAX_ANSWER) {
        Ok(Message::Welcome(_)) => Answer::Welcome,
        Ok(Message::Reject(r)) => Answer::Reject(format!("{}: {}", r.code, r.message)),
        _ => Answer::Other,
    }
}

/// Proxies one connection; returns why it ended and whether it was admitted.
async fn serve(
    tcp: TcpStream,
    router_socket: &PathBuf,
    limits: Limits,
    clock: &tokio::runtime::Handle,
    slot: &Slot,
) -> (String, bool) {
    let _ = tcp.set_nodelay(true);
    let ipc = match UnixStream::connect(router_socket).await {
        Ok(s) => s,
        Err(e) => return (format!("cannot reach the ROUTER: {e}"), false),
    };
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (mut ipc_read, mut ipc_write) = ipc.into_split();
    let activity = Activity::new();
    let admitted = std::sync::atomic::AtomicBool::new(false);
    let down = async {
        // The host is trusted, but its first answer decides this
        // connection's fate: read it off the stream on its way out.
        let mut inspector = Inspector::capturing(u64::MAX, MAX_ANSWER);
        let mut buf = vec![0u8; CHUNK];
        let mut decided = false;
        loop {
            let n = match ipc_read.read(&mut buf).await {
                Ok(0) => return "the host closed the connection".to_owned(),
                Ok(n) => n,
                Err(e) => return format!("reading from the host failed: {e}"),
            };
            let verdict = if decided {
                None
            } else {
                if inspector.feed(&buf[..n]).is_err() {
                    return "the host's stream did not parse (a bug)".to_owned();
                }
                match inspector.message_frames {
                    0 => None,
                    _ => {
                        decided = true;
                        Some(
                            inspector
                                .first_message
                                .as_deref()
                                .map_or(Answer::Other, read_answer),
                        )
                    }
                }
            };
            if let Err(e) = tcp_write.write_all(&buf[..n]).await {
                return format!("sending to the client failed: {e}");
            }
            match verdict {
                Some(Answer::Reject(why)) => {
                    let _ = tcp_write.shutdown().await;
                    return format!("handshake rejected ({why})");
                }
                Some(Answer::Welcome) => {
                    if let Err(refusal) = slot.promote() {
                        return format!("cut: {refusal}");
                    }
                    admitted.store(true, std::sync::atomic::Ordering::Relaxed);
                    activity.admitted();
                }
                Some(Answer::Other) => {
                    return "the host's first message was neither WELCOME nor REJECT".to_owned()
                }
                None => {}
            }
        }
    };
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
                return format!("cut: protocol violation: {v}");
            }
            if inspector.message_frames > 0 {
                slot.greeted();
            }
            if let Err(e) = ipc_write.write_all(&buf[..n]).await {
                return format!("forwarding to the host failed: {e}");
            }
        }
    };
    let reason = tokio::select! {
        r = up => r,
        r = down => r,
        Ok(why) = overdue => format!("cut: {why}"),
    };
    (reason, admitted.load(std::sync::atomic::Ordering::Relaxed))
}
