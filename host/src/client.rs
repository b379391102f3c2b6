//! What an embedding program calls a running host through: a cheap,
//! cloneable handle for as many tasks as need one. [`crate::Host`] derefs
//! to it; only starting and shutting down are the host's own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::WireError;
use tokio::sync::{broadcast, mpsc};

use crate::call;
use crate::call::error::CallError;
use crate::call::options::CallOptions;
use crate::config::Config;
use crate::error::HostError;
use crate::events::lifecycle::LifecycleEvent;
use crate::events::queue::QueueStats;
use crate::events::{Event, Source};
use crate::plugin::handle::Command;
use crate::plugin::status::PluginStatus;
use crate::shared::Shared;

/// A handle to a running host.
#[derive(Clone)]
pub struct HostClient {
    pub(crate) shared: Arc<Shared>,
}

impl HostClient {
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// One plugin's status.
    pub fn plugin_status(&self, id: &str) -> Option<PluginStatus> {
        self.shared.status().into_iter().find(|p| p.id == id)
    }

    /// The counters of one plugin's event queue (cheaper than a status).
    pub fn queue_stats(&self, id: &str) -> Option<QueueStats> {
        self.shared
            .events
            .subscriptions
            .queue(id)
            .map(|q| q.stats())
    }

    /// The plugins' stores: read any plugin's keys, or write them (durable
    /// when the write returns) as the CLI's `iglu kv` does.
    pub fn store(&self) -> &crate::store::Store {
        &self.shared.store
    }

    /// The endpoint plugins connect to.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// Every plugin's status.
    pub fn status(&self) -> Vec<PluginStatus> {
        self.shared.status()
    }

    /// Calls `method` on `plugin` with MessagePack `args`; waits for a
    /// restarting plugin only if the config's `call_wait_for_running` says so.
    pub async fn call(
        &self,
        plugin: &str,
        method: &str,
        args: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, CallError> {
        let options =
            CallOptions::new(deadline).wait_for_running(self.shared.config.call_wait_for_running);
        call::call(&self.shared, plugin, method, args, options).await
    }

    /// [`Host::call`] with every option chosen by the caller.
    pub async fn call_with(
        &self,
        plugin: &str,
        method: &str,
        args: Bytes,
        options: CallOptions,
    ) -> Result<Bytes, CallError> {
        call::call(&self.shared, plugin, method, args, options).await
    }

    /// Publishes an event from the host (`source` = `host`).
    pub fn publish(&self, topic: &str, payload: Bytes, retain: bool) -> Result<(), WireError> {
        self.shared
            .events
            .publish(Source::Host, topic, payload, retain)
    }

    /// Subscribes in process: retained states first, then live events
    /// matching `filters`. When the channel (of `capacity`) is full, events
    /// are dropped for this subscriber only.
    pub fn subscribe(
        &self,
        filters: Vec<String>,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Event>, WireError> {
        self.shared.events.tap(filters, capacity)
    }

    /// A stream of plugin lifecycle changes (Starting, Running, Crashed, ...).
    pub fn lifecycle(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.shared.events.lifecycle()
    }

    /// Starts a stopped or failed plugin.
    pub async fn start_plugin(&self, id: &str) -> Result<(), HostError> {
        self.shared.handles.command(id, Command::Start).await
    }

    /// Stops a plugin and keeps it stopped.
    pub async fn stop_plugin(&self, id: &str) -> Result<(), HostError> {
        self.shared.handles.command(id, Command::Stop).await
    }

    /// Stops a plugin and starts it again.
    pub async fn restart_plugin(&self, id: &str) -> Result<(), HostError> {
        self.shared.handles.command(id, Command::Restart).await
    }
}

impl iglu_bus::interface::Caller for HostClient {
    fn call_interface<'a>(
        &'a self,
        plugin: &'a str,
        interface: &'a iglu_bus::interface::InterfaceId,
        method: &'a str,
        args: Vec<u8>,
        deadline: Duration,
    ) -> futures::future::BoxFuture<'a, Result<Bytes, WireError>> {
        let options =
            CallOptions::new(deadline).wait_for_running(self.shared.config.call_wait_for_running);
        Box::pin(async move {
            call::call_interface(
                &self.shared,
                plugin,
                interface.name,
                interface.version,
                method,
                Bytes::from(args),
                options,
            )
            .await
            .map_err(|e| e.to_wire())
        })
    }
}
