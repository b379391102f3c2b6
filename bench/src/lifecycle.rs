//! The lifecycle workload: spawn to first call, SIGKILL to crashed and back,
//! SIGSTOP to crashed, and what the parent-death hook costs a spawn.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::measure::median_max;
use super::workloads::payload_args;
use super::Bench;
use iglu_host::PluginState;

/// Lifecycle timings, median and max in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleRow {
    /// What was timed.
    pub what: String,
    /// Repetitions.
    pub runs: usize,
    /// Median, µs.
    pub median_us: u64,
    /// Maximum, µs.
    pub max_us: u64,
    /// What the figure includes that is configuration, not speed (e.g. the first backoff).
    pub note: String,
}

async fn wait_state(
    b: &Bench,
    rx: &mut tokio::sync::broadcast::Receiver<iglu_host::events::lifecycle::LifecycleEvent>,
    state: PluginState,
) -> Result<(), String> {
    wait_state_of(b, rx, "life", state).await
}

async fn wait_state_of(
    b: &Bench,
    rx: &mut tokio::sync::broadcast::Receiver<iglu_host::events::lifecycle::LifecycleEvent>,
    id: &str,
    state: PluginState,
) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Ok(e) if e.plugin == id && e.state == state => return Ok(()),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| format!("plugin {id} did not reach {state:?} within 30 s"))?
    .map(|_| {
        let _ = b;
    })
}

async fn first_call(b: &Bench) -> Result<(), String> {
    first_call_of(b, "life").await
}

async fn first_call_of(b: &Bench, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let args = payload_args(8);
    loop {
        match b
            .host
            .call(id, "echo", args.clone(), Duration::from_secs(5))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_micros(100)).await,
        }
    }
}

fn pid_of(b: &Bench) -> Option<i32> {
    b.host
        .plugin_status("life")
        .and_then(|p| p.pid)
        .map(|p| p as i32)
}

/// Start, kill and freeze the `life` plugin `runs` times.
pub async fn lifecycle(b: &Bench, runs: usize) -> Result<Vec<LifecycleRow>, String> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let (mut to_running, mut to_call, mut kill_crash, mut kill_call, mut stop_crash) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rx = b.host.lifecycle();
    for _ in 0..runs {
        let t = Instant::now();
        b.host
            .start_plugin("life")
            .await
            .map_err(|e| e.to_string())?;
        wait_state(b, &mut rx, PluginState::Running).await?;
        to_running.push(t.elapsed());
        first_call(b).await?;
        to_call.push(t.elapsed());

        let pid = pid_of(b).ok_or("life has no pid")?;
        let t = Instant::now();
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_state(b, &mut rx, PluginState::Crashed).await?;
        kill_crash.push(t.elapsed());
        first_call(b).await?;
        kill_call.push(t.elapsed());

        let pid = pid_of(b).ok_or("life has no pid")?;
        let t = Instant::now();
        let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        wait_state(b, &mut rx, PluginState::Crashed).await?;
        stop_crash.push(t.elapsed());
        wait_state(b, &mut rx, PluginState::Running).await?;
        b.host
            .stop_plugin("life")
            .await
            .map_err(|e| e.to_string())?;
    }
    // The sandbox's cost: `life` and `life-boxed` (the same plugin, in its
    // Landlock sandbox) started in turns.
    let (mut open, mut boxed) = (Vec::new(), Vec::new());
    for i in 0..runs * 2 {
        let id = if i % 2 == 0 { "life" } else { "life-boxed" };
        let t = Instant::now();
        b.host.start_plugin(id).await.map_err(|e| e.to_string())?;
        wait_state_of(b, &mut rx, id, PluginState::Running).await?;
        first_call_of(b, id).await?;
        if i % 2 == 0 {
            open.push(t.elapsed());
        } else {
            boxed.push(t.elapsed());
        }
        b.host.stop_plugin(id).await.map_err(|e| e.to_string())?;
    }
    let sandbox = b
        .host
        .plugin_status("life-boxed")
        .and_then(|p| p.isolation)
        .unwrap_or_default();
    let sandbox = sandbox.rsplit("; ").next().unwrap_or_default().to_owned();
    // The watchdog's cost: one pass over /proc, as it makes every
    // heartbeat interval for all plugins at once.
    let groups: Vec<i32> = b
        .host
        .status()
        .iter()
        .filter_map(|p| p.pid.and_then(|pid| i32::try_from(pid).ok()))
        .collect();
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|c| c.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0);
    let mut pass = Vec::new();
    for _ in 0..runs.max(20) {
        let g = groups.clone();
        let t = Instant::now();
        tokio::task::spawn_blocking(move || iglu_host::limits::procfs::groups(&g))
            .await
            .map_err(|e| e.to_string())?;
        pass.push(t.elapsed());
    }
    let [mut plain, mut hooked, mut born, mut moved] = spawn_cost(runs.max(20)).await?;
    let no_v2 = |v: &Vec<Duration>, note: &str| {
        if v.is_empty() {
            "no cgroup v2 the bench may write here".to_owned()
        } else {
            note.to_owned()
        }
    };
    let born_note = no_v2(
        &born,
        "how plugins start where the host has a cgroup v2 (CLONE_INTO_CGROUP)",
    );
    let moved_note = no_v2(
        &moved,
        "moving into the same cgroup between clone and exec instead: what CLONE_INTO_CGROUP saves",
    );
    let cfg = b.host.config();
    let hb = cfg.heartbeat.interval_ms * u64::from(cfg.heartbeat.liveness);
    let row = |what: &str, v: &mut Vec<Duration>, note: String| {
        let (median_us, max_us) = median_max(v);
        LifecycleRow {
            what: what.to_owned(),
            runs: v.len(),
            median_us,
            max_us,
            note,
        }
    };
    Ok(vec![
        row("spawn to running", &mut to_running, String::new()),
        row("spawn to first call", &mut to_call, String::new()),
        row("sigkill to crashed", &mut kill_crash, String::new()),
        row(
            "sigkill to first call after restart",
            &mut kill_call,
            format!(
                "includes the first backoff of {} ms",
                cfg.restart.backoff_initial_ms
            ),
        ),
        row(
            "sigstop to crashed",
            &mut stop_crash,
            format!("heartbeats: {hb} ms of silence by config"),
        ),
        row(
            "spawn to first call, sandbox off",
            &mut open,
            "limits on (rlimits, niceness, the watchdog); in turns with the row below".to_owned(),
        ),
        row("spawn to first call, sandbox on", &mut boxed, sandbox),
        row(
            "watchdog: one pass over /proc",
            &mut pass,
            format!(
                "{} plugins' groups among {procs} processes, once per heartbeat interval",
                groups.len()
            ),
        ),
        row(
            "spawn and reap /bin/true, posix_spawn",
            &mut plain,
            "baseline for the rows below, taken in turns with them".to_owned(),
        ),
        row(
            "spawn and reap /bin/true, as plugins are",
            &mut hooked,
            "clone3, process group, parent-death signal, exec".to_owned(),
        ),
        row(
            "spawn and reap /bin/true, born in a cgroup v2",
            &mut born,
            born_note,
        ),
        row(
            "spawn and reap /bin/true, moved into a cgroup v2",
            &mut moved,
            moved_note,
        ),
    ])
}

/// What starting a process as plugins are started costs (clone3, then a
/// process group and the parent-death signal before exec; a clone copies
/// the page tables of the process that clones), born in a cgroup v2 or
/// moved into it, measured in turns with a plain posix_spawn of the same
/// program from this process.
async fn spawn_cost(runs: usize) -> Result<[Vec<Duration>; 4], String> {
    use iglu_host::runner::process::{spawn, Launch};
    let mut rows: [Vec<Duration>; 4] = Default::default();
    // A cgroup v2 of the bench's own, as the host makes one per plugin.
    let tree = iglu_host::limits::cgroup::v2::Tree::make().ok();
    let limits = iglu_host::limits::Limits::of(None, &iglu_host::limits::LimitsConfig::default());
    let cgroup = tree
        .as_ref()
        .and_then(|t| t.prepare("bench-spawn", &limits).ok());
    let env: Vec<_> = std::env::vars_os().collect();
    let program = std::path::Path::new("/bin/true");
    for i in 0..runs * 4 {
        let kind = i % 4;
        if kind >= 2 && cgroup.is_none() {
            continue;
        }
        let t = Instant::now();
        if kind == 0 {
            let mut child = tokio::process::Command::new(program)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("spawning /bin/true: {e}"))?;
            child.wait().await.map_err(|e| e.to_string())?;
        } else {
            let c = cgroup.as_ref();
            let launch = Launch {
                program,
                args: &[],
                env: env.clone(),
                cgroup: c.filter(|_| kind == 2).map(|c| c.dir_fd.as_raw_fd()),
                cgroup_procs: None,
                join: c
                    .filter(|_| kind == 3)
                    .map(|c| c.procs.as_raw_fd())
                    .into_iter()
                    .collect(),
                rlimits: None,
                nice: None,
                ruleset: None,
            };
            let (mut process, _out, _err) =
                spawn(&launch).map_err(|e| format!("spawning /bin/true: {e}"))?;
            process.wait().await;
        }
        rows[kind].push(t.elapsed());
    }
    drop(cgroup);
    if let Some(t) = &tree {
        // The host's own tree, when the bench runs one: only its cgroup.
        t.forget("bench-spawn");
    }
    Ok(rows)
}
