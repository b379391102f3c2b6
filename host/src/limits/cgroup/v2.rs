//! A cgroup v2 per plugin, under the host's own cgroup.
//!
//! The host finds its cgroup in `/proc/self/cgroup` (`0::<path>`) and the
//! v2 mount in `/proc/self/mountinfo`, and makes `iglu-<host pid>-<k>/` in it,
//! one child per plugin. Controllers the host's cgroup offers (`memory`,
//! `pids`, `cpu`) are enabled down the subtree; a cgroup with processes of
//! its own cannot pass controllers down (the "no internal processes" rule),
//! so a host alone in its cgroup (a systemd unit with `Delegate=yes`, a
//! container) first moves itself into a leaf, `iglu-host-<pid>/`, as
//! systemd asks of delegated services. Without any controller (a machine
//! whose controllers are bound to v1 hierarchies, like this one), a v2
//! cgroup still holds every process the plugin starts, wherever in the
//! process tree it goes, can be killed at once with `cgroup.kill`, and
//! counts its CPU time in `cpu.stat`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Controllers;
use crate::limits::Limits;

/// How [`write`] marks EBUSY.
const BUSY: &str = " (busy)";

/// The period of `cpu.max`, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// This host's v2 subtree.
#[derive(Debug)]
pub struct Tree {
    /// `<host's cgroup>/iglu-<pid>-<k>`, in the file system.
    dir: PathBuf,
    /// The same, as `/proc/<pid>/cgroup` names it.
    path: String,
    /// Launches so far: each gets a cgroup of its own.
    launches: std::sync::atomic::AtomicU64,
    /// What plugins get.
    pub controllers: Controllers,
    /// Why a controller the kernel has is not given, when one is not.
    missing: Vec<String>,
}

/// One launch's v2 cgroup.
#[derive(Debug)]
pub struct PluginCgroup {
    /// Its directory.
    pub dir: PathBuf,
    /// The directory itself, open for a new process to be born in
    /// (`CLONE_INTO_CGROUP`).
    pub dir_fd: File,
    /// Its `cgroup.procs`, open for a new process to join where the kernel
    /// cannot do that.
    pub procs: File,
    /// Its memory limit, if the kernel holds it.
    memory_mib: Option<u64>,
    /// OOM kills in it before this launch.
    oom_before: u64,
}

impl Tree {
    /// Makes this host's subtree, or says why it cannot.
    pub fn make() -> Result<Tree, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("this host is in no cgroup v2 hierarchy")?
            .to_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let (root, mount) = cgroup2_mount(&mounts).ok_or("no cgroup2 file system is mounted")?;
        let base = under_mount(&mount, &root, &path)
            .ok_or_else(|| format!("this host's cgroup {path} is outside the cgroup2 mount"))?;
        super::clear_stale(&base);
        let mut controllers = Controllers::default();
        let mut missing = Vec::new();
        let offered = read(&base.join("cgroup.controllers")).unwrap_or_default();
        for name in ["memory", "pids", "cpu"] {
            if !offered.split_whitespace().any(|c| c == name) {
                missing.push(format!("{name} not offered to {}", base.display()));
                continue;
            }
            match enable(&base, name) {
                Ok(()) => set(&mut controllers, name),
                Err(e) => missing.push(format!("{name}: {e}")),
            }
        }
        let name = super::tree_name();
        let dir = base.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot make {}: {e}", dir.display())),
        }
        for name in ["memory", "pids", "cpu"] {
            if has(&controllers, name) {
                if let Err(e) = write(&dir.join("cgroup.subtree_control"), &format!("+{name}")) {
                    missing.push(format!("{name}: {e}"));
                    unset(&mut controllers, name);
                }
            }
        }
        Ok(Tree {
            // As read before any move of the host into a leaf: its base.
            path: format!("{}/{name}", path.trim_end_matches('/')),
            dir,
            launches: std::sync::atomic::AtomicU64::new(0),
            controllers,
            missing,
        })
    }

    /// The cgroup directory of plugin `id`'s main process `pid`: its
    /// launch's, `<id>.<n>`. Nothing for a pid in any other cgroup (a pid
    /// reused after the plugin was reaped is not taken for the plugin's).
    pub fn dir_of_pid(&self, id: &str, pid: u32) -> Option<PathBuf> {
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let rest = path.strip_prefix(&self.path)?.strip_prefix('/')?;
        let n = rest.strip_prefix(id)?.strip_prefix('.')?;
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| self.dir.join(rest))
    }

    /// Removes plugin `id`'s empty cgroups, left by its earlier launches
    /// (one whose processes are still dying stays, until the next time).
    fn clear(&self, id: &str) {
        let prefix = format!("{id}.");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let ours = name.to_str().and_then(|n| n.strip_prefix(&prefix));
            if ours.is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }

    /// What it is and gives, in words.
    pub fn describe(&self) -> String {
        let given: Vec<&str> = ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|n| has(&self.controllers, n))
            .collect();
        let given = if given.is_empty() {
            "no controllers: membership, kill and CPU accounting only".to_owned()
        } else {
            format!("controllers {}", given.join(", "))
        };
        if self.missing.is_empty() {
            format!("cgroup v2 {} ({given})", self.dir.display())
        } else {
            format!(
                "cgroup v2 {} ({given}; {})",
                self.dir.display(),
                self.missing.join("; ")
            )
        }
    }

    /// Makes a cgroup for a launch of plugin `id`, `<id>.<n>`, with
    /// `limits`, and opens it for the new process to be born in.
    ///
    /// One per launch, never reused: during an upgrade two launches of a
    /// plugin run side by side, and killing the old one's cgroup must not
    /// touch the new one; and on this machine's kernel (6.18) a process
    /// born with `CLONE_INTO_CGROUP` into a cgroup that was ever killed
    /// through `cgroup.kill` is killed at birth.
    pub fn prepare(&self, id: &str, limits: &Limits) -> Result<PluginCgroup, String> {
        self.clear(id);
        let n = self
            .launches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.dir.join(format!("{id}.{n}"));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        if self.controllers.memory {
            let bytes = limits.memory_mib.checked_mul(1 << 20);
            let max = bytes.map_or_else(|| "max".to_owned(), |b| b.to_string());
            write(&dir.join("memory.max"), &max)?;
            write(&dir.join("memory.oom.group"), "1")?;
            // The limit is the limit: not a slow death in swap. Absent
            // where the kernel has no swap accounting.
            let _ = write(&dir.join("memory.swap.max"), "0");
        }
        if self.controllers.pids {
            write(&dir.join("pids.max"), &limits.max_processes.to_string())?;
        }
        if self.controllers.cpu {
            let max = match limits.cpu_percent {
                Some(p) => match p.max(1).checked_mul(CPU_PERIOD_US) {
                    Some(q) => format!("{} {CPU_PERIOD_US}", q / 100),
                    None => format!("max {CPU_PERIOD_US}"),
                },
                None => format!("max {CPU_PERIOD_US}"),
            };
            write(&dir.join("cpu.max"), &max)?;
        }
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", dir.display()))?;
        let dir_fd = File::open(&dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
        Ok(PluginCgroup {
            dir_fd,
            oom_before: oom_kills(&dir),
            memory_mib: self.controllers.memory.then_some(limits.memory_mib),
            dir,
            procs,
        })
    }

    /// Removes plugin `id`'s cgroups (it has no process left).
    pub fn forget(&self, id: &str) {
        self.clear(id);
    }

    /// Removes every cgroup of this host (at shutdown, its plugins gone).
    pub fn remove(&self) {
        super::v1::remove_tree(&self.dir);
    }
}

impl Drop for PluginCgroup {
    /// A launch's cgroup goes with its process, however that ended (a
    /// process dropped unreaped is killed through it too).
    fn drop(&mut self) {
        self.kill();
        self.release();
    }
}

impl PluginCgroup {
    /// Kills every process left in it.
    pub fn kill(&self) {
        kill(&self.dir);
    }

    /// Removes it, if it is empty by now (else the next launch of the
    /// plugin, or the host's end, does).
    pub fn release(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Why the launch died, if the kernel killed it at its memory limit.
    pub fn oom_reason(&self) -> Option<String> {
        let mib = self.memory_mib?;
        (oom_kills(&self.dir) > self.oom_before).then(|| {
            format!("memory limit {mib} MiB exceeded; killed by the kernel (cgroup v2 memory.max)")
        })
    }
}

/// Kills every process in the cgroup `dir`: at once with `cgroup.kill`
/// (Linux 5.14), or one by one from `cgroup.procs` on older kernels.
pub fn kill(dir: &Path) {
    if write(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    // A process may fork between the read and the kill: a few rounds.
    for _ in 0..8 {
        let pids = members(dir);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The processes in the cgroup `dir`.
pub fn members(dir: &Path) -> Vec<i32> {
    read(&dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// CPU time used by the cgroup `dir` and every process it ever held, in
/// microseconds (`cpu.stat` has it with or without the cpu controller).
pub fn cpu_usec(dir: &Path) -> Option<u64> {
    read(&dir.join("cpu.stat"))?
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// Tasks (processes and threads) in the cgroup `dir`, where the pids
/// controller counts them.
pub fn tasks(dir: &Path) -> Option<u64> {
    read(&dir.join("pids.current"))?.trim().parse().ok()
}

/// OOM kills so far in the cgroup `dir` (0 without the memory controller).
fn oom_kills(dir: &Path) -> u64 {
    read(&dir.join("memory.events"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The root and mount point of the first cgroup2 mount in a mountinfo.
fn cgroup2_mount(mountinfo: &str) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = before.split_whitespace().collect();
        Some((
            unescape(fields.get(3)?),
            PathBuf::from(unescape(fields.get(4)?)),
        ))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The directory of cgroup `path` on a cgroup2 mount at `mount` whose root
/// is `root` (not `/` inside a cgroup namespace's bind mount).
fn under_mount(mount: &Path, root: &str, path: &str) -> Option<PathBuf> {
    // By components: root `/a/b` is not a prefix of `/a/bc`.
    let rel = Path::new(path).strip_prefix(root).ok()?;
    Some(if rel.as_os_str().is_empty() {
        mount.to_owned()
    } else {
        mount.join(rel)
    })
}

/// Passes controller `name` down from `base`. A cgroup with processes of
/// its own may not (EBUSY; the machine's root cgroup may, but inside a
/// cgroup namespace `/` is not that): a host alone in `base` first moves
/// itself into a leaf of its own.
fn enable(base: &Path, name: &str) -> Result<(), String> {
    let control = base.join("cgroup.subtree_control");
    if read(&control).is_some_and(|s| s.split_whitespace().any(|c| c == name)) {
        return Ok(());
    }
    match write(&control, &format!("+{name}")) {
        Ok(()) => return Ok(()),
        Err(e) if !e.ends_with(BUSY) => return Err(e),
        Err(_) => {}
    }
    let me = std::process::id() as i32;
    let procs = members(base);
    if procs != [me] {
        return Err(format!(
            "{} holds other processes, so it cannot pass controllers down (delegate a cgroup with only the host in it)",
            base.display()
        ));
    }
    let leaf = base.join(format!("iglu-host-{me}"));
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot make {}: {e}", leaf.display())),
    }
    write(&leaf.join("cgroup.procs"), &me.to_string())?;
    tracing::info!(cgroup = %leaf.display(), "the host moved itself into a leaf cgroup, so its plugins' cgroups can have controllers");
    write(&control, &format!("+{name}"))
}

fn set(c: &mut Controllers, name: &str) {
    match name {
        "memory" => c.memory = true,
        "pids" => c.pids = true,
        _ => c.cpu = true,
    }
}

fn unset(c: &mut Controllers, name: &str) {
    match name {
        "memory" => c.memory = false,
        "pids" => c.pids = false,
        _ => c.cpu = false,
    }
}

fn has(c: &Controllers, name: &str) -> bool {
    match name {
        "memory" => c.memory,
        "pids" => c.pids,
        _ => c.cpu,
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| {
            let busy = if e.raw_os_error() == Some(nix::libc::EBUSY) {
                BUSY
            } else {
                ""
            };
            format!("cannot write {value:?} to {}: {e}{busy}", path.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_and_the_hosts_cgroup_are_found() {
        let info = "\
24 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw
35 24 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 24 0:36 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let (root, mount) = cgroup2_mount(info).expect("a cgroup2 line");
        assert_eq!(root, "/");
        assert_eq!(mount, PathBuf::from("/sys/fs/cgroup/unified"));
        // Inside a cgroup namespace's bind mount, the root is not `/`.
        let nested = "50 1 0:40 /system.slice/iglu.service /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        let (root, mount) = cgroup2_mount(nested).expect("a cgroup2 line");
        assert_eq!(
            under_mount(&mount, &root, "/system.slice/iglu.service/sub"),
            Some(PathBuf::from("/sys/fs/cgroup/sub"))
        );
        assert_eq!(under_mount(&mount, &root, "/elsewhere"), None);
        assert_eq!(
            under_mount(Path::new("/sys/fs/cgroup"), "/", "/"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }
}
