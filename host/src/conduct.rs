//! How much bad input the host takes from one source before it stops
//! logging it line by line, and before it stops listening.
//!
//! One peer flooding undecodable frames wrote 23 MB of log in 2.6 s (160,000
//! warnings); a plugin's 100,000 garbage messages 40 MB. So each source's
//! offences are counted in windows: the first few of a window are logged in
//! full, the rest only counted and reported with the next line that is
//! logged, and a source that passes [`CUT_AFTER`] in one window is cut. Pure:
//! time is an argument, so the policy is tested without waiting.

use std::time::{Duration, Instant};

/// The window offences are counted in.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Offences logged in full per window.
pub const LOGGED_PER_WINDOW: u32 = 5;
/// Offences in one window that get a peer cut: well above a buggy plugin's
/// occasional bad frame, far below a flood (thousands per second).
pub const CUT_AFTER: u32 = 100;

/// One source's record.
#[derive(Debug, Default)]
pub struct Conduct {
    window_start: Option<Instant>,
    in_window: u32,
    /// Offences counted but not logged since the last line that was.
    suppressed: u64,
}

/// What to do about one offence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Log this one.
    pub log: bool,
    /// When logging: how many went unlogged since the last logged line.
    pub suppressed: u64,
    /// The source passed [`CUT_AFTER`] in this window: cut it.
    pub cut: bool,
    /// Offences so far in this window, this one included.
    pub in_window: u32,
}

impl Conduct {
    /// Records one offence at `now`.
    pub fn offend(&mut self, now: Instant) -> Verdict {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if expired {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        let log = self.in_window <= LOGGED_PER_WINDOW;
        let suppressed = if log {
            std::mem::take(&mut self.suppressed)
        } else {
            self.suppressed += 1;
            0
        };
        Verdict {
            log,
            suppressed,
            cut: self.in_window >= CUT_AFTER,
            in_window: self.in_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_a_few_times_per_window_then_cut() {
        let mut c = Conduct::default();
        let t0 = Instant::now();
        let verdicts: Vec<Verdict> = (0..CUT_AFTER).map(|_| c.offend(t0)).collect();
        let logged = verdicts.iter().filter(|v| v.log).count();
        assert_eq!(logged, LOGGED_PER_WINDOW as usize);
        assert!(verdicts[..CUT_AFTER as usize - 1].iter().all(|v| !v.cut));
        assert!(verdicts[CUT_AFTER as usize - 1].cut);
        // The next window: logged again, with the count of what was not.
        let next = c.offend(t0 + WINDOW);
        assert!(next.log && !next.cut);
        assert_eq!(next.suppressed, u64::from(CUT_AFTER - LOGGED_PER_WINDOW));
        assert_eq!(c.offend(t0 + WINDOW).suppressed, 0);
    }

    #[test]
    fn occasional_bad_frames_are_all_logged_and_never_cut() {
        let mut c = Conduct::default();
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let v = c.offend(t0 + WINDOW / 2 * i);
            assert!(v.log && !v.cut, "offence {i}: {v:?}");
        }
    }
}
