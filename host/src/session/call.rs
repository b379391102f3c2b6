//! One call from the host to the plugin, from its CALL frame to its answer,
//! its deadline or its caller giving up (which sends a CANCEL).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::{Call, CallId, Cancel, ErrorCode, Message, WireError};
use tokio::sync::oneshot;

use super::call_budget::CallBytes;
use super::call_table::{Outcome, Waiter};
use super::{Session, FOREVER, MAX_CALLS_IN_FLIGHT};

impl Session {
    /// Ends the calls whose deadline has passed (their callers get a
    /// timeout, the plugin a CANCEL) and returns the next deadline.
    pub(super) fn expire_due(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        let (expired, next) = {
            let mut calls = self.lock();
            let expired = calls.table.expire(now);
            (expired, calls.table.wake_at())
        };
        for (id, waiter) in expired {
            let _ = waiter.send(Outcome::Expired);
            self.cancel(id);
        }
        next
    }

    /// Tells the plugin to stop working on a call nobody waits for any more.
    fn cancel(&self, id: CallId) {
        if self.is_closed() {
            return;
        }
        if let Ok(frame) = iglu_bus::encode(&Message::Cancel(Cancel { id })) {
            // After its CALL, through the same outbox: never ahead of it.
            if !self.outbox.push_cancel(frame, MAX_CALLS_IN_FLIGHT) {
                tracing::debug!(plugin = %self.plugin_id, %id, "outbox full: CANCEL dropped");
            }
        }
    }

    /// Checks a call and makes its CALL frame; the call's slot and bytes
    /// are taken until the returned guards drop.
    fn prepare(
        &self,
        id: CallId,
        method: &str,
        args: Bytes,
        deadline: Duration,
    ) -> Result<(Bytes, tokio::sync::SemaphorePermit<'_>, CallBytes<'_>), WireError> {
        if !self.methods.contains(method) {
            return Err(WireError::new(
                ErrorCode::MethodNotFound,
                format!(
                    "plugin {} has no method {method:?}; it has: {}",
                    self.plugin_id,
                    self.method_list()
                ),
            ));
        }
        let frame = iglu_bus::encode(&Message::Call(Call {
            id,
            method: method.to_owned(),
            deadline_ms: u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX),
            args,
        }))
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
        if frame.len() > self.max_message {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!(
                    "the call is {} bytes, over the cap of {} bytes",
                    frame.len(),
                    self.max_message
                ),
            ));
        }
        let Ok(slot) = self.call_slots.try_acquire() else {
            return Err(WireError::new(
                ErrorCode::Overloaded,
                format!(
                    "plugin {} already has {MAX_CALLS_IN_FLIGHT} calls in flight",
                    self.plugin_id
                ),
            ));
        };
        let bytes = self.reserve_call_bytes(frame.len())?;
        Ok((frame, slot, bytes))
    }

    /// Registers call `id` with its waiter; the session's loss if it ended.
    fn register(&self, id: CallId, waiter: Waiter, deadline: Duration) -> Result<(), WireError> {
        let expires = tokio::time::Instant::now()
            .checked_add(deadline)
            .unwrap_or_else(|| tokio::time::Instant::now() + FOREVER);
        let wake_keeper = {
            let mut calls = self.lock();
            if let Some(loss) = &calls.closed {
                return Err(loss.to_call_error(&self.plugin_id));
            }
            if calls.handed_over {
                return Err(self.handover_refusal());
            }
            calls.table.insert(id, waiter, expires)
        };
        if wake_keeper {
            self.deadlines.notify_one();
        }
        Ok(())
    }

    /// Sends a registered call's frame: alone, straight into the socket
    /// queue (batching has nothing to gather, and the flusher's task hop
    /// would be pure latency); otherwise through the outbox. False if the
    /// session ended, whose closing answered the waiter.
    fn dispatch(&self, frame: Bytes) -> bool {
        if self.calls_awaiting() == 1 {
            self.send(frame)
        } else {
            self.outbox.push(frame);
            true
        }
    }

    /// Calls a method on the plugin. Fails at once if the method is not
    /// declared or the session is closed; otherwise waits at most `deadline`.
    /// Dropping the future cancels the call on the plugin side.
    pub async fn call(
        self: &Arc<Self>,
        method: &str,
        args: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, WireError> {
        let started = std::time::Instant::now();
        let id = CallId::new_v4();
        let (frame, _slot, _bytes) = self.prepare(id, method, args, deadline)?;
        let (tx, rx) = oneshot::channel();
        self.register(id, Waiter::Task(tx), deadline)?;
        let mut guard = InFlight {
            session: self,
            id,
            answered: false,
        };
        let sent = self.dispatch(frame);
        let outcome = rx.await;
        // Whoever answered, expired the call or closed the session took the entry out.
        guard.answered = true;
        let answer = match outcome {
            Ok(Outcome::Answer(answer)) => answer,
            Ok(Outcome::Expired) => Err(self.expired(method, deadline)),
            Err(_) if !sent => Err(WireError::new(
                ErrorCode::NotRunning,
                format!("plugin {} is gone", self.plugin_id),
            )),
            Err(_) => Err(WireError::new(
                ErrorCode::PluginCrashed,
                format!("plugin {} went away before answering", self.plugin_id),
            )),
        };
        self.count_call(method, &answer, started);
        answer
    }

    /// Counts and times a finished call (see `metrics::calls`).
    fn count_call(
        &self,
        method: &str,
        answer: &Result<Bytes, WireError>,
        started: std::time::Instant,
    ) {
        if let Some(m) = &self.call_metrics {
            let error = answer.as_ref().err().map(|e| e.code.as_str());
            m.record(method, error, started.elapsed());
        }
    }

    /// Sends call `id` to the plugin and hands its answer (or its deadline,
    /// or the session's end) to `done`, wherever it arrives, with no task
    /// waiting in between: how a call from another plugin is forwarded.
    /// `done` is called at most once; not at all if the call is abandoned
    /// first ([`Session::abandon`]). An error means nothing was sent and
    /// `done` will not be called.
    pub fn forward(
        self: &Arc<Self>,
        id: CallId,
        method: &str,
        args: Bytes,
        deadline: Duration,
        done: Box<dyn FnOnce(Result<Bytes, WireError>) + Send>,
    ) -> Result<(), WireError> {
        let (frame, slot, bytes) = self.prepare(id, method, args, deadline)?;
        // Held until the callback is called or dropped, not until return.
        slot.forget();
        let held = Held {
            session: Arc::downgrade(self),
            bytes: bytes.keep(),
        };
        let expired = self.expired(method, deadline);
        let started = std::time::Instant::now();
        let metrics = self.call_metrics.clone();
        let counted = method.to_owned();
        let waiter = Waiter::Callback(Box::new(move |outcome| {
            drop(held);
            let answer = match outcome {
                Outcome::Answer(answer) => answer,
                Outcome::Expired => Err(expired),
            };
            if let Some(m) = &metrics {
                let error = answer.as_ref().err().map(|e| e.code.as_str());
                m.record(&counted, error, started.elapsed());
            }
            done(answer)
        }));
        self.register(id, waiter, deadline)?;
        self.dispatch(frame);
        Ok(())
    }

    /// Call `id` is no longer wanted (its caller cancelled it or went
    /// away): it leaves the table without an answer, and the plugin hears
    /// CANCEL. False if it had already ended.
    pub fn abandon(&self, id: CallId) -> bool {
        let waiter = self.lock().table.take(&id);
        match waiter {
            Some(waiter) => {
                drop(waiter);
                self.cancel(id);
                true
            }
            None => false,
        }
    }

    /// The refusal of a call by a session handed over to the plugin's new
    /// version: nothing was sent, so the call may be made again there.
    fn handover_refusal(&self) -> WireError {
        WireError::new(
            ErrorCode::NotRunning,
            format!(
                "plugin {} was handed over to its new version",
                self.plugin_id
            ),
        )
    }

    /// Whether `e` is this session's refusal of a call it never sent,
    /// having been handed over (see [`Session::hand_over`]): only then is
    /// making the call again safe (an answer lost any other way may follow
    /// a call that ran).
    pub fn refused_unsent(&self, e: &WireError) -> bool {
        self.is_handed_over() && *e == self.handover_refusal()
    }

    fn expired(&self, method: &str, deadline: Duration) -> WireError {
        WireError::new(
            ErrorCode::Timeout,
            format!(
                "plugin {} did not answer {method:?} within {} ms",
                self.plugin_id,
                deadline.as_millis()
            ),
        )
    }
}

/// A forwarded call's slot and bytes, given back to its session (if it is
/// still there) when the call ends, however it ends.
struct Held {
    session: std::sync::Weak<Session>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(session) = self.session.upgrade() {
            session.call_slots.add_permits(1);
            session.release_call_bytes(self.bytes);
        }
    }
}

/// Removes an unanswered call from the table and tells the plugin to stop
/// working on it, however the caller stopped waiting (deadline or dropped future).
struct InFlight<'a> {
    session: &'a Arc<Session>,
    id: CallId,
    /// The waiter got its answer (or the session's end): nothing to clean up.
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        if self.session.lock().table.take(&self.id).is_some() {
            self.session.cancel(self.id);
        }
    }
}

/// Methods named in a "no such method" answer; the rest are counted.
const LISTED_METHODS: usize = 32;

impl Session {
    /// The plugin's methods, sorted, for people (at most [`LISTED_METHODS`]).
    fn method_list(&self) -> String {
        let mut names: Vec<&str> = self.methods.iter().map(String::as_str).collect();
        names.sort_unstable();
        let more = names.len().saturating_sub(LISTED_METHODS);
        names.truncate(LISTED_METHODS);
        let mut list = if names.is_empty() {
            "no methods".to_owned()
        } else {
            names.join(", ")
        };
        if more > 0 {
            list.push_str(&format!(" and {more} more"));
        }
        list
    }
}
