//! Which plugins the host supervises, changed while it runs: the config's
//! at start, then packages installed and uninstalled, and executables that
//! appear in or leave the watched `plugin_dir`.
//!
//! Adding a plugin is three steps in order: its facts in the registry, its
//! subscriptions and queue, its handle; only then its supervisor starts,
//! so nothing can ask about a plugin that is half there. Removing one stops
//! it through its supervisor first (GOODBYE, grace, signals), then takes it
//! out in the opposite order.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::{ExternalSpec, PluginSpec};
use crate::error::HostError;
use crate::plugin::handle::{Command, Inbox};
use crate::plugin::registry::PluginKind;
use crate::plugin::state::PluginState;
use crate::plugin::supervisor::{supervise, Supervision};
use crate::runner::attached::AttachedRunner;
use crate::runner::child::ChildRunner;
use crate::runner::Runner;
use crate::shared::Shared;

/// A plugin's supervisor, with its runner, ready to start once the host's
/// services run.
pub struct Pending {
    id: String,
    start: Box<dyn FnOnce(Supervision) -> JoinHandle<()> + Send>,
}

/// The runner of a managed plugin on this host.
pub fn child_runner(shared: &Shared, spec: PluginSpec) -> ChildRunner {
    ChildRunner::new(spec, shared.launching.clone())
}

/// Registers a plugin the host starts; its supervisor waits for [`launch`].
/// Refused if the id is taken.
pub fn register_managed(shared: &Shared, mut spec: PluginSpec) -> Result<Pending, HostError> {
    // The limits in force, resolved once: its own over `[limits]`.
    let limits = crate::limits::Limits::of(spec.limits.as_ref(), &shared.config.limits);
    spec.limits = Some(limits.own());
    let state = if spec.autostart {
        PluginState::Starting
    } else {
        PluginState::Stopped
    };
    let autostart = spec.autostart;
    let inbox = register(shared, &spec.id, PluginKind::Managed(spec.clone()), state)?;
    let id = spec.id.clone();
    Ok(pending(&id, child_runner(shared, spec), autostart, inbox))
}

/// Registers a plugin that connects by itself. Refused if the id is taken.
pub fn register_external(
    shared: &Shared,
    spec: ExternalSpec,
    token: String,
) -> Result<Pending, HostError> {
    let inbox = register(
        shared,
        &spec.id,
        PluginKind::External(spec.clone()),
        PluginState::Starting,
    )?;
    let id = spec.id.clone();
    Ok(pending(&id, AttachedRunner::new(spec, token), true, inbox))
}

/// Starts a registered plugin's supervisor.
pub fn launch(shared: &Shared, pending: Pending) {
    let supervision = Supervision {
        id: pending.id.clone(),
        registry: shared.registry.clone(),
        restart: shared.config.restart.clone(),
        stop_grace: Duration::from_millis(shared.config.stop_grace_ms),
        shutdown: shared.shutdown.clone(),
    };
    shared
        .handles
        .set_task(&pending.id, (pending.start)(supervision));
}

/// Adds a managed plugin to a running host and starts it (if `autostart`).
pub fn add(shared: &Arc<Shared>, spec: PluginSpec) -> Result<(), HostError> {
    if shared.shutdown.is_cancelled() {
        return Err(HostError::Supervisor(spec.id));
    }
    tracing::info!(plugin = %spec.id, command = %spec.command.display(), "plugin added");
    let pending = register_managed(shared, spec)?;
    launch(shared, pending);
    Ok(())
}

/// Stops a plugin and forgets it: its facts, queue and subscriptions (its
/// stored data stays, for the caller to keep or purge).
pub async fn remove(shared: &Shared, id: &str) -> Result<(), HostError> {
    shared.handles.command(id, Command::Stop).await?;
    if let Some(task) = shared.handles.remove(id) {
        // Its command channel is closed: the supervisor, idle after the
        // stop, ends at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    shared.events.subscriptions.remove_plugin(id);
    shared.registry.remove(id);
    shared.cgroups.forget(id);
    shared.logs.forget(id);
    tracing::info!(plugin = %id, "plugin removed");
    Ok(())
}

fn pending<R: Runner>(id: &str, runner: R, autostart: bool, inbox: Inbox) -> Pending {
    Pending {
        id: id.to_owned(),
        start: Box::new(move |supervision| {
            tokio::spawn(supervise(supervision, runner, autostart, inbox))
        }),
    }
}

/// Adds a plugin to the registry (in one step: refused if the id is
/// taken, whoever else is adding one), its subscriptions and its handle;
/// returns its supervisor's inbox.
fn register(
    shared: &Shared,
    id: &str,
    kind: PluginKind,
    state: PluginState,
) -> Result<Inbox, HostError> {
    if !shared.registry.insert(id, kind, state) {
        return Err(HostError::Taken(id.to_owned()));
    }
    shared.events.subscriptions.add_plugin(id);
    Ok(shared.handles.open(id))
}
