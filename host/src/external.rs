//! Supervising a plugin the host does not start: one that runs in a
//! container or on another machine and connects over TCP by itself.
//!
//! The host sees it only through its session: a handshake makes it Running;
//! a lost session (disconnect or missed heartbeats) makes it Crashed, fails
//! its calls in flight, and keeps its key-value state and its event queue
//! for when it comes back. If the config names a `restart_command`, the host
//! runs it after a crash, under the same backoff and restart limit as a
//! managed plugin. On host shutdown external plugins are not told goodbye:
//! they reconnect to the next host by themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iglu_bus::{Goodbye, Message};
use tokio::sync::mpsc;

use crate::config::ExternalSpec;
use crate::host::Shared;
use crate::registry::PluginState;
use crate::restart_policy::{RestartPolicy, Verdict};
use crate::session::Loss;
use crate::supervisor::{close_session, set_down, Command, SupervisorEvent};

/// Longest a restart command may run before it is killed.
const RESTART_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Supervises external plugin `spec.id` until the host shuts down.
pub async fn supervise(
    shared: Arc<Shared>,
    spec: ExternalSpec,
    token: String,
    mut commands: mpsc::Receiver<Command>,
    mut events: mpsc::Receiver<SupervisorEvent>,
) {
    let id = spec.id.clone();
    let mut policy = RestartPolicy::new(&shared.config.restart);
    accept(&shared, &id, &token);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            event = events.recv() => match event {
                None => return,
                Some(SupervisorEvent::Connected { .. }) => {}
                Some(SupervisorEvent::Lost { launch, loss }) => {
                    let current = shared.registry.with(&id, |e| e.launch).unwrap_or(0);
                    if launch != current || matches!(loss, Loss::Stopping) {
                        continue;
                    }
                    tracing::warn!(plugin = %id, reason = %loss, "external plugin lost");
                    set_down(&shared, &id, PluginState::Crashed, Some(loss.to_string()));
                    // It may come back by itself; it keeps its token.
                    shared.registry.with(&id, |e| e.token = Some(token.clone()));
                    if !spec.restart_command.is_empty() {
                        match policy.on_crash(Instant::now()) {
                            Verdict::RestartAfter(delay) => {
                                tokio::time::sleep(delay).await;
                                run_restart_command(&id, &spec.restart_command).await;
                                shared.registry.with(&id, |e| e.restarts += 1);
                            }
                            Verdict::GiveUp { crashes } => {
                                tracing::error!(plugin = %id, crashes, "crashing too often: not running its restart command until `iglu start`");
                                set_down(&shared, &id, PluginState::Failed, None);
                                shared.registry.with(&id, |e| e.token = Some(token.clone()));
                            }
                        }
                    }
                }
            },
            command = commands.recv() => match command {
                None => return,
                Some(Command::Stop(done)) => {
                    say_goodbye(&shared, &id).await;
                    set_down(&shared, &id, PluginState::Stopped, Some("stopped by the host".into()));
                    // Keep the token, so its HELLO is refused as "stopped", not as a bad token.
                    shared.registry.with(&id, |e| e.token = Some(token.clone()));
                    let _ = done.send(());
                }
                Some(Command::Start(done)) => {
                    policy.reset();
                    if shared.registry.session(&id).is_err() {
                        accept(&shared, &id, &token);
                    }
                    let _ = done.send(());
                }
                Some(Command::Restart(done)) => {
                    say_goodbye(&shared, &id).await;
                    accept(&shared, &id, &token);
                    let _ = done.send(());
                }
            },
        }
    }
}

/// Waits for the plugin to connect: its token is accepted from now on.
fn accept(shared: &Shared, id: &str, token: &str) {
    shared.registry.with(id, |e| {
        e.token = Some(token.to_owned());
        if e.session.as_ref().is_none_or(|s| s.is_closed()) {
            e.state = PluginState::Starting;
        }
    });
    crate::events::lifecycle::announce(shared, id, None);
}

/// Asks the plugin to stop and ends its session; while Stopped its HELLOs are refused.
async fn say_goodbye(shared: &Shared, id: &str) {
    if let Some(Some(session)) = shared.registry.with(id, |e| e.session.clone()) {
        session.begin_stop();
        if let Ok(frame) = iglu_bus::encode(&Message::Goodbye(Goodbye {
            reason: "the host is stopping this plugin".into(),
        })) {
            session.send(frame);
        }
    }
    close_session(shared, id, Loss::Stopping);
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
