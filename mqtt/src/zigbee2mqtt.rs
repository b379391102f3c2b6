//! The Zigbee2MQTT preset.
//!
//! Zigbee2MQTT publishes each device's state as JSON on
//! `<base>/<friendly_name>` (names may hold `/`), its availability on
//! `<base>/<name>/availability`, its own state on `<base>/bridge/state`,
//! and takes commands on `<base>/<name>/set` and `/get`. Availability and
//! the bridge's state are a plain `online`/`offline` before Zigbee2MQTT
//! 1.30 and `{"state":"online"}` since; both become `{"state": ...}`.
//!
//! On the bus (prefix `home`): `home/<name>/state` (retained, the JSON as
//! a map), `home/<name>/availability` (retained), `home/bridge/state`
//! (retained; Zigbee2MQTT reserves the name `bridge`), and plugins'
//! `home/<name>/set` and `home/<name>/get` go out as commands.

use crate::config::Zigbee2MqttConfig;

/// What a broker message under the base topic is.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A device's state (JSON).
    State(&'a str),
    /// A device's availability.
    Availability(&'a str),
    /// Zigbee2MQTT's own state.
    BridgeState,
    /// Something else (commands to devices, the bridge's other topics).
    Other,
}

impl Zigbee2MqttConfig {
    /// The broker filter of everything Zigbee2MQTT publishes.
    pub fn filter(&self) -> String {
        format!("{}/#", self.base_topic)
    }

    /// The bus filter of commands (sorted out by [`Self::command`]).
    pub fn command_filter(&self) -> String {
        format!("{}/#", self.bus_prefix)
    }

    /// What a broker topic is.
    pub fn classify<'a>(&self, topic: &'a str) -> Incoming<'a> {
        let Some(rest) = topic
            .strip_prefix(self.base_topic.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Incoming::Other;
        };
        if rest == "bridge/state" {
            return Incoming::BridgeState;
        }
        if rest == "bridge" || rest.starts_with("bridge/") || rest.is_empty() {
            return Incoming::Other;
        }
        if let Some(name) = rest.strip_suffix("/availability") {
            return Incoming::Availability(name);
        }
        let command = |l: &str| l == "set" || l == "get";
        if rest.split('/').any(command) {
            return Incoming::Other;
        }
        Incoming::State(rest)
    }

    /// The bus topic of a device's state.
    pub fn state_topic(&self, name: &str) -> String {
        format!("{}/{name}/state", self.bus_prefix)
    }

    /// The bus topic of a device's availability.
    pub fn availability_topic(&self, name: &str) -> String {
        format!("{}/{name}/availability", self.bus_prefix)
    }

    /// The bus topic of Zigbee2MQTT's own state.
    pub fn bridge_state_topic(&self) -> String {
        format!("{}/bridge/state", self.bus_prefix)
    }

    /// The broker topic for a bus command (`home/<name>/set` ->
    /// `zigbee2mqtt/<name>/set`), if `bus_topic` is one.
    pub fn command(&self, bus_topic: &str) -> Option<String> {
        let rest = bus_topic
            .strip_prefix(self.bus_prefix.as_str())?
            .strip_prefix('/')?;
        let (name, verb) = rest.rsplit_once('/')?;
        if (verb == "set" || verb == "get") && !name.is_empty() && name != "bridge" {
            Some(format!("{}/{name}/{verb}", self.base_topic))
        } else {
            None
        }
    }
}

/// `online`/`offline` from either format (`online`, `{"state":"online"}`).
pub fn availability(payload: &[u8]) -> Option<&'static str> {
    let word = |s: &str| match s.trim() {
        "online" => Some("online"),
        "offline" => Some("offline"),
        _ => None,
    };
    let text = std::str::from_utf8(payload).ok()?;
    if let Some(w) = word(text) {
        return Some(w);
    }
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    json.get("state").and_then(|s| s.as_str()).and_then(word)
}

/// The bus payload of an availability: `{"state": "online"}`.
pub fn availability_payload(state: &str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Availability<'a> {
        state: &'a str,
    }
    rmp_serde::to_vec_named(&Availability { state }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        let z = Zigbee2MqttConfig::default();
        assert_eq!(z.classify("zigbee2mqtt/lamp"), Incoming::State("lamp"));
        assert_eq!(
            z.classify("zigbee2mqtt/kitchen/light"),
            Incoming::State("kitchen/light")
        );
        assert_eq!(
            z.classify("zigbee2mqtt/lamp/availability"),
            Incoming::Availability("lamp")
        );
        assert_eq!(
            z.classify("zigbee2mqtt/bridge/state"),
            Incoming::BridgeState
        );
        assert_eq!(z.classify("zigbee2mqtt/bridge/devices"), Incoming::Other);
        assert_eq!(z.classify("zigbee2mqtt/lamp/set"), Incoming::Other);
        assert_eq!(
            z.classify("zigbee2mqtt/lamp/set/brightness"),
            Incoming::Other
        );
        assert_eq!(z.classify("zigbee2mqttx/lamp"), Incoming::Other);
        assert_eq!(z.state_topic("kitchen/light"), "home/kitchen/light/state");
        assert_eq!(
            z.command("home/kitchen/light/set").as_deref(),
            Some("zigbee2mqtt/kitchen/light/set")
        );
        assert_eq!(
            z.command("home/lamp/get").as_deref(),
            Some("zigbee2mqtt/lamp/get")
        );
        assert_eq!(z.command("home/lamp/state"), None);
        assert_eq!(z.command("home/set"), None);
        assert_eq!(z.command("elsewhere/lamp/set"), None);
    }

    #[test]
    fn both_availability_formats() {
        assert_eq!(availability(b"online"), Some("online"));
        assert_eq!(availability(br#"{"state":"offline"}"#), Some("offline"));
        assert_eq!(availability(b"maybe"), None);
        assert_eq!(availability(br#"{"state":3}"#), None);
    }
}
