//! Resource limits set in the plugin's process between clone and exec,
//! before it runs any code of its own (`runner::process`): a plugin in any
//! language, that never heard of them, is held to them, and so is
//! everything it starts.

use nix::sys::resource::{getrlimit, Resource};

use super::Limits;

/// `RLIMIT_NOFILE` at the limit and `RLIMIT_DATA` at four times the memory
/// limit (it counts address space reserved, not only resident; the
/// watchdog stops the plugin at the limit itself, this catches an
/// allocation far past it between two of its looks), and the niceness to
/// set: each never above what the host itself has.
pub fn values(limits: Limits, nice: i32) -> ((u64, u64), i32) {
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
    ((files, data), nice)
}
