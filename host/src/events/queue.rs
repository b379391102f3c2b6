//! One plugin's event queue: bounded, drop-oldest, credit-based.
//!
//! It belongs to the plugin, not to a session, so events published while the
//! plugin restarts wait here and are delivered once it is back. Events sent
//! but not yet acknowledged (by CREDIT) are kept too: if the session dies,
//! they go back to the front, so a crash loses nothing that was queued.
//! Memory is bounded in count (`capacity` waiting, and no more than that in
//! flight) and in bytes: waiting and in-flight events together hold at most
//! `max_bytes` plus one event (beyond it the oldest waiting are dropped,
//! counted, leaving a gap in the sequence numbers; one event always fits an
//! otherwise empty waiting list), and no more than that is ever in flight.
//! Counting alone let 1,024 queued + 1,024 in-flight events of 4 MiB hold
//! 8 GiB for one slow plugin. The socket never holds more than the window.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use super::Published;

/// One event waiting for, or in flight to, one plugin.
#[derive(Clone)]
pub struct Queued {
    /// This plugin's sequence number for it.
    pub seq: u64,
    /// Sent as the retained state of its topic.
    pub retained: bool,
    /// The publication, shared by every subscriber.
    pub event: Arc<Published>,
}

/// Counters shown by `iglu status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Waiting to be sent.
    pub queued: u64,
    /// Sent, not yet acknowledged.
    pub in_flight: u64,
    /// Acknowledged by the plugin.
    pub delivered: u64,
    /// Dropped because the queue was full (oldest first).
    pub dropped: u64,
}

struct Inner {
    waiting: VecDeque<Queued>,
    unacked: VecDeque<Queued>,
    /// Bytes of the bodies in `waiting` and in `unacked`.
    waiting_bytes: usize,
    unacked_bytes: usize,
    /// Events the current session may still be sent.
    credit: u64,
    /// The session that may take events; `None` while the plugin is down.
    owner: Option<Uuid>,
    /// The previous owner after an upgrade's hand-over, with what it was
    /// sent and has not acknowledged yet (its bytes count in
    /// `unacked_bytes`): its CREDIT still acknowledges them, and what is
    /// left when it ends goes back to the front for the new owner.
    draining: Option<(Uuid, VecDeque<Queued>)>,
    /// Credit granted by a session that does not own the queue yet (an
    /// upgrade's new version grants its window right after WELCOME, maybe
    /// before the switch): it is its credit once it takes over.
    early_credit: Option<(Uuid, u64)>,
    next_seq: u64,
    delivered: u64,
    dropped: u64,
}

/// A plugin's queue.
pub struct EventQueue {
    inner: Mutex<Inner>,
    capacity: usize,
    max_bytes: usize,
    ready: Notify,
}

impl EventQueue {
    /// An empty queue holding at most `capacity` waiting events, and at
    /// most `max_bytes` of events waiting and in flight together.
    pub fn new(capacity: usize, max_bytes: usize) -> EventQueue {
        EventQueue {
            inner: Mutex::new(Inner {
                waiting: VecDeque::new(),
                unacked: VecDeque::new(),
                waiting_bytes: 0,
                unacked_bytes: 0,
                credit: 0,
                owner: None,
                draining: None,
                early_credit: None,
                next_seq: 1,
                delivered: 0,
                dropped: 0,
            }),
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event, dropping the oldest waiting ones while the queue is
    /// full in count or in bytes. An event alone always fits.
    pub fn push(&self, event: Arc<Published>, retained: bool) {
        let size = event.body.len();
        let mut q = self.lock();
        while !q.waiting.is_empty()
            && (q.waiting.len() >= self.capacity
                || q.waiting_bytes + q.unacked_bytes + size > self.max_bytes)
        {
            if let Some(old) = q.waiting.pop_front() {
                q.waiting_bytes -= old.event.body.len();
            }
            q.dropped += 1;
        }
        q.waiting_bytes += size;
        let seq = q.next_seq;
        q.next_seq += 1;
        q.waiting.push_back(Queued {
            seq,
            retained,
            event,
        });
        drop(q);
        self.ready.notify_one();
    }

    /// Queues retained states, skipping any publication already waiting.
    pub fn push_retained(&self, events: Vec<Arc<Published>>) {
        for event in events {
            let already = self
                .lock()
                .waiting
                .iter()
                .any(|w| Arc::ptr_eq(&w.event, &event));
            if !already {
                self.push(event, true);
            }
        }
    }

    /// A new session takes over: whatever the last one left unacknowledged
    /// goes back to the front, and credit starts from zero until it grants some.
    pub fn attach(&self, session: Uuid) {
        let mut q = self.lock();
        requeue_unacked(&mut q);
        q.credit = early_credit(&mut q, session);
        q.owner = Some(session);
    }

    /// An upgrade switched the plugin to session `to`: `from` keeps what it
    /// was sent (and may still acknowledge it), everything else goes to
    /// `to`, which starts with no credit. Sequence numbers go on: `to` gets
    /// the next event `from` did not, so each event goes to one of them.
    pub fn hand_over(&self, from: Uuid, to: Uuid) {
        let mut q = self.lock();
        if let Some((_, mut rest)) = q.draining.take() {
            // Two upgrades back to back: the older leftovers go back first.
            rest.extend(std::mem::take(&mut q.unacked));
            q.unacked = rest;
        }
        if q.owner == Some(from) {
            let sent = std::mem::take(&mut q.unacked);
            q.draining = Some((from, sent));
        } else {
            requeue_unacked(&mut q);
        }
        q.credit = early_credit(&mut q, to);
        q.owner = Some(to);
        drop(q);
        // Whichever delivery task takes this wake-up passes it on if it is
        // not the owner's (see `delivery`).
        self.ready.notify_one();
    }

    /// Wakes a delivery task: one that woke for nothing passes its wake-up on.
    pub fn nudge(&self) {
        self.ready.notify_one();
    }

    /// Events sent to `session` that it has not acknowledged yet.
    pub fn unacked_by(&self, session: Uuid) -> usize {
        let q = self.lock();
        match &q.draining {
            Some((s, sent)) if *s == session => sent.len(),
            _ if q.owner == Some(session) => q.unacked.len(),
            _ => 0,
        }
    }

    /// The session ended: put its unacknowledged events back, unless another
    /// session already took over.
    pub fn detach(&self, session: Uuid) {
        let mut q = self.lock();
        if let Some((old, _)) = &q.draining {
            if *old == session {
                // What the old version never finished goes to the new one
                // first, as after a crash.
                if let Some((_, sent)) = q.draining.take() {
                    for item in sent.into_iter().rev() {
                        let size = item.event.body.len();
                        q.unacked_bytes -= size;
                        q.waiting_bytes += size;
                        q.waiting.push_front(item);
                    }
                }
                drop(q);
                self.ready.notify_one();
                return;
            }
        }
        if q.owner != Some(session) {
            return;
        }
        requeue_unacked(&mut q);
        q.credit = 0;
        q.owner = None;
    }

    /// The next event `session` may send now, if any (it moves to in-flight).
    pub fn take(&self, session: Uuid) -> Option<Queued> {
        self.take_batch(session, 1).pop()
    }

    /// Up to `max` events `session` may send now, oldest first (they move to in-flight).
    pub fn take_batch(&self, session: Uuid, max: usize) -> Vec<Queued> {
        let mut q = self.lock();
        if q.owner != Some(session) {
            return Vec::new();
        }
        let mut n = (q.credit.min(max as u64) as usize).min(q.waiting.len());
        // In flight stays within the byte bound too; one event always goes.
        let mut bytes = 0;
        for (i, item) in q.waiting.iter().take(n).enumerate() {
            let size = item.event.body.len();
            if (q.unacked_bytes > 0 || i > 0) && q.unacked_bytes + bytes + size > self.max_bytes {
                n = i;
                break;
            }
            bytes += size;
        }
        let batch: Vec<Queued> = q.waiting.drain(..n).collect();
        q.waiting_bytes -= bytes;
        q.unacked_bytes += bytes;
        q.credit -= n as u64;
        q.unacked.extend(batch.iter().cloned());
        batch
    }

    /// The plugin finished `n` events and can take `n` more.
    pub fn credit(&self, session: Uuid, n: u32) {
        let mut q = self.lock();
        if let Some((old, sent)) = q.draining.as_mut() {
            if *old == session {
                let acked = (n as usize).min(sent.len());
                let freed: usize = sent.drain(..acked).map(|i| i.event.body.len()).sum();
                q.unacked_bytes -= freed;
                q.delivered += acked as u64;
                return;
            }
        }
        if q.owner != Some(session) {
            let before = match q.early_credit {
                Some((s, c)) if s == session => c,
                _ => 0,
            };
            let credit = before
                .saturating_add(u64::from(n))
                .min(self.capacity as u64);
            q.early_credit = Some((session, credit));
            return;
        }
        let acked = (n as usize).min(q.unacked.len());
        let freed: usize = q.unacked.drain(..acked).map(|i| i.event.body.len()).sum();
        q.unacked_bytes -= freed;
        q.delivered += acked as u64;
        // Credit beyond what is in flight is the initial window, or a grant
        // ahead. Capped so that in flight never exceeds the queue's own
        // bound: a plugin that grants credit and never finishes anything
        // cannot make the host hold more than `capacity` events for it.
        let room = (self.capacity as u64).saturating_sub(q.unacked.len() as u64);
        q.credit = q.credit.saturating_add(u64::from(n)).min(room);
        drop(q);
        self.ready.notify_one();
    }

    /// Bytes held now, waiting and in flight.
    pub fn bytes(&self) -> usize {
        let q = self.lock();
        q.waiting_bytes + q.unacked_bytes
    }

    /// Waits until something may have become sendable.
    pub async fn changed(&self) {
        self.ready.notified().await
    }

    /// Counters for status.
    pub fn stats(&self) -> QueueStats {
        let q = self.lock();
        let draining = q.draining.as_ref().map_or(0, |(_, sent)| sent.len());
        QueueStats {
            queued: q.waiting.len() as u64,
            in_flight: (q.unacked.len() + draining) as u64,
            delivered: q.delivered,
            dropped: q.dropped,
        }
    }
}

/// The credit `session` granted before it owned the queue (none if it
/// did not), taken.
fn early_credit(q: &mut Inner, session: Uuid) -> u64 {
    match q.early_credit.take() {
        Some((s, credit)) if s == session => credit,
        _ => 0,
    }
}

/// What a session left unacknowledged goes back to the front, in order
/// (a draining old version's too: a new session took over from scratch).
fn requeue_unacked(q: &mut Inner) {
    if let Some((_, sent)) = q.draining.take() {
        let mut all = sent;
        all.extend(std::mem::take(&mut q.unacked));
        q.unacked = all;
    }
    let mut unacked = std::mem::take(&mut q.unacked);
    let bytes = std::mem::take(&mut q.unacked_bytes);
    q.waiting_bytes += bytes;
    while let Some(item) = unacked.pop_back() {
        q.waiting.push_front(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(n: u8) -> Arc<Published> {
        Arc::new(Published {
            topic: format!("t/{n}"),
            source: "host".into(),
            body: Bytes::from(vec![n]),
        })
    }

    #[test]
    fn full_queue_drops_oldest_and_leaves_a_gap() {
        let q = EventQueue::new(2, usize::MAX);
        for n in 0..5 {
            q.push(ev(n), false);
        }
        let s = Uuid::new_v4();
        q.attach(s);
        q.credit(s, 10);
        let seqs: Vec<u64> = std::iter::from_fn(|| q.take(s)).map(|i| i.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
        assert_eq!(q.stats().dropped, 3);
    }

    #[test]
    fn credit_bounds_what_is_sent_and_a_crash_requeues() {
        let q = EventQueue::new(100, usize::MAX);
        for n in 0..5 {
            q.push(ev(n), false);
        }
        let s1 = Uuid::new_v4();
        q.attach(s1);
        assert!(q.take(s1).is_none(), "no credit, nothing sent");
        q.credit(s1, 2);
        assert_eq!(q.take(s1).map(|i| i.seq), Some(1));
        assert_eq!(q.take(s1).map(|i| i.seq), Some(2));
        assert!(q.take(s1).is_none());
        q.credit(s1, 1); // event 1 done
        assert_eq!(q.stats().delivered, 1);
        // The session dies with event 2 unacknowledged; the next one gets it first.
        q.detach(s1);
        let s2 = Uuid::new_v4();
        q.attach(s2);
        assert!(q.take(s1).is_none(), "a dead session takes nothing");
        q.credit(s2, 10);
        let seqs: Vec<u64> = std::iter::from_fn(|| q.take(s2)).map(|i| i.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5]);
    }

    #[test]
    fn credit_cannot_exceed_the_queue_bound() {
        let q = EventQueue::new(8, usize::MAX);
        let s = Uuid::new_v4();
        q.attach(s);
        q.credit(s, u32::MAX);
        for n in 0..20 {
            q.push(ev(n), false);
            while q.take(s).is_some() {}
        }
        let st = q.stats();
        assert!(st.in_flight <= 8, "{st:?}");
    }

    fn big(n: u8, size: usize) -> Arc<Published> {
        Arc::new(Published {
            topic: format!("t/{n}"),
            source: "host".into(),
            body: Bytes::from(vec![n; size]),
        })
    }

    #[test]
    fn bytes_bound_waiting_and_in_flight_together() {
        // 10 events of 1 KiB in a queue of 1,024 events but 3 KiB.
        let q = EventQueue::new(1024, 3 * 1024);
        let s = Uuid::new_v4();
        q.attach(s);
        q.credit(s, 1000);
        for n in 0..10 {
            q.push(big(n, 1024), false);
            assert!(q.bytes() <= 3 * 1024, "after {n}: {}", q.bytes());
        }
        assert_eq!(q.stats().queued, 3);
        assert_eq!(q.stats().dropped, 7);
        // In flight counts too: with 3 KiB sent, nothing more fits, and a
        // new event pushes out the oldest waiting one, not an in-flight one.
        let sent = q.take_batch(s, 64);
        assert_eq!(
            sent.iter().map(|i| i.seq).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        q.push(big(11, 1024), false);
        assert!(q.take_batch(s, 64).is_empty(), "over the bound in flight");
        assert_eq!(
            q.bytes(),
            4 * 1024,
            "one event always fits: the queue was empty"
        );
        q.push(big(12, 1024), false);
        assert_eq!(q.stats().dropped, 8, "11 dropped for 12");
        q.credit(s, 3);
        let next = q.take_batch(s, 64);
        assert_eq!(next.iter().map(|i| i.seq).collect::<Vec<_>>(), vec![12]);
        // A crash puts in-flight bytes back to waiting, nothing lost or doubled.
        q.detach(s);
        assert_eq!(q.bytes(), 1024);
    }

    #[test]
    fn a_hand_over_gives_each_event_to_one_session() {
        let q = EventQueue::new(100, usize::MAX);
        for n in 0..6 {
            q.push(ev(n), false);
        }
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        q.attach(old);
        q.credit(old, 3);
        let to_old: Vec<u64> = q.take_batch(old, 64).iter().map(|i| i.seq).collect();
        assert_eq!(to_old, vec![1, 2, 3]);
        // The new session's window arrives before the switch: it counts.
        q.credit(new, 10);
        q.hand_over(old, new);
        assert!(
            q.take_batch(old, 64).is_empty(),
            "the old session takes nothing new"
        );
        q.credit(old, 2); // it finishes 1 and 2 while draining
        assert_eq!(q.unacked_by(old), 1);
        let to_new: Vec<u64> = q.take_batch(new, 64).iter().map(|i| i.seq).collect();
        assert_eq!(to_new, vec![4, 5, 6]);
        // It ends with 3 unfinished: 3 goes to the new session, once.
        q.detach(old);
        let again: Vec<u64> = q.take_batch(new, 64).iter().map(|i| i.seq).collect();
        assert_eq!(again, vec![3]);
        assert_eq!(q.stats().delivered, 2);
    }

    #[test]
    fn retained_is_not_queued_twice() {
        let q = EventQueue::new(10, usize::MAX);
        let e = ev(1);
        q.push(e.clone(), false);
        q.push_retained(vec![e, ev(2)]);
        assert_eq!(q.stats().queued, 2);
    }
}
