//! Process limits held by the kernel: each managed plugin in a pids cgroup
//! of its own, where the host may make one.
//!
//! Where it may (`[limits] pids_cgroup_v1 = true`, and root or a delegated
//! v1 `pids` hierarchy writable by the host's user), the host makes `<pids>/iglu-<host pid>/<plugin>/` with
//! `pids.max`, and the plugin's process joins it between fork and exec,
//! before it runs any code of its own (it writes its pid into
//! `cgroup.procs`, opened by the host beforehand): a fork bomb then gets
//! EAGAIN at the limit, which counts threads too, and the machine never
//! sees it. Elsewhere (no writable pids hierarchy), the watchdog counts the
//! plugin's processes each heartbeat and kills the group past the limit:
//! later, and coarser, and said so in `iglu status`.
//!
//! cgroup v2 (a delegated subtree with the `pids` controller) is the next
//! mechanism to add here; the machine this is built and tested on has v1
//! hierarchies and a v2 mount without controllers.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The v1 pids hierarchy's usual mount point.
const V1_PIDS: &str = "/sys/fs/cgroup/pids";

/// This host's cgroups, if it could make them.
#[derive(Debug)]
pub struct Cgroups {
    /// `<pids>/iglu-<host pid>`, made at start.
    dir: Option<PathBuf>,
    /// Why not, when not.
    why_not: String,
}

impl Cgroups {
    /// Makes this host's pids cgroup if `wanted`, or says why not.
    pub fn detect(wanted: bool) -> Cgroups {
        if !wanted {
            return Cgroups::none(
                "no cgroup v2 subtree with the pids controller; a v1 pids cgroup costs each start about 10 ms here ([limits] pids_cgroup_v1 = true uses it)",
            );
        }
        Cgroups::under(Path::new(V1_PIDS))
    }

    fn under(root: &Path) -> Cgroups {
        if !root.join("cgroup.procs").exists() {
            return Cgroups {
                dir: None,
                why_not: format!("no pids cgroup hierarchy at {}", root.display()),
            };
        }
        clear_stale(root);
        let dir = root.join(format!("iglu-{}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => Cgroups {
                dir: Some(dir),
                why_not: String::new(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Cgroups {
                dir: Some(dir),
                why_not: String::new(),
            },
            Err(e) => Cgroups {
                dir: None,
                why_not: format!("cannot make a pids cgroup under {}: {e}", root.display()),
            },
        }
    }

    /// Without cgroups at all (tests of the watchdog's fallback).
    pub fn none(why: &str) -> Cgroups {
        Cgroups {
            dir: None,
            why_not: why.to_owned(),
        }
    }

    /// Whether plugins get a pids cgroup here.
    pub fn active(&self) -> bool {
        self.dir.is_some()
    }

    /// How process limits are held, in words, for `iglu status`.
    pub fn mechanism(&self) -> String {
        match &self.dir {
            Some(dir) => format!("processes: pids cgroup (v1) {}", dir.display()),
            None => format!(
                "processes: /proc watchdog each heartbeat ({})",
                self.why_not
            ),
        }
    }

    /// Makes (or reuses) plugin `id`'s cgroup with `max` tasks, and opens
    /// its `cgroup.procs` for the new process to join; `None` where there
    /// are no cgroups, or this one could not be made (logged).
    pub fn prepare(&self, id: &str, max: u64) -> Option<File> {
        let dir = self.dir.as_ref()?.join(id);
        let made = (|| -> std::io::Result<File> {
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("pids.max"))?
                .write_all(max.to_string().as_bytes())?;
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
        })();
        match made {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(plugin = %id, dir = %dir.display(), error = %e, "no pids cgroup for this plugin: the watchdog counts its processes instead");
                None
            }
        }
    }

    /// Removes plugin `id`'s cgroup (it has no process left).
    pub fn forget(&self, id: &str) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir(dir.join(id));
        }
    }

    /// Removes every cgroup of this host (at shutdown, its plugins gone).
    pub fn remove(&self) {
        let Some(dir) = &self.dir else { return };
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

/// Removes the cgroups of hosts that are gone (killed, so they could not
/// remove their own); a cgroup with a process left in it stays.
fn clear_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("iglu-")) else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(e.path()) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

/// Writes the calling process's id into `fd` (its `cgroup.procs`): between
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
