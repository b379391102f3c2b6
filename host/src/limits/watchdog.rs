//! The watchdog: every heartbeat interval, it reads each running managed
//! plugin's resident memory, CPU time and processes, and SIGKILLs a plugin
//! past its memory or process limit, with the reason kept for its
//! `last_exit`. A plugin's processes are those in its cgroup v2 where it
//! has one (wherever they went in the process tree), else those in its
//! process group (one pass over `/proc` for every plugin at once). What it
//! reads is shown by `iglu status` (`rss_kib`, `cpu_percent`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::cgroup::{v2, Cgroups};
use super::{procfs, Limits, Usage};
use crate::plugin::registry::{PluginKind, Registry};

/// Looks every `interval` until `stop` is cancelled.
pub async fn run(
    registry: Arc<Registry>,
    cgroups: Arc<Cgroups>,
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
        let looked: Vec<(String, i32, Option<std::path::PathBuf>)> = watched
            .iter()
            .filter_map(|(id, pid, _)| {
                let group = i32::try_from(*pid).ok()?;
                Some((id.clone(), group, cgroups.v2_dir(id, *pid)))
            })
            .collect();
        let read = tokio::task::spawn_blocking(move || look(&looked, tick))
            .await
            .unwrap_or_default();
        let now = Instant::now();
        for (id, pid, limits) in watched {
            let Some(u) = read.get(&id) else {
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
                if let Some(dir) = cgroups.v2_dir(&id, pid) {
                    v2::kill(&dir);
                }
            }
        }
        last.retain(|id, _| registry.contains(id));
    }
}

/// Each plugin's usage: from its cgroup v2 where it has one with a process
/// in it (CPU time from `cpu.stat`, counting its reaped children too; tasks
/// from `pids.current` where the pids controller counts them), else from
/// its process group, in one pass over `/proc` for all of those.
fn look(
    plugins: &[(String, i32, Option<std::path::PathBuf>)],
    tick: u64,
) -> HashMap<String, procfs::GroupUsage> {
    let mut out = HashMap::new();
    let mut by_group = Vec::new();
    for (id, group, dir) in plugins {
        let members = dir.as_deref().map(v2::members).unwrap_or_default();
        let Some(dir) = dir.as_deref().filter(|_| !members.is_empty()) else {
            by_group.push((id, *group));
            continue;
        };
        let mut u = procfs::processes(&members);
        if let Some(usec) = v2::cpu_usec(dir) {
            u.cpu_ticks = usec.saturating_mul(tick) / 1_000_000;
        }
        if let Some(tasks) = v2::tasks(dir) {
            u.tasks = u32::try_from(tasks).unwrap_or(u32::MAX);
        }
        out.insert(id.clone(), u);
    }
    if !by_group.is_empty() {
        let groups: Vec<i32> = by_group.iter().map(|(_, g)| *g).collect();
        let read = procfs::groups(&groups);
        for (id, group) in by_group {
            if let Some(u) = read.get(&group) {
                out.insert(id.clone(), *u);
            }
        }
    }
    out
}
