//! Moves one plugin's queued events onto its session, as credit allows.
//!
//! One task per session. It never waits on anything but this plugin's own
//! credit and socket, so a slow subscriber slows nobody else. Whatever is
//! waiting (up to `BATCH`) goes out as one ZeroMQ message of header/body
//! frame pairs: under load one wake-up and one write carry many events,
//! and the shared body frames are never copied.

use std::sync::Arc;

use super::queue::EventQueue;
use crate::session::Session;

/// Most events in one message: enough to amortise a wake-up and a syscall,
/// small enough not to delay the first event of a burst.
const BATCH: usize = 64;

/// Runs until the session closes; then hands unacknowledged events back to the queue.
pub async fn run(session: Arc<Session>, queue: Arc<EventQueue>) {
    loop {
        let batch = queue.take_batch(session.id, BATCH);
        if batch.is_empty() {
            if session.is_handed_over() {
                // An upgrade gave the queue to the new version: this session
                // only finishes what it was sent. A wake-up it took was the
                // new owner's: passed on.
                queue.nudge();
                session.closed().await;
                break;
            }
            tokio::select! {
                _ = queue.changed() => {}
                _ = session.closed() => break,
            }
            continue;
        }
        let mut frames = Vec::with_capacity(batch.len() * 2);
        for item in batch {
            frames.push(iglu_bus::codec::encode_event_header(
                item.seq,
                item.retained,
            ));
            frames.push(item.event.body.clone());
        }
        if !session.send_frames(frames) {
            break;
        }
    }
    queue.detach(session.id);
}
