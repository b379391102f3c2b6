//! What a handler receives with each call.

use std::sync::Arc;

use crate::host::HostClient;

/// The call's surroundings: who we are and how to reach the host.
///
/// One per connection, shared: handing it to a call costs one reference
/// count, not one per field (the host client's sender among them).
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    plugin_id: Arc<str>,
    host: HostClient,
}

impl Context {
    pub(crate) fn new(plugin_id: Arc<str>, host: HostClient) -> Context {
        Context {
            inner: Arc::new(Inner { plugin_id, host }),
        }
    }

    /// The id the host knows this plugin by.
    pub fn plugin_id(&self) -> &str {
        &self.inner.plugin_id
    }

    /// A client for the host API (`host.info`, `kv.get`, `kv.set`, `kv.delete`).
    pub fn host(&self) -> &HostClient {
        &self.inner.host
    }
}
