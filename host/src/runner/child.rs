//! A plugin as a child process of the host: spawned with its launch
//! environment, watched for exit, stopped with SIGTERM then SIGKILL.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use iglu_bus::handshake::{COOKIE_KEY, COOKIE_VALUE};
use iglu_bus::launch;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::output::forward_lines;
use super::Runner;
use crate::config::PluginSpec;
use crate::limits::cgroup::Cgroups;
use crate::limits::sandbox::{Policy, Ruleset, Sandboxing};
use crate::limits::{Limits, LimitsConfig};
use crate::session::Loss;
use crate::settings::Settings;
use std::os::fd::AsRawFd;

/// After the socket reports a plugin gone, how long to wait for its process
/// to exit by itself, so `last_exit` can name the real cause (the signal)
/// rather than "killed by the host".
const EXIT_AFTER_DISCONNECT: Duration = Duration::from_millis(500);

/// Environment variables added to a launch's.
type LaunchEnv = Vec<(&'static str, String)>;

/// What every launch of a managed plugin on this host is given: where to
/// connect, how long it has to handshake, its settings, and how it is
/// confined. One per host, shared by every runner.
pub struct Launching {
    /// The endpoint launches connect to.
    pub endpoint: String,
    /// How long a launch has to say HELLO.
    pub handshake_timeout: Duration,
    /// Plugins' settings (`IGLU_SETTINGS`).
    pub settings: Arc<Settings>,
    /// Pids cgroups, where the host has them.
    pub cgroups: Arc<Cgroups>,
    /// The sandbox and niceness.
    pub sandboxing: Arc<Sandboxing>,
}

/// Runs a configured plugin as a child process, one process per launch.
pub struct ChildRunner {
    spec: PluginSpec,
    host: Arc<Launching>,
    process: Option<PluginProcess>,
}

impl ChildRunner {
    /// A runner for `spec`, launched as `host` says.
    pub fn new(spec: PluginSpec, host: Arc<Launching>) -> ChildRunner {
        ChildRunner {
            spec,
            host,
            process: None,
        }
    }

    /// The plugin it runs.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// A runner like this one for another version of the plugin.
    pub fn with_spec(&self, spec: PluginSpec) -> ChildRunner {
        ChildRunner::new(spec, self.host.clone())
    }

    /// The sandbox of this launch, if it is sandboxed here: its ruleset,
    /// and the environment that points it at its private directory.
    fn sandbox(&self) -> Result<Option<(Ruleset, LaunchEnv)>, String> {
        let own = self.spec.sandbox.as_ref();
        if !self.host.sandboxing.wanted(own) {
            return Ok(None);
        }
        let Some(abi) = self.host.sandboxing.abi else {
            tracing::warn!(plugin = %self.spec.id, "sandbox wanted, but this kernel has no Landlock: the plugin runs NOT confined");
            return Ok(None);
        };
        let private = self
            .host
            .sandboxing
            .private_dir(&self.spec.id)
            .map_err(|e| format!("cannot make its private directory: {e}"))?;
        let exe = crate::limits::sandbox::resolve(&self.spec.command);
        let mut read: Vec<std::path::PathBuf> =
            exe.parent().map(|d| d.to_owned()).into_iter().collect();
        read.extend(self.host.sandboxing.read.iter().cloned());
        read.extend(own.map(|s| s.read.clone()).unwrap_or_default());
        let mut write = vec![private.clone()];
        write.extend(own.map(|s| s.write.clone()).unwrap_or_default());
        let policy = Policy {
            read,
            write,
            network: own.is_some_and(|s| s.network),
        };
        let ruleset =
            Ruleset::build(&policy, abi).map_err(|e| format!("cannot build its sandbox: {e}"))?;
        let dir = private.display().to_string();
        Ok(Some((
            ruleset,
            vec![("IGLU_DATA_DIR", dir.clone()), ("TMPDIR", dir)],
        )))
    }
}

/// Refuses an executable whose sha256 is not the one `spec` pins (an
/// installed package's, checked before every start).
async fn check_integrity(spec: &PluginSpec) -> Result<(), String> {
    let Some(expected) = spec.sha256.clone() else {
        return Ok(());
    };
    let path = spec.command.clone();
    let actual = tokio::task::spawn_blocking(move || crate::package::bundle::file_sha256(&path))
        .await
        .map_err(|e| format!("could not check the executable: {e}"))?
        .map_err(|e| format!("could not read {} to check it: {e}", spec.command.display()))?;
    if !actual.eq_ignore_ascii_case(&expected) {
        return Err(format!(
            "refused to start: {} changed since it was installed (sha256 {actual}, installed {expected})",
            spec.command.display()
        ));
    }
    Ok(())
}

impl Runner for ChildRunner {
    fn token(&mut self) -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    async fn start(&mut self, token: &str, _after_crash: bool) -> Result<Option<u32>, String> {
        self.process = None;
        check_integrity(&self.spec).await?;
        let settings =
            serde_json::Value::Object(self.host.settings.effective(&self.spec.id)).to_string();
        let env = [
            (crate::settings::ENV, settings),
            (COOKIE_KEY, COOKIE_VALUE.to_owned()),
            (launch::ENDPOINT, self.host.endpoint.clone()),
            (launch::TOKEN, token.to_owned()),
            (launch::PLUGIN_ID, self.spec.id.clone()),
            (launch::MODE, "managed".to_owned()),
            (launch::HOST_PID, std::process::id().to_string()),
            (
                launch::HANDSHAKE_TIMEOUT_MS,
                self.host.handshake_timeout.as_millis().to_string(),
            ),
        ];
        let limits = Limits::of(self.spec.limits.as_ref(), &LimitsConfig::default());
        let cgroup = self
            .host
            .cgroups
            .prepare(&self.spec.id, limits.max_processes);
        let sandbox = self.sandbox()?;
        let mut env = env.to_vec();
        if let Some((_, extra)) = &sandbox {
            env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        }
        let scrub: &[&str] = if sandbox.is_some() {
            &crate::limits::sandbox::SCRUBBED_ENV
        } else {
            &[]
        };
        let confine = Confinement {
            cgroup: cgroup.as_ref(),
            ruleset: sandbox.as_ref().map(|(r, _)| r),
            nice: self.host.sandboxing.nice,
            scrub,
        };
        match spawn(&self.spec, &env, confine) {
            Ok(process) => {
                let pid = process.pid();
                self.process = Some(process);
                Ok(pid)
            }
            Err(e) => Err(format!(
                "could not start {}: {e}",
                self.spec.command.display()
            )),
        }
    }

    fn handshake_deadline(&self) -> Option<Duration> {
        Some(self.host.handshake_timeout)
    }

    async fn exited(&mut self) -> String {
        match self.process.as_mut() {
            Some(p) => describe_exit(p.wait().await),
            None => std::future::pending().await,
        }
    }

    async fn reap(&mut self, loss: Loss) -> String {
        let Some(process) = self.process.as_mut() else {
            return loss.to_string();
        };
        let wait = match loss {
            // A frozen plugin will not exit by itself; one that stopped
            // reading or flooded the host is not given the chance.
            Loss::HeartbeatTimeout(_) | Loss::NotReading(_) | Loss::Misbehaving(_) => {
                Duration::ZERO
            }
            _ => EXIT_AFTER_DISCONNECT,
        };
        match tokio::time::timeout(wait, process.wait()).await {
            Ok(status) if loss == Loss::Disconnected => describe_exit(status),
            Ok(status) => format!("{loss}; {}", describe_exit(status)),
            Err(_) => {
                process.kill().await;
                format!("{loss}; killed by the host")
            }
        }
    }

    async fn stop(&mut self, grace: Duration, said_goodbye: bool) -> String {
        let Some(process) = self.process.as_mut() else {
            return "stopped by the host".to_owned();
        };
        let status = if said_goodbye {
            match tokio::time::timeout(grace, process.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    tracing::warn!(plugin = %self.spec.id, grace_ms = grace.as_millis() as u64, "did not exit after GOODBYE: sending SIGTERM");
                    process.terminate(grace).await
                }
            }
        } else {
            // No session to say goodbye on: straight to SIGTERM.
            process.terminate(grace).await
        };
        format!("stopped by the host; {}", describe_exit(status))
    }

    async fn kill(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill().await;
        }
    }

    fn exited_cleanly(&self) -> bool {
        self.process
            .as_ref()
            .and_then(|p| p.exited)
            .is_some_and(|status| status.success())
    }

    fn restarts(&self) -> bool {
        true
    }

    fn successor(&self, spec: &PluginSpec) -> Option<ChildRunner> {
        Some(self.with_spec(spec.clone()))
    }

    fn reconnects(&self) -> bool {
        false
    }
}

/// A running plugin process.
pub struct PluginProcess {
    child: Child,
    pid: Option<u32>,
    /// Set once the process has been reaped, so `wait` is idempotent.
    exited: Option<ExitStatus>,
}

/// Where a new plugin process is confined: its pids cgroup and its sandbox.
#[derive(Default, Clone, Copy)]
pub struct Confinement<'a> {
    /// Its cgroup's `cgroup.procs`, open for the child to join.
    pub cgroup: Option<&'a std::fs::File>,
    /// Its Landlock ruleset.
    pub ruleset: Option<&'a Ruleset>,
    /// The niceness it runs at.
    pub nice: i32,
    /// Variables of the host's environment it does not inherit.
    pub scrub: &'a [&'a str],
}

/// Starts `spec` with the launch environment `env` (endpoint, cookie, token),
/// confined as `confine` says.
///
/// The child gets its own process group (a Ctrl-C in the host's terminal is
/// for the host, which then stops plugins in order; signals to the plugin
/// go to the whole group, so what it forked goes with it). Its stdout and
/// stderr are forwarded line by line to the host's log.
///
/// The host itself makes the child die with it, even if the host is
/// SIGKILLed: the parent-death signal is set between fork and exec (see
/// `die_with_host`), so a plugin in any language that never heard of
/// `IGLU_HOST_PID` cannot outlive the host. The SDK still sets it too.
pub fn spawn(
    spec: &PluginSpec,
    env: &[(&str, String)],
    confine: Confinement<'_>,
) -> std::io::Result<PluginProcess> {
    let mut command = Command::new(&spec.command);
    for var in confine.scrub {
        command.env_remove(var);
    }
    command
        .args(&spec.args)
        .envs(&spec.env)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    die_with_host(&mut command);
    crate::limits::rlimits::apply(
        &mut command,
        Limits::of(spec.limits.as_ref(), &LimitsConfig::default()),
        confine.nice,
    );
    if let Some(procs) = confine.cgroup {
        join_cgroup(&mut command, procs.as_raw_fd());
    }
    if let Some(ruleset) = confine.ruleset {
        let fd = ruleset.raw();
        // SAFETY: runs between fork and exec: `restrict_self` makes only
        // prctl(2) and landlock_restrict_self(2) calls. Last, so the
        // hooks before it (parent-death signal, limits, cgroup) are free.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || crate::limits::sandbox::restrict_self(fd));
        }
    }
    let mut child = command.spawn()?;
    let id: Arc<str> = Arc::from(spec.id.as_str());
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(id.clone(), "stdout", out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(id, "stderr", err));
    }
    let pid = child.id();
    Ok(PluginProcess {
        child,
        pid,
        exited: None,
    })
}

impl PluginProcess {
    /// The OS process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Waits for the process to exit. Cancel-safe and idempotent.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let status = match self.child.wait().await {
            Ok(status) => {
                // What it started and left behind in its group goes with
                // it: no process of a plugin outlives it, whatever it did.
                // Right after the reap, with nothing in between.
                if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                status
            }
            // Waiting fails only if the child was already reaped; call it killed.
            Err(_) => ExitStatus::from_raw(Signal::SIGKILL as i32),
        };
        self.exited = Some(status);
        status
    }

    /// Stops the process: SIGTERM, up to `grace` to exit, then SIGKILL.
    /// Idempotent; returns the exit status.
    pub async fn terminate(&mut self, grace: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        self.signal(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => status,
            Err(_) => self.kill().await,
        }
    }

    /// SIGKILL now (it works on a stopped process too) and reap.
    pub async fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        self.signal(Signal::SIGKILL);
        self.wait().await
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            // The plugin leads its own group: the group gets the signal, so
            // children it started go too. ESRCH means it is already gone.
            if nix::sys::signal::killpg(Pid::from_raw(pid), signal).is_err() {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }
}

/// Sets SIGKILL as the child's parent-death signal before it runs any code
/// of its own, then checks that the host is still its parent (had the host
/// died in between, no signal would come: the child exits instead).
///
/// A `pre_exec` hook makes std fork() the host instead of posix_spawn() the
/// child; `iglu bench --workloads lifecycle` puts the cost at about 0.5 ms
/// per start (see docs/PERFORMANCE.md), paid for a guarantee no
/// plugin can opt out of. Linux sends the signal when the *thread* that
/// forked dies: plugins are spawned from the host runtime's worker threads,
/// which live as long as the host's runtime. An embedding program that
/// starts plugins from a thread that ends earlier (`block_in_place`, a
/// runtime of its own that it drops) has them killed with that thread.
#[allow(unsafe_code)]
pub fn die_with_host(command: &mut Command) {
    let host = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: prctl(2) and getppid(2) are
    // plain system calls, and nothing here allocates or takes a lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(std::io::Error::from)?;
            if nix::unistd::getppid() != host {
                return Err(std::io::Error::other(
                    "the host exited while the plugin started",
                ));
            }
            Ok(())
        });
    }
}

/// Makes the child join the cgroup whose `cgroup.procs` is open as `fd`,
/// before it runs any code of its own (see `limits::cgroup`).
#[allow(unsafe_code)]
fn join_cgroup(command: &mut Command, fd: std::os::fd::RawFd) {
    // SAFETY: runs between fork and exec; `join` makes only write(2) and
    // getpid(2) calls, with a buffer on the stack.
    unsafe {
        command.pre_exec(move || crate::limits::cgroup::join(fd));
    }
}

/// How a process ended, in words: "exited with code 3", "killed by signal SIGKILL".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(name) => format!("killed by signal {}", name.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => "ended for an unknown reason".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with code 3"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "killed by signal SIGKILL"
        );
    }
}
