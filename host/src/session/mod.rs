//! One authenticated connection to a plugin: sending to it, its calls in flight, its liveness.
//!
//! A session exists only after the handshake bound a routing id to a plugin.
//! Every call to the plugin is registered here by correlation id; when the
//! session closes, for whatever reason, every waiting caller is answered at
//! once, so no caller ever waits for its deadline on a dead plugin.

mod call;
mod call_budget;
pub mod call_table;
pub mod forwarded;
pub mod liveness;
mod loss;
pub mod outbox;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use iglu_bus::transport::{PeerId, RouterOutbound};
use iglu_bus::{CallId, CallIdMap, FoldSet, WireError};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::conduct::Conduct;
use crate::events::queue::EventQueue;
use call_table::{CallTable, Outcome};
pub use forwarded::{Forwarded, MAX_FORWARDED};
pub use loss::{Loss, SessionNews};
use outbox::Outbox;

/// Calls one plugin may have in flight from the host.
const MAX_CALLS_IN_FLIGHT: usize = 4096;

/// How long a GOODBYE to a plugin whose session the host ended may take to
/// go out before the hang-up.
const GOODBYE_LINGER: Duration = Duration::from_millis(200);

/// A deadline too far to represent counts as this far away (about 30 years).
const FOREVER: Duration = Duration::from_secs(86400 * 365 * 30);

struct Calls {
    /// Set once; after that nothing new is accepted.
    closed: Option<Loss>,
    /// Set when an upgrade switched the plugin's traffic to its new
    /// version: calls already here finish, new ones are refused with
    /// `not_running` (never sent), and their callers try the new session.
    handed_over: bool,
    table: CallTable,
}

/// A plugin's live connection.
pub struct Session {
    /// The plugin's id.
    pub plugin_id: Arc<str>,
    /// Announced in WELCOME; appears in logs on both sides.
    pub id: Uuid,
    /// Which launch of the plugin this is, so late events of an old launch are ignored.
    pub launch: u64,
    /// The routing id the handshake bound to this session.
    pub peer: PeerId,
    /// Methods the plugin declared; calls to others fail fast without a round trip.
    pub methods: FoldSet<String>,
    /// The negotiated protocol version.
    pub version: u32,
    /// The plugin's event queue (it outlives the session).
    pub events: Arc<EventQueue>,
    /// Sends straight into this peer's socket queue (WELCOME, heartbeats, events).
    outbound: RouterOutbound,
    /// Calls and cancels, coalesced by the session's flusher (see `outbox`).
    outbox: Arc<Outbox>,
    /// Bounds calls in flight (see `MAX_CALLS_IN_FLIGHT`).
    call_slots: tokio::sync::Semaphore,
    /// Bytes of CALL frames in flight, and their bound: calls past it fail
    /// with `overloaded`, so the host's own callers can fill at most this
    /// much of the plugin's socket queue and never push a plugin that
    /// reads into the queue's bound (which means "not reading").
    call_bytes: AtomicUsize,
    call_bytes_max: usize,
    /// Bad frames from this plugin: rate-limited logging, and the cut.
    pub conduct: Mutex<Conduct>,
    /// Calls this plugin made to other plugins, being served (see `forwarded`).
    forwarded: Mutex<CallIdMap<Forwarded>>,
    /// Problems the plugin reported (ERROR without an id): logged within the
    /// same kind of budget, never a reason to cut it.
    pub reports: Mutex<Conduct>,
    /// The plugin's last `status.report`.
    pub health: crate::plugin::health::HealthSlot,
    /// Where its calls are counted and timed.
    pub call_metrics: Option<Arc<crate::metrics::PluginCalls>>,
    /// What it may do (`None`: everything); see [`crate::permissions`].
    pub grants: Option<Arc<crate::permissions::Grants>>,
    calls: Mutex<Calls>,
    /// Tells the deadline keeper (see `calls`) of a deadline earlier than its next wake.
    deadlines: Arc<Notify>,
    /// Milliseconds since `epoch` when the plugin last sent anything.
    last_seen_ms: AtomicU64,
    /// On tokio's clock, which is the system's except in tests that pause it.
    epoch: Instant,
    max_message: usize,
    news: mpsc::Sender<SessionNews>,
    closed: CancellationToken,
    /// Set when the host asked the plugin to stop: its exit is then expected, not a crash.
    stopping: AtomicBool,
}

/// What the handshake learned, to open a session with.
pub struct Opening {
    /// The plugin.
    pub plugin_id: Arc<str>,
    /// Its launch number.
    pub launch: u64,
    /// Its routing id.
    pub peer: PeerId,
    /// Its declared methods.
    pub methods: FoldSet<String>,
    /// The negotiated protocol version.
    pub version: u32,
    /// The plugin's event queue.
    pub events: Arc<EventQueue>,
    /// The frame size cap.
    pub max_message: usize,
    /// Bytes of calls that may be in flight to the plugin at once.
    pub call_bytes_max: usize,
    /// Where to report the session's end.
    pub news: mpsc::Sender<SessionNews>,
    /// What it may do (`None`: everything).
    pub grants: Option<Arc<crate::permissions::Grants>>,
    /// Where its calls are counted and timed (`None`: nowhere).
    pub call_metrics: Option<Arc<crate::metrics::PluginCalls>>,
}

impl Session {
    /// Opens a session that sends through `outbound`. Nothing is sent
    /// until WELCOME has gone out (the caller sends it first).
    /// Starts the session's flusher, and its deadline keeper on `clock`
    /// (see [`crate::clock`]); both end when the session closes or is dropped.
    pub fn open(
        opening: Opening,
        outbound: RouterOutbound,
        clock: &tokio::runtime::Handle,
    ) -> Arc<Session> {
        Arc::new_cyclic(|me| {
            let outbox = Arc::new(Outbox::default());
            let closed = CancellationToken::new();
            let deadlines = Arc::new(Notify::new());
            tokio::spawn(outbox::flush(
                outbox.clone(),
                me.clone(),
                outbound.clone(),
                opening.peer.clone(),
                closed.clone(),
            ));
            let keeper: Weak<Session> = me.clone();
            clock.spawn(call_table::keep_deadlines(
                deadlines.clone(),
                closed.clone(),
                move |now| keeper.upgrade().map(|s| s.expire_due(now)),
            ));
            Session {
                plugin_id: opening.plugin_id,
                id: Uuid::new_v4(),
                launch: opening.launch,
                peer: opening.peer,
                methods: opening.methods,
                version: opening.version,
                events: opening.events,
                outbound,
                outbox,
                call_slots: tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT),
                call_bytes: AtomicUsize::new(0),
                call_bytes_max: opening.call_bytes_max,
                conduct: Mutex::new(Conduct::default()),
                forwarded: Mutex::new(CallIdMap::default()),
                reports: Mutex::new(Conduct::default()),
                health: Default::default(),
                call_metrics: opening.call_metrics.clone(),
                grants: opening.grants.clone(),
                calls: Mutex::new(Calls {
                    closed: None,
                    handed_over: false,
                    table: CallTable::default(),
                }),
                deadlines,
                last_seen_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                max_message: opening.max_message,
                news: opening.news,
                closed,
                stopping: AtomicBool::new(false),
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        // The table stays consistent even if a holder panicked: take it back.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a sign of life.
    pub fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_seen_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the plugin last sent anything.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Calls from the host waiting for this plugin's answer.
    pub fn calls_in_flight(&self) -> usize {
        self.lock().table.len()
    }

    /// Calls holding a slot: sent or about to be, not yet answered. Cheaper
    /// than [`Session::calls_in_flight`] (no lock), for the outbox's batching.
    pub fn calls_awaiting(&self) -> usize {
        MAX_CALLS_IN_FLIGHT - self.call_slots.available_permits()
    }

    /// Why the session ended, once it has.
    pub fn loss(&self) -> Option<Loss> {
        self.lock().closed.clone()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the session ends.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Ends the session: every call in flight is answered with an error now,
    /// the supervisor is told, the writer stops. Idempotent: the first reason wins.
    pub fn close(&self, loss: Loss) {
        let loss = match loss {
            Loss::Disconnected | Loss::Exited(_) | Loss::Goodbye(_) | Loss::SendFailed(_)
                if self.stopping.load(Ordering::Relaxed) =>
            {
                Loss::Stopping
            }
            other => other,
        };
        let waiters = {
            let mut calls = self.lock();
            if calls.closed.is_some() {
                return;
            }
            calls.closed = Some(loss.clone());
            calls.table.drain().collect::<Vec<_>>()
        };
        self.closed.cancel();
        self.abort_forwarded();
        match &loss {
            Loss::HeartbeatTimeout(_) => {
                // It may still hear (a plugin that was frozen, or on the far
                // side of a network that healed): tell it why, so it does
                // not keep talking into a session that is over, then hang up.
                if let Ok(frame) =
                    iglu_bus::encode(&iglu_bus::Message::Goodbye(iglu_bus::Goodbye {
                        reason: format!("the host ended this session: {loss}"),
                    }))
                {
                    let _ = self.outbound.try_send(&self.peer, frame);
                }
                self.outbound.disconnect(&self.peer, GOODBYE_LINGER);
            }
            Loss::NotReading(_) | Loss::Misbehaving(_) => {
                // Its connection is of no further use and may hold a full queue:
                // close it now rather than when the peer goes (it may never).
                self.outbound.disconnect(&self.peer, Duration::ZERO);
            }
            _ => {}
        }
        let error = loss.to_call_error(&self.plugin_id);
        let failed = waiters.len();
        for waiter in waiters {
            let _ = waiter.send(Outcome::Answer(Err(error.clone())));
        }
        match loss {
            Loss::Stopping | Loss::Goodbye(_) => {
                tracing::info!(plugin = %self.plugin_id, session = %self.id, reason = %loss, failed_calls = failed, "session ended")
            }
            _ => {
                tracing::warn!(plugin = %self.plugin_id, session = %self.id, reason = %loss, failed_calls = failed, "session ended")
            }
        }
        let news = SessionNews::Ended {
            launch: self.launch,
            loss,
        };
        if self.news.try_send(news).is_err() {
            tracing::error!(plugin = %self.plugin_id, "could not tell the supervisor that the session ended");
        }
    }

    /// The plugin's traffic goes to its new version from now on: this
    /// session takes no new call (see `Calls::handed_over`) and finishes
    /// those it has.
    pub fn hand_over(&self) {
        self.lock().handed_over = true;
        self.begin_stop();
    }

    /// Whether [`Session::hand_over`] was called: a call it refused may be
    /// made again on the plugin's session in the registry.
    pub fn is_handed_over(&self) -> bool {
        self.lock().handed_over
    }

    /// Marks the session as being stopped by the host, so that the plugin's
    /// exit that follows is not taken for a crash.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Queues one frame for the plugin; never waits. False if the session
    /// is closed or the frame could not be queued, which closes it: a full
    /// socket queue means the plugin stopped reading (the host's own calls
    /// are bounded well below it, see `call_bytes`), and nobody may wait
    /// for such a plugin, on any path.
    pub fn send(&self, frame: Bytes) -> bool {
        if self.is_closed() {
            return false;
        }
        match self.outbound.try_send(&self.peer, frame) {
            Ok(()) => true,
            Err(e) => {
                self.send_failed(e);
                false
            }
        }
    }

    /// [`Session::send`] for a multi-frame message (EVENTs: header and
    /// shared body per event; a batch of CALLs).
    pub fn send_frames(&self, frames: Vec<Bytes>) -> bool {
        if self.is_closed() {
            return false;
        }
        match self.outbound.try_send_frames(&self.peer, frames) {
            Ok(()) => true,
            Err(e) => {
                self.send_failed(e);
                false
            }
        }
    }

    /// Ends the session for a send that could not be queued.
    pub fn send_failed(&self, error: iglu_bus::BusError) {
        match error {
            e @ iglu_bus::BusError::PeerQueueFull { .. } => {
                self.close(Loss::NotReading(e.to_string()))
            }
            e => {
                tracing::debug!(plugin = %self.plugin_id, error = %e, "send failed");
                self.close(Loss::SendFailed(e.to_string()));
            }
        }
    }

    /// A refusal for lack of a permission: logged within the reports'
    /// budget (never a reason to cut the plugin).
    pub fn log_denial(&self, e: &WireError) {
        let verdict = self
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .offend(std::time::Instant::now());
        if verdict.log {
            tracing::warn!(plugin = %self.plugin_id, message = %e.message, suppressed = verdict.suppressed, "permission denied");
        }
    }

    /// Delivers the answer to a call; false if nobody waits for it any more.
    pub fn resolve(&self, id: CallId, answer: Result<Bytes, WireError>) -> bool {
        let waiter = self.lock().table.take(&id);
        match waiter {
            Some(w) => w.send(Outcome::Answer(answer)),
            None => false,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Ends the flusher of a session dropped without `close`.
        self.closed.cancel();
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
