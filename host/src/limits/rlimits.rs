//! Resource limits set in the plugin's process between clone and exec,
//! before it runs any code of its own (`runner::process`): a plugin in any
//! language, that never heard of them, is held to them, and so is
//! everything it starts.

use nix::sys::resource::{getrlimit, Resource};

use super::Limits;

/// The rlimits of a plugin's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimits {
    /// `RLIMIT_NOFILE`.
    pub files: u64,
    /// `RLIMIT_DATA`.
    pub data: u64,
    /// `RLIMIT_NPROC`, for a host that is not root (root ignores it).
    pub nproc: Option<u64>,
}

/// `RLIMIT_NOFILE` at the limit, `RLIMIT_DATA` at four times the memory
/// limit (it counts address space reserved, not only resident; the
/// watchdog stops the plugin at the limit itself, this catches an
/// allocation far past it between two of its looks), and the niceness to
/// set: each never above what the host itself has.
///
/// `RLIMIT_NPROC` counts every task of the *user*, not of the plugin, so
/// it cannot be the plugin's limit: it is a backstop against a fork bomb
/// between two looks of the watchdog, set to every task on the machine
/// now (`/proc/loadavg`, one read; never less than the user's own) plus
/// twice the plugin's limit. The user's other programs may grow into that
/// headroom; a host run as a dedicated user, as a hub's is, has few.
pub fn values(limits: Limits, nice: i32) -> (Rlimits, i32) {
    // Never above the host itself (a host already running niced keeps
    // its plugins below it); best effort in the child.
    // SAFETY: getpriority(2) on this process, a plain system call; errno
    // is not consulted (a failure reads as niceness 0).
    #[allow(unsafe_code)]
    let host = unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) };
    let nice = nice.clamp(0, 19).max(host).min(19);
    // Never above the host's own hard limits: only a privileged process
    // may raise those, and the plugin would then not start at all.
    let hard = |r| getrlimit(r).map_or(u64::MAX, |(_, hard)| hard);
    let files = limits.max_open_files.min(hard(Resource::RLIMIT_NOFILE));
    let data = limits
        .memory_mib
        .saturating_mul(4 << 20)
        .min(hard(Resource::RLIMIT_DATA));
    // SAFETY: geteuid(2) cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { nix::libc::geteuid() } == 0;
    let nproc = (!root).then(machine_tasks).flatten().map(|n| {
        n.saturating_add(limits.max_processes.saturating_mul(2))
            .min(hard(Resource::RLIMIT_NPROC))
    });
    (Rlimits { files, data, nproc }, nice)
}

/// Tasks on the machine now: the denominator of `/proc/loadavg`'s fourth
/// field ("running/total").
fn machine_tasks() -> Option<u64> {
    let line = std::fs::read_to_string("/proc/loadavg").ok()?;
    line.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_tasks_are_read() {
        assert!(machine_tasks().is_some_and(|n| n > 0));
    }
}
