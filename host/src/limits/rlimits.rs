//! Resource limits set in the plugin's process between fork and exec,
//! before it runs any code of its own: a plugin in any language, that
//! never heard of them, is held to them, and so is everything it starts.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::process::Command;

use super::Limits;

/// Sets `RLIMIT_NOFILE` to the limit and `RLIMIT_DATA` to twice the
/// memory limit (the watchdog stops the plugin at the limit itself; this
/// catches an allocation far past it between two of its looks), in the
/// child before exec.
#[allow(unsafe_code)]
pub fn apply(command: &mut Command, limits: Limits, nice: i32) {
    let nice = nice.clamp(0, 19);
    // Never above the host's own hard limits: only a privileged process
    // may raise those, and the plugin would then not start at all.
    let hard = |r| getrlimit(r).map_or(u64::MAX, |(_, hard)| hard);
    let files = limits.max_open_files.min(hard(Resource::RLIMIT_NOFILE));
    let data = limits
        .memory_mib
        .saturating_mul(2 << 20)
        .min(hard(Resource::RLIMIT_DATA));
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: setrlimit(2) is a plain
    // system call, and nothing here allocates or takes a lock.
    unsafe {
        command.pre_exec(move || {
            setrlimit(Resource::RLIMIT_NOFILE, files, files).map_err(std::io::Error::from)?;
            setrlimit(Resource::RLIMIT_DATA, data, data).map_err(std::io::Error::from)?;
            // setpriority(2) on this process: a plain system call.
            if nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, nice) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
