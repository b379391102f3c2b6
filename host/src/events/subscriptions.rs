//! Which plugin subscribes to what, and each plugin's event queue.
//!
//! A plugin's filters and queue outlive its sessions: events published while
//! it restarts wait in its queue, and the filters it last had still match.
//! The handshake replaces the filters with the ones the HELLO names; the
//! host API adds and removes filters at run time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use iglu_bus::topic::{matches, validate_filter};
use iglu_bus::WireError;

use super::queue::{EventQueue, QueueStats};
use super::{bad, EventHub, Published, Source};

/// One plugin's subscriptions.
struct Subscriber {
    filters: Vec<String>,
    /// Whether it receives the events it publishes itself.
    receive_own: bool,
    queue: Arc<EventQueue>,
}

/// Every plugin's subscriptions, by plugin id.
pub struct Subscriptions {
    plugins: Mutex<BTreeMap<String, Subscriber>>,
    queue_capacity: usize,
    queue_bytes: usize,
}

impl Subscriptions {
    /// Plugins' queues will hold `queue_capacity` events and `queue_bytes` bytes.
    pub fn new(queue_capacity: usize, queue_bytes: usize) -> Subscriptions {
        Subscriptions {
            plugins: Mutex::new(BTreeMap::new()),
            queue_capacity,
            queue_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Subscriber>> {
        // Every change is one step on one entry: a panicking holder leaves it whole.
        self.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives plugin `id` an empty queue and no filters (once, when it is configured).
    pub fn add_plugin(&self, id: &str) {
        self.lock()
            .entry(id.to_owned())
            .or_insert_with(|| Subscriber {
                filters: Vec::new(),
                receive_own: false,
                queue: Arc::new(EventQueue::new(self.queue_capacity, self.queue_bytes)),
            });
    }

    /// Forgets plugin `id`: its filters and whatever waited in its queue.
    pub fn remove_plugin(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The plugin's queue.
    pub fn queue(&self, id: &str) -> Option<Arc<EventQueue>> {
        self.lock().get(id).map(|s| s.queue.clone())
    }

    /// The plugin's filters, in the order they were added.
    pub fn filters(&self, id: &str) -> Vec<String> {
        self.lock()
            .get(id)
            .map(|s| s.filters.clone())
            .unwrap_or_default()
    }

    /// The counters of the plugin's queue.
    pub fn stats(&self, id: &str) -> QueueStats {
        self.lock()
            .get(id)
            .map(|s| s.queue.stats())
            .unwrap_or_default()
    }

    /// Sets the filters a handshake named (already validated); returns the
    /// queue and what it replaced (to put back if the handshake fails).
    pub fn replace(
        &self,
        id: &str,
        filters: Vec<String>,
        receive_own: bool,
    ) -> Option<(Arc<EventQueue>, Vec<String>, bool)> {
        let mut plugins = self.lock();
        let s = plugins.get_mut(id)?;
        let before = std::mem::replace(&mut s.filters, filters);
        let own_before = std::mem::replace(&mut s.receive_own, receive_own);
        Some((s.queue.clone(), before, own_before))
    }

    /// Queues `published` for every plugin whose filters match it.
    pub(super) fn offer(&self, published: &Arc<Published>, source: &Source) {
        for (id, s) in self.lock().iter() {
            let own = matches!(source, Source::Plugin(p) if p == id);
            if own && !s.receive_own {
                continue;
            }
            if s.filters.iter().any(|f| matches(f, &published.topic)) {
                s.queue.push(published.clone(), false);
            }
        }
    }
}

impl EventHub {
    /// Adds filters to a plugin's subscriptions and queues the retained state
    /// of every topic the new filters match.
    pub fn subscribe(&self, plugin: &str, filters: &[String]) -> Result<(), WireError> {
        for f in filters {
            validate_filter(f).map_err(bad)?;
        }
        let queue = {
            let mut plugins = self.subscriptions.lock();
            plugins.get_mut(plugin).map(|s| {
                for f in filters {
                    if !s.filters.contains(f) {
                        s.filters.push(f.clone());
                    }
                }
                s.queue.clone()
            })
        };
        if let Some(queue) = queue {
            queue.push_retained(self.retained.matching(filters));
        }
        Ok(())
    }

    /// Removes filters from a plugin's subscriptions; returns how many it had.
    pub fn unsubscribe(&self, plugin: &str, filters: &[String]) -> usize {
        self.subscriptions
            .lock()
            .get_mut(plugin)
            .map(|s| {
                let before = s.filters.len();
                s.filters.retain(|f| !filters.contains(f));
                before - s.filters.len()
            })
            .unwrap_or(0)
    }
}
