//! A session's calls awaiting the plugin's answer, and their deadlines.
//!
//! Each call waits for its answer, the session's end or its deadline,
//! whichever comes first. The deadlines are kept here, with one timer per
//! session instead of one per call: a `tokio::time::timeout` around every
//! call added and removed a timer entry each time and made the runtime park
//! with a timeout, and doing without it took the sequential p50 from
//! 1.28-1.41x to 1.14-1.19x the zeromq floor's (`iglu bench`, 4 runs each,
//! side by side). The keeper sleeps until the earliest deadline, and a new
//! call wakes it only when its deadline is earlier still, so calls that all
//! use the same timeout wake it about once per timeout.

use std::sync::Arc;

use bytes::Bytes;
use iglu_bus::{CallId, CallIdMap, WireError};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a call ended, as its caller learns it.
#[derive(Debug)]
pub enum Outcome {
    /// The plugin's result or error, or the session's end.
    Answer(Result<Bytes, WireError>),
    /// The deadline passed first.
    Expired,
}

/// Where a call's outcome goes.
pub enum Waiter {
    /// A task awaits it.
    Task(oneshot::Sender<Outcome>),
    /// It is handed on where it arrives (a forwarded call's answer goes
    /// straight to the calling plugin, with no task of its own in between).
    Callback(Box<dyn FnOnce(Outcome) + Send>),
}

impl Waiter {
    /// Delivers the outcome; false if nobody was waiting any more.
    pub fn send(self, outcome: Outcome) -> bool {
        match self {
            Waiter::Task(tx) => tx.send(outcome).is_ok(),
            Waiter::Callback(done) => {
                done(outcome);
                true
            }
        }
    }
}

struct Pending {
    waiter: Waiter,
    deadline: Instant,
}

/// The calls in flight, by id.
#[derive(Default)]
pub struct CallTable {
    inflight: CallIdMap<Pending>,
    /// When the keeper wakes next; `None` while it sleeps until woken.
    wake_at: Option<Instant>,
}

impl CallTable {
    /// Registers a call; true if the keeper must be woken to honour its deadline.
    pub fn insert(&mut self, id: CallId, waiter: Waiter, deadline: Instant) -> bool {
        self.inflight.insert(id, Pending { waiter, deadline });
        let earlier = self.wake_at.is_none_or(|at| deadline < at);
        if earlier {
            self.wake_at = Some(deadline);
        }
        earlier
    }

    /// Takes a call out (answered, abandoned): its waiter, if it was still here.
    pub fn take(&mut self, id: &CallId) -> Option<Waiter> {
        self.inflight.remove(id).map(|p| p.waiter)
    }

    /// Calls in flight.
    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// No call in flight.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// Every waiter, for the session's end.
    pub fn drain(&mut self) -> impl Iterator<Item = Waiter> + '_ {
        self.wake_at = None;
        self.inflight.drain().map(|(_, p)| p.waiter)
    }

    /// Takes out the calls whose deadline is `now` or earlier, and sets the
    /// keeper's next wake to the earliest deadline left.
    pub fn expire(&mut self, now: Instant) -> Vec<(CallId, Waiter)> {
        let due: Vec<CallId> = self
            .inflight
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let expired = due
            .into_iter()
            .filter_map(|id| self.inflight.remove(&id).map(|p| (id, p.waiter)))
            .collect();
        self.wake_at = self.inflight.values().map(|p| p.deadline).min();
        expired
    }

    /// When the keeper should wake next.
    pub fn wake_at(&self) -> Option<Instant> {
        self.wake_at
    }
}

/// The keeper: until `closed`, sleeps until the next wake (or until `wake`
/// is notified of an earlier deadline), then lets `expire` end the calls
/// that are due; `expire` returns the next wake, or `None` when the session
/// is gone.
pub async fn keep_deadlines<F>(wake: Arc<Notify>, closed: CancellationToken, mut expire: F)
where
    F: FnMut(Instant) -> Option<Option<Instant>>,
{
    let mut next: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = closed.cancelled() => return,
            _ = wake.notified() => {}
            _ = sleep_until(next) => {}
        }
        match expire(Instant::now()) {
            Some(at) => next = at,
            None => return,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_an_earlier_deadline_wakes_the_keeper_and_expiry_takes_only_what_is_due() {
        let now = Instant::now();
        let mut table = CallTable::default();
        let (a, b, c) = (CallId::new_v4(), CallId::new_v4(), CallId::new_v4());
        let (ta, _ra) = oneshot::channel();
        let (tb, _rb) = oneshot::channel();
        let (tc, _rc) = oneshot::channel();
        assert!(table.insert(a, Waiter::Task(ta), now + Duration::from_secs(30)));
        assert!(!table.insert(b, Waiter::Task(tb), now + Duration::from_secs(31)));
        assert!(table.insert(c, Waiter::Task(tc), now + Duration::from_secs(1)));
        assert_eq!(table.wake_at(), Some(now + Duration::from_secs(1)));

        let expired = table.expire(now + Duration::from_secs(2));
        assert_eq!(expired.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [c]);
        assert_eq!(table.wake_at(), Some(now + Duration::from_secs(30)));
        assert!(table.take(&a).is_some());
        assert!(table.take(&a).is_none(), "taken once");
        assert!(table.expire(now + Duration::from_secs(60)).len() == 1);
        assert_eq!(table.wake_at(), None);
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn the_keeper_expires_a_call_at_its_deadline_and_stops_with_the_session() {
        let table = Arc::new(std::sync::Mutex::new(CallTable::default()));
        let wake = Arc::new(Notify::new());
        let closed = CancellationToken::new();
        let keeper = {
            let table = table.clone();
            tokio::spawn(keep_deadlines(wake.clone(), closed.clone(), move |now| {
                let mut t = table.lock().unwrap();
                for (_, waiter) in t.expire(now) {
                    let _ = waiter.send(Outcome::Expired);
                }
                Some(t.wake_at())
            }))
        };
        let (tx, rx) = oneshot::channel();
        let start = Instant::now();
        if table.lock().unwrap().insert(
            CallId::new_v4(),
            Waiter::Task(tx),
            start + Duration::from_millis(250),
        ) {
            wake.notify_one();
        }
        assert!(matches!(rx.await.unwrap(), Outcome::Expired));
        assert!(start.elapsed() >= Duration::from_millis(250));
        closed.cancel();
        keeper.await.unwrap();
    }
}
