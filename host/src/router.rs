//! The ROUTER loop: every frame from every plugin passes through here.
//!
//! A frame from a peer with a live session is dispatched by kind; a frame
//! from any other peer must be a HELLO, or it is dropped and logged. Nothing
//! here awaits on one plugin's behalf except a REJECT to a new peer, so one
//! plugin cannot stall the others. Peer input never panics the loop: every
//! failure is a logged reason and, where a session exists, an ERROR.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::transport::{PeerEvent, PeerEvents, PeerId, RouterInbound};
use iglu_bus::{BusError, ErrorCode, ErrorReply, FoldMap, Message, RejectCode};

use crate::admission::{admit, reject};
use crate::host::Shared;
use crate::host_api::{self, HostApi};
use crate::session::{Loss, Session};

/// Runs until the host shuts down.
pub async fn run(shared: Arc<Shared>, mut inbound: RouterInbound, mut events: PeerEvents) {
    // Only peers that passed the handshake go in, so no stranger picks keys.
    let mut peers: FoldMap<PeerId, Arc<Session>> = FoldMap::default();
    // Made once, not per message: each new one joins the token's waiter
    // list and leaves it again, on the path of every reply.
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            received = inbound.recv() => match received {
                Ok((peer, frames)) => {
                    if frames.is_empty() {
                        tracing::warn!("dropped a message with no body frame");
                    }
                    // A plugin may batch several messages, one per frame.
                    for frame in frames {
                        on_frame(&shared, &mut peers, peer.clone(), frame).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "receiving from the plugin socket failed");
                    // Do not spin if the socket is broken; the shutdown branch still works.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(event) = events.next() => match event {
                PeerEvent::Disconnected(peer) => {
                    if let Some(session) = peers.remove(&peer) {
                        session.close(Loss::Disconnected);
                    }
                }
            },
        }
    }
}

async fn on_frame(
    shared: &Shared,
    peers: &mut FoldMap<PeerId, Arc<Session>>,
    peer: PeerId,
    body: Bytes,
) {
    let live = match peers.get(&peer) {
        Some(s) if !s.is_closed() => Some(s.clone()),
        Some(_) => {
            peers.remove(&peer);
            None
        }
        None => None,
    };
    let decoded = iglu_bus::decode_shared(&body, shared.config.max_message_bytes);
    match (live, decoded) {
        (Some(session), Ok(message)) => {
            session.touch();
            on_message(shared, &session, message).await;
        }
        (Some(session), Err(e)) => {
            session.touch();
            tracing::warn!(plugin = %session.plugin_id, error = %e, "bad frame from plugin");
            let code = match e {
                BusError::TooLarge { .. } => ErrorCode::TooLarge,
                _ => ErrorCode::BadMessage,
            };
            send_error(&session, None, code, e.to_string()).await;
        }
        (None, Ok(Message::Hello(hello))) => {
            let plugin = hello.plugin_id.clone();
            match admit(shared, &peer, hello).await {
                Ok(session) => {
                    tracing::info!(plugin = %plugin, session = %session.id, "plugin connected");
                    peers.insert(peer, session);
                }
                Err(r) => {
                    tracing::warn!(plugin = %plugin, code = %r.code, reason = %r.message, "handshake rejected");
                    send_reject(shared, &peer, r).await;
                }
            }
        }
        (None, Ok(other)) => {
            tracing::warn!(
                kind = kind(&other),
                "dropped a message from a peer that has not completed the handshake"
            );
        }
        (None, Err(e)) => {
            tracing::warn!(error = %e, "undecodable first message from a new peer");
            let r = reject(
                RejectCode::MalformedHello,
                format!("the first message must be a HELLO: {e}"),
            );
            send_reject(shared, &peer, r).await;
        }
    }
}

async fn on_message(shared: &Shared, session: &Arc<Session>, message: Message) {
    match message {
        Message::Reply(r) => {
            if !session.resolve(r.id, Ok(r.result)) {
                tracing::debug!(plugin = %session.plugin_id, id = %r.id, "reply to a call nobody waits for (late or cancelled)");
            }
        }
        Message::Error(e) => match e.id {
            Some(id) => {
                session.resolve(id, Err(e.into_wire_error()));
            }
            None => {
                tracing::warn!(plugin = %session.plugin_id, code = %e.code, message = %e.message, "plugin reported a problem")
            }
        },
        Message::Call(call) => {
            let api = HostApi {
                shared,
                plugin: &session.plugin_id,
                protocol: session.version,
            };
            let answer = host_api::handle(&api, &call.method, &call.args);
            let message = match answer {
                Ok(result) => Message::Reply(iglu_bus::Reply {
                    id: call.id,
                    result,
                }),
                Err(e) => Message::Error(ErrorReply {
                    id: Some(call.id),
                    code: e.code,
                    message: e.message,
                }),
            };
            match iglu_bus::encode(&message) {
                Ok(frame) => {
                    if !session.send_bounded(frame).await {
                        tracing::warn!(plugin = %session.plugin_id, method = %call.method, "could not send the answer to a host call");
                    }
                }
                Err(e) => {
                    tracing::error!(plugin = %session.plugin_id, error = %e, "could not encode an answer")
                }
            }
        }
        // Host-API calls are answered inline, so there is never one to cancel.
        Message::Cancel(_) => {}
        Message::Heartbeat(_) => {}
        Message::Credit(c) => session.events.credit(session.id, c.events),
        Message::Goodbye(g) => {
            tracing::info!(plugin = %session.plugin_id, reason = %g.reason, "plugin said goodbye");
            session.close(Loss::Goodbye(g.reason));
        }
        other @ (Message::Hello(_)
        | Message::Welcome(_)
        | Message::Reject(_)
        | Message::Event(_)) => {
            let k = kind(&other);
            tracing::warn!(plugin = %session.plugin_id, kind = k, "message a plugin may not send");
            send_error(
                session,
                None,
                ErrorCode::BadMessage,
                format!("a plugin may not send {k} after the handshake"),
            )
            .await;
        }
    }
}

async fn send_error(
    session: &Session,
    id: Option<iglu_bus::CallId>,
    code: ErrorCode,
    message: String,
) {
    let frame = iglu_bus::encode(&Message::Error(ErrorReply { id, code, message }));
    if let Ok(frame) = frame {
        session.send_bounded(frame).await;
    }
}

async fn send_reject(shared: &Shared, peer: &PeerId, r: iglu_bus::Reject) {
    let Ok(frame) = iglu_bus::encode(&Message::Reject(r)) else {
        return;
    };
    let mut outbound = shared.outbound.clone();
    // A new peer's queue is empty, so this does not wait; bound it anyway.
    let sent = tokio::time::timeout(Duration::from_millis(100), outbound.send(peer, frame)).await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("could not deliver a REJECT (the peer left)");
    }
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello(_) => "HELLO",
        Message::Welcome(_) => "WELCOME",
        Message::Reject(_) => "REJECT",
        Message::Call(_) => "CALL",
        Message::Reply(_) => "REPLY",
        Message::Error(_) => "ERROR",
        Message::Cancel(_) => "CANCEL",
        Message::Heartbeat(_) => "HEARTBEAT",
        Message::Goodbye(_) => "GOODBYE",
        Message::Event(_) => "EVENT",
        Message::Credit(_) => "CREDIT",
    }
}
