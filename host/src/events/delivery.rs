//! Moves one plugin's queued events onto its session, as credit allows.
//!
//! One task per session. It never waits on anything but this plugin's own
//! credit and outbox, so a slow subscriber slows nobody else.

use std::sync::Arc;

use iglu_bus::{EventHeader, Message};

use super::queue::EventQueue;
use crate::session::Session;

/// Runs until the session closes; then hands unacknowledged events back to the queue.
pub async fn run(session: Arc<Session>, queue: Arc<EventQueue>) {
    loop {
        match queue.take(session.id) {
            Some(item) => {
                let header = Message::Event(EventHeader {
                    seq: item.seq,
                    retained: item.retained,
                });
                let Ok(head) = iglu_bus::encode(&header) else {
                    break;
                };
                if !session.send_pair(head, item.event.body.clone()).await {
                    break;
                }
            }
            None => {
                tokio::select! {
                    _ = queue.changed() => {}
                    _ = session.closed() => break,
                }
            }
        }
    }
    queue.detach(session.id);
}
