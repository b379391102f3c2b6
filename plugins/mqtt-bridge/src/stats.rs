//! What the bridge has done, counted: reported to the host (`iglu status`)
//! and answered by the `status` method.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// Counters, shared by the bridge's tasks.
#[derive(Default)]
pub struct Stats {
    pub connected: AtomicBool,
    /// Successful connections (CONNACK) so far.
    pub connects: AtomicU64,
    /// Broker messages that became bus events.
    pub imported: AtomicU64,
    /// Publications the broker acknowledged (QoS 1-2) or that were written
    /// to it (QoS 0).
    pub exported: AtomicU64,
    /// Broker messages skipped: a payload that does not fit its rule, a
    /// topic the bus refuses.
    pub skipped: AtomicU64,
    /// Broker messages carrying this host's own tag, dropped.
    pub dropped_own: AtomicU64,
    /// Bus events dropped from the offline queue (oldest first).
    pub dropped_offline: AtomicU64,
    /// The last connection error, for people.
    pub last_error: Mutex<Option<String>>,
}

/// A snapshot, as `status` answers and `status.report` carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub broker: String,
    pub client_id: String,
    pub connected: bool,
    pub connects: u64,
    pub imported: u64,
    pub exported: u64,
    pub skipped: u64,
    pub dropped_own: u64,
    pub dropped_offline: u64,
    pub queued: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub fn snapshot(&self, broker: &str, client_id: &str, queued: usize) -> Snapshot {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            broker: broker.to_owned(),
            client_id: client_id.to_owned(),
            connected: self.connected.load(Ordering::Relaxed),
            connects: n(&self.connects),
            imported: n(&self.imported),
            exported: n(&self.exported),
            skipped: n(&self.skipped),
            dropped_own: n(&self.dropped_own),
            dropped_offline: n(&self.dropped_offline),
            queued,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

impl Snapshot {
    /// The state word and the line `iglu status` shows.
    pub fn headline(&self) -> (&'static str, String) {
        let counts = format!(
            "imported {}, exported {}, skipped {}, own dropped {}, offline dropped {}, queued {}",
            self.imported,
            self.exported,
            self.skipped,
            self.dropped_own,
            self.dropped_offline,
            self.queued
        );
        if self.connected {
            (
                "connected",
                format!("{} as {}; {counts}", self.broker, self.client_id),
            )
        } else {
            let why = self.last_error.as_deref().unwrap_or("not connected yet");
            let word = if self.connects == 0 {
                "connecting"
            } else {
                "reconnecting"
            };
            (word, format!("{}: {why}; {counts}", self.broker))
        }
    }
}
