//! Bus events on their way to the broker. While the broker is away they
//! wait here, up to `offline_queue` messages and `offline_queue_bytes`
//! bytes; past either the oldest go first, counted, so that what reaches
//! the broker after an outage is the newest state, and memory stays bounded.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// One publication for the broker.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

struct Queue {
    items: VecDeque<Outgoing>,
    bytes: usize,
}

/// The bounded queue, shared by the event handler (producer) and the
/// publisher task (consumer).
pub struct Outbox {
    queue: Mutex<Queue>,
    max_items: usize,
    max_bytes: usize,
    ready: Notify,
}

fn cost(m: &Outgoing) -> usize {
    m.payload.len() + m.topic.len()
}

impl Outbox {
    pub fn new(max_items: usize, max_bytes: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
            }),
            max_items: max_items.max(1),
            max_bytes,
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `m`; returns how many older messages were dropped for it (a
    /// message bigger than the whole byte bound is itself dropped: 1).
    pub fn push(&self, m: Outgoing) -> u64 {
        if cost(&m) > self.max_bytes {
            return 1;
        }
        let mut q = self.lock();
        let mut dropped = 0;
        while !q.items.is_empty()
            && (q.items.len() >= self.max_items || q.bytes + cost(&m) > self.max_bytes)
        {
            if let Some(old) = q.items.pop_front() {
                q.bytes -= cost(&old);
                dropped += 1;
            }
        }
        q.bytes += cost(&m);
        q.items.push_back(m);
        drop(q);
        self.ready.notify_one();
        dropped
    }

    /// The oldest message, waiting for one.
    pub async fn pop(&self) -> Outgoing {
        loop {
            let notified = self.ready.notified();
            if let Some(m) = self.try_pop() {
                return m;
            }
            notified.await;
        }
    }

    fn try_pop(&self) -> Option<Outgoing> {
        let mut q = self.lock();
        let m = q.items.pop_front()?;
        q.bytes -= cost(&m);
        Some(m)
    }

    /// Puts a message back at the front (the link went down as it was taken).
    pub fn unpop(&self, m: Outgoing) {
        let mut q = self.lock();
        q.bytes += cost(&m);
        q.items.push_front(m);
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Outgoing {
        Outgoing {
            topic: "t".into(),
            payload: Bytes::from(vec![0u8; n]),
            qos: 1,
            retain: false,
        }
    }

    #[test]
    fn bounded_in_count_and_bytes_dropping_oldest() {
        let o = Outbox::new(3, 100);
        assert_eq!(o.push(msg(10)), 0);
        assert_eq!(o.push(msg(10)), 0);
        assert_eq!(o.push(msg(10)), 0);
        assert_eq!(o.push(msg(10)), 1, "count bound");
        assert_eq!(o.len(), 3);
        assert_eq!(o.push(msg(80)), 2, "byte bound: 3 x 11 + 81 > 100");
        assert_eq!(o.len(), 2);
        assert_eq!(o.push(msg(200)), 1, "bigger than the bound itself");
        assert_eq!(o.len(), 2);
    }
}
