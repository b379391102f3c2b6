//! The current state of every retained topic, given first to every new
//! subscription (a plugin's or an in-process one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use iglu_bus::topic::matches;
use iglu_bus::{ErrorCode, WireError};

use super::{Event, Published};

/// Most topics with a retained event; beyond it, new retained topics are refused.
pub const MAX_RETAINED: usize = 10_000;

/// Retained publications by topic.
#[derive(Default)]
pub struct Retained {
    topics: Mutex<HashMap<String, (Arc<Published>, Event)>>,
}

impl Retained {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Arc<Published>, Event)>> {
        // Each insert or remove is one step: a panicking holder leaves it whole.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `published` as its topic's state; a `nil` payload clears it.
    pub(super) fn keep(&self, published: &Arc<Published>, event: &Event) -> Result<(), WireError> {
        let mut topics = self.lock();
        if event.payload[..] == [0xc0] {
            topics.remove(&event.topic);
        } else if topics.len() >= MAX_RETAINED && !topics.contains_key(&event.topic) {
            return Err(WireError::new(
                ErrorCode::Internal,
                format!("the host already retains {MAX_RETAINED} topics"),
            ));
        } else {
            let mut kept = event.clone();
            kept.retained = true;
            topics.insert(event.topic.clone(), (published.clone(), kept));
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
