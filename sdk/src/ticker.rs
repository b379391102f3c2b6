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

/// Ticks every `interval`, the first one an interval after it starts.
pub(crate) struct Ticker {
    interval: Duration,
    source: Source,
}

enum Source {
    /// A thread that ends within an interval of the ticker being dropped.
    Thread(mpsc::Receiver<()>),
    /// If no thread could be started (or it is gone): a tokio timer.
    Timer(tokio::time::Interval),
}

impl Ticker {
    pub(crate) fn every(interval: Duration) -> Ticker {
        let (tx, rx) = mpsc::channel(1);
        let started = std::thread::Builder::new()
            .name("iglu-heartbeat".into())
            .stack_size(STACK)
            .spawn(move || loop {
                std::thread::sleep(interval);
                // Full: the last tick is still unread, one is enough.
                if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            });
        let source = match started {
            Ok(_) => Source::Thread(rx),
            Err(e) => {
                tracing::warn!(error = %e, "no heartbeat thread: ticking on the I/O runtime");
                timer(interval)
            }
        };
        Ticker { interval, source }
    }

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

    #[tokio::test]
    async fn ticks_come_an_interval_apart() {
        let interval = Duration::from_millis(20);
        let mut ticker = Ticker::every(interval);
        assert!(matches!(ticker.source, Source::Thread(_)));
        let start = std::time::Instant::now();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(10), ticker.tick())
                .await
                .unwrap();
        }
        assert!(start.elapsed() >= interval * 3, "{:?}", start.elapsed());
    }
}
