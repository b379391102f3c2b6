//! A plugin as a child process of the host: spawned with its launch
//! environment, watched for exit, stopped with SIGTERM then SIGKILL.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use iglu_bus::handshake::{COOKIE_KEY, COOKIE_VALUE};
use iglu_bus::launch;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::net::unix::pipe::Receiver;

use super::output::forward_lines;
use super::process::{Launch, Process};
use super::Runner;
use crate::config::PluginSpec;
use crate::limits::cgroup::{Cgroups, PluginCgroups};
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
    /// Cgroups, where the host has them.
    pub cgroups: Arc<Cgroups>,
    /// The sandbox and niceness.
    pub sandboxing: Arc<Sandboxing>,
    /// Variables of the host's environment no plugin inherits (secrets
    /// the config named: the MQTT password's).
    pub secret_env: Vec<String>,
    /// Where plugins' log lines are kept.
    pub logs: Arc<crate::logs::LogBook>,
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
            (crate::logs::FORMAT_ENV, "json".to_owned()),
            (launch::HOST_PID, std::process::id().to_string()),
            (
                launch::HANDSHAKE_TIMEOUT_MS,
                self.host.handshake_timeout.as_millis().to_string(),
            ),
        ];
        let limits = Limits::of(self.spec.limits.as_ref(), &LimitsConfig::default());
        let cgroups = self.host.cgroups.prepare(&self.spec.id, &limits);
        let sandbox = self.sandbox()?;
        let mut env = env.to_vec();
        // A plugin logs at `info` unless its own `env` says otherwise (its
        // lines are kept for `iglu logs` whatever the host's own filter;
        // `iglu log-level` changes it while it runs): the host's RUST_LOG
        // is the host's.
        if !self.spec.env.contains_key("RUST_LOG") {
            env.push(("RUST_LOG", "info".to_owned()));
        }
        if let Some((_, extra)) = &sandbox {
            env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        }
        let mut scrub: Vec<&str> = if sandbox.is_some() {
            crate::limits::sandbox::SCRUBBED_ENV.to_vec()
        } else {
            Vec::new()
        };
        scrub.extend(self.host.secret_env.iter().map(String::as_str));
        let scrub = &scrub[..];
        let confine = Confinement {
            cgroups: &cgroups,
            ruleset: sandbox.as_ref().map(|(r, _)| r),
            nice: self.host.sandboxing.nice,
            scrub,
            logs: &self.host.logs,
        };
        match spawn(&self.spec, &env, confine) {
            Ok(mut process) => {
                process.cgroup = cgroups.v2;
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
            Some(p) => {
                let status = p.wait().await;
                p.describe(status)
            }
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
            Ok(status) if loss == Loss::Disconnected => process.describe(status),
            Ok(status) => format!("{loss}; {}", process.describe(status)),
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
            .and_then(|p| p.process.exited())
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

/// A running plugin process, and its cgroup.
pub struct PluginProcess {
    process: Process,
    /// Its v2 cgroup, if it has one: what it left behind is killed through
    /// it, and it tells an OOM kill.
    cgroup: Option<crate::limits::cgroup::v2::PluginCgroup>,
}

/// Where a new plugin process is confined: its cgroups and its sandbox.
#[derive(Clone, Copy)]
pub struct Confinement<'a> {
    /// Its cgroups.
    pub cgroups: &'a PluginCgroups,
    /// Its Landlock ruleset.
    pub ruleset: Option<&'a Ruleset>,
    /// The niceness it runs at.
    pub nice: i32,
    /// Variables of the host's environment it does not inherit.
    pub scrub: &'a [&'a str],
    /// Where its output lines are kept.
    pub logs: &'a Arc<crate::logs::LogBook>,
}

/// Starts `spec` with the launch environment `env` (endpoint, cookie, token),
/// confined as `confine` says (see `runner::process` for how).
///
/// The child gets its own process group (a Ctrl-C in the host's terminal is
/// for the host, which then stops plugins in order; signals to the plugin
/// go to the whole group, so what it forked goes with it), and dies with
/// the host even if the host is SIGKILLed (its parent-death signal), so a
/// plugin in any language that never heard of `IGLU_HOST_PID` cannot
/// outlive the host. Its stdout and stderr are forwarded line by line to
/// the host's log.
pub fn spawn(
    spec: &PluginSpec,
    env: &[(&str, String)],
    confine: Confinement<'_>,
) -> std::io::Result<PluginProcess> {
    // The host's environment, less what is scrubbed, then the plugin's
    // own, then the launch's: a later one wins.
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !confine.scrub.iter().any(|s| k == OsStr::new(s)))
        .collect();
    let own = spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for (k, v) in own.chain(env.iter().map(|(k, v)| (*k, v.as_str()))) {
        vars.retain(|(have, _)| have != OsStr::new(k));
        vars.push((k.into(), v.into()));
    }
    let (rlimits, nice) = crate::limits::rlimits::values(
        Limits::of(spec.limits.as_ref(), &LimitsConfig::default()),
        confine.nice,
    );
    let v2 = confine.cgroups.v2.as_ref();
    let launch = Launch {
        program: &spec.command,
        args: &spec.args,
        env: vars,
        cgroup: v2.map(|c| c.dir_fd.as_raw_fd()),
        cgroup_procs: v2.map(|c| c.procs.as_raw_fd()),
        join: confine
            .cgroups
            .v1_pids
            .iter()
            .map(|f| f.as_raw_fd())
            .collect(),
        rlimits: Some(rlimits),
        nice: Some(nice),
        ruleset: confine.ruleset.map(|r| r.raw()),
    };
    let (process, stdout, stderr) = crate::runner::process::spawn(&launch)?;
    let id: Arc<str> = Arc::from(spec.id.as_str());
    tokio::spawn(forward_lines(
        id.clone(),
        "stdout",
        Receiver::from_owned_fd(stdout)?,
        confine.logs.clone(),
    ));
    tokio::spawn(forward_lines(
        id,
        "stderr",
        Receiver::from_owned_fd(stderr)?,
        confine.logs.clone(),
    ));
    Ok(PluginProcess {
        process,
        cgroup: None,
    })
}

impl PluginProcess {
    /// The OS process id, until it is reaped.
    pub fn pid(&self) -> Option<u32> {
        Some(self.process.pid()).filter(|_| self.process.exited().is_none())
    }

    /// Waits for the process to exit. Cancel-safe and idempotent.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.process.exited() {
            return status;
        }
        let status = self.process.wait().await;
        // What it started and left behind in its group goes with it: no
        // process of a plugin outlives it, whatever it did. Right after
        // the reap, with nothing in between.
        if let Ok(pid) = i32::try_from(self.process.pid()) {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // And what left the group (setsid, a double fork): its cgroup
        // holds it still.
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill();
            cgroup.release();
        }
        status
    }

    /// How it ended, in words: the kernel's OOM kill in its cgroup is
    /// named as its memory limit.
    pub fn describe(&self, status: ExitStatus) -> String {
        match self.cgroup.as_ref().and_then(|c| c.oom_reason()) {
            Some(reason) => format!("{reason}; {}", describe_exit(status)),
            None => describe_exit(status),
        }
    }

    /// Stops the process: SIGTERM, up to `grace` to exit, then SIGKILL.
    /// Idempotent; returns the exit status.
    pub async fn terminate(&mut self, grace: Duration) -> ExitStatus {
        if let Some(status) = self.process.exited() {
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
        if let Some(status) = self.process.exited() {
            return status;
        }
        self.signal(Signal::SIGKILL);
        self.wait().await
    }

    fn signal(&self, signal: Signal) {
        // The plugin leads its own group: the group gets the signal, so
        // children it started go too. Until it is reaped its pid is its
        // own, and so is its group's id.
        if let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) {
            if nix::sys::signal::killpg(Pid::from_raw(pid), signal).is_err() {
                self.process.signal(signal as i32);
            }
        }
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
