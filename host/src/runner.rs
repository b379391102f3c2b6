//! Starting, watching and stopping one plugin process.
//!
//! This is the whole of process management, kept apart from the protocol so
//! that another way to run a plugin (a container, a remote machine) is another
//! implementation of these few calls, not special cases in the supervisor.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::config::PluginSpec;

/// Longest line of plugin output forwarded to the log; the rest of the line is
/// cut so a plugin that never prints a newline cannot grow the host's memory.
const MAX_LOG_LINE: usize = 8 * 1024;

/// A running plugin process.
pub struct PluginProcess {
    child: Child,
    pid: Option<u32>,
    /// Set once the process has been reaped, so `wait` is idempotent.
    exited: Option<ExitStatus>,
}

/// Starts `spec` with the launch environment `env` (endpoint, cookie, token).
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
pub fn spawn(spec: &PluginSpec, env: &[(&str, String)]) -> std::io::Result<PluginProcess> {
    let mut command = Command::new(&spec.command);
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
            Ok(status) => status,
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
pub(crate) fn die_with_host(command: &mut Command) {
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

async fn forward_lines<R: AsyncRead + Unpin>(plugin: Arc<str>, stream: &'static str, reader: R) {
    let mut reader = BufReader::with_capacity(MAX_LOG_LINE, reader);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (chunk, consumed, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_LOG_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(consumed);
        if complete {
            emit(&plugin, stream, &line);
            line.clear();
        }
    }
    if !line.is_empty() {
        emit(&plugin, stream, &line);
    }
}

fn emit(plugin: &str, stream: &'static str, line: &[u8]) {
    tracing::info!(target: "iglu::plugin", plugin, stream, "{}", String::from_utf8_lossy(line).trim_end());
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
