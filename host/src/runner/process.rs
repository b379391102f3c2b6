//! A plugin's OS process: started with clone(3) and exec, confined before it
//! runs any code of its own, waited for through a pidfd.
//!
//! Why not `std::process::Command`: where the plugin has a cgroup v2, the
//! process is born in it (`clone3` with `CLONE_INTO_CGROUP`) instead of
//! moving there between fork and exec. Moving a process between cgroups
//! takes a lock whose writer waits for an RCU grace period, which costs
//! each start 5-15 ms on this machine's kernel; being born there costs
//! about 0.1 ms (`iglu bench --workloads lifecycle` has both). Everything
//! else a launch needs is done here too, between clone and exec, with
//! plain system calls and no allocation (the host is multithreaded: the
//! child may not take a lock another thread held):
//!
//! 1. the signal mask emptied and SIGPIPE back to its default;
//! 2. stdin from `/dev/null`, stdout and stderr into pipes to the host;
//! 3. a process group of its own (signals to the plugin go to all of it);
//! 4. SIGKILL as its parent-death signal, then a check that the host is
//!    still its parent (had the host died in between, no signal would come);
//! 5. v1 cgroups joined (v1 has no `CLONE_INTO_CGROUP`), and the v2 one on
//!    a kernel older than 5.7 without it;
//! 6. its rlimits and niceness;
//! 7. its Landlock sandbox, last, so the steps before it are free;
//! 8. exec.
//!
//! A step that fails is reported to the host through a close-on-exec pipe
//! (which step, and errno), and the child exits 127; the host reaps it and
//! says what failed. Linux sends the parent-death signal when the *thread*
//! that cloned dies: plugins are started from the host runtime's worker
//! threads, which live as long as the runtime.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use nix::libc;
use tokio::io::unix::AsyncFd;

/// `clone3`'s flags (the kernel's values; not every libc has them).
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args`, as far as `cgroup` (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What a new process is started with, and how it is confined.
#[derive(Debug)]
pub struct Launch<'a> {
    /// The executable (a bare name is looked up in `PATH`).
    pub program: &'a Path,
    /// Its arguments, after the program's name.
    pub args: &'a [String],
    /// Its whole environment.
    pub env: Vec<(OsString, OsString)>,
    /// The cgroup v2 directory it is born in.
    pub cgroup: Option<RawFd>,
    /// That cgroup's `cgroup.procs`, joined instead on kernels without
    /// `CLONE_INTO_CGROUP`.
    pub cgroup_procs: Option<RawFd>,
    /// Other `cgroup.procs` it joins (v1 hierarchies).
    pub join: Vec<RawFd>,
    /// Its rlimits, if set.
    pub rlimits: Option<crate::limits::rlimits::Rlimits>,
    /// Its niceness, if set.
    pub nice: Option<i32>,
    /// Its Landlock ruleset, if sandboxed.
    pub ruleset: Option<RawFd>,
}

/// A started process: its pid, a pidfd to wait on, its output.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    /// Set once reaped, so `wait` is idempotent.
    exited: Option<ExitStatus>,
}

/// The steps between clone and exec, as reported when one fails.
const STEPS: [&str; 8] = [
    "setting up its signals",
    "connecting its stdin, stdout and stderr",
    "giving it a process group",
    "tying it to the host's life",
    "joining its cgroup",
    "setting its limits",
    "sandboxing it",
    "executing it",
];

/// Everything the child needs, made before the clone: the child may not
/// allocate.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    devnull: OwnedFd,
    out: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
    report: (OwnedFd, OwnedFd),
    host: libc::pid_t,
}

fn cstring(s: &OsStr) -> std::io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} holds a NUL byte", s.to_string_lossy()),
        )
    })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Starts `launch`: returns once the program is executing (or why not),
/// with the read ends of its stdout and stderr.
#[allow(unsafe_code)]
pub fn spawn(launch: &Launch<'_>) -> std::io::Result<(Process, OwnedFd, OwnedFd)> {
    let program = find_program(launch.program, &launch.env)?;
    let mut argv = vec![cstring(launch.program.as_os_str())?];
    for a in launch.args {
        argv.push(cstring(OsStr::new(a))?);
    }
    let mut envp = Vec::with_capacity(launch.env.len());
    for (k, v) in &launch.env {
        let mut kv = k.clone();
        kv.push("=");
        kv.push(v);
        envp.push(cstring(&kv)?);
    }
    let prepared = Prepared {
        program: cstring(program.as_os_str())?,
        argv,
        envp,
        devnull: std::fs::File::open("/dev/null")?.into(),
        out: pipe()?,
        err: pipe()?,
        report: pipe()?,
        host: std::process::id() as libc::pid_t,
    };
    let mut argv: Vec<*const libc::c_char> = prepared.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = prepared.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(dir) = launch.cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = dir as u64;
    }
    // SAFETY: clone3 without CLONE_VM is fork(2) with more arguments: the
    // child gets a copy of this address space and runs only `in_child`,
    // which makes system calls on memory prepared above and never
    // returns. `args` lives across the call.
    let mut pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let mut fallback_join = false;
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels before 5.3 have no clone3, before 5.7 no
        // CLONE_INTO_CGROUP: fork, join by writing, and open a pidfd.
        if !matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG)
        ) {
            return Err(e);
        }
        fallback_join = true;
        // SAFETY: as above, fork(2).
        pid = unsafe { libc::fork() } as libc::c_long;
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if pid == 0 {
        // SAFETY: in the child; see `in_child`.
        unsafe { in_child(launch, &prepared, &argv, &envp, fallback_join) }
    }
    let pid = pid as libc::pid_t;
    let mut pidfd_error = None;
    if fallback_join {
        // SAFETY: pidfd_open(2) on our own child, integer arguments.
        pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
        if pidfd < 0 {
            pidfd_error = Some(std::io::Error::last_os_error());
        }
    }
    let Prepared {
        out, err, report, ..
    } = prepared;
    drop((out.1, err.1, report.1));
    let failed = read_report(&report.0);
    if pidfd < 0 {
        let e = pidfd_error.unwrap_or_else(|| std::io::Error::other("no pidfd"));
        kill_and_reap(pid);
        return Err(std::io::Error::new(
            e.kind(),
            format!("no pidfd for the new process (Linux 5.3 or later is needed): {e}"),
        ));
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    if let Some((step, errno)) = failed {
        // SAFETY: waitpid(2) on our own child, which is exiting.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        let what = STEPS.get(step).copied().unwrap_or("starting it");
        let e = std::io::Error::from_raw_os_error(errno);
        return Err(std::io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    // SAFETY: the `OwnedFd` is moved into the `AsyncFd` and stays open,
    // the same descriptor, for as long as it lives.
    let pidfd =
        match unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                // It is running: not left untracked.
                kill_and_reap(pid);
                return Err(std::io::Error::other(format!(
                    "cannot watch the new process: {e}"
                )));
            }
        };
    let process = Process {
        pid: pid as u32,
        pidfd,
        exited: None,
    };
    Ok((process, out.0, err.0))
}

/// Kills and reaps our own child `pid`, started but not to be kept.
#[allow(unsafe_code)]
fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: kill(2) and waitpid(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// The executable to exec, as `execvp` would find it: a name with a `/`
/// as it is, a bare name in the launch's own `PATH` (not the host's), the
/// first that is an executable file; none is ENOENT.
fn find_program(program: &Path, env: &[(OsString, OsString)]) -> std::io::Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_owned());
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map_or_else(
        || OsString::from("/usr/local/bin:/usr/bin:/bin"),
        |(_, v)| v.clone(),
    );
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not an executable in PATH", program.display()),
            )
        })
}

/// What the child reported before exec: nothing (it is executing), or
/// the step that failed and its errno.
fn read_report(fd: &OwnedFd) -> Option<(usize, i32)> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if got < buf.len() {
        return None;
    }
    let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Some((step, errno))
}

/// The child's side: the steps of the module's doc, then exec; on a
/// failure, the step and errno to the host, and exit 127.
///
/// # Safety
///
/// Only in the child of a clone or fork, before exec: it makes system
/// calls on memory prepared before the clone, allocates nothing and takes
/// no lock, and never returns.
#[allow(unsafe_code)]
unsafe fn in_child(
    launch: &Launch<'_>,
    p: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    fallback_join: bool,
) -> ! {
    let fail = |step: u32| -> ! {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&step.to_ne_bytes());
        buf[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(p.report.1.as_raw_fd(), buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    };
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0
        || libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR
    {
        fail(0);
    }
    for (from, to) in [
        (p.devnull.as_raw_fd(), 0),
        (p.out.1.as_raw_fd(), 1),
        (p.err.1.as_raw_fd(), 2),
    ] {
        // dup2 onto itself keeps close-on-exec: clear it instead.
        let ok = if from == to {
            libc::fcntl(to, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(from, to) == to
        };
        if !ok {
            fail(1);
        }
    }
    if libc::setpgid(0, 0) != 0 {
        fail(2);
    }
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
        fail(3);
    }
    if libc::getppid() != p.host {
        *libc::__errno_location() = libc::ESRCH;
        fail(3);
    }
    let v2 = launch.cgroup_procs.filter(|_| fallback_join);
    for fd in launch.join.iter().copied().chain(v2) {
        if crate::limits::cgroup::join(fd).is_err() {
            fail(4);
        }
    }
    if let Some(r) = launch.rlimits {
        let set = |resource, value: u64| {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            libc::setrlimit(resource, &limit) == 0
        };
        if !set(libc::RLIMIT_NOFILE, r.files)
            || !set(libc::RLIMIT_DATA, r.data)
            || r.nproc.is_some_and(|n| !set(libc::RLIMIT_NPROC, n))
        {
            fail(5);
        }
    }
    if let Some(nice) = launch.nice {
        // Best effort: a host not allowed to leaves it as it is.
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
    }
    if let Some(ruleset) = launch.ruleset {
        if crate::limits::sandbox::restrict_self(ruleset).is_err() {
            fail(6);
        }
    }
    libc::execve(p.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
    fail(7)
}

impl Process {
    /// Its OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it has been reaped.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.exited
    }

    /// Waits for it to exit and reaps it. Cancel-safe and idempotent.
    pub async fn wait(&mut self) -> ExitStatus {
        loop {
            if let Some(status) = self.try_reap() {
                return status;
            }
            match self.pidfd.readable().await {
                Ok(mut ready) => ready.clear_ready(),
                // The runtime is going away: call it killed.
                Err(_) => return ExitStatus::from_raw(libc::SIGKILL),
            }
        }
    }

    /// Reaps it if it has exited.
    #[allow(unsafe_code)]
    fn try_reap(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited {
            return Some(status);
        }
        let mut raw: libc::c_int = 0;
        // SAFETY: waitpid(2) on our own child, with a live out-pointer.
        let r = unsafe { libc::waitpid(self.pid as libc::pid_t, &mut raw, libc::WNOHANG) };
        let status = match r {
            0 => return None,
            r if r > 0 => ExitStatus::from_raw(raw),
            // Reaped elsewhere already (it cannot be): call it killed.
            _ => ExitStatus::from_raw(libc::SIGKILL),
        };
        self.exited = Some(status);
        Some(status)
    }

    /// Sends `signal` to it alone (ESRCH once it has exited is ignored).
    /// Through its pidfd, so never to a process that took its pid after it.
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: libc::c_int) {
        if self.exited.is_some() {
            return;
        }
        // SAFETY: pidfd_send_signal(2) with our own pidfd and no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.get_ref().as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            );
        }
    }
}

impl Drop for Process {
    /// A process dropped unreaped is killed, and reaped off the runtime:
    /// no plugin outlives the host's hold on it, and no zombie is left.
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.try_reap().is_some() {
            return;
        }
        self.signal(libc::SIGKILL);
        let pid = self.pid as libc::pid_t;
        let _ = std::thread::Builder::new()
            .name("iglu-reap".into())
            .spawn(move || {
                // SAFETY: waitpid(2) on our own child, just killed.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            });
    }
}
