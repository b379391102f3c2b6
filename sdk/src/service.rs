//! What the I/O loop serves with: the plugin's handlers, its HELLO and its
//! timing choices, the same for every connection.

use std::time::Duration;

use iglu_bus::{FoldMap, Hello};
use tokio::runtime::Handle;

use crate::events::EventHandler;
use crate::handler::ErasedHandler;

/// Everything the loop needs that does not change between connections.
pub(crate) struct Service {
    pub hello: Hello,
    pub handlers: FoldMap<String, ErasedHandler>,
    pub handler_runtime: Handle,
    /// How long in-flight calls may run after SIGTERM/SIGINT or the host's GOODBYE.
    pub grace: Duration,
    /// Handles events, one at a time; `None` drops them (still returning credit).
    pub event_handler: Option<EventHandler>,
    /// Runs after every WELCOME (see `Plugin::on_connect`).
    pub on_connect: Option<crate::on_connect::ConnectHandler>,
    /// Runs when the host sends new settings (see `Plugin::on_settings`).
    pub on_settings: Option<crate::on_connect::ConnectHandler>,
    /// The settings in force.
    pub settings: std::sync::Arc<crate::settings::SettingsCell>,
    /// Events the host may have in flight to this plugin.
    pub event_window: u32,
    /// Run handlers and the event handler on the I/O thread (see `Plugin::inline_handlers`).
    pub inline_handlers: bool,
}
