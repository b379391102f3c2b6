//! Publishing: validate, encode once, retain if asked, queue for every
//! matching subscriber.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use iglu_bus::topic::validate_topic;
use iglu_bus::{ErrorCode, EventBody, WireError};

use super::{bad, Event, EventHub, Published, Source};

impl EventHub {
    /// Publishes an event. A retained publication with a `nil` payload
    /// clears the topic's retained state (the MQTT convention).
    pub fn publish(
        &self,
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
        let event = Event {
            topic: topic.to_owned(),
            payload,
            source: source.as_str().to_owned(),
            timestamp_ms: now_ms(),
            retained: false,
        };
        let published = Arc::new(published(&event)?);
        if retain {
            self.retained.keep(&published, &event)?;
        }
        self.subscriptions.offer(&published, &source);
        self.taps.offer(&event);
        Ok(())
    }
}

impl EventHub {
    /// Queues an event from the host for one plugin only, whatever it
    /// subscribes to (its settings changed, on `$iglu/plugins/<id>/settings`).
    /// False if there is no such plugin.
    pub fn send_to(&self, plugin: &str, topic: &str, payload: Bytes) -> Result<bool, WireError> {
        let event = Event {
            topic: topic.to_owned(),
            payload,
            source: Source::System.as_str().to_owned(),
            timestamp_ms: now_ms(),
            retained: false,
        };
        let published = Arc::new(published(&event)?);
        match self.subscriptions.queue(plugin) {
            Some(queue) => {
                queue.push(published, false);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// An event as it is queued: its EVENT body encoded once.
pub(super) fn published(event: &Event) -> Result<Published, WireError> {
    let body = iglu_bus::codec::encode_event_body(&EventBody {
        topic: event.topic.clone(),
        payload: event.payload.clone(),
        timestamp_ms: event.timestamp_ms,
        source: event.source.clone(),
    })
    .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(Published {
        topic: event.topic.clone(),
        source: event.source.clone(),
        body,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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
