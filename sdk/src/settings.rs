//! The plugin's settings, as the host gives them: JSON in `IGLU_SETTINGS`
//! at start (the package's defaults, the host config's values and those set
//! at run time, already checked by the host against the package's schema),
//! then the whole new set on `$iglu/plugins/<id>/settings` each time one
//! changes. Read them typed with [`crate::Context::settings`]; hear of
//! changes with [`crate::Plugin::on_settings`].

use std::sync::RwLock;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::HandlerError;

/// The environment variable the host puts the settings in.
pub const ENV: &str = "IGLU_SETTINGS";

/// The topic the host sends this plugin's changed settings on.
pub fn topic(plugin: &str) -> String {
    format!("$iglu/plugins/{plugin}/settings")
}

/// The settings in force, shared by every context of the process.
pub(crate) struct SettingsCell {
    current: RwLock<Value>,
}

impl SettingsCell {
    /// From `IGLU_SETTINGS` (none, or not an object: no settings, with a warning).
    pub fn from_env() -> SettingsCell {
        let value = match std::env::var(ENV) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    tracing::warn!("{ENV} is not a JSON object: no settings");
                    Value::Object(Map::new())
                }
            },
            Err(_) => Value::Object(Map::new()),
        };
        SettingsCell {
            current: RwLock::new(value),
        }
    }

    /// The settings as `T`.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        let value = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        serde_json::from_value(value)
            .map_err(|e| HandlerError::msg(format!("the settings do not fit: {e}")))
    }

    /// One setting as `T`, if it is there and fits.
    pub fn one<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Takes the new set from the host's event payload (MessagePack).
    pub fn update(&self, payload: &[u8]) -> Result<(), HandlerError> {
        let value: Value = rmp_serde::from_slice(payload)
            .map_err(|e| HandlerError::msg(format!("settings that do not decode: {e}")))?;
        if !value.is_object() {
            return Err(HandlerError::msg("settings that are not an object"));
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = value;
        Ok(())
    }
}
