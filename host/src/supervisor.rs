//! One task per plugin that keeps it running: start, watch, restart, stop.
//!
//! The supervisor learns of a death three ways, fastest first: the socket
//! monitor (a `Lost` event from the router, well under a millisecond after a
//! SIGKILL), the process exit, and missed heartbeats (a hung or frozen
//! plugin). Whichever comes first wins; the session closes once, which fails
//! every call in flight at once; then the restart policy decides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iglu_bus::handshake::{COOKIE_KEY, COOKIE_VALUE};
use iglu_bus::{launch, Goodbye, Message};
use tokio::sync::{mpsc, oneshot};

use crate::events::lifecycle;
use crate::host::Shared;
use crate::registry::{PluginKind, PluginState};
use crate::restart_policy::{RestartPolicy, Verdict};
use crate::runner::{self, describe_exit, PluginProcess};
use crate::session::Loss;

/// After the socket reports a plugin gone, how long to wait for its process
/// to exit by itself, so `last_exit` can name the real cause (the signal)
/// rather than "killed by the host".
const EXIT_AFTER_DISCONNECT: Duration = Duration::from_millis(500);

/// Depth of a supervisor's command and event queues. Each plugin sees a
/// handful of events per launch; commands come from people.
pub const QUEUE: usize = 16;

/// Requests to a supervisor, each answered when done.
#[derive(Debug)]
pub enum Command {
    /// Start it (also out of Failed).
    Start(oneshot::Sender<()>),
    /// Stop it and keep it stopped.
    Stop(oneshot::Sender<()>),
    /// Stop it and start it again.
    Restart(oneshot::Sender<()>),
}

/// What the router and sessions tell a supervisor.
#[derive(Debug)]
pub enum SupervisorEvent {
    /// The launch finished its handshake.
    Connected {
        /// Which launch.
        launch: u64,
    },
    /// The launch's session ended.
    Lost {
        /// Which launch.
        launch: u64,
        /// Why.
        loss: Loss,
    },
}

/// How one launch ended.
enum Outcome {
    Crashed(String),
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    Shutdown,
}

/// Supervises plugin `id` until the host shuts down.
pub async fn supervise(
    shared: Arc<Shared>,
    id: String,
    autostart: bool,
    mut commands: mpsc::Receiver<Command>,
    mut events: mpsc::Receiver<SupervisorEvent>,
) {
    let mut policy = RestartPolicy::new(&shared.config.restart);
    let mut want_running = autostart;
    let mut after_crash = false;
    let shutdown = shared.shutdown.clone();
    loop {
        if !want_running {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Start(done)) | Some(Command::Restart(done)) => {
                        policy.reset();
                        want_running = true;
                        after_crash = false;
                        let _ = done.send(());
                    }
                    Some(Command::Stop(done)) => { let _ = done.send(()); }
                }
            }
            continue;
        }
        if after_crash {
            shared.registry.with(&id, |e| e.restarts += 1);
        }
        let outcome = match launch_once(&shared, &id).await {
            Ok((mut process, launch)) => {
                let outcome = watch(
                    &shared,
                    &id,
                    &mut process,
                    launch,
                    &mut commands,
                    &mut events,
                )
                .await;
                if !matches!(outcome, Outcome::Crashed(_)) {
                    stop(&shared, &id, &mut process).await;
                }
                outcome
            }
            Err(reason) => Outcome::Crashed(reason),
        };
        match outcome {
            Outcome::Shutdown => return,
            Outcome::Stop(done) => {
                want_running = false;
                let _ = done.send(());
            }
            Outcome::Restart(done) => {
                after_crash = false;
                let _ = done.send(());
            }
            Outcome::Crashed(reason) => {
                after_crash = true;
                tracing::warn!(plugin = %id, %reason, "plugin crashed");
                set_down(&shared, &id, PluginState::Crashed, Some(reason));
                match policy.on_crash(Instant::now()) {
                    Verdict::GiveUp { crashes } => {
                        tracing::error!(plugin = %id, crashes, window_s = shared.config.restart.window_s, "crashing too often: giving up until `iglu start`");
                        set_down(&shared, &id, PluginState::Failed, None);
                        want_running = false;
                    }
                    Verdict::RestartAfter(delay) => {
                        tracing::info!(plugin = %id, delay_ms = delay.as_millis() as u64, "restarting after backoff");
                        set_down(&shared, &id, PluginState::Restarting, None);
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = shutdown.cancelled() => return,
                            cmd = commands.recv() => match cmd {
                                None => return,
                                Some(Command::Stop(done)) => {
                                    set_down(&shared, &id, PluginState::Stopped, None);
                                    want_running = false;
                                    let _ = done.send(());
                                }
                                Some(Command::Start(done)) | Some(Command::Restart(done)) => {
                                    let _ = done.send(());
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Starts a process with a fresh token; returns it and its launch number.
async fn launch_once(shared: &Shared, id: &str) -> Result<(PluginProcess, u64), String> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let Some(Some((spec, launch))) = shared.registry.with(id, |e| {
        let PluginKind::Managed(spec) = &e.kind else {
            return None;
        };
        let spec = spec.clone();
        e.launch += 1;
        e.token = Some(token.clone());
        e.state = PluginState::Starting;
        e.session = None;
        Some((spec, e.launch))
    }) else {
        return Err("not a managed plugin".into());
    };
    let env = [
        (COOKIE_KEY, COOKIE_VALUE.to_owned()),
        (launch::ENDPOINT, shared.endpoint.clone()),
        (launch::TOKEN, token),
        (launch::PLUGIN_ID, id.to_owned()),
        (launch::MODE, "managed".to_owned()),
        (launch::HOST_PID, std::process::id().to_string()),
        (
            launch::HANDSHAKE_TIMEOUT_MS,
            shared.config.handshake_timeout_ms.to_string(),
        ),
    ];
    match runner::spawn(&spec, &env) {
        Ok(process) => {
            tracing::info!(plugin = %id, pid = process.pid(), launch, "started");
            shared.registry.with(id, |e| e.pid = process.pid());
            lifecycle::announce(shared, id, None);
            Ok((process, launch))
        }
        Err(e) => Err(format!("could not start {}: {e}", spec.command.display())),
    }
}

/// Waits for whatever ends this launch.
async fn watch(
    shared: &Shared,
    id: &str,
    process: &mut PluginProcess,
    launch: u64,
    commands: &mut mpsc::Receiver<Command>,
    events: &mut mpsc::Receiver<SupervisorEvent>,
) -> Outcome {
    let handshake_deadline =
        tokio::time::Instant::now() + Duration::from_millis(shared.config.handshake_timeout_ms);
    let mut connected = false;
    loop {
        tokio::select! {
            status = process.wait() => {
                let how = describe_exit(status);
                close_session(shared, id, Loss::Exited(how.clone()));
                return Outcome::Crashed(how);
            }
            event = events.recv() => match event {
                Some(SupervisorEvent::Connected { launch: l }) if l == launch => connected = true,
                Some(SupervisorEvent::Lost { launch: l, loss }) if l == launch => {
                    return Outcome::Crashed(reap_after_loss(process, loss).await);
                }
                Some(_) => {} // an event of an earlier launch
                None => return Outcome::Shutdown,
            },
            command = commands.recv() => match command {
                Some(Command::Stop(done)) => return Outcome::Stop(done),
                Some(Command::Restart(done)) => return Outcome::Restart(done),
                Some(Command::Start(done)) => { let _ = done.send(()); }
                None => return Outcome::Shutdown,
            },
            _ = tokio::time::sleep_until(handshake_deadline), if !connected => {
                process.kill().await;
                return Outcome::Crashed(format!(
                    "no handshake within {} ms; killed by the host",
                    shared.config.handshake_timeout_ms
                ));
            }
            _ = shared.shutdown.cancelled() => return Outcome::Shutdown,
        }
    }
}

/// After the session is lost, makes sure the process is gone and says why.
async fn reap_after_loss(process: &mut PluginProcess, loss: Loss) -> String {
    let wait = match loss {
        // A frozen plugin will not exit by itself; one that stopped reading
        // or flooded the host is not given the chance.
        Loss::HeartbeatTimeout(_) | Loss::NotReading(_) | Loss::Misbehaving(_) => Duration::ZERO,
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

/// Stops a launch on request: GOODBYE, a grace period to drain and exit,
/// then SIGTERM and, after another grace period, SIGKILL.
async fn stop(shared: &Shared, id: &str, process: &mut PluginProcess) {
    shared
        .registry
        .with(id, |e| e.state = PluginState::Stopping);
    lifecycle::announce(shared, id, None);
    let grace = Duration::from_millis(shared.config.stop_grace_ms);
    let session = shared.registry.with(id, |e| e.session.clone()).flatten();
    if let Some(session) = &session {
        session.begin_stop();
        if let Ok(frame) = iglu_bus::encode(&Message::Goodbye(Goodbye {
            reason: "the host is stopping this plugin".into(),
        })) {
            session.send(frame);
        }
    }
    let status = match session {
        Some(_) => match tokio::time::timeout(grace, process.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(plugin = %id, grace_ms = grace.as_millis() as u64, "did not exit after GOODBYE: sending SIGTERM");
                process.terminate(grace).await
            }
        },
        // No session to say goodbye on: go straight to SIGTERM.
        None => process.terminate(grace).await,
    };
    close_session(shared, id, Loss::Stopping);
    let how = format!("stopped by the host; {}", describe_exit(status));
    tracing::info!(plugin = %id, exit = %how, "stopped");
    set_down(shared, id, PluginState::Stopped, Some(how));
}

pub(crate) fn close_session(shared: &Shared, id: &str, loss: Loss) {
    if let Some(Some(session)) = shared.registry.with(id, |e| e.session.clone()) {
        session.close(loss);
    }
}

/// Records that no process runs, with a new state and optionally how the last one ended.
/// Announces the change as a lifecycle event, with the last exit as its reason.
pub(crate) fn set_down(shared: &Shared, id: &str, state: PluginState, last_exit: Option<String>) {
    let reason = shared
        .registry
        .with(id, |e| {
            e.state = state;
            e.pid = None;
            e.token = None;
            e.session = None;
            e.since = None;
            if let Some(how) = last_exit {
                e.last_exit = Some(how);
            }
            e.last_exit.clone()
        })
        .flatten();
    lifecycle::announce(shared, id, reason);
}
