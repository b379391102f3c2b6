//! A plugin the host does not start: one that runs in a container or on
//! another machine and connects over TCP by itself.
//!
//! The host sees it only through its session. Its token is fixed (from the
//! config) and stays valid while it is down, so it may come back by itself
//! at any time; a lost session keeps its key-value state and its event
//! queue for then. If the config names a `restart_command`, that command
//! is how the host starts it again after a crash, under the same backoff
//! and restart limit as a child process. On host shutdown it is not told
//! goodbye: it reconnects to the next host by itself.

use std::time::Duration;

use super::Runner;
use crate::config::ExternalSpec;
use crate::session::Loss;

/// Longest a restart command may run before it is killed.
const RESTART_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs nothing: waits for the plugin to attach, and runs its restart command after a crash.
pub struct AttachedRunner {
    spec: ExternalSpec,
    token: String,
}

impl AttachedRunner {
    /// A runner for `spec`, whose HELLO carries `token`.
    pub fn new(spec: ExternalSpec, token: String) -> AttachedRunner {
        AttachedRunner { spec, token }
    }
}

impl Runner for AttachedRunner {
    fn token(&mut self) -> String {
        self.token.clone()
    }

    async fn start(&mut self, _token: &str, after_crash: bool) -> Result<Option<u32>, String> {
        if after_crash {
            run_restart_command(&self.spec.id, &self.spec.restart_command).await;
        }
        Ok(None)
    }

    fn handshake_deadline(&self) -> Option<Duration> {
        None
    }

    async fn exited(&mut self) -> String {
        std::future::pending().await
    }

    async fn reap(&mut self, loss: Loss) -> String {
        loss.to_string()
    }

    async fn stop(&mut self, _grace: Duration, _said_goodbye: bool) -> String {
        "stopped by the host".to_owned()
    }

    async fn kill(&mut self) {}

    fn restarts(&self) -> bool {
        !self.spec.restart_command.is_empty()
    }

    fn reconnects(&self) -> bool {
        true
    }
}

async fn run_restart_command(id: &str, argv: &[String]) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    tracing::info!(plugin = %id, command = ?argv, "running the restart command");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(RESTART_COMMAND_TIMEOUT, child).await {
        Ok(Ok(out)) if out.status.success() => {}
        Ok(Ok(out)) => {
            tracing::warn!(plugin = %id, status = %out.status, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "restart command failed")
        }
        Ok(Err(e)) => tracing::warn!(plugin = %id, error = %e, "restart command could not run"),
        Err(_) => tracing::warn!(plugin = %id, "restart command timed out"),
    }
}
