//! The host's end of the control socket.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::{Request, Response};
use crate::error::HostError;
use crate::host::{self, Shared};
use crate::json_msgpack;
use crate::supervisor::Command;

/// Requests served at once; more are answered "busy".
const MAX_CLIENTS: usize = 64;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the socket, readable and writable by this user only.
pub fn bind(path: &Path) -> Result<UnixListener, HostError> {
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves until the host shuts down.
pub async fn serve(shared: Arc<Shared>, listener: UnixListener) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let uid = nix::unistd::getuid().as_raw();
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            a = listener.accept() => a,
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            reply(
                stream,
                Response::err("busy", "too many control requests at once"),
            )
            .await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_one(&shared, stream).await;
            drop(slot);
        });
    }
}

async fn serve_one(shared: &Shared, stream: UnixStream) {
    // Requests carry call arguments as JSON, which is larger than their
    // MessagePack; four times the frame cap bounds what we buffer.
    let limit = (shared.config.max_message_bytes as u64) * 4 + 4096;
    let (read, write) = stream.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(
        READ_TIMEOUT,
        BufReader::new(read.take(limit)).read_line(&mut line),
    )
    .await;
    let response = match read {
        Err(_) => Response::err("timeout", "no request within 10 s"),
        Ok(Err(e)) => Response::err("bad_request", format!("could not read the request: {e}")),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => handle(shared, request).await,
            Err(e) => Response::err("bad_request", format!("not a valid request: {e}")),
        },
    };
    reply_half(write, response).await;
}

async fn handle(shared: &Shared, request: Request) -> Response {
    match request {
        Request::Status => match serde_json::to_value(shared.registry.status()) {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err("internal", e.to_string()),
        },
        Request::Call {
            plugin,
            method,
            args,
            timeout_ms,
        } => {
            let args = match json_msgpack::to_msgpack(&args) {
                Ok(a) => Bytes::from(a),
                Err(e) => return Response::err("bad_arguments", e.to_string()),
            };
            let deadline =
                Duration::from_millis(timeout_ms.unwrap_or(shared.config.call_timeout_ms));
            match host::call(shared, &plugin, &method, args, deadline).await {
                Ok(result) => match json_msgpack::to_json(&result) {
                    Ok(json) => Response::ok(json),
                    Err(e) => Response::err(
                        "bad_message",
                        format!("the plugin's result is not valid MessagePack: {e}"),
                    ),
                },
                Err(e) => Response::err(e.code.as_str(), e.message),
            }
        }
        Request::Publish {
            topic,
            payload,
            retain,
        } => {
            let payload = match json_msgpack::to_msgpack(&payload) {
                Ok(p) => Bytes::from(p),
                Err(e) => return Response::err("bad_arguments", e.to_string()),
            };
            match crate::events::publish(
                shared,
                crate::events::Source::Host,
                &topic,
                payload,
                retain,
            ) {
                Ok(()) => Response::ok(serde_json::json!(format!("published on {topic}"))),
                Err(e) => Response::err(e.code.as_str(), e.message),
            }
        }
        Request::Start { plugin } => lifecycle(shared, &plugin, Command::Start, "starting").await,
        Request::Stop { plugin } => lifecycle(shared, &plugin, Command::Stop, "stopped").await,
        Request::Restart { plugin } => {
            lifecycle(shared, &plugin, Command::Restart, "restarting").await
        }
    }
}

async fn lifecycle(
    shared: &Shared,
    plugin: &str,
    make: fn(tokio::sync::oneshot::Sender<()>) -> Command,
    done: &str,
) -> Response {
    match host::command(shared, plugin, make).await {
        Ok(()) => Response::ok(serde_json::json!(format!("{plugin}: {done}"))),
        Err(crate::error::HostError::UnknownPlugin(p)) => {
            Response::err("unknown_plugin", format!("no plugin named {p:?}"))
        }
        Err(e) => Response::err("internal", e.to_string()),
    }
}

async fn reply(stream: UnixStream, response: Response) {
    let (_, write) = stream.into_split();
    reply_half(write, response).await;
}

async fn reply_half(mut write: tokio::net::unix::OwnedWriteHalf, response: Response) {
    let Ok(mut text) = serde_json::to_vec(&response) else {
        return;
    };
    text.push(b'\n');
    // A client that does not read its answer must not hold a slot forever.
    let _ = tokio::time::timeout(READ_TIMEOUT, write.write_all(&text)).await;
}
