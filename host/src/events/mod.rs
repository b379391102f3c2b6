//! Device events: publish on a topic, deliver to every matching subscriber.
//!
//! A publication is validated, encoded once into the EVENT body frame, and
//! the same bytes are queued for every subscribing plugin ([`queue`]) and
//! offered to in-process subscribers ([`Tap`]s, for embedding programs).
//! Each plugin's queue is drained onto its session by [`delivery`], paced by
//! the credit the plugin grants. Retained publications are kept per topic
//! and given to every new subscription first.

pub mod delivery;
pub mod lifecycle;
pub mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use iglu_bus::topic::{matches, validate_filter, validate_topic};
use iglu_bus::{ErrorCode, EventBody, WireError};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::host::Shared;

/// Most topics with a retained event; beyond it, new retained topics are refused.
pub const MAX_RETAINED: usize = 10_000;

/// Who published an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The host's own bookkeeping (its `$iglu/` lifecycle topics): the only
    /// source that may publish a `$` topic. Plugins see it as `host`.
    System,
    /// On the host's behalf: the CLI, the simulator, an embedding program.
    Host,
    /// A plugin, by id.
    Plugin(String),
}

impl Source {
    fn as_str(&self) -> &str {
        match self {
            Source::System | Source::Host => "host",
            Source::Plugin(id) => id,
        }
    }
}

/// A publication as it is queued: the topic for matching, the source for
/// "not your own events", and the EVENT body frame, encoded once.
pub struct Published {
    /// Where it was published.
    pub topic: String,
    /// `host` or the publishing plugin's id.
    pub source: String,
    /// The encoded [`EventBody`], shared by every subscriber.
    pub body: Bytes,
}

/// An event as an in-process subscriber sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Where it was published.
    pub topic: String,
    /// Its MessagePack payload.
    pub payload: Bytes,
    /// `host` or the publishing plugin's id.
    pub source: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Whether this is a retained state given on subscribe.
    pub retained: bool,
}

/// An in-process subscription: matching events are offered to a bounded
/// channel; when it is full the event is dropped for this tap (and counted),
/// so a slow embedder never slows publishers.
struct Tap {
    filters: Vec<String>,
    tx: mpsc::Sender<Event>,
}

/// Retained state and in-process subscribers.
#[derive(Default)]
pub struct EventHub {
    retained: Mutex<HashMap<String, (Arc<Published>, Event)>>,
    taps: Mutex<Vec<Tap>>,
}

/// Encodes `value` as a MessagePack payload.
pub fn payload<T: Serialize>(value: &T) -> Result<Bytes, WireError> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|e| {
            WireError::new(
                ErrorCode::BadArguments,
                format!("payload does not encode: {e}"),
            )
        })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn bad(message: String) -> WireError {
    WireError::new(ErrorCode::BadArguments, message)
}

/// Checks that `payload` is exactly one MessagePack document.
fn validate_payload(payload: &[u8]) -> Result<(), WireError> {
    let mut rest = payload;
    rmpv::decode::read_value(&mut rest)
        .map_err(|e| bad(format!("the payload is not a MessagePack document: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "the payload has {} bytes after its MessagePack document",
            rest.len()
        )));
    }
    Ok(())
}

/// Publishes an event: validates, encodes once, retains if asked, and queues
/// it for every matching subscriber. A retained publication with a `nil`
/// payload clears the topic's retained state (the MQTT convention).
pub fn publish(
    shared: &Shared,
    source: Source,
    topic: &str,
    payload: Bytes,
    retain: bool,
) -> Result<(), WireError> {
    validate_topic(topic).map_err(bad)?;
    if topic.starts_with('$') && source != Source::System {
        return Err(bad(format!(
            "topic {topic:?}: topics starting with '$' are the host's own (its lifecycle announcements); publish elsewhere"
        )));
    }
    validate_payload(&payload)?;
    let timestamp_ms = now_ms();
    let body = iglu_bus::codec::encode_event_body(&EventBody {
        topic: topic.to_owned(),
        payload: payload.clone(),
        timestamp_ms,
        source: source.as_str().to_owned(),
    })
    .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
    let published = Arc::new(Published {
        topic: topic.to_owned(),
        source: source.as_str().to_owned(),
        body,
    });
    let event = Event {
        topic: topic.to_owned(),
        payload: payload.clone(),
        source: source.as_str().to_owned(),
        timestamp_ms,
        retained: false,
    };
    if retain {
        let mut retained = shared
            .events
            .retained
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if payload[..] == [0xc0] {
            retained.remove(topic);
        } else if retained.len() >= MAX_RETAINED && !retained.contains_key(topic) {
            return Err(WireError::new(
                ErrorCode::Internal,
                format!("the host already retains {MAX_RETAINED} topics"),
            ));
        } else {
            let mut kept = event.clone();
            kept.retained = true;
            retained.insert(topic.to_owned(), (published.clone(), kept));
        }
    }
    for entry in shared.registry.lock().values() {
        let own = matches!(&source, Source::Plugin(id) if *id == entry.id);
        if own && !entry.receive_own {
            continue;
        }
        if entry.subscriptions.iter().any(|f| matches(f, topic)) {
            entry.queue.push(published.clone(), false);
        }
    }
    let mut taps = shared.events.taps.lock().unwrap_or_else(|p| p.into_inner());
    taps.retain(|tap| !tap.tx.is_closed());
    for tap in taps.iter() {
        if tap.filters.iter().any(|f| matches(f, topic)) && tap.tx.try_send(event.clone()).is_err()
        {
            tracing::debug!(%topic, "an in-process subscriber is full: event dropped for it");
        }
    }
    Ok(())
}

impl EventHub {
    /// Retained publications matching any of `filters`.
    pub fn retained_matching(&self, filters: &[String]) -> Vec<Arc<Published>> {
        let retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<_> = retained
            .values()
            .filter(|(p, _)| filters.iter().any(|f| matches(f, &p.topic)))
            .map(|(p, _)| p.clone())
            .collect();
        found.sort_by(|a, b| a.topic.cmp(&b.topic));
        found
    }

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
        {
            let retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
            for (_, event) in retained.values() {
                if filters.iter().any(|f| matches(f, &event.topic)) {
                    let _ = tx.try_send(event.clone());
                }
            }
        }
        self.taps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Tap { filters, tx });
        Ok(rx)
    }
}

/// Adds filters to a plugin's subscriptions and queues the retained state
/// of every topic the new filters match.
pub fn subscribe(shared: &Shared, plugin: &str, filters: &[String]) -> Result<(), WireError> {
    for f in filters {
        validate_filter(f).map_err(bad)?;
    }
    let queue = shared.registry.with(plugin, |e| {
        for f in filters {
            if !e.subscriptions.contains(f) {
                e.subscriptions.push(f.clone());
            }
        }
        e.queue.clone()
    });
    if let Some(queue) = queue {
        queue.push_retained(shared.events.retained_matching(filters));
    }
    Ok(())
}

/// Removes filters from a plugin's subscriptions; returns how many it had.
pub fn unsubscribe(shared: &Shared, plugin: &str, filters: &[String]) -> usize {
    shared
        .registry
        .with(plugin, |e| {
            let before = e.subscriptions.len();
            e.subscriptions.retain(|f| !filters.contains(f));
            before - e.subscriptions.len()
        })
        .unwrap_or(0)
}
