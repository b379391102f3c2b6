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
/// for the host, which then stops plugins in order) and `IGLU_HOST_PID`, with
/// which it sets the parent-death signal on itself (the SDK does), so it
/// dies with the host even if the host is SIGKILLed. Setting that signal
/// here instead would need a `pre_exec` hook, which makes std fork() the
/// whole host rather than posix_spawn() the child: 0.5 ms more per start,
/// measured with `iglu bench`. Its stdout and stderr are forwarded line by
/// line to the host's log.
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
            // ESRCH means it is already gone: fine.
            let _ = kill(Pid::from_raw(pid), signal);
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
