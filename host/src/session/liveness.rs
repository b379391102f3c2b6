//! The host's heartbeat: send one to every plugin each interval, and declare
//! dead any plugin silent for `liveness` intervals.
//!
//! Silence is checked four times per interval so detection lands within a
//! quarter interval of the deadline rather than a whole one.

use std::sync::Arc;

use iglu_bus::heartbeat::Timing;
use iglu_bus::{Heartbeat, Message};
use tokio_util::sync::CancellationToken;

use super::{Loss, Session};

/// Checks per heartbeat interval.
const CHECKS_PER_INTERVAL: u32 = 4;

/// Runs until `shutdown`, over the sessions `sessions` lists at each check.
pub async fn run(
    timing: Timing,
    sessions: impl Fn() -> Vec<Arc<Session>> + Send,
    shutdown: CancellationToken,
) {
    let Ok(frame) = iglu_bus::encode(&Message::Heartbeat(Heartbeat {})) else {
        return;
    };
    let period = (timing.interval / CHECKS_PER_INTERVAL).max(std::time::Duration::from_millis(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        n = n.wrapping_add(1);
        let beat = n.is_multiple_of(CHECKS_PER_INTERVAL);
        for session in sessions() {
            let silent = session.silent_for();
            if silent > timing.timeout() {
                session.close(Loss::HeartbeatTimeout(silent));
            } else if beat {
                // Never waits: a plugin whose socket queue is full is not
                // reading, and this send ends its session (`Session::send`).
                session.send(frame.clone());
            }
        }
    }
}
