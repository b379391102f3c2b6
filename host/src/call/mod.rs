//! A call from the host's side (the CLI, an embedding program) to a plugin:
//! find its live session (waiting for it if the caller chose to), send, and
//! turn a failure into a [`error::CallError`] for Rust callers.

pub mod error;
pub mod options;

use std::time::Duration;

use bytes::Bytes;

use crate::shared::Shared;
use error::CallError;
use options::CallOptions;

/// Calls `method` of `interface` on `plugin`: first checks that the plugin
/// announced a compatible version of it (at its last handshake), so an
/// incompatible client fails before anything is sent.
pub async fn call_interface(
    shared: &Shared,
    plugin: &str,
    interface: &str,
    version: &str,
    method: &str,
    args: Bytes,
    options: CallOptions,
) -> Result<Bytes, CallError> {
    check_interface(shared, plugin, interface, version, options.deadline)?;
    let wire = iglu_bus::interface::method_name(interface, method);
    call(shared, plugin, &wire, args, options).await
}

/// Whether `plugin` announced (at its last handshake) a version of
/// `interface` that a client built for `version` can use. Checked in
/// place, under the registry's lock: nothing is copied on the path of
/// every typed call. A plugin that never handshook is not checked: the
/// call itself says why it cannot be made.
pub fn check_interface(
    shared: &Shared,
    plugin: &str,
    interface: &str,
    version: &str,
    deadline: Duration,
) -> Result<(), CallError> {
    let checked = shared
        .registry
        .read(plugin, |f| {
            if f.manifest().is_none() {
                return Ok(());
            }
            iglu_bus::interface::check(plugin, interface, version, f.interfaces())
        })
        .ok_or_else(|| CallError::UnknownPlugin(plugin.to_owned()))?;
    checked.map_err(|e| CallError::from_wire(plugin, deadline, e))
}

/// Calls `method` on `plugin` through its live session. A session handed
/// over to the plugin's new version (an upgrade) refuses new calls before
/// sending them: such a call is made again on the session in force, so an
/// upgrade fails no call. (The host says GOODBYE to the old version only
/// once it has answered every call it was sent.)
pub async fn call(
    shared: &Shared,
    plugin: &str,
    method: &str,
    args: Bytes,
    options: CallOptions,
) -> Result<Bytes, CallError> {
    let lost = |e| CallError::from_wire(plugin, options.deadline, e);
    let now = tokio::time::Instant::now();
    let until = now
        .checked_add(options.deadline)
        .unwrap_or(now + Duration::from_secs(86400 * 365));
    let mut tries = 0;
    loop {
        let session = if options.wait_for_running {
            options::session_by(shared, plugin, until)
                .await
                .map_err(lost)?
        } else {
            shared.registry.session(plugin).map_err(lost)?
        };
        // The deadline as given on a first call that did not wait; what is
        // left of it after waiting for the plugin or following it.
        let left = if tries == 0 && !options.wait_for_running {
            options.deadline
        } else {
            until.saturating_duration_since(tokio::time::Instant::now())
        };
        match session.call(method, args.clone(), left).await {
            Err(e) if session.refused_unsent(&e) && tries < HANDOVER_RETRIES => {
                tries += 1;
            }
            other => return other.map_err(lost),
        }
    }
}

/// Times a call follows a plugin to its next session: an upgrade hands
/// over once; more would be upgrades back to back within one call.
const HANDOVER_RETRIES: u32 = 3;
