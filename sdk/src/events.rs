//! Events as a plugin sees them, and the task that feeds them to its handler.
//!
//! Events are handled one at a time, in the order the host sent them, so
//! events from one publisher reach the handler in the order published. Each
//! finished event returns one credit to the host, which never has more than
//! the window in flight: a slow handler makes the host queue (and, past its
//! bound, drop the oldest) for this plugin only.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use iglu_bus::{Credit, Message};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::context::Context;
use crate::error::HandlerError;
use crate::outgoing::Outgoing;

/// One event delivered to this plugin.
#[derive(Debug, Clone)]
pub struct Event {
    /// Where it was published.
    pub topic: String,
    /// Its data, one MessagePack document; see [`Event::decode`].
    pub payload: Bytes,
    /// `host`, or the id of the plugin that published it.
    pub source: String,
    /// This plugin's sequence number for it.
    pub seq: u64,
    /// Events lost just before this one because this plugin's queue on the
    /// host overflowed (a gap in `seq`); 0 normally.
    pub missed: u64,
    /// Whether this is the topic's retained state, sent on subscribe.
    pub retained: bool,
    /// When the host accepted it, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl Event {
    /// Decodes the payload into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        rmp_serde::from_slice(&self.payload)
            .map_err(|e| HandlerError::msg(format!("event on {} does not decode: {e}", self.topic)))
    }
}

/// The event handler with its types erased.
pub(crate) type EventHandler = Arc<
    dyn Fn(Context, Event) -> Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>
        + Send
        + Sync,
>;

/// Wraps an async event handler.
pub(crate) fn erase<F, Fut>(handler: F) -> EventHandler
where
    F: Fn(Context, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(move |ctx, event| Box::pin(handler(ctx, event)))
}

/// What events go to.
pub(crate) struct Handlers {
    /// The plugin's event handler.
    pub on_event: Option<EventHandler>,
    /// Told when the host sends new settings.
    pub on_settings: Option<crate::on_connect::ConnectHandler>,
}

/// Handles events one by one and returns credit as it goes. The host's
/// settings changes (on this plugin's own settings topic, from the host)
/// update the settings and go to `on_settings`, not to the event handler.
pub(crate) async fn run(
    handlers: Handlers,
    ctx: Context,
    mut events: mpsc::Receiver<Event>,
    outgoing: mpsc::Sender<Outgoing>,
    window: u32,
    connection: u64,
) {
    let mut last_seq = 0u64;
    let mut owed = 0u32;
    // Return credit in batches: a quarter window at a time, or whenever the
    // handler has caught up, so the host is never starved of credit.
    let batch = (window / 4).max(1);
    let settings_topic = crate::settings::topic(ctx.plugin_id());
    let handler = handlers.on_event;
    while let Some(mut event) = events.recv().await {
        if last_seq != 0 && event.seq > last_seq + 1 {
            event.missed = event.seq - last_seq - 1;
            tracing::warn!(
                plugin = %ctx.plugin_id(),
                missed = event.missed,
                seq = event.seq,
                "events were dropped for this plugin (its queue on the host overflowed)"
            );
        }
        last_seq = last_seq.max(event.seq);
        if event.topic == settings_topic && event.source == "host" {
            match ctx.settings_cell().update(&event.payload) {
                Ok(()) => {
                    tracing::info!(plugin = %ctx.plugin_id(), "settings changed");
                    if let Some(h) = &handlers.on_settings {
                        crate::on_connect::run(h.clone(), ctx.clone()).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(plugin = %ctx.plugin_id(), error = %e, "ignoring settings from the host")
                }
            }
        } else if let Some(handler) = &handler {
            let topic = event.topic.clone();
            let outcome = AssertUnwindSafe(handler(ctx.clone(), event))
                .catch_unwind()
                .await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(plugin = %ctx.plugin_id(), %topic, error = %e, "event handler failed")
                }
                Err(_) => {
                    tracing::error!(plugin = %ctx.plugin_id(), %topic, "event handler panicked")
                }
            }
        }
        owed += 1;
        if owed >= batch || events.is_empty() {
            if let Ok(frame) = iglu_bus::encode(&Message::Credit(Credit { events: owed })) {
                if outgoing
                    .send(Outgoing::Credit { connection, frame })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            owed = 0;
        }
    }
}
