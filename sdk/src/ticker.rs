//! Heartbeat ticks from a thread of their own.
//!
//! A tokio runtime with a timer pending parks in `epoll_wait` with a
//! timeout, and the kernel arms and disarms a high-resolution timer around
//! every such wait. The I/O loop parks twice per call it serves, so an
//! `Interval` on its runtime made every call pay for it (the host does the
//! same with its own clock; see `iglu::clock` for the measurement). A
//! sleeping thread sends the ticks instead, and the I/O runtime holds no
//! timer while it only serves calls.

use std::time::Duration;

use tokio::sync::mpsc;

/// Bytes of stack for the ticking thread: it only sleeps and sends.
const STACK: usize = 64 * 1024;

/// A ticking thread started before its interval is known: the plugin
/// starts it while it waits for WELCOME, so the thread's start-up is not on
/// the way to the first call. It ends if dropped before [`Pending::start`].
pub(crate) struct Pending {
    interval: Option<std::sync::mpsc::Sender<Duration>>,
    ticks: Option<mpsc::Receiver<()>>,
}

impl Pending {
    pub(crate) fn spawn() -> Pending {
        Pending::spawn_holding(())
    }

    /// Starts the thread, which holds `token` until it ends (so a test can
    /// watch this thread, not count every ticker's).
    fn spawn_holding(token: impl Send + 'static) -> Pending {
        let (interval_tx, interval_rx) = std::sync::mpsc::channel::<Duration>();
        let (tx, rx) = mpsc::channel(1);
        let started = std::thread::Builder::new()
            .name("iglu-heartbeat".into())
            .stack_size(STACK)
            .spawn(move || {
                let _token = token;
                let Ok(interval) = interval_rx.recv() else {
                    return;
                };
                loop {
                    std::thread::sleep(interval);
                    // Full: the last tick is still unread, one is enough.
                    if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                        return;
                    }
                }
            });
        match started {
            Ok(_) => Pending {
                interval: Some(interval_tx),
                ticks: Some(rx),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no heartbeat thread: ticking on the I/O runtime");
                Pending {
                    interval: None,
                    ticks: None,
                }
            }
        }
    }

    /// Ticks every `interval`, the first one an interval from now.
    pub(crate) fn start(self, interval: Duration) -> Ticker {
        let thread = match (self.interval, self.ticks) {
            (Some(start), Some(ticks)) if start.send(interval).is_ok() => Some(ticks),
            _ => None,
        };
        Ticker {
            interval,
            source: thread.map_or_else(|| timer(interval), Source::Thread),
        }
    }
}

/// Ticks every `interval`.
pub(crate) struct Ticker {
    interval: Duration,
    source: Source,
}

enum Source {
    /// The thread; it ends within an interval of the ticker being dropped.
    Thread(mpsc::Receiver<()>),
    /// If no thread could be started (or it is gone): a tokio timer.
    Timer(tokio::time::Interval),
}

impl Ticker {
    /// The next tick. Cancel-safe.
    pub(crate) async fn tick(&mut self) {
        loop {
            match &mut self.source {
                Source::Thread(rx) => {
                    if rx.recv().await.is_some() {
                        return;
                    }
                    self.source = timer(self.interval);
                }
                Source::Timer(t) => {
                    t.tick().await;
                    return;
                }
            }
        }
    }
}

fn timer(interval: Duration) -> Source {
    let start = tokio::time::Instant::now() + interval;
    let mut t = tokio::time::interval_at(start, interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Source::Timer(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Weak};

    async fn until_ended(what: &str, thread: &Weak<()>) {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while thread.upgrade().is_some() {
            assert!(std::time::Instant::now() < end, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_ticker_dropped_before_it_started_ends_its_thread() {
        let token = Arc::new(());
        let thread = Arc::downgrade(&token);
        let pending = Pending::spawn_holding(token);
        assert!(pending.ticks.is_some(), "the thread starts");
        drop(pending);
        until_ended("dropped before it started, the thread ends", &thread).await;
    }

    #[tokio::test]
    async fn ticks_come_from_a_thread_that_ends_with_its_ticker() {
        let token = Arc::new(());
        let thread = Arc::downgrade(&token);
        let interval = Duration::from_millis(20);
        let mut ticker = Pending::spawn_holding(token).start(interval);
        assert!(matches!(ticker.source, Source::Thread(_)));
        let start = std::time::Instant::now();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(10), ticker.tick())
                .await
                .unwrap();
        }
        assert!(start.elapsed() >= interval * 3, "{:?}", start.elapsed());
        assert!(
            thread.upgrade().is_some(),
            "the thread ticks while its ticker lives"
        );
        drop(ticker);
        until_ended("the thread ends within an interval of its ticker", &thread).await;
    }
}
