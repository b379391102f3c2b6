//! In-process subscribers, for embedding programs: matching events are
//! offered to a bounded channel; when it is full the event is dropped for
//! that tap only, so a slow embedder never slows publishers.

use std::sync::Mutex;

use iglu_bus::topic::{matches, validate_filter};
use iglu_bus::WireError;
use tokio::sync::mpsc;

use super::{bad, Event, EventHub};

struct Tap {
    filters: Vec<String>,
    tx: mpsc::Sender<Event>,
}

/// Every in-process subscription.
#[derive(Default)]
pub struct Taps {
    taps: Mutex<Vec<Tap>>,
}

impl Taps {
    /// Offers `event` to every matching tap; forgets taps whose receiver is gone.
    pub(super) fn offer(&self, event: &Event) {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        taps.retain(|tap| !tap.tx.is_closed());
        for tap in taps.iter() {
            if tap.filters.iter().any(|f| matches(f, &event.topic))
                && tap.tx.try_send(event.clone()).is_err()
            {
                tracing::debug!(topic = %event.topic, "an in-process subscriber is full: event dropped for it");
            }
        }
    }
}

impl EventHub {
    /// Subscribes in process: retained states first, then live events, into
    /// a channel of `capacity`.
    pub fn tap(
        &self,
        filters: Vec<String>,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Event>, WireError> {
        for f in &filters {
            validate_filter(f).map_err(bad)?;
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        // Registered under the same lock that publishing takes, after the
        // retained states went in: nothing published in between is lost
        // or comes before the retained state it replaced.
        let mut taps = self.taps.taps.lock().unwrap_or_else(|p| p.into_inner());
        for event in self.retained.events_matching(&filters) {
            let _ = tx.try_send(event);
        }
        taps.push(Tap { filters, tx });
        Ok(rx)
    }
}
