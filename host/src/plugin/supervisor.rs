//! One task per plugin that keeps it running: start, watch, restart, stop,
//! the same loop for every way of running a plugin (see [`crate::runner`]).
//!
//! The supervisor learns of a death three ways, fastest first: the socket
//! monitor (the session's end, well under a millisecond after a SIGKILL),
//! the process exit, and missed heartbeats (a hung or frozen plugin).
//! Whichever comes first wins; the session closes once, which fails every
//! call in flight at once; then the restart policy decides. It changes the
//! plugin's state only through the registry's transition function.

use std::sync::Arc;
use std::time::Duration;

use iglu_bus::{Goodbye, Message};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handle::{Command, Inbox};
use super::registry::Registry;
use super::restart_policy::{RestartPolicy, Verdict};
use super::state::PluginState;
use super::transition::Transition;
use crate::config::RestartConfig;
use crate::runner::Runner;
use crate::session::{Loss, SessionNews};

/// How long a process that exited with success may take to have its
/// GOODBYE arrive, so that its leaving is seen as clean.
const GOODBYE_GRACE: Duration = Duration::from_millis(200);

/// What a supervisor works with.
pub struct Supervision {
    /// The plugin.
    pub id: String,
    /// Where its facts are.
    pub registry: Arc<Registry>,
    /// Backoff and restart limit.
    pub restart: RestartConfig,
    /// How long a plugin has to stop by itself, at each step of a stop.
    pub stop_grace: Duration,
    /// Cancelled when the host shuts down.
    pub shutdown: CancellationToken,
}

/// What the supervisor does next.
enum Next {
    /// Nothing runs; wait for a start (or for it to come back by itself).
    Idle,
    /// Start a launch.
    Launch { after_crash: bool },
    /// A launch runs (or is awaited): watch it.
    Watch,
    /// The launch ended by itself, for this reason.
    Crashed(String),
    /// The plugin left cleanly by itself (GOODBYE, then exit code 0).
    Left(String),
    /// Asked to stop it, and to answer when done.
    Stop(oneshot::Sender<()>),
    /// Asked to stop it and start it again.
    Restart(oneshot::Sender<()>),
    /// Asked to run a new version beside it and switch over.
    Upgrade(Box<crate::config::PluginSpec>, upgrade::Done),
    /// The host shuts down.
    Shutdown,
    /// Done.
    Exit,
}

/// Supervises one plugin with `runner` until the host shuts down.
pub async fn supervise<R: Runner>(s: Supervision, runner: R, autostart: bool, inbox: Inbox) {
    let policy = RestartPolicy::new(&s.restart);
    let mut sup = Supervisor {
        s,
        runner,
        inbox,
        policy,
        seen: 0,
        discarded: 0,
    };
    let mut next = if autostart {
        Next::Launch { after_crash: false }
    } else {
        Next::Idle
    };
    loop {
        next = match next {
            Next::Idle => sup.idle().await,
            Next::Launch { after_crash } => sup.launch(after_crash).await,
            Next::Watch => sup.watch().await,
            Next::Crashed(reason) => sup.crashed(reason).await,
            Next::Left(how) => {
                // It chose to stop: not a crash, no restart, no backoff.
                tracing::info!(plugin = %sup.s.id, exit = %how, "plugin left cleanly");
                sup.down(PluginState::Stopped, Some(format!("left cleanly ({how})")));
                Next::Idle
            }
            Next::Stop(done) => {
                sup.stop().await;
                let _ = done.send(());
                Next::Idle
            }
            Next::Restart(done) => {
                sup.s.registry.count_requested_restart(&sup.s.id);
                sup.stop().await;
                let _ = done.send(());
                Next::Launch { after_crash: false }
            }
            Next::Upgrade(spec, done) => sup.upgrade(*spec, done).await,
            Next::Shutdown => {
                if sup.runner.reconnects() {
                    // It is told, and left to find the next host by itself.
                    sup.say_goodbye("the host is shutting down; connect again");
                } else {
                    sup.stop().await;
                }
                Next::Exit
            }
            Next::Exit => return,
        }
    }
}

mod upgrade;

struct Supervisor<R> {
    s: Supervision,
    runner: R,
    inbox: Inbox,
    policy: RestartPolicy,
    /// The newest session (launch number) whose end has been dealt with:
    /// news of it or of an older one is stale.
    seen: u64,
    /// The launch number of the last upgrade's new version that was
    /// discarded: its session's news is not about this plugin's launches.
    discarded: u64,
}

impl<R: Runner> Supervisor<R> {
    fn transition(&self, change: Transition) {
        self.s.registry.transition(&self.s.id, change);
    }

    fn down(&self, state: PluginState, last_exit: Option<String>) {
        self.transition(Transition::Down {
            state,
            last_exit,
            keep_token: self.runner.reconnects(),
        });
    }

    /// The live session's launch number, if it is one not dealt with yet.
    fn live_launch(&self) -> Option<u64> {
        self.s
            .registry
            .session(&self.s.id)
            .ok()
            .map(|session| session.launch)
            .filter(|&launch| launch > self.seen)
    }

    /// Stops it on request when nothing was launched: a plugin that came
    /// back by itself is stopped properly; otherwise it is marked Stopped
    /// (from Failed too, so that a plugin that connects by itself is then
    /// refused as stopped).
    async fn stop_idle(&mut self) {
        if self.live_launch().is_some() {
            self.stop().await;
        } else if self.s.registry.state(&self.s.id) != Some(PluginState::Stopped) {
            self.down(PluginState::Stopped, None);
        }
    }

    /// Nothing runs: waits for a start, or for a plugin that connects by
    /// itself to come back.
    async fn idle(&mut self) -> Next {
        tokio::select! {
            _ = self.s.shutdown.cancelled() => Next::Exit,
            cmd = self.inbox.commands.recv() => match cmd {
                None => Next::Exit,
                Some(Command::Start(done)) | Some(Command::Restart(done)) => {
                    self.policy.reset();
                    let _ = done.send(());
                    Next::Launch { after_crash: false }
                }
                Some(Command::Stop(done)) => {
                    self.stop_idle().await;
                    let _ = done.send(());
                    Next::Idle
                }
                Some(Command::Upgrade(spec, done)) => {
                    self.replace(*spec, done);
                    Next::Idle
                }
            },
            news = self.inbox.news.recv() => match news {
                None => Next::Exit,
                // Admitted while Failed: it came back by itself.
                Some(SessionNews::Opened { .. })
                    if self.runner.reconnects() && self.live_launch().is_some() =>
                {
                    Next::Watch
                }
                Some(_) => Next::Idle,
            },
        }
    }

    /// Starts a launch with a new (or its fixed) token.
    async fn launch(&mut self, after_crash: bool) -> Next {
        let token = self.runner.token();
        let starting = Transition::Starting {
            token: token.clone(),
            after_crash,
        };
        if !self.s.registry.transition(&self.s.id, starting) {
            // It came back by itself while the host waited to restart it.
            return Next::Watch;
        }
        match self.runner.start(&token, after_crash).await {
            Ok(pid) => {
                self.s.registry.set_pid(&self.s.id, pid);
                if let Some(pid) = pid {
                    tracing::info!(plugin = %self.s.id, pid, "started");
                }
                Next::Watch
            }
            Err(reason) => Next::Crashed(reason),
        }
    }

    /// Waits for whatever ends this launch.
    async fn watch(&mut self) -> Next {
        let id = self.s.id.clone();
        let deadline = self.runner.handshake_deadline().map(|d| Instant::now() + d);
        // A session may be live already (it came back by itself).
        let mut connected = self.live_launch();
        loop {
            tokio::select! {
                how = self.runner.exited() => {
                    if self.runner.exited_cleanly() {
                        // A GOODBYE sent just before a clean exit may still be
                        // on its way through the router: give it a moment.
                        if let Ok(session) = self.s.registry.session(&id) {
                            let _ = tokio::time::timeout(GOODBYE_GRACE, session.closed()).await;
                        }
                    }
                    self.s.registry.close_session(&id, Loss::Exited(how.clone()));
                    self.seen = self.s.registry.launch(&id);
                    let said_goodbye = matches!(self.s.registry.last_loss(&id), Some(Loss::Goodbye(_)));
                    if said_goodbye && self.runner.exited_cleanly() {
                        return Next::Left(how);
                    }
                    return Next::Crashed(how);
                }
                news = self.inbox.news.recv() => match news {
                    Some(SessionNews::Opened { launch }) | Some(SessionNews::Ended { launch, .. })
                        if launch == self.discarded => {}
                    Some(SessionNews::Opened { launch }) if launch > self.seen => connected = Some(launch),
                    // Its own session, or one that came and went while the
                    // supervisor was busy elsewhere (its Opened is not news).
                    Some(SessionNews::Ended { launch, loss }) if launch > self.seen => {
                        self.seen = launch;
                        let said_goodbye = matches!(loss, Loss::Goodbye(_));
                        let how = self.runner.reap(loss).await;
                        if said_goodbye && self.runner.exited_cleanly() {
                            return Next::Left(how);
                        }
                        return Next::Crashed(how);
                    }
                    Some(_) => {} // news of an earlier session
                    None => return Next::Exit,
                },
                cmd = self.inbox.commands.recv() => match cmd {
                    Some(Command::Stop(done)) => return Next::Stop(done),
                    Some(Command::Restart(done)) => return Next::Restart(done),
                    Some(Command::Start(done)) => { let _ = done.send(()); }
                    Some(Command::Upgrade(spec, done)) => return Next::Upgrade(spec, done),
                    None => return Next::Exit,
                },
                _ = sleep_until(deadline), if connected.is_none() => {
                    self.runner.kill().await;
                    let ms = self.runner.handshake_deadline().unwrap_or_default().as_millis();
                    return Next::Crashed(format!("no handshake within {ms} ms; killed by the host"));
                }
                _ = self.s.shutdown.cancelled() => return Next::Shutdown,
            }
        }
    }

    /// Records the crash and applies the restart policy.
    async fn crashed(&mut self, reason: String) -> Next {
        // Killed by the host for a limit: that is the reason, not the signal.
        let reason = self
            .s
            .registry
            .take_kill_reason(&self.s.id)
            .unwrap_or(reason);
        self.down(PluginState::Crashed, Some(reason));
        if !self.runner.restarts() {
            // Nothing to run: it stays Crashed until it connects again.
            return Next::Watch;
        }
        match self.policy.on_crash(Instant::now().into_std()) {
            Verdict::GiveUp { crashes } => {
                tracing::error!(plugin = %self.s.id, crashes, window_s = self.s.restart.window_s, "crashing too often: giving up until `iglu start`");
                self.down(PluginState::Failed, None);
                Next::Idle
            }
            Verdict::RestartAfter(delay) => {
                tracing::info!(plugin = %self.s.id, delay_ms = delay.as_millis() as u64, "restarting after backoff");
                self.down(PluginState::Restarting, None);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => Next::Launch { after_crash: true },
                    _ = self.s.shutdown.cancelled() => Next::Exit,
                    cmd = self.inbox.commands.recv() => match cmd {
                        None => Next::Exit,
                        Some(Command::Stop(done)) => {
                            self.stop_idle().await;
                            let _ = done.send(());
                            Next::Idle
                        }
                        Some(Command::Start(done)) | Some(Command::Restart(done)) => {
                            let _ = done.send(());
                            Next::Launch { after_crash: true }
                        }
                        Some(Command::Upgrade(spec, done)) => {
                            self.replace(*spec, done);
                            Next::Launch { after_crash: true }
                        }
                    },
                }
            }
        }
    }

    /// Sends GOODBYE on the live session, if any, and marks it as being
    /// stopped by the host; returns the session.
    fn say_goodbye(&self, reason: &str) -> Option<Arc<crate::session::Session>> {
        let session = self.s.registry.session(&self.s.id).ok()?;
        session.begin_stop();
        if let Ok(frame) = iglu_bus::encode(&Message::Goodbye(Goodbye {
            reason: reason.to_owned(),
        })) {
            session.send(frame);
        }
        Some(session)
    }

    /// Stops a launch on request: GOODBYE, a grace period to drain and
    /// exit, then whatever the runner does to force it.
    async fn stop(&mut self) {
        let id = self.s.id.clone();
        self.transition(Transition::Stopping);
        let session = self.say_goodbye("the host is stopping this plugin");
        let how = self.runner.stop(self.s.stop_grace, session.is_some()).await;
        self.s.registry.close_session(&id, Loss::Stopping);
        // Its session's end is dealt with here: the news of it, still on
        // its way, must not be taken for the next launch's (a restart
        // killed its own new process half a second after starting it).
        self.seen = self.seen.max(self.s.registry.launch(&id));
        self.down(PluginState::Stopped, Some(how));
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
