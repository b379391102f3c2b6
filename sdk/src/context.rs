//! What a handler receives with each call.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::error::HandlerError;
use crate::host::HostClient;
use crate::settings::SettingsCell;

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
    settings: Arc<SettingsCell>,
}

impl Context {
    pub(crate) fn new(
        plugin_id: Arc<str>,
        host: HostClient,
        settings: Arc<SettingsCell>,
    ) -> Context {
        Context {
            inner: Arc::new(Inner {
                plugin_id,
                host,
                settings,
            }),
        }
    }

    /// The plugin's settings as `T` (a struct with a field per setting;
    /// `#[serde(default)]` for those that may be missing). They are the
    /// host's, already checked against the package's schema; this fails
    /// only if `T` does not fit them.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        self.inner.settings.get()
    }

    /// One setting as `T`, if it is set and fits.
    pub fn setting<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.inner.settings.one(key)
    }

    pub(crate) fn settings_cell(&self) -> &SettingsCell {
        &self.inner.settings
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
