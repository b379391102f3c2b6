//! The deadlines of one guarded connection, kept on the host's clock.
//!
//! A `sleep_until` in the forwarding loop was a timer made and dropped on
//! every read, and kept one pending on the runtime that carries every
//! plugin's calls for as long as a TCP plugin was connected: each park of
//! that runtime then armed a kernel timer (see [`crate::clock`]). The
//! forwarding loop only notes when it last read and whether the HELLO has
//! passed; a task on the clock compares that with the deadlines.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// What the forwarding loop tells the watchdog.
pub struct Activity {
    since: Instant,
    /// Milliseconds from `since` to the last read.
    last_read_ms: AtomicU64,
    /// The host answered the connection's HELLO with WELCOME.
    admitted: AtomicBool,
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            since: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            admitted: AtomicBool::new(false),
        })
    }

    /// The client sent something.
    pub fn read(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// The host admitted the plugin: from now on, only silence counts.
    /// Until then the handshake deadline runs whatever the client sends, so
    /// a peer that is never admitted cannot stay by chattering.
    pub fn admitted(&self) {
        self.admitted.store(true, Ordering::Relaxed);
    }

    /// Why the connection must be cut now, if it must.
    fn overdue(&self, hello_deadline: Duration, idle: Duration) -> Option<String> {
        self.overdue_at(self.since.elapsed(), hello_deadline, idle)
    }

    /// Why a connection `age` old must be cut, if it must.
    fn overdue_at(
        &self,
        age: Duration,
        hello_deadline: Duration,
        idle: Duration,
    ) -> Option<String> {
        if !self.admitted.load(Ordering::Relaxed) {
            return (age >= hello_deadline)
                .then(|| format!("not admitted within {} ms", hello_deadline.as_millis()));
        }
        let last = Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
        (age.saturating_sub(last) >= idle).then(|| format!("silent for {} ms", idle.as_millis()))
    }
}

/// Starts watching `activity` on `clock`. The receiver yields the reason
/// once a deadline passes; dropping it (the connection ended) ends the watch.
pub fn watch(
    clock: &tokio::runtime::Handle,
    activity: Arc<Activity>,
    hello_deadline: Duration,
    idle: Duration,
) -> oneshot::Receiver<String> {
    let (cut, reason) = oneshot::channel();
    // A deadline is noticed within a tenth of the shorter one.
    let period =
        (hello_deadline.min(idle) / 10).clamp(Duration::from_millis(5), Duration::from_secs(1));
    clock.spawn(async move {
        let mut cut = cut;
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = cut.closed() => return,
                _ = tick.tick() => {}
            }
            if let Some(why) = activity.overdue(hello_deadline, idle) {
                let _ = cut.send(why);
                return;
            }
        }
    });
    reason
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_deadline_counts_until_admission_and_silence_after_it() {
        let a = Activity::new();
        let (hello, idle) = (Duration::from_millis(30), Duration::from_millis(60));
        let at = |ms: u64| a.overdue_at(Duration::from_millis(ms), hello, idle);
        assert_eq!(at(0), None);
        a.last_read_ms.store(40, Ordering::Relaxed);
        assert_eq!(
            at(40).unwrap(),
            "not admitted within 30 ms",
            "reads do not count"
        );
        a.admitted();
        assert_eq!(at(40), None, "it just read");
        assert_eq!(at(99), None);
        assert_eq!(at(100).unwrap(), "silent for 60 ms");
        a.last_read_ms.store(100, Ordering::Relaxed);
        assert_eq!(at(100), None);
    }

    #[tokio::test]
    async fn the_watch_reports_the_cut_and_ends_with_its_connection() {
        let clock = crate::clock::Clock::start().unwrap();
        let a = Activity::new();
        let hello = Duration::from_millis(20);
        let reason = watch(clock.handle(), a.clone(), hello, Duration::from_secs(60));
        let why = tokio::time::timeout(Duration::from_secs(10), reason)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(why, "not admitted within 20 ms");
        // An admitted, active connection is not cut; when it ends (the
        // receiver is dropped), its watch task ends too.
        a.admitted();
        let metrics = clock.handle().metrics();
        let ended = watch(clock.handle(), a, hello, Duration::from_secs(60));
        assert_eq!(metrics.num_alive_tasks(), 1, "the watch is running");
        drop(ended);
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while metrics.num_alive_tasks() > 0 {
            assert!(
                std::time::Instant::now() < end,
                "the watch outlived its connection"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        clock.stop().await;
    }
}
