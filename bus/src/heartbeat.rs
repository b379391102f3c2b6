//! Liveness timing, the same rule on both sides of a connection.
//!
//! Each side sends a HEARTBEAT every `interval`; any message received counts
//! as a sign of life; a peer silent for `interval * liveness` is dead. This is
//! the Paranoid Pirate pattern of the ZeroMQ guide.

use std::time::{Duration, Instant};

/// Default heartbeat interval: 1 s, as in the ZeroMQ guide's Paranoid Pirate.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);

/// Default number of silent intervals before a peer is dead: 3, as in
/// Paranoid Pirate and Majordomo.
pub const DEFAULT_LIVENESS: u32 = 3;

/// Heartbeat timing announced in WELCOME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often to send a heartbeat.
    pub interval: Duration,
    /// How many silent intervals make a peer dead.
    pub liveness: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            interval: DEFAULT_INTERVAL,
            liveness: DEFAULT_LIVENESS,
        }
    }
}

impl Timing {
    /// How long a peer may stay silent before it is dead.
    pub fn timeout(&self) -> Duration {
        self.interval * self.liveness.max(1)
    }
}

/// Tracks when a peer was last heard from.
#[derive(Debug, Clone)]
pub struct Liveness {
    timing: Timing,
    last_seen: Instant,
}

impl Liveness {
    /// Starts tracking as if the peer had just spoken.
    pub fn new(timing: Timing, now: Instant) -> Self {
        Liveness {
            timing,
            last_seen: now,
        }
    }

    /// Records a sign of life.
    pub fn seen(&mut self, now: Instant) {
        self.last_seen = now;
    }

    /// Whether the peer has been silent for longer than the timeout.
    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) > self.timing.timeout()
    }

    /// How long since the peer last spoke.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_after_liveness_intervals() {
        let t0 = Instant::now();
        let timing = Timing {
            interval: Duration::from_millis(100),
            liveness: 3,
        };
        let mut l = Liveness::new(timing, t0);
        assert!(!l.expired(t0 + Duration::from_millis(300)));
        assert!(l.expired(t0 + Duration::from_millis(301)));
        l.seen(t0 + Duration::from_millis(250));
        assert!(!l.expired(t0 + Duration::from_millis(500)));
    }
}
