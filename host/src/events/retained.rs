//! The current state of every retained topic, given first to every new
//! subscription (a plugin's or an in-process one). Kept in the host's
//! store too, so it survives a restart of the host: every change is
//! written with the store's next commit (nobody waits for it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use iglu_bus::topic::matches;
use iglu_bus::{ErrorCode, WireError};

use super::{Event, Published};
use crate::store::{RetainedRecord, Store};

/// Most topics with a retained event; beyond it, new retained topics are refused.
pub const MAX_RETAINED: usize = 10_000;

/// Retained publications by topic.
#[derive(Default)]
pub struct Retained {
    topics: Mutex<HashMap<String, (Arc<Published>, Event)>>,
    store: std::sync::OnceLock<Arc<Store>>,
}

impl Retained {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Arc<Published>, Event)>> {
        // Each insert or remove is one step: a panicking holder leaves it whole.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes every change to `store` from now on.
    pub fn persist_to(&self, store: Arc<Store>) {
        let _ = self.store.set(store);
    }

    /// Takes back what the store kept (at start, before any publication).
    pub fn restore(&self, records: Vec<RetainedRecord>) {
        for r in records {
            let event = Event {
                topic: r.topic,
                payload: bytes::Bytes::from(r.payload),
                source: r.source,
                timestamp_ms: r.timestamp_ms,
                retained: true,
            };
            match super::publish::published(&event) {
                Ok(published) => {
                    let mut topics = self.lock();
                    if topics.len() < MAX_RETAINED {
                        topics.insert(event.topic.clone(), (Arc::new(published), event));
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %event.topic, error = %e, "a stored retained event was not restored")
                }
            }
        }
    }

    /// Keeps `published` as its topic's state; a `nil` payload clears it.
    /// The store hears of it under the same lock, so two publishers on one
    /// topic reach the disk in the order they reached memory.
    pub(super) fn keep(&self, published: &Arc<Published>, event: &Event) -> Result<(), WireError> {
        let mut topics = self.lock();
        let record = if event.payload[..] == [0xc0] {
            topics.remove(&event.topic).map(|_| None)
        } else if topics.len() >= MAX_RETAINED && !topics.contains_key(&event.topic) {
            return Err(WireError::new(
                ErrorCode::Internal,
                format!("the host already retains {MAX_RETAINED} topics"),
            ));
        } else {
            let mut kept = event.clone();
            kept.retained = true;
            topics.insert(event.topic.clone(), (published.clone(), kept));
            Some(Some(RetainedRecord {
                topic: event.topic.clone(),
                source: event.source.clone(),
                timestamp_ms: event.timestamp_ms,
                payload: event.payload.to_vec(),
            }))
        };
        if let (Some(record), Some(store)) = (record, self.store.get()) {
            store.retain(&event.topic, record);
        }
        Ok(())
    }

    /// Retained publications matching any of `filters`, by topic.
    pub fn matching(&self, filters: &[String]) -> Vec<Arc<Published>> {
        let topics = self.lock();
        let mut found: Vec<_> = topics
            .values()
            .filter(|(p, _)| filters.iter().any(|f| matches(f, &p.topic)))
            .map(|(p, _)| p.clone())
            .collect();
        found.sort_by(|a, b| a.topic.cmp(&b.topic));
        found
    }

    /// The same, as in-process events.
    pub(super) fn events_matching(&self, filters: &[String]) -> Vec<Event> {
        let topics = self.lock();
        topics
            .values()
            .filter(|(_, e)| filters.iter().any(|f| matches(f, &e.topic)))
            .map(|(_, e)| e.clone())
            .collect()
    }
}
