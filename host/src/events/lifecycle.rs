//! Plugin lifecycle changes as events, for plugins and for embedding programs.
//!
//! Every state change is published, retained, on `$iglu/plugins/<id>/state`
//! (so a plugin that subscribes learns every plugin's current state first),
//! and sent to the hub's in-process broadcast for embedders. The registry's
//! one transition function is the only caller.

use serde::{Deserialize, Serialize};

use super::{payload, EventHub, Source};
use crate::plugin::state::PluginState;

/// Capacity of the in-process lifecycle broadcast; a receiver that falls
/// further behind than this sees `Lagged` and skips ahead.
pub const BROADCAST: usize = 256;

/// One lifecycle change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// The plugin.
    pub plugin: String,
    /// Its new state.
    pub state: PluginState,
    /// Why, for Crashed, Failed and Stopped.
    pub reason: Option<String>,
    /// Restarts so far.
    pub restarts: u32,
    /// Its process id, when one runs.
    pub pid: Option<u32>,
}

/// The topic of a plugin's lifecycle events.
pub fn topic(plugin: &str) -> String {
    format!("$iglu/plugins/{plugin}/state")
}

impl EventHub {
    /// Publishes a lifecycle change.
    pub fn announce(&self, event: LifecycleEvent) {
        let plugin = event.plugin.clone();
        let _ = self.lifecycle.send(event.clone());
        match payload(&event) {
            Ok(bytes) => {
                if let Err(e) = self.publish(Source::System, &topic(&plugin), bytes, true) {
                    tracing::warn!(%plugin, error = %e, "could not publish a lifecycle event");
                }
            }
            Err(e) => tracing::warn!(%plugin, error = %e, "could not encode a lifecycle event"),
        }
    }
}
