//! One call from the host to the plugin, from its CALL frame to its answer,
//! its deadline or its caller giving up (which sends a CANCEL).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::{Call, CallId, Cancel, ErrorCode, Message, WireError};
use tokio::sync::oneshot;

use super::call_table::Outcome;
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

    /// Calls a method on the plugin. Fails at once if the method is not
    /// declared or the session is closed; otherwise waits at most `deadline`.
    /// Dropping the future cancels the call on the plugin side.
    pub async fn call(
        self: &Arc<Self>,
        method: &str,
        args: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, WireError> {
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
        let id = CallId::new_v4();
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
        let Ok(_slot) = self.call_slots.try_acquire() else {
            return Err(WireError::new(
                ErrorCode::Overloaded,
                format!(
                    "plugin {} already has {MAX_CALLS_IN_FLIGHT} calls in flight",
                    self.plugin_id
                ),
            ));
        };
        let _bytes = self.reserve_call_bytes(frame.len())?;
        let expires = tokio::time::Instant::now()
            .checked_add(deadline)
            .unwrap_or_else(|| tokio::time::Instant::now() + FOREVER);
        let (tx, rx) = oneshot::channel();
        let wake_keeper = {
            let mut calls = self.lock();
            if let Some(loss) = &calls.closed {
                return Err(loss.to_call_error(&self.plugin_id));
            }
            calls.table.insert(id, tx, expires)
        };
        if wake_keeper {
            self.deadlines.notify_one();
        }
        let mut guard = InFlight {
            session: self,
            id,
            answered: false,
        };
        // Alone, a call goes straight into the socket queue: batching has
        // nothing to gather, and the flusher's task hop would be pure latency.
        let outcome = if self.calls_awaiting() == 1 {
            if !self.send(frame) {
                // Closing the session answered the waiter; that answer says why.
                return match rx.await {
                    Ok(Outcome::Answer(answer)) => answer,
                    _ => Err(WireError::new(
                        ErrorCode::NotRunning,
                        format!("plugin {} is gone", self.plugin_id),
                    )),
                };
            }
            rx.await
        } else {
            self.outbox.push(frame);
            rx.await
        };
        // Whoever answered, expired the call or closed the session took the entry out.
        guard.answered = true;
        match outcome {
            Ok(Outcome::Answer(answer)) => answer,
            Ok(Outcome::Expired) => Err(WireError::new(
                ErrorCode::Timeout,
                format!(
                    "plugin {} did not answer {method:?} within {} ms",
                    self.plugin_id,
                    deadline.as_millis()
                ),
            )),
            Err(_) => Err(WireError::new(
                ErrorCode::PluginCrashed,
                format!("plugin {} went away before answering", self.plugin_id),
            )),
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
