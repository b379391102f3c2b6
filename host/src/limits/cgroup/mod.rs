//! Limits held by the kernel: each managed plugin in cgroups of its own,
//! where the host may make them.
//!
//! - **cgroup v2** ([`v2`]), used by default wherever the host can write
//!   its own cgroup's subtree (root, a systemd unit with `Delegate=yes`, a
//!   container with a private cgroup namespace): the host makes
//!   `<its cgroup>/iglu-<pid>-<k>/<plugin>.<n>/` for each launch, and the launch
//!   is born in it. Whatever the plugin forks stays in it, even a process
//!   that leaves the plugin's process group: the host kills the whole
//!   cgroup (`cgroup.kill`) after the plugin exits, and counts its processes
//!   and CPU time from it. Where the subtree has the controllers, the
//!   kernel holds the limits: `memory.max` with `memory.oom.group` (the
//!   whole plugin is killed at its memory limit) and `memory.swap.max = 0`,
//!   `pids.max`, and `cpu.max` for a plugin with a CPU quota.
//! - **cgroup v1 pids** ([`v1`], opt-in with `[limits] pids_cgroup_v1`):
//!   a pids cgroup per plugin on machines whose pids controller is in a v1
//!   hierarchy, like the one this is built on.
//!
//! What no cgroup holds, the watchdog does (`limits::watchdog`): it reads
//! memory and processes from `/proc` every heartbeat and kills the plugin
//! past a limit. `iglu status` says which holds what.

pub mod v1;
pub mod v2;

use std::fs::File;
use std::path::PathBuf;

use super::Limits;

/// This host's cgroups, of each kind it could make.
#[derive(Debug)]
pub struct Cgroups {
    v2: Result<v2::Tree, String>,
    v1_pids: Result<v1::PidsTree, String>,
}

/// Which of a v2 tree's controllers plugins get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controllers {
    /// `memory.max`, `memory.oom.group`, `memory.current`.
    pub memory: bool,
    /// `pids.max`, `pids.current`.
    pub pids: bool,
    /// `cpu.max`.
    pub cpu: bool,
}

/// One launch's cgroups: what it joins before exec, what the host reads and
/// kills through after.
#[derive(Debug, Default)]
pub struct PluginCgroups {
    /// Its v2 cgroup, if it has one.
    pub v2: Option<v2::PluginCgroup>,
    /// Its v1 pids cgroup's `cgroup.procs`, open for the child to join.
    pub v1_pids: Option<File>,
}

impl PluginCgroups {
    /// The `cgroup.procs` files the new process writes itself into.
    pub fn procs(&self) -> impl Iterator<Item = &File> {
        self.v2
            .as_ref()
            .map(|c| &c.procs)
            .into_iter()
            .chain(self.v1_pids.as_ref())
    }
}

impl Cgroups {
    /// Makes this host's cgroups: v2 if `v2_wanted`, v1 pids if
    /// `v1_pids_wanted`; says why not for each it could not make.
    pub fn detect(v2_wanted: bool, v1_pids_wanted: bool) -> Cgroups {
        Cgroups {
            v2: if v2_wanted {
                v2::Tree::make()
            } else {
                Err("off ([limits] cgroup_v2 = false)".to_owned())
            },
            v1_pids: if v1_pids_wanted {
                v1::PidsTree::make()
            } else {
                Err("off; joining one costs each start more here ([limits] pids_cgroup_v1 = true uses it)".to_owned())
            },
        }
    }

    /// Without cgroups at all (unit tests).
    pub fn none(why: &str) -> Cgroups {
        Cgroups {
            v2: Err(why.to_owned()),
            v1_pids: Err(why.to_owned()),
        }
    }

    /// The v2 controllers plugins get, if there is a v2 tree.
    pub fn v2_controllers(&self) -> Option<Controllers> {
        self.v2.as_ref().ok().map(|t| t.controllers)
    }

    /// Whether the kernel holds the process limit (a pids controller).
    pub fn holds_processes(&self) -> bool {
        self.v2_controllers().is_some_and(|c| c.pids) || self.v1_pids.is_ok()
    }

    /// Whether the kernel holds the memory limit.
    pub fn holds_memory(&self) -> bool {
        self.v2_controllers().is_some_and(|c| c.memory)
    }

    /// The v2 cgroup directory of a plugin whose main process is `pid`,
    /// if it has one.
    pub fn v2_dir(&self, id: &str, pid: u32) -> Option<PathBuf> {
        self.v2.as_ref().ok().and_then(|t| t.dir_of_pid(id, pid))
    }

    /// How each limit is held, in words, for `iglu status` and the log.
    pub fn mechanism(&self) -> String {
        let v2 = match &self.v2 {
            Ok(t) => t.describe(),
            Err(why) => format!("cgroup v2: none ({why})"),
        };
        let memory = if self.holds_memory() {
            "memory: the kernel (cgroup v2 memory.max, memory.oom.group), and the /proc watchdog each heartbeat"
        } else {
            "memory: /proc watchdog each heartbeat + RLIMIT_DATA backstop"
        };
        let processes = match (&self.v1_pids, self.v2_controllers().is_some_and(|c| c.pids)) {
            (_, true) => "processes: the kernel (cgroup v2 pids.max)".to_owned(),
            (Ok(t), false) => format!(
                "processes: the kernel (pids cgroup v1 {})",
                t.dir().display()
            ),
            (Err(why), false) => {
                format!("processes: /proc watchdog each heartbeat (pids cgroup v1: {why})")
            }
        };
        let cpu = if self.v2_controllers().is_some_and(|c| c.cpu) {
            "CPU: niceness below the host, and cpu.max for a plugin with cpu_percent"
        } else {
            "CPU: niceness below the host (no cpu controller: cpu_percent is not held)"
        };
        format!("{v2}; {memory}; {processes}; {cpu}")
    }

    /// Makes (or reuses) plugin `id`'s cgroups with `limits`, and opens
    /// their `cgroup.procs` for the new process to join; a cgroup that
    /// could not be made is left out (logged), and the watchdog holds what
    /// it would have.
    pub fn prepare(&self, id: &str, limits: &Limits) -> PluginCgroups {
        let v2 = self.v2.as_ref().ok().and_then(|t| match t.prepare(id, limits) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(plugin = %id, error = %e, "no cgroup v2 for this plugin: the watchdog holds its limits");
                None
            }
        });
        let v1_pids = self
            .v1_pids
            .as_ref()
            .ok()
            .and_then(|t| t.prepare(id, limits.max_processes));
        PluginCgroups { v2, v1_pids }
    }

    /// Removes plugin `id`'s cgroups (it has no process left).
    pub fn forget(&self, id: &str) {
        if let Ok(t) = &self.v2 {
            t.forget(id);
        }
        if let Ok(t) = &self.v1_pids {
            t.forget(id);
        }
    }

    /// Removes every cgroup of this host (at shutdown, its plugins gone).
    pub fn remove(&self) {
        if let Ok(t) = &self.v2 {
            t.remove();
        }
        if let Ok(t) = &self.v1_pids {
            t.remove();
        }
    }
}

/// Writes the calling process's id into `fd` (a `cgroup.procs`): between
/// fork and exec, so with no allocation, only system calls.
#[allow(unsafe_code)]
pub fn join(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    let mut pid = std::process::id();
    let mut buf = [0u8; 12];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    // SAFETY: `fd` is open for writing for as long as the child runs this
    // (the parent holds the file until the spawn returns), and the buffer
    // is a live local.
    let n = unsafe { nix::libc::write(fd, buf[i..].as_ptr().cast(), buf.len() - i) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The name of a host's tree, `iglu-<pid>-<k>`: `k` counts the hosts this
/// process started (a program that embeds the host, or a test binary, may
/// run several at once; each must have its own tree, or one's clean-up
/// removes the cgroups the other's next launch is to be born in).
pub(crate) fn tree_name() -> String {
    static HOSTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let k = HOSTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("iglu-{}-{k}", std::process::id())
}

/// Removes the directories `<root>/iglu-<pid>*` of hosts that are gone
/// (killed, so they could not remove their own), children first; a cgroup
/// with a process left in it stays.
pub(crate) fn clear_stale(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("iglu-")) else {
            continue;
        };
        let rest = rest.trim_start_matches("host-");
        let pid = rest.split('-').next().unwrap_or(rest);
        if pid.is_empty()
            || !pid.bytes().all(|b| b.is_ascii_digit())
            || std::path::Path::new("/proc").join(pid).exists()
        {
            continue;
        }
        v1::remove_tree(&e.path());
    }
}
