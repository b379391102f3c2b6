//! What one plugin's processes may use: memory, CPU, processes, open
//! files, and how the host holds them to it, whether the plugin cooperates
//! or not.
//!
//! - **cgroup v2** ([`cgroup`]), by default wherever the host can make
//!   one: each plugin in its own, joined before it runs any code of its
//!   own. With the controllers there, the kernel holds memory
//!   (`memory.max`, `memory.oom.group`), processes (`pids.max`) and a CPU
//!   quota (`cpu.max`); with or without them, every process the plugin
//!   starts is killed with it and counted.
//! - **Memory**, everywhere: the watchdog ([`watchdog`]) reads the resident
//!   memory of the plugin's processes every heartbeat interval; past its
//!   limit they are SIGKILLed, the plugin is Crashed with `last_exit`
//!   "memory limit N MiB exceeded", and the restart policy applies.
//!   `RLIMIT_DATA` at four times the limit ([`rlimits`]) stops an
//!   allocation far past it between two looks.
//! - **Open files.** `RLIMIT_NOFILE`, set before exec.
//! - **CPU.** Plugins run at a niceness below the host's (`[limits]
//!   nice`, default 5), so a plugin spinning every core does not starve the
//!   host's heartbeats; each plugin's CPU use is read each heartbeat.
//! - **Processes and threads.** The kernel where a pids controller holds
//!   the plugin (v2, or the opt-in v1 pids cgroup); the watchdog otherwise.
//!   `RLIMIT_NPROC` counts every process of the user, not of the plugin,
//!   so it is only a backstop ([`rlimits`]), and root ignores it.
//!
//! A default applies with no configuration at all: 1 GiB of memory (a
//! smart-home plugin needs tens of MiB; 1 GiB leaves any real one room and
//! still stops a leak long before a hub of 2-8 GiB runs out, and so long
//! before the kernel's OOM killer would pick a victim, maybe the host), and
//! 1,024 open files (the usual soft limit). `[limits]` changes the
//! defaults; a plugin's own `limits` (the config's, or its package's,
//! capped by `[limits]`) override them.

pub mod cgroup;
pub mod procfs;
pub mod rlimits;
pub mod sandbox;
pub mod watchdog;

use serde::{Deserialize, Serialize};

/// Default memory limit of a plugin, in MiB (see the module's doc).
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
/// Default open-file limit of a plugin.
pub const DEFAULT_OPEN_FILES: u64 = 1024;
/// Default niceness of plugins: below the host, not starved.
pub const DEFAULT_NICE: i32 = 5;
/// Default limit of a plugin's processes and threads together (a plugin
/// has a handful of threads; a fork bomb is stopped long before the
/// machine's own limit).
pub const DEFAULT_PROCESSES: u64 = 256;

/// The host's defaults (`[limits]`), which are also the caps of what a
/// package may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Resident memory of a plugin's processes together, in MiB (default 1024).
    pub memory_mib: u64,
    /// Open files of each of its processes (default 1024).
    pub max_open_files: u64,
    /// Its processes and threads together (default 256).
    pub max_processes: u64,
    /// Put each plugin in a cgroup v2 of its own where the host can make one
    /// (default true): the kernel then holds its memory, process and CPU
    /// limits where the host's cgroup offers those controllers, and the
    /// host kills every process the plugin started, wherever it went.
    pub cgroup_v2: bool,
    /// Hold `max_processes` with a cgroup v1 pids hierarchy where the host
    /// may write one (default false): the kernel then refuses the fork past
    /// the limit, but joining a v1 cgroup costs each start about 10 ms on
    /// this machine's kernel (an RCU grace period), so by default the
    /// watchdog counts processes instead.
    pub pids_cgroup_v1: bool,
    /// The niceness plugins run at (default 5, 0-19): a plugin that spins
    /// every core gets less CPU than the host, so the host's heartbeats and
    /// calls to other plugins go on (a CPU share without cgroups).
    pub nice: i32,
    /// CPU time a plugin may use, in percent of one CPU (200 = two cores;
    /// default none): held by cgroup v2 `cpu.max` where the cpu controller
    /// is there, not held elsewhere (niceness still applies).
    pub cpu_percent: Option<u64>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_mib: DEFAULT_MEMORY_MIB,
            max_open_files: DEFAULT_OPEN_FILES,
            max_processes: DEFAULT_PROCESSES,
            cgroup_v2: true,
            pids_cgroup_v1: false,
            nice: DEFAULT_NICE,
            cpu_percent: None,
        }
    }
}

/// One plugin's own limits (`[[plugin]] limits = { ... }`, or a package's
/// `[limits]`); what is not given is the host's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    /// Resident memory, in MiB.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Open files.
    #[serde(default)]
    pub max_open_files: Option<u64>,
    /// Processes and threads together.
    #[serde(default)]
    pub max_processes: Option<u64>,
    /// CPU time, in percent of one CPU.
    #[serde(default)]
    pub cpu_percent: Option<u64>,
}

/// The limits in force for one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Resident memory, in MiB.
    pub memory_mib: u64,
    /// Open files.
    pub max_open_files: u64,
    /// Processes and threads together.
    pub max_processes: u64,
    /// CPU time, in percent of one CPU (none: no quota).
    pub cpu_percent: Option<u64>,
}

impl Limits {
    /// A plugin's own limits over the host's defaults.
    pub fn of(own: Option<&PluginLimits>, host: &LimitsConfig) -> Limits {
        Limits {
            memory_mib: own.and_then(|l| l.memory_mib).unwrap_or(host.memory_mib),
            max_open_files: own
                .and_then(|l| l.max_open_files)
                .unwrap_or(host.max_open_files),
            max_processes: own
                .and_then(|l| l.max_processes)
                .unwrap_or(host.max_processes),
            cpu_percent: own.and_then(|l| l.cpu_percent).or(host.cpu_percent),
        }
    }

    /// The same, as a plugin's own limits (every one given).
    pub fn own(self) -> PluginLimits {
        PluginLimits {
            memory_mib: Some(self.memory_mib),
            max_open_files: Some(self.max_open_files),
            max_processes: Some(self.max_processes),
            cpu_percent: self.cpu_percent,
        }
    }

    /// What a package asks for, capped by the host's defaults.
    pub fn capped(asked: &PluginLimits, host: &LimitsConfig) -> PluginLimits {
        PluginLimits {
            memory_mib: Some(
                asked
                    .memory_mib
                    .map_or(host.memory_mib, |m| m.min(host.memory_mib)),
            ),
            max_open_files: Some(
                asked
                    .max_open_files
                    .map_or(host.max_open_files, |m| m.min(host.max_open_files)),
            ),
            max_processes: Some(
                asked
                    .max_processes
                    .map_or(host.max_processes, |m| m.min(host.max_processes)),
            ),
            cpu_percent: match (asked.cpu_percent, host.cpu_percent) {
                (Some(a), Some(h)) => Some(a.min(h)),
                (a, h) => a.or(h),
            },
        }
    }
}

/// How the open-file limit is held, for `iglu status` (the others:
/// [`cgroup::Cgroups::mechanism`]).
pub const MECHANISM: &str = "open files: RLIMIT_NOFILE";

/// One plugin's use of the machine, as the watchdog last read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Resident memory of its processes together, in KiB.
    pub rss_kib: u64,
    /// CPU time of its processes over the last interval, in percent of one CPU.
    pub cpu_percent: f64,
    /// CPU time its processes have used in all, in seconds.
    pub cpu_seconds: f64,
    /// Processes in its group.
    pub processes: u32,
}
