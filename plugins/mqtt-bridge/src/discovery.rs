//! Home Assistant's MQTT discovery of this host and its plugins: a
//! connectivity sensor for the host (its status topic, which the last will
//! turns `offline`) and a sensor per plugin showing its lifecycle state.
//! The configs are retained, and published again whenever Home Assistant
//! says `online` on its status topic (it forgets non-retained state when it
//! restarts, and a broker without persistence forgets retained ones).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use iglu_mqtt::config::HomeAssistantConfig;
use iglu_mqtt::MqttConfig;
use iglu_sdk::Event;
use serde_json::json;

use crate::outbox::Outgoing;

/// The host's lifecycle announcements, one topic per plugin.
pub const LIFECYCLE_FILTER: &str = "$iglu/plugins/+/state";

/// Plugins a host may have that discovery keeps track of; past it, new
/// ones are not announced (a host has tens, not thousands).
const MAX_PLUGINS: usize = 1024;

pub struct Discovery {
    ha: HomeAssistantConfig,
    host_id: String,
    status_topic: String,
    /// Each plugin's last known state.
    plugins: Mutex<BTreeMap<String, String>>,
}

impl Discovery {
    pub fn new(config: &MqttConfig) -> Option<Discovery> {
        let ha = config.homeassistant.clone().filter(|h| h.discovery)?;
        Some(Discovery {
            ha,
            host_id: config.host_id().to_owned(),
            status_topic: config.status_topic(),
            plugins: Mutex::default(),
        })
    }

    /// Home Assistant's own status topic, subscribed to on the broker.
    pub fn ha_status_topic(&self) -> &str {
        &self.ha.status_topic
    }

    fn node(&self) -> String {
        format!("iglu_{}", self.host_id.replace('-', "_"))
    }

    fn device(&self) -> serde_json::Value {
        json!({
            "identifiers": [self.node()],
            "name": format!("Iglu {}", self.host_id),
            "manufacturer": "Iglu",
            "model": "plugin host",
            "sw_version": env!("CARGO_PKG_VERSION"),
        })
    }

    fn config_message(&self, component: &str, object: &str, body: serde_json::Value) -> Outgoing {
        Outgoing {
            topic: format!(
                "{}/{component}/{}/{object}/config",
                self.ha.prefix,
                self.node()
            ),
            payload: Bytes::from(body.to_string()),
            qos: 1,
            retain: true,
        }
    }

    fn host_config(&self) -> Outgoing {
        let body = json!({
            "name": "Status",
            "unique_id": format!("{}_status", self.node()),
            "device_class": "connectivity",
            "state_topic": self.status_topic,
            "payload_on": "online",
            "payload_off": "offline",
            "device": self.device(),
        });
        self.config_message("binary_sensor", "status", body)
    }

    fn plugin_state_topic(&self, plugin: &str) -> String {
        format!("iglu/{}/plugins/{plugin}/state", self.host_id)
    }

    fn plugin_config(&self, plugin: &str) -> Outgoing {
        let object = plugin.replace('-', "_");
        let body = json!({
            "name": format!("Plugin {plugin}"),
            "unique_id": format!("{}_plugin_{object}", self.node()),
            "state_topic": self.plugin_state_topic(plugin),
            "availability_topic": self.status_topic,
            "icon": "mdi:puzzle",
            "device": self.device(),
        });
        self.config_message("sensor", &format!("plugin_{object}"), body)
    }

    fn plugin_state(&self, plugin: &str, state: &str) -> Outgoing {
        Outgoing {
            topic: self.plugin_state_topic(plugin),
            payload: Bytes::from(state.to_owned()),
            qos: 1,
            retain: true,
        }
    }

    /// Everything, for a new connection or Home Assistant's `online`.
    pub fn all(&self) -> Vec<Outgoing> {
        let plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = vec![self.host_config()];
        for (plugin, state) in plugins.iter() {
            out.push(self.plugin_config(plugin));
            out.push(self.plugin_state(plugin, state));
        }
        out
    }

    /// A plugin's lifecycle change: its state, and its config the first time.
    pub fn on_bus_event(&self, event: &Event) -> Vec<Outgoing> {
        let Some(plugin) = event
            .topic
            .strip_prefix("$iglu/plugins/")
            .and_then(|r| r.strip_suffix("/state"))
        else {
            return Vec::new();
        };
        let Some(state) = lifecycle_state(&event.payload) else {
            return Vec::new();
        };
        let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let new = !plugins.contains_key(plugin);
        if new && plugins.len() >= MAX_PLUGINS {
            return Vec::new();
        }
        plugins.insert(plugin.to_owned(), state.clone());
        drop(plugins);
        let mut out = Vec::new();
        if new {
            out.push(self.plugin_config(plugin));
        }
        out.push(self.plugin_state(plugin, &state));
        out
    }
}

/// The `state` of a lifecycle event's payload (a map).
fn lifecycle_state(payload: &[u8]) -> Option<String> {
    let value = rmpv::decode::read_value(&mut &payload[..]).ok()?;
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some("state"))
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
}
