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

/// Calls `method` on `plugin` through its live session.
pub async fn call(
    shared: &Shared,
    plugin: &str,
    method: &str,
    args: Bytes,
    options: CallOptions,
) -> Result<Bytes, CallError> {
    let lost = |e| CallError::from_wire(plugin, options.deadline, e);
    if !options.wait_for_running {
        let session = shared.registry.session(plugin).map_err(lost)?;
        return session
            .call(method, args, options.deadline)
            .await
            .map_err(lost);
    }
    let now = tokio::time::Instant::now();
    let until = now
        .checked_add(options.deadline)
        .unwrap_or(now + Duration::from_secs(86400 * 365));
    let session = options::session_by(shared, plugin, until)
        .await
        .map_err(lost)?;
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    session.call(method, args, left).await.map_err(lost)
}
