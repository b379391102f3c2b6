//! What a handler receives with each call.

use std::sync::Arc;

use crate::host::HostClient;

/// The call's surroundings: who we are and how to reach the host.
#[derive(Clone)]
pub struct Context {
    pub(crate) plugin_id: Arc<str>,
    pub(crate) host: HostClient,
}

impl Context {
    /// The id the host knows this plugin by.
    pub fn plugin_id(&self) -> &str {
        &self.plugin_id
    }

    /// A client for the host API (`host.info`, `kv.get`, `kv.set`, `kv.delete`).
    pub fn host(&self) -> &HostClient {
        &self.host
    }
}
