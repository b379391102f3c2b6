//! A v1 pids cgroup per plugin, for machines whose pids controller is in a
//! v1 hierarchy (opt-in: `[limits] pids_cgroup_v1 = true`).
//!
//! The host makes `<pids>/iglu-<host pid>-<k>/<plugin>/` with `pids.max`, and
//! the plugin's process joins it between clone and exec, before it runs any
//! code of its own: a fork bomb then gets EAGAIN at the limit, which counts
//! threads too, and the machine never sees it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The v1 pids hierarchy's usual mount point.
const V1_PIDS: &str = "/sys/fs/cgroup/pids";

/// This host's pids cgroup, `<pids>/iglu-<host pid>-<k>`.
#[derive(Debug)]
pub struct PidsTree {
    dir: PathBuf,
}

impl PidsTree {
    /// Makes this host's pids cgroup, or says why it cannot.
    pub fn make() -> Result<PidsTree, String> {
        let root = Path::new(V1_PIDS);
        if !root.join("cgroup.procs").exists() {
            return Err(format!("no pids cgroup hierarchy at {}", root.display()));
        }
        super::clear_stale(root);
        let dir = root.join(super::tree_name());
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(PidsTree { dir }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(PidsTree { dir }),
            Err(e) => Err(format!(
                "cannot make a pids cgroup under {}: {e}",
                root.display()
            )),
        }
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes (or reuses) plugin `id`'s cgroup with `max` tasks, and opens
    /// its `cgroup.procs` for the new process to join; `None` if it could
    /// not be made (logged).
    pub fn prepare(&self, id: &str, max: u64) -> Option<File> {
        let dir = self.dir.join(id);
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
        let _ = std::fs::remove_dir(self.dir.join(id));
    }

    /// Removes every cgroup of this host (at shutdown, its plugins gone).
    pub fn remove(&self) {
        remove_tree(&self.dir);
    }
}

/// Removes `dir` and the cgroups right under it.
pub(crate) fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
