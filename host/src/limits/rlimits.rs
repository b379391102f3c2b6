//! Resource limits set in the plugin's process between fork and exec,
//! before it runs any code of its own: a plugin in any language, that
//! never heard of them, is held to them, and so is everything it starts.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::process::Command;

use super::Limits;

/// Sets `RLIMIT_NOFILE` to the limit and `RLIMIT_DATA` to four times the
/// memory limit (it counts address space reserved, not only resident) (the watchdog stops the plugin at the limit itself; this
/// catches an allocation far past it between two of its looks), in the
/// child before exec.
#[allow(unsafe_code)]
pub fn apply(command: &mut Command, limits: Limits, nice: i32) {
    // Never above the host itself (a host already running niced keeps
    // its plugins below it), and best effort: a plugin still starts where
    // the niceness cannot be set.
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
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: setrlimit(2) is a plain
    // system call, and nothing here allocates or takes a lock.
    unsafe {
        command.pre_exec(move || {
            setrlimit(Resource::RLIMIT_NOFILE, files, files).map_err(std::io::Error::from)?;
            setrlimit(Resource::RLIMIT_DATA, data, data).map_err(std::io::Error::from)?;
            // setpriority(2) on this process: a plain system call, whose
            // failure (a host not allowed to) leaves the niceness as it is.
            let _ = nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, nice);
            Ok(())
        });
    }
}
