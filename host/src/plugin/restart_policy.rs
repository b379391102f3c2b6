//! When to restart a crashed plugin, and when to give up on it.
//!
//! Exponential backoff (Paranoid Pirate, Kubernetes CrashLoopBackOff) plus a
//! restart intensity limit (Erlang/OTP supervisors): more than `max_restarts`
//! crashes within `window` and the plugin is Failed until someone starts it.
//! The backoff is derived from the crashes still inside the window, so a
//! plugin that has been stable for a window starts again from the first step.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::RestartConfig;

/// What to do after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start it again after this delay.
    RestartAfter(Duration),
    /// Too many crashes in the window: leave it Failed.
    GiveUp {
        /// Crashes counted in the window.
        crashes: usize,
    },
}

/// Crash history of one plugin.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    initial: Duration,
    max: Duration,
    limit: usize,
    window: Duration,
    crashes: VecDeque<Instant>,
}

impl RestartPolicy {
    /// A policy with no crashes recorded.
    pub fn new(config: &RestartConfig) -> RestartPolicy {
        RestartPolicy {
            initial: Duration::from_millis(config.backoff_initial_ms),
            max: Duration::from_millis(config.backoff_max_ms),
            limit: config.max_restarts as usize,
            window: Duration::from_secs(config.window_s),
            crashes: VecDeque::new(),
        }
    }

    /// Records a crash at `now` and decides.
    pub fn on_crash(&mut self, now: Instant) -> Verdict {
        self.crashes.push_back(now);
        while let Some(&first) = self.crashes.front() {
            if now.saturating_duration_since(first) > self.window {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        let n = self.crashes.len();
        if n > self.limit {
            return Verdict::GiveUp { crashes: n };
        }
        let factor = 1u32.checked_shl((n - 1) as u32).unwrap_or(u32::MAX);
        Verdict::RestartAfter(self.initial.saturating_mul(factor).min(self.max))
    }

    /// Forgets the history (after a manual start).
    pub fn reset(&mut self) {
        self.crashes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy::new(&RestartConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            max_restarts: 5,
            window_s: 60,
        })
    }

    #[test]
    fn backoff_doubles_caps_then_gives_up() {
        let mut p = policy();
        let t = Instant::now();
        let delays: Vec<_> = (0..5)
            .map(|i| p.on_crash(t + Duration::from_secs(i)))
            .collect();
        let ms = |v: &Verdict| match v {
            Verdict::RestartAfter(d) => d.as_millis(),
            Verdict::GiveUp { .. } => 0,
        };
        assert_eq!(
            delays.iter().map(ms).collect::<Vec<_>>(),
            vec![100, 200, 400, 800, 1000]
        );
        assert_eq!(
            p.on_crash(t + Duration::from_secs(6)),
            Verdict::GiveUp { crashes: 6 }
        );
    }

    #[test]
    fn old_crashes_leave_the_window() {
        let mut p = policy();
        let t = Instant::now();
        for i in 0..5 {
            p.on_crash(t + Duration::from_secs(i));
        }
        // 100 s later the earlier crashes no longer count: back to the first step.
        assert_eq!(
            p.on_crash(t + Duration::from_secs(100)),
            Verdict::RestartAfter(Duration::from_millis(100))
        );
    }

    #[test]
    fn reset_forgets() {
        let mut p = policy();
        let t = Instant::now();
        for i in 0..6 {
            p.on_crash(t + Duration::from_millis(i));
        }
        p.reset();
        assert!(matches!(p.on_crash(t), Verdict::RestartAfter(_)));
    }
}
