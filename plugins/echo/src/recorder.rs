//! What the echo plugin remembers of the events it receives, for tests to ask.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iglu_sdk::Event;
use serde::Serialize;

/// Events kept for `events`; older ones are forgotten (counters still count them).
const KEEP: usize = 20_000;

/// One received event, as `events` returns it.
#[derive(Serialize, Clone)]
pub struct Seen {
    topic: String,
    seq: u64,
    missed: u64,
    retained: bool,
    source: String,
    payload: rmpv::Value,
}

/// Counters, as `event_stats` returns them.
#[derive(Serialize, Clone, Default)]
pub struct Stats {
    received: u64,
    missed: u64,
    retained: u64,
    /// Events whose payload `n` was not above the previous `n` from the same source.
    out_of_order: u64,
    last_seq: u64,
}

#[derive(Default)]
struct Inner {
    seen: VecDeque<Seen>,
    stats: Stats,
    last_n: HashMap<String, i64>,
}

/// Shared between the event handler and the query methods.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    delay_ms: Arc<AtomicU64>,
}

impl Recorder {
    /// Records one event, then takes the configured delay (a slow subscriber).
    pub async fn record(&self, event: Event) {
        let payload = rmpv::decode::read_value(&mut &event.payload[..]).unwrap_or(rmpv::Value::Nil);
        let n = payload
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("n")))
            .and_then(|(_, v)| v.as_i64());
        {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.stats.received += 1;
            inner.stats.missed += event.missed;
            inner.stats.last_seq = event.seq;
            if event.retained {
                inner.stats.retained += 1;
            }
            if let (Some(n), false) = (n, event.retained) {
                let key = format!("{}|{}", event.source, event.topic);
                if let Some(&prev) = inner.last_n.get(&key) {
                    if n <= prev {
                        inner.stats.out_of_order += 1;
                    }
                }
                inner.last_n.insert(key, n);
            }
            if inner.seen.len() >= KEEP {
                inner.seen.pop_front();
            }
            inner.seen.push_back(Seen {
                topic: event.topic,
                seq: event.seq,
                missed: event.missed,
                retained: event.retained,
                source: event.source,
                payload,
            });
        }
        let delay = self.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }

    /// The last `limit` events, oldest first.
    pub fn last(&self, limit: usize) -> Vec<Seen> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let skip = inner.seen.len().saturating_sub(limit);
        inner.seen.iter().skip(skip).cloned().collect()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats
            .clone()
    }

    /// Makes every event take this long to handle.
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Relaxed);
    }
}
