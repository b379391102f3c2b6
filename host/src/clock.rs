//! The host's clock: the tasks that wait on time run on a runtime of their own.
//!
//! A tokio runtime with a timer pending parks in `epoll_wait` with a
//! timeout, and the kernel arms and disarms a high-resolution timer around
//! every such wait — on a VM, each costs a trip to the hypervisor. The
//! runtime that carries calls parks twice per call, so with the heartbeat
//! and call-deadline timers on it, every call paid that price on both
//! sides (the zeromq floor, whose runtimes hold no timer, did not).
//! Measured with `iglu bench --workloads calls --inflight 1` pinned to one
//! vCPU, four runs each: 0.87x the zeromq floor's rate with the timers
//! there, 0.95x with them here and the plugin's heartbeat on a thread of
//! its own. So heartbeats and silence checks, call deadlines, the TCP
//! guard's deadlines and the simulator tick here, and the call path's
//! runtime holds no timer while it only serves calls.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A current_thread runtime on a thread named `iglu-clock`, for timers.
pub struct Clock {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clock {
    /// Starts the clock's thread.
    pub fn start() -> std::io::Result<Clock> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("iglu-clock".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime here ends whatever still runs on it.
            })?;
        Ok(Clock {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where to spawn a task that waits on time. Once the clock has
    /// stopped, what is spawned here is dropped without running.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops the thread, ending the tasks still on it, and waits for it
    /// (at most a second: it has nothing left to wait on).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            let _ = tokio::time::timeout(Duration::from_secs(1), joined).await;
        }
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        // A host dropped without `shutdown` still ends its clock's thread.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timers_run_on_the_clock_thread_and_stop_with_it() {
        let clock = Clock::start().unwrap();
        let name = clock
            .handle()
            .spawn(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("iglu-clock"));
        let forever = clock.handle().spawn(std::future::pending::<()>());
        clock.stop().await;
        let ended = tokio::time::timeout(Duration::from_secs(5), forever).await;
        assert!(
            matches!(&ended, Ok(Err(e)) if e.is_cancelled()),
            "a task still on the clock ends when it stops: {ended:?}"
        );
    }
}
