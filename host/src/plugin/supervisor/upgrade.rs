//! Upgrading a running plugin with no failed call, the supervisor's part.
//!
//! The new version is started beside the old one, with a token of its own.
//! Until its handshake is done (it provides what it must, within the
//! handshake deadline) the old one serves everything. Then the registry
//! switches the plugin to the new session in one step (see
//! `registry::candidate`), and the old one drains: the supervisor waits
//! until it has answered its calls and acknowledged its events (within the
//! stop grace), says GOODBYE and stops it. If the new version fails to
//! start, exits, is refused or does not handshake in time, it is killed
//! and the old one goes on: the upgrade reports why.

use std::time::Instant as StdInstant;

use super::*;
use crate::config::PluginSpec;
use crate::plugin::handle::Upgraded;

/// Where the outcome of an upgrade goes.
pub type Done = oneshot::Sender<Result<Upgraded, String>>;

/// How often a draining old version is looked at.
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// What ended the wait for the new version, when it did not become ready.
enum Abort {
    /// It failed, for this reason: the old version goes on.
    Failed(String),
    /// A person asked for something else meanwhile.
    Command(Command),
    /// The host shuts down.
    Shutdown,
}

fn ms(since: StdInstant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl<R: Runner> Supervisor<R> {
    /// Not running: the new version replaces the old for its next start.
    pub(super) fn replace(&mut self, spec: PluginSpec, done: Done) {
        match self.runner.successor(&spec) {
            Some(next) => {
                self.runner = next;
                self.s.registry.replace_spec(&self.s.id, spec);
                let _ = done.send(Ok(Upgraded::default()));
            }
            None => {
                let _ = done.send(Err(
                    "this plugin runs elsewhere: upgrade it where it runs".into()
                ));
            }
        }
    }

    /// Starts `spec` beside the running version and switches over to it.
    pub(super) async fn upgrade(&mut self, spec: PluginSpec, done: Done) -> Next {
        let id = self.s.id.clone();
        let begun = StdInstant::now();
        let Some(mut next) = self.runner.successor(&spec) else {
            let _ = done.send(Err(
                "this plugin runs elsewhere: upgrade it where it runs".into()
            ));
            return Next::Watch;
        };
        if self.live_launch().is_none() {
            let _ = done.send(Err(format!(
                "plugin {id} is starting; upgrade it once it runs"
            )));
            return Next::Watch;
        }
        let token = next.token();
        if !self.s.registry.begin_candidate(&id, spec, token.clone()) {
            let _ = done.send(Err(format!("an upgrade of {id} is already under way")));
            return Next::Watch;
        }
        let mut old_gone = None;
        let ready = match next.start(&token, false).await {
            Ok(pid) => {
                self.s.registry.set_candidate_pid(&id, pid);
                tracing::info!(plugin = %id, pid, "upgrade: new version started beside the old one");
                self.await_candidate(&mut next, &mut old_gone).await
            }
            Err(reason) => Err(Abort::Failed(format!(
                "the new version did not start: {reason}"
            ))),
        };
        let started_ms = ms(begun);
        let switching = StdInstant::now();
        let switched = match ready {
            Ok(()) => self.s.registry.switch_over(&id).map_err(Abort::Failed),
            Err(abort) => Err(abort),
        };
        let switch_ms = ms(switching);
        let over = match switched {
            Ok(over) => over,
            Err(abort) => {
                next.kill().await;
                // Its session's news (if it had one) is not about a launch.
                if let Some(launch) = self.s.registry.candidate_launch(&id) {
                    self.discarded = launch;
                }
                let refused = self.s.registry.end_candidate(&id);
                return self.rolled_back(abort, refused, old_gone, done);
            }
        };
        // The old session's end is no news from here on.
        self.seen = over.new.launch.saturating_sub(1);
        let mut old_runner = std::mem::replace(&mut self.runner, next);
        let draining = StdInstant::now();
        match over.old {
            Some(old) => {
                drain(&self.s, &old).await;
                if let Ok(frame) = iglu_bus::encode(&Message::Goodbye(Goodbye {
                    reason: "upgraded: the new version serves from now on".into(),
                })) {
                    old.send(frame);
                }
                let how = old_runner.stop(self.s.stop_grace, true).await;
                old.close(Loss::Stopping);
                tracing::info!(plugin = %id, exit = %how, "upgrade: old version stopped");
            }
            None => old_runner.kill().await,
        }
        let _ = done.send(Ok(Upgraded {
            started_ms,
            switch_ms,
            drained_ms: ms(draining),
            switched: true,
        }));
        Next::Watch
    }

    /// Waits for the new version's handshake, while the old one serves.
    async fn await_candidate(
        &mut self,
        next: &mut R,
        old_gone: &mut Option<String>,
    ) -> Result<(), Abort> {
        let id = self.s.id.clone();
        let limit = next.handshake_deadline();
        let deadline = limit.map(|d| Instant::now() + d);
        loop {
            tokio::select! {
                how = next.exited() => {
                    return Err(Abort::Failed(format!("the new version exited before its handshake: {how}")));
                }
                how = self.runner.exited(), if old_gone.is_none() => {
                    tracing::warn!(plugin = %id, exit = %how, "upgrade: the old version ended while the new one started");
                    // As `watch` does: its session ends now, and that end is dealt with.
                    self.s.registry.close_session(&id, Loss::Exited(how.clone()));
                    self.seen = self.s.registry.launch(&id);
                    *old_gone = Some(how);
                }
                news = self.inbox.news.recv() => match news {
                    Some(SessionNews::Opened { launch })
                        if Some(launch) == self.s.registry.candidate_launch(&id) => return Ok(()),
                    Some(SessionNews::Ended { launch, loss }) if launch > self.seen
                        && Some(launch) != self.s.registry.candidate_launch(&id) => {
                        self.seen = launch;
                        old_gone.get_or_insert(loss.to_string());
                    }
                    Some(_) => {}
                    None => return Err(Abort::Shutdown),
                },
                cmd = self.inbox.commands.recv() => match cmd {
                    Some(Command::Upgrade(_, other)) => {
                        let _ = other.send(Err(format!("an upgrade of {id} is already under way")));
                    }
                    Some(Command::Start(d)) => { let _ = d.send(()); }
                    Some(cmd) => return Err(Abort::Command(cmd)),
                    None => return Err(Abort::Shutdown),
                },
                _ = sleep_until(deadline) => {
                    let ms = limit.unwrap_or_default().as_millis();
                    return Err(Abort::Failed(format!("the new version did not handshake within {ms} ms")));
                }
                _ = self.s.shutdown.cancelled() => return Err(Abort::Shutdown),
            }
        }
    }

    /// The new version is gone; the old one goes on (or, if it ended
    /// meanwhile, is restarted as after any crash).
    fn rolled_back(
        &mut self,
        abort: Abort,
        refused: Option<String>,
        old_gone: Option<String>,
        done: Done,
    ) -> Next {
        let id = &self.s.id;
        let reason = match (&abort, refused) {
            (_, Some(why)) => format!("the new version was refused: {why}"),
            (Abort::Failed(why), None) => why.clone(),
            (Abort::Command(_), None) => "stopped by a request during the upgrade".into(),
            (Abort::Shutdown, None) => "the host is shutting down".into(),
        };
        tracing::warn!(plugin = %id, %reason, "upgrade rolled back: the old version goes on");
        let _ = done.send(Err(format!(
            "{reason}; the old version {}",
            if old_gone.is_some() {
                "ended meanwhile and is restarted"
            } else {
                "still serves"
            }
        )));
        match (abort, old_gone) {
            (Abort::Shutdown, _) => Next::Shutdown,
            (_, Some(how)) => Next::Crashed(how),
            (Abort::Command(Command::Stop(d)), None) => Next::Stop(d),
            (Abort::Command(Command::Restart(d)), None) => Next::Restart(d),
            (Abort::Command(_), None) | (Abort::Failed(_), None) => Next::Watch,
        }
    }
}

/// Waits until the handed-over session has answered its calls and
/// acknowledged its events, within the stop grace.
async fn drain(s: &Supervision, old: &Arc<crate::session::Session>) {
    let until = Instant::now() + s.stop_grace;
    let queue = s.registry.event_queue(&s.id);
    loop {
        let events = queue.as_ref().map_or(0, |q| q.unacked_by(old.id));
        if (old.calls_in_flight() == 0 && events == 0) || old.is_closed() {
            return;
        }
        if Instant::now() >= until {
            tracing::warn!(plugin = %s.id, calls = old.calls_in_flight(), events, "upgrade: the old version did not finish within the grace; stopping it");
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
