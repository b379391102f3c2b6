//! The host's end of the control socket.
//!
//! Clients are the CLI and scripts of the host's own user, but a buggy
//! script must not lock out `iglu status`: 64 idle connections used to shut
//! it out for as long as they were held, and 64 requests without a newline
//! pushed the host from 7 MiB to over 600 MiB. So: a connection must send
//! its first byte within `FIRST_BYTE_TIMEOUT`; while more than
//! `MAX_READING` connections are still sending their request, the oldest
//! is dropped for the newcomer; every byte buffered past a request's first
//! 64 KiB counts against one budget for all requests (`Budgets::bytes`), and
//! arguments are transcoded from the text, never built into a value tree
//! (16 times the text for an array of numbers); and calls and publishes
//! take slots of their own, apart from the reserve for status and
//! lifecycle requests, so a full house of slow calls never blocks `status`
//! or `stop`.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{packages, Request, Response};
use crate::call;
use crate::error::HostError;
use crate::json_msgpack;
use crate::plugin::handle::Command;
use crate::shared::Shared;

/// Calls and publishes served at once; more are answered "busy".
const CALL_SLOTS: usize = 64;
/// Status and lifecycle requests served at once, apart from the call slots.
const ADMIN_SLOTS: usize = 16;
/// Connections still sending their request; past it the oldest is dropped.
const MAX_READING: usize = 64;
/// How long a new connection may take to send its first byte. The CLI
/// sends its whole request at once, in well under a millisecond.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client may take to send its whole request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to read its answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;
/// The first bytes of every request are free of the shared byte budget, so
/// that a few clients holding it with huge requests never turn `status`
/// away: at most `MAX_READING` x this is read outside it.
const FREE_BYTES: usize = 64 * 1024;

/// Binds the socket, readable and writable by this user only.
pub fn bind(path: &Path) -> Result<UnixListener, HostError> {
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What every connection draws on.
struct Budgets {
    calls: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    /// Bytes of requests buffered, all connections together: each request's
    /// own cap times a few, so one big request fits but 64 do not.
    bytes: Arc<Semaphore>,
    bytes_total: usize,
    /// Largest single request.
    request_max: usize,
    reading: Readers,
    /// What every request must carry (see `cookie`).
    cookie: String,
}

/// Connections still reading their request, oldest first.
#[derive(Default)]
struct Readers {
    inner: Mutex<(u64, VecDeque<(u64, CancellationToken)>)>,
}

impl Readers {
    /// Registers a new reader; drops the oldest if `MAX_READING` are reading.
    fn enter(&self) -> (u64, CancellationToken) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (next, queue) = &mut *guard;
        if queue.len() >= MAX_READING {
            if let Some((_, oldest)) = queue.pop_front() {
                oldest.cancel();
            }
        }
        *next += 1;
        let token = CancellationToken::new();
        queue.push_back((*next, token.clone()));
        (*next, token)
    }

    fn leave(&self, id: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.retain(|(i, _)| *i != id);
    }
}

/// Serves until the host shuts down; every request must carry `cookie`.
pub async fn serve(shared: Arc<Shared>, listener: UnixListener, cookie: String) {
    // Requests carry call arguments as JSON, which is larger than their
    // MessagePack; four times the frame cap bounds one request.
    let request_max = shared.config.max_message_bytes.saturating_mul(4) + 4096;
    let bytes_total = request_max.saturating_mul(2).max(64 << 20);
    let budgets = Arc::new(Budgets {
        calls: Arc::new(Semaphore::new(CALL_SLOTS)),
        admin: Arc::new(Semaphore::new(ADMIN_SLOTS)),
        bytes: Arc::new(Semaphore::new(bytes_total)),
        bytes_total,
        request_max,
        reading: Readers::default(),
        cookie,
    });
    let uid = nix::unistd::getuid().as_raw();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            a = listener.accept() => a,
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid => {}
            other => {
                tracing::warn!(peer = ?other.map(|c| c.uid()).ok(), "refused a control connection from another user");
                continue;
            }
        }
        let shared = shared.clone();
        let budgets = budgets.clone();
        tasks.spawn(async move { serve_one(&shared, &budgets, stream).await });
    }
    tasks.abort_all();
}

/// Why a request could not be read.
enum Unread {
    Answer(Response),
    /// Dropped for a newer connection, or the client left: nothing to say.
    Silent,
}

async fn serve_one(shared: &Arc<Shared>, budgets: &Budgets, stream: UnixStream) {
    let (mut read, write) = stream.into_split();
    let (id, evicted) = budgets.reading.enter();
    let request = tokio::select! {
        r = read_request(&mut read, budgets) => r,
        _ = evicted.cancelled() => Err(Unread::Answer(Response::err(
            "busy",
            format!("dropped: {MAX_READING} control connections were still sending their requests"),
        ))),
    };
    budgets.reading.leave(id);
    let (line, _bytes) = match request {
        Ok(r) => r,
        Err(Unread::Answer(response)) => return reply(write, response).await,
        Err(Unread::Silent) => return,
    };
    let parsed = parse(&line).and_then(|request| {
        if super::cookie::carried(&line, &budgets.cookie) {
            Ok(request)
        } else {
            Err(Response::err(
                "unauthorized",
                format!(
                    "the request does not carry this host's cookie (the file {} beside the socket)",
                    super::cookie::FILE
                ),
            ))
        }
    });
    // The request's text is not needed once parsed (its arguments are in it).
    drop(line);
    let response = match parsed {
        Ok(request) => {
            let slots = match request {
                Request::Call(_) | Request::Publish(_) | Request::Kv(_) => &budgets.calls,
                _ => &budgets.admin,
            };
            match slots.clone().try_acquire_owned() {
                Ok(_slot) if matches!(request, Request::Call(_)) => {
                    // A caller that goes away (its process killed mid-call)
                    // cancels its call: dropping it sends CANCEL to the plugin.
                    tokio::select! {
                        r = handle(shared, request) => r,
                        _ = gone(&mut read) => {
                            tracing::debug!("a control client left during its call: cancelled");
                            return;
                        }
                    }
                }
                Ok(_slot) => handle(shared, request).await,
                Err(_) => Response::err("busy", "too many control requests of this kind at once"),
            }
        }
        Err(response) => response,
    };
    reply(write, response).await;
}

/// Resolves when the client closes its end (or it fails). A client keeps
/// its connection open until it has the answer; what it sends meanwhile
/// is read and ignored.
async fn gone(read: &mut tokio::net::unix::OwnedReadHalf) {
    let mut sink = [0u8; 512];
    while let Ok(n) = read.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

/// Reads one request line within the deadlines and the byte budget; the
/// permit holds its bytes until the request has been answered.
async fn read_request(
    read: &mut tokio::net::unix::OwnedReadHalf,
    budgets: &Budgets,
) -> Result<(Vec<u8>, OwnedSemaphorePermit), Unread> {
    let mut line: Vec<u8> = Vec::new();
    let mut held = budgets
        .bytes
        .clone()
        .try_acquire_many_owned(0)
        .map_err(|_| Unread::Silent)?;
    let mut chunk = vec![0u8; CHUNK];
    let started = tokio::time::Instant::now();
    loop {
        let deadline = if line.is_empty() {
            started + FIRST_BYTE_TIMEOUT
        } else {
            started + READ_TIMEOUT
        };
        let n = match tokio::time::timeout_at(deadline, read.read(&mut chunk)).await {
            Err(_) if line.is_empty() => {
                return Err(Unread::Answer(Response::err(
                    "timeout",
                    format!("no request within {} ms", FIRST_BYTE_TIMEOUT.as_millis()),
                )))
            }
            Err(_) => {
                return Err(Unread::Answer(Response::err(
                    "timeout",
                    format!("the request took more than {} s", READ_TIMEOUT.as_secs()),
                )))
            }
            Ok(Err(_)) | Ok(Ok(0)) if line.is_empty() => return Err(Unread::Silent),
            Ok(Err(e)) => {
                return Err(Unread::Answer(Response::err(
                    "bad_request",
                    format!("could not read the request: {e}"),
                )))
            }
            // End of input ends the request, newline or not.
            Ok(Ok(0)) => return Ok((line, held)),
            Ok(Ok(n)) => n,
        };
        let piece = &chunk[..n];
        let (piece, done) = match piece.iter().position(|&b| b == b'\n') {
            Some(i) => (&piece[..i], true),
            None => (piece, false),
        };
        if line.len() + piece.len() > budgets.request_max {
            return Err(Unread::Answer(Response::err(
                "too_large",
                format!("a request may be at most {} bytes", budgets.request_max),
            )));
        }
        let charge = (line.len() + piece.len()).saturating_sub(FREE_BYTES)
            - line.len().saturating_sub(FREE_BYTES);
        let Ok(more) = budgets
            .bytes
            .clone()
            .try_acquire_many_owned(u32::try_from(charge).unwrap_or(u32::MAX))
        else {
            return Err(Unread::Answer(Response::err(
                "busy",
                format!(
                    "control requests already hold {} MiB being read; try again",
                    budgets.bytes_total >> 20
                ),
            )));
        };
        held.merge(more);
        line.extend_from_slice(piece);
        if done {
            return Ok((line, held));
        }
    }
}

fn parse(line: &[u8]) -> Result<Request, Response> {
    let text = std::str::from_utf8(line)
        .map_err(|e| Response::err("bad_request", format!("the request is not UTF-8: {e}")))?;
    json_msgpack::check_integers(text)
        .map_err(|e| Response::err("bad_arguments", e.to_string()))?;
    Request::from_json(text)
        .map_err(|e| Response::err("bad_request", format!("not a valid request: {e}")))
}

async fn handle(shared: &Arc<Shared>, request: Request) -> Response {
    match request {
        Request::Status => match serde_json::to_value(shared.status()) {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err("internal", e.to_string()),
        },
        Request::Call(super::CallRequest {
            plugin,
            method,
            args,
            timeout_ms,
            wait,
        }) => {
            // The JSON text is dropped here, before the call is awaited.
            let args = match json_msgpack::text_to_msgpack({ args }.get()) {
                Ok(a) => Bytes::from(a),
                Err(e) => return Response::err("bad_arguments", e.to_string()),
            };
            let deadline =
                Duration::from_millis(timeout_ms.unwrap_or(shared.config.call_timeout_ms));
            let options = crate::call::options::CallOptions::new(deadline)
                .wait_for_running(wait.unwrap_or(shared.config.call_wait_for_running));
            match call::call(shared, &plugin, &method, args, options).await {
                Ok(result) => match json_msgpack::to_json(&result) {
                    Ok(json) => Response::ok(json),
                    Err(e) => Response::err(
                        "bad_message",
                        format!("the plugin's result is not valid MessagePack: {e}"),
                    ),
                },
                Err(e) => Response::err(e.code().as_str(), e.to_string()),
            }
        }
        Request::Publish(super::PublishRequest {
            topic,
            payload,
            retain,
        }) => {
            let payload = match json_msgpack::text_to_msgpack(payload.get()) {
                Ok(p) => Bytes::from(p),
                Err(e) => return Response::err("bad_arguments", e.to_string()),
            };
            match shared
                .events
                .publish(crate::events::Source::Host, &topic, payload, retain)
            {
                Ok(()) => Response::ok(serde_json::json!(format!("published on {topic}"))),
                Err(e) => Response::err(e.code.as_str(), e.message),
            }
        }
        Request::Start(p) => lifecycle(shared, &p.plugin, Command::Start, "starting").await,
        Request::Stop(p) => lifecycle(shared, &p.plugin, Command::Stop, "stopped").await,
        Request::Restart(p) => lifecycle(shared, &p.plugin, Command::Restart, "restarting").await,
        Request::Kv(kv) => super::kv::handle(shared, kv).await,
        Request::Plan(r) => packages::plan(shared, r).await,
        Request::Install(r) => packages::install(shared, r).await,
        Request::Upgrade(r) => packages::upgrade(shared, r).await,
        Request::Uninstall(r) => packages::uninstall(shared, r).await,
        Request::Plugins => packages::plugins(shared),
        Request::Settings(r) => packages::settings(shared, r).await,
        Request::Logs(r) => super::logs::logs(shared, r),
        Request::LogLevel(r) => super::logs::log_level(shared, r).await,
    }
}

async fn lifecycle(
    shared: &Shared,
    plugin: &str,
    make: fn(tokio::sync::oneshot::Sender<()>) -> Command,
    done: &str,
) -> Response {
    match shared.handles.command(plugin, make).await {
        Ok(()) => Response::ok(serde_json::json!(format!("{plugin}: {done}"))),
        Err(crate::error::HostError::UnknownPlugin(p)) => {
            Response::err("unknown_plugin", format!("no plugin named {p:?}"))
        }
        Err(e) => Response::err("internal", e.to_string()),
    }
}

async fn reply(mut write: tokio::net::unix::OwnedWriteHalf, response: Response) {
    let Ok(mut text) = serde_json::to_vec(&response) else {
        return;
    };
    text.push(b'\n');
    // A client that does not read its answer must not hold a slot forever.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&text)).await;
}
