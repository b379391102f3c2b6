//! The ROUTER loop: every frame from every plugin passes through here.
//!
//! A frame from a peer with a live session is dispatched by kind; a frame
//! from any other peer must be a HELLO, or it is dropped and logged, and a
//! peer that keeps sending them is cut. A REJECT is followed by a hang-up.
//! Nothing here awaits on one plugin's behalf (every send only queues, see
//! `Session::send`), so one plugin cannot stall the others. Peer input never
//! panics the loop: every failure is a logged reason (rate-limited per
//! source, see [`crate::conduct`]) and, where a session exists, an ERROR.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::transport::{PeerEvent, PeerEvents, PeerId, RouterInbound};
use iglu_bus::{BusError, ErrorCode, ErrorReply, FoldMap, Message, RejectCode};

pub mod admission;
mod forward;
pub mod host_api;
mod store_writes;

use admission::{admit, reject};
use host_api::HostApiScope;
use iglu_bus::host_api::HostApiInterface;

use crate::conduct::{Conduct, Verdict};
use crate::session::{Loss, Session};
use crate::shared::Shared;

/// How long a REJECT may take to reach its peer before the hang-up.
const REJECT_LINGER: Duration = Duration::from_millis(200);
/// Refused peers remembered until their disconnect is seen; past it the
/// record starts over (a flood of new peers must not grow the host's memory).
const REFUSED_REMEMBERED: usize = 4096;

/// Peers that have no session, and what they did.
#[derive(Default)]
struct Strangers {
    /// Peers that were sent a REJECT and are being hung up on: whatever
    /// else they had sent (a HELLO behind a stray message) is not read.
    refused: FoldMap<PeerId, ()>,
    /// One log budget for all of them: strangers come and go by the thousand.
    conduct: Conduct,
}

/// Runs until the host shuts down.
pub async fn run(shared: Arc<Shared>, mut inbound: RouterInbound, mut events: PeerEvents) {
    // Only peers that passed the handshake go in, so no stranger picks keys.
    let mut peers: FoldMap<PeerId, Arc<Session>> = FoldMap::default();
    let mut strangers = Strangers::default();
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
                        on_frame(&shared, &mut peers, &mut strangers, peer.clone(), frame);
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
                    strangers.refused.remove(&peer);
                    if let Some(session) = peers.remove(&peer) {
                        session.close(Loss::Disconnected);
                    }
                }
            },
        }
    }
}

fn on_frame(
    shared: &Arc<Shared>,
    peers: &mut FoldMap<PeerId, Arc<Session>>,
    strangers: &mut Strangers,
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
            on_message(shared, &session, message);
        }
        (Some(session), Err(e)) => {
            session.touch();
            let what = format!("bad frame from plugin: {e}");
            match (&e, iglu_bus::codec::peek_id(&body)) {
                // Its own call to the host: refused, for that call.
                (BusError::TooLarge { .. }, Some(iglu_bus::codec::Peeked::Call(id))) => {
                    misbehaved(&session, Some(id), ErrorCode::TooLarge, what)
                }
                // An answer too big to take: that call fails now, not at its deadline.
                (BusError::TooLarge { .. }, Some(iglu_bus::codec::Peeked::Answer(id))) => {
                    session.resolve(
                        id,
                        Err(iglu_bus::WireError::new(ErrorCode::TooLarge, what.clone())),
                    );
                    // The id is the host's call, not one of the plugin's: nil.
                    misbehaved(&session, None, ErrorCode::TooLarge, what)
                }
                (BusError::TooLarge { .. }, None) => {
                    misbehaved(&session, None, ErrorCode::TooLarge, what)
                }
                _ => misbehaved(&session, None, ErrorCode::BadMessage, what),
            }
        }
        (None, _) if strangers.refused.contains_key(&peer) => {}
        (None, Ok(Message::Hello(hello))) => {
            let plugin = hello.plugin_id.clone();
            match admit(shared, &peer, hello) {
                Ok(session) => {
                    tracing::info!(plugin = %plugin, session = %session.id, "plugin connected");
                    peers.insert(peer, session);
                }
                Err(r) => {
                    let verdict = strangers.conduct.offend(std::time::Instant::now());
                    if verdict.log {
                        tracing::warn!(plugin = %plugin, code = %r.code, reason = %r.message, suppressed = verdict.suppressed, "handshake rejected");
                    }
                    strangers.refuse(shared, &peer, r);
                }
            }
        }
        // A message of another kind first (a HEARTBEAT, a CALL): the peer
        // hears why, and is hung up on, like one whose first frame does
        // not decode. (A plugin whose session just ended is in the same
        // place: its session is over, and it must say HELLO again.)
        (None, Ok(other)) => {
            let k = kind(&other);
            let verdict = strangers.conduct.offend(std::time::Instant::now());
            if verdict.log {
                tracing::warn!(
                    kind = k,
                    suppressed = verdict.suppressed,
                    "refused a peer whose first message was not HELLO"
                );
            }
            let r = reject(
                RejectCode::MalformedHello,
                format!("the first message must be a HELLO, not a {k}"),
            );
            strangers.refuse(shared, &peer, r);
        }
        (None, Err(e)) => {
            let verdict = strangers.conduct.offend(std::time::Instant::now());
            if verdict.log {
                tracing::warn!(error = %e, suppressed = verdict.suppressed, "undecodable first message from a new peer");
            }
            let r = reject(
                RejectCode::MalformedHello,
                format!("the first message must be a HELLO: {e}"),
            );
            strangers.refuse(shared, &peer, r);
        }
    }
}

impl Strangers {
    /// Sends the REJECT, hangs up, and reads nothing more from the peer.
    fn refuse(&mut self, shared: &Shared, peer: &PeerId, r: iglu_bus::Reject) {
        if self.refused.len() >= REFUSED_REMEMBERED {
            self.refused.clear();
        }
        self.refused.insert(peer.clone(), ());
        send_reject(shared, peer, r);
    }
}

/// A plugin sent something it must not: it hears why (an ERROR), the log
/// hears of it within the plugin's budget, and a flood ends its session.
fn misbehaved(session: &Session, id: Option<iglu_bus::CallId>, code: ErrorCode, what: String) {
    let verdict: Verdict = session
        .conduct
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .offend(std::time::Instant::now());
    if verdict.log {
        tracing::warn!(plugin = %session.plugin_id, suppressed = verdict.suppressed, "{what}");
    }
    if verdict.cut {
        session.close(Loss::Misbehaving(format!(
            "{} bad messages within {} s",
            verdict.in_window,
            crate::conduct::WINDOW.as_secs()
        )));
        return;
    }
    send_error(session, id, code, what);
}

fn on_message(shared: &Arc<Shared>, session: &Arc<Session>, message: Message) {
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
                // The plugin's own words, as often as it likes: within a budget.
                let verdict = session
                    .reports
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .offend(std::time::Instant::now());
                if verdict.log {
                    tracing::warn!(plugin = %session.plugin_id, code = %e.code, message = %e.message, suppressed = verdict.suppressed, "plugin reported a problem");
                }
            }
        },
        Message::Call(call)
            if session
                .grants
                .as_ref()
                .is_some_and(|g| !g.allows_method(&call.method)) =>
        {
            let e = crate::permissions::denied(
                &session.plugin_id,
                &format!("host_api {:?}", call.method),
                &format!("calling the host's {}", call.method),
            );
            session.log_denial(&e);
            shared.registry.count_denial(&session.plugin_id);
            answer(session, call.id, Err(e));
        }
        Message::Call(call) if call.method == HostApiInterface::PLUGINS_CALL => {
            forward::start(shared, session, call);
        }
        Message::Call(call) if store_writes::is_write(&call.method) => {
            store_writes::start(shared, session, call);
        }
        Message::Call(call) => {
            let api = HostApiScope {
                shared,
                plugin: &session.plugin_id,
                protocol: session.version,
                session: Some(session),
            };
            answer(session, call.id, api.handle(&call.method, &call.args));
        }
        // Host-API calls are answered inline; only a forwarded call is
        // still running to be cancelled.
        Message::Cancel(c) => {
            session.cancel_forwarded(&c.id);
        }
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
            misbehaved(
                session,
                None,
                ErrorCode::BadMessage,
                format!("a plugin may not send {k} after the handshake"),
            );
        }
    }
}

/// Answers the plugin's call `id` to the host with `result` or its error.
pub(super) fn answer(
    session: &Session,
    id: iglu_bus::CallId,
    result: Result<Bytes, iglu_bus::WireError>,
) {
    let message = match result {
        Ok(result) => Message::Reply(iglu_bus::Reply { id, result }),
        Err(e) => Message::Error(ErrorReply {
            id: Some(id),
            code: e.code,
            message: e.message,
        }),
    };
    match iglu_bus::encode(&message) {
        Ok(frame) => {
            // False only when the session just ended, which logged why.
            session.send(frame);
        }
        Err(e) => {
            tracing::error!(plugin = %session.plugin_id, error = %e, "could not encode an answer")
        }
    }
}

fn send_error(session: &Session, id: Option<iglu_bus::CallId>, code: ErrorCode, message: String) {
    let frame = iglu_bus::encode(&Message::Error(ErrorReply { id, code, message }));
    if let Ok(frame) = frame {
        session.send(frame);
    }
}

/// Queues the REJECT and hangs up once it had time to go out: a refused
/// peer has nothing more to say, and must not keep its connection.
fn send_reject(shared: &Shared, peer: &PeerId, r: iglu_bus::Reject) {
    if let Ok(frame) = iglu_bus::encode(&Message::Reject(r)) {
        if shared.outbound.try_send(peer, frame).is_err() {
            tracing::debug!("could not queue a REJECT (the peer left)");
        }
    }
    shared.outbound.disconnect(peer, REJECT_LINGER);
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
