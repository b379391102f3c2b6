//! Device events: publish on a topic, deliver to every matching subscriber.
//!
//! A publication is validated, encoded once into the EVENT body frame
//! ([`publish`]), and the same bytes are queued for every subscribing plugin
//! ([`subscriptions`], each plugin's [`queue`]) and offered to in-process
//! subscribers ([`taps`], for embedding programs). Each plugin's queue is
//! drained onto its session by [`delivery`], paced by the credit the plugin
//! grants. Retained publications are kept per topic ([`retained`]) and given
//! to every new subscription first. Lifecycle changes are events too
//! ([`lifecycle`]).
//!
//! Nothing here knows about plugin lifecycles or the host's other parts: the
//! hub is handed to whoever publishes, and plugins' subscriptions are kept
//! here, by plugin id.

pub mod delivery;
pub mod lifecycle;
pub mod publish;
pub mod queue;
pub mod retained;
pub mod subscriptions;
pub mod taps;

use std::sync::Arc;

use bytes::Bytes;
use iglu_bus::{ErrorCode, WireError};
use serde::Serialize;
use tokio::sync::broadcast;

use lifecycle::LifecycleEvent;
use retained::Retained;
use subscriptions::Subscriptions;
use taps::Taps;

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
    /// The encoded EVENT body, shared by every subscriber.
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

/// Everything about events the host keeps: retained state, plugins'
/// subscriptions and queues, in-process subscribers, and the lifecycle
/// broadcast.
pub struct EventHub {
    /// The current state of every retained topic.
    pub retained: Retained,
    /// Each plugin's filters and queue.
    pub subscriptions: Subscriptions,
    /// In-process subscribers.
    pub taps: Taps,
    lifecycle: broadcast::Sender<LifecycleEvent>,
}

impl EventHub {
    /// A hub whose plugin queues hold `queue` events and `queue_bytes` bytes each.
    pub fn new(queue: usize, queue_bytes: usize) -> Arc<EventHub> {
        Arc::new(EventHub {
            retained: Retained::default(),
            subscriptions: Subscriptions::new(queue, queue_bytes),
            taps: Taps::default(),
            lifecycle: broadcast::channel(lifecycle::BROADCAST).0,
        })
    }

    /// A stream of plugin lifecycle changes.
    pub fn lifecycle(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.lifecycle.subscribe()
    }
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

fn bad(message: String) -> WireError {
    WireError::new(ErrorCode::BadArguments, message)
}
