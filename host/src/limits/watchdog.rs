//! The memory watchdog: every heartbeat interval, one pass over `/proc`
//! gives each running managed plugin's resident memory and CPU time (its
//! whole process group); a plugin past its memory limit is SIGKILLed, with
//! the reason kept for its `last_exit`. What it reads is shown by `iglu
//! status` (`rss_kib`, `cpu_percent`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{procfs, Limits, Usage};
use crate::plugin::registry::{PluginKind, Registry};

/// Looks every `interval` until `stop` is cancelled.
pub async fn run(
    registry: Arc<Registry>,
    host: super::LimitsConfig,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let (page, tick) = procfs::page_and_tick();
    // Per plugin: its pid and CPU ticks at the last look, and when.
    let mut last: HashMap<String, (u32, u64, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let watched: Vec<(String, u32, Limits)> = registry
            .read_all(|id, f| match f.kind() {
                PluginKind::Managed(spec) => f
                    .pid()
                    .map(|pid| (id.to_owned(), pid, Limits::of(spec.limits.as_ref(), &host))),
                PluginKind::External(_) => None,
            })
            .into_iter()
            .flatten()
            .collect();
        let groups: Vec<i32> = watched
            .iter()
            .filter_map(|(_, pid, _)| i32::try_from(*pid).ok())
            .collect();
        let read = tokio::task::spawn_blocking(move || procfs::groups(&groups))
            .await
            .unwrap_or_default();
        let now = Instant::now();
        for (id, pid, limits) in watched {
            let Some(u) = i32::try_from(pid).ok().and_then(|g| read.get(&g)) else {
                continue;
            };
            let cpu_percent = match last.get(&id) {
                Some((p, ticks, at)) if *p == pid => {
                    let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
                    u.cpu_ticks.saturating_sub(*ticks) as f64 / tick as f64 / secs * 100.0
                }
                _ => 0.0,
            };
            last.insert(id.clone(), (pid, u.cpu_ticks, now));
            let rss_kib = u.rss_pages * page / 1024;
            registry.set_usage(
                &id,
                Usage {
                    rss_kib,
                    cpu_percent,
                    cpu_seconds: u.cpu_ticks as f64 / tick as f64,
                    processes: u.processes,
                },
            );
            // Processes first: a fork bomb's many small processes may pass
            // the memory limit too, and the process limit is the cause.
            // Threads count, as a pids cgroup counts them (where one holds
            // the plugin, the kernel keeps it under this already).
            let over = if u64::from(u.tasks) > limits.max_processes {
                Some(format!(
                    "process limit {} exceeded ({} processes and threads); killed by the host",
                    limits.max_processes, u.tasks
                ))
            } else if rss_kib > limits.memory_mib * 1024 {
                Some(format!(
                    "memory limit {} MiB exceeded (resident {} MiB); killed by the host",
                    limits.memory_mib,
                    rss_kib / 1024
                ))
            } else {
                None
            };
            if let Some(reason) = over {
                tracing::warn!(plugin = %id, pid, %reason, "over its limit: killing it");
                registry.set_kill_reason(&id, pid, reason);
                if let Ok(group) = i32::try_from(pid) {
                    let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
                }
            }
        }
        last.retain(|id, _| registry.contains(id));
    }
}
