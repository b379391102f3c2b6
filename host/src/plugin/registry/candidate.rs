//! An upgrade's new version, while it starts beside the running one.
//!
//! The new version is a second launch of the same plugin id with a token
//! of its own. Its HELLO is checked against its own spec (what it must
//! provide, what it may do) and, once admitted, its session waits here,
//! taking no calls and no events. [`Registry::switch_over`] then makes it
//! the plugin's session in one step under the lock: every call from then
//! on goes to it, the old session is handed over (it finishes what it has,
//! refuses anything new unsent) and the plugin's event queue moves to the
//! new session, each event going to exactly one of the two.

use std::sync::Arc;
use std::time::Instant;

use iglu_bus::interface::InterfaceInfo;
use iglu_bus::Manifest;

use super::{Facts, PluginKind, Refusal, Registry};
use crate::config::PluginSpec;
use crate::events::delivery;
use crate::session::{Loss, Session};

/// Which launch a HELLO may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The session's launch number.
    pub launch: u64,
    /// It is an upgrade's new version, not the plugin's next launch.
    pub candidate: bool,
}

/// A new version's finished handshake.
pub struct Ready {
    /// Its launch number.
    pub launch: u64,
    /// Its session.
    pub session: Arc<Session>,
    /// From its HELLO.
    pub manifest: Manifest,
    /// From its HELLO.
    pub methods: Vec<String>,
    /// From its HELLO.
    pub interfaces: Vec<InterfaceInfo>,
    /// Its HELLO's subscriptions, those it may have.
    pub subscriptions: Vec<String>,
    /// From its HELLO.
    pub receive_own: bool,
}

/// A new version being started.
pub(super) struct Candidate {
    spec: PluginSpec,
    pub(super) token: String,
    pid: Option<u32>,
    ready: Option<Ready>,
    refused: Option<String>,
}

/// What a switch-over left behind.
pub struct SwitchedOver {
    /// The old version's session, handed over (none if it had crashed).
    pub old: Option<Arc<Session>>,
    /// The new version's session, now the plugin's.
    pub new: Arc<Session>,
}

/// A HELLO with the candidate's token.
pub(super) fn expecting(e: &Facts) -> Result<Admission, Refusal> {
    match &e.candidate {
        Some(c) if c.ready.is_none() => Ok(Admission {
            launch: e.next_launch(),
            candidate: true,
        }),
        _ => Err(Refusal::Duplicate),
    }
}

/// The candidate's session, if it has one.
pub(super) fn session(e: &Facts) -> Option<Arc<Session>> {
    e.candidate
        .as_ref()
        .and_then(|c| c.ready.as_ref())
        .map(|r| r.session.clone())
        .filter(|s| !s.is_closed())
}

impl Registry {
    /// Starts an upgrade of `id` to `spec`, whose HELLO must carry `token`;
    /// false if it is not a running managed plugin or an upgrade is on.
    pub fn begin_candidate(&self, id: &str, spec: PluginSpec, token: String) -> bool {
        let mut plugins = self.lock();
        let Some(e) = plugins.get_mut(id) else {
            return false;
        };
        if e.candidate.is_some() || !matches!(e.kind, PluginKind::Managed(_)) {
            return false;
        }
        e.candidate = Some(Candidate {
            spec,
            token,
            pid: None,
            ready: None,
            refused: None,
        });
        true
    }

    /// Runs `spec` at the plugin's next start (an upgrade while it is not
    /// running).
    pub fn replace_spec(&self, id: &str, spec: PluginSpec) {
        if let Some(e) = self.lock().get_mut(id) {
            if matches!(e.kind, PluginKind::Managed(_)) {
                e.kind = PluginKind::Managed(spec);
            }
        }
    }

    /// The plugin's event queue (to see what a draining session still holds).
    pub fn event_queue(&self, id: &str) -> Option<Arc<crate::events::queue::EventQueue>> {
        self.events.subscriptions.queue(id)
    }

    /// Records the new version's process id.
    pub fn set_candidate_pid(&self, id: &str, pid: Option<u32>) {
        if let Some(c) = self.lock().get_mut(id).and_then(|e| e.candidate.as_mut()) {
            c.pid = pid;
        }
    }

    /// The spec a session of `id` is checked against: the upgrade's new
    /// version's for a candidate.
    pub fn spec_for(&self, id: &str, candidate: bool) -> Option<PluginKind> {
        self.read(id, |e| match (&e.candidate, candidate) {
            (Some(c), true) => Some(PluginKind::Managed(c.spec.clone())),
            (None, true) => None,
            (_, false) => Some(e.kind.clone()),
        })
        .flatten()
    }

    /// The new version whose HELLO carried `token` handshook; false if
    /// that upgrade ended meanwhile (another may have begun, with another
    /// token). Its launch number is never given again.
    pub fn candidate_ready(&self, id: &str, token: &str, ready: Ready) -> bool {
        let mut plugins = self.lock();
        let Some(e) = plugins.get_mut(id) else {
            return false;
        };
        let launch = ready.launch;
        let Some(c) = e.candidate.as_mut() else {
            return false;
        };
        if c.ready.is_some() || !iglu_bus::handshake::tokens_match(&c.token, token) {
            return false;
        }
        c.ready = Some(ready);
        e.burned = e.burned.max(launch);
        true
    }

    /// The new version's HELLO was refused, for `reason` (the upgrade
    /// reports it).
    pub fn candidate_refused(&self, id: &str, token: &str, reason: &str) {
        if let Some(c) = self.lock().get_mut(id).and_then(|e| e.candidate.as_mut()) {
            if iglu_bus::handshake::tokens_match(&c.token, token) {
                c.refused = Some(reason.to_owned());
            }
        }
    }

    /// The launch number of the new version's session, once it handshook.
    pub fn candidate_launch(&self, id: &str) -> Option<u64> {
        self.read(id, |e| {
            e.candidate
                .as_ref()
                .and_then(|c| c.ready.as_ref().map(|r| r.launch))
        })
        .flatten()
    }

    /// Ends an upgrade that did not switch: its session (if any) is closed;
    /// returns why its HELLO was refused, if it was.
    pub fn end_candidate(&self, id: &str) -> Option<String> {
        let c = self.lock().get_mut(id).and_then(|e| e.candidate.take())?;
        if let Some(r) = &c.ready {
            r.session.close(Loss::Stopping);
        }
        c.refused
    }

    /// Makes the new version the plugin: its session, spec and handshake,
    /// in one step; then its subscriptions and event queue.
    pub fn switch_over(&self, id: &str) -> Result<SwitchedOver, String> {
        let (old, ready) = {
            let mut plugins = self.lock();
            let e = plugins.get_mut(id).ok_or("the plugin is gone")?;
            let ready_live = e
                .candidate
                .as_ref()
                .and_then(|c| c.ready.as_ref())
                .is_some_and(|r| !r.session.is_closed());
            if !ready_live {
                return Err("the new version's session ended before the switch".into());
            }
            let Some(c) = e.candidate.take() else {
                return Err("no upgrade is on".into());
            };
            let Some(ready) = c.ready else {
                return Err("the new version has not handshaken".into());
            };
            let old = e.live_session().cloned();
            e.kind = PluginKind::Managed(c.spec);
            e.token = Some(c.token);
            e.pid = c.pid;
            e.launch = ready.launch;
            e.session = Some(ready.session.clone());
            e.manifest = Some(ready.manifest.clone());
            e.methods = ready.methods.clone();
            e.interfaces = ready.interfaces.clone();
            e.state = super::PluginState::Running;
            e.since = Some(Instant::now());
            if let Some(old) = &old {
                // Under the registry's lock: a caller that found the old
                // session before this either registered its call already
                // (it finishes there) or is refused and tries the new one.
                old.hand_over();
            }
            self.events
                .announce(crate::events::lifecycle::LifecycleEvent {
                    plugin: id.to_owned(),
                    state: e.state,
                    reason: Some(format!("upgraded to {}", ready.manifest.version)),
                    restarts: e.restarts,
                    pid: e.pid,
                });
            (old, ready)
        };
        let new = ready.session.clone();
        let subs = &self.events.subscriptions;
        if let Some((queue, _, _)) =
            subs.replace(id, ready.subscriptions.clone(), ready.receive_own)
        {
            match &old {
                Some(old) => queue.hand_over(old.id, new.id),
                None => queue.attach(new.id),
            }
            queue.push_retained(self.events.retained.matching(&ready.subscriptions));
            tokio::spawn(delivery::run(new.clone(), queue));
        }
        tracing::info!(plugin = %id, version = %ready.manifest.version, session = %new.id, "upgraded: traffic switched to the new version");
        Ok(SwitchedOver { old, new })
    }
}
