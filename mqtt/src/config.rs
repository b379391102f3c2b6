//! `[mqtt]`: the broker, who this host is on it, and what crosses.
//!
//! The host parses and checks this at config load, fills in what it
//! derives (`host_id`, `client_id`) and gives the bridge plugin the result
//! as JSON in [`ENV`], so the plugin never second-guesses the host.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::broker::parse_url;
pub use crate::broker::Broker;
use crate::mapping::TopicMap;

/// The environment variable the bridge reads its configuration from (JSON).
pub const ENV: &str = "IGLU_MQTT_CONFIG";

/// The id the bridge runs under unless `plugin_id` says otherwise.
pub const DEFAULT_PLUGIN_ID: &str = "mqtt-bridge";

/// Why `[mqtt]` is refused, as a sentence naming the key.
#[derive(Debug, thiserror::Error)]
pub enum MqttConfigError {
    /// A value that does not fit its key.
    #[error("[mqtt] {key}: {reason}")]
    Invalid {
        /// The key, e.g. `url` or `import[2].to`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> MqttConfigError {
    MqttConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The bridge between the event bus and an MQTT broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:1883]`, or `mqtts://host[:8883]` for TLS.
    pub url: String,
    /// This host's name on the broker: its status topic, the tag on what
    /// it publishes (default: the machine's host name, as `[a-z0-9_-]`).
    #[serde(default)]
    pub host_id: Option<String>,
    /// The MQTT client id (default `iglu-<host_id>`); two clients with one
    /// id throw each other off the broker.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The user name to log in with.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (Docker secrets: `/run/secrets/<name>`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Or: the host's environment variable holding it.
    #[serde(default)]
    pub password_env: Option<String>,
    /// `mqtts://`: a PEM file of the CA(s) to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `mqtts://`: a PEM certificate to log in with (with `client_key_file`).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// `mqtts://`: the PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Seconds between pings when nothing else is sent (default 30): a
    /// dead link is noticed within about twice this, and the broker sends
    /// the last will after one and a half.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// Quality of service of subscriptions and publications without their
    /// own (default 1: at least once).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// First wait before reconnecting, in ms (default 500); doubles per
    /// failed attempt.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    /// Longest wait between attempts, in ms (default 30,000).
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Bus events to export kept while the broker is away (default 1,000);
    /// past it the oldest are dropped, and counted.
    #[serde(default = "default_offline_queue")]
    pub offline_queue: usize,
    /// The same bound in payload bytes (default 1 MiB).
    #[serde(default = "default_offline_queue_bytes")]
    pub offline_queue_bytes: usize,
    /// Largest MQTT packet taken from or given to the broker (default
    /// 1 MiB): the broker is told (MQTT 5 maximum packet size) and skips
    /// bigger messages for us; a bigger export is logged, counted and
    /// skipped.
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: usize,
    /// The bridge plugin's id (default `mqtt-bridge`).
    #[serde(default = "default_plugin_id")]
    pub plugin_id: String,
    /// The bridge's executable (default `iglu-plugin-mqtt-bridge` beside
    /// the `iglu` executable).
    #[serde(default)]
    pub command: Option<PathBuf>,
    /// The Zigbee2MQTT preset.
    #[serde(default)]
    pub zigbee2mqtt: Option<Zigbee2MqttConfig>,
    /// Home Assistant's MQTT discovery.
    #[serde(default)]
    pub homeassistant: Option<HomeAssistantConfig>,
    /// Broker topics that come into the bus.
    #[serde(default, rename = "import")]
    pub imports: Vec<ImportRule>,
    /// Bus topics that go out to the broker.
    #[serde(default, rename = "export")]
    pub exports: Vec<ExportRule>,
}

/// Zigbee2MQTT's conventions, both ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Zigbee2MqttConfig {
    /// Zigbee2MQTT's `base_topic` (default `zigbee2mqtt`).
    pub base_topic: String,
    /// The bus topics' first level (default `home`): device `<name>`'s
    /// state is `home/<name>/state`, its commands `home/<name>/set`.
    pub bus_prefix: String,
}

impl Default for Zigbee2MqttConfig {
    fn default() -> Self {
        Zigbee2MqttConfig {
            base_topic: "zigbee2mqtt".to_owned(),
            bus_prefix: "home".to_owned(),
        }
    }
}

/// Home Assistant's MQTT discovery of this host and its plugins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    /// Publish discovery configs (default true once the section is there).
    pub discovery: bool,
    /// Home Assistant's discovery prefix (default `homeassistant`).
    pub prefix: String,
    /// Where Home Assistant says `online` when it (re)starts (default
    /// `homeassistant/status`); the configs are published again then.
    pub status_topic: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            discovery: true,
            prefix: "homeassistant".to_owned(),
            status_topic: "homeassistant/status".to_owned(),
        }
    }
}

/// Broker messages matching `from` become bus events on `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRule {
    /// An MQTT topic filter on the broker.
    pub from: String,
    /// The bus topic; its `+` and `#` take the levels the filter's matched.
    pub to: String,
    /// The subscription's QoS (default: `[mqtt] qos`).
    #[serde(default)]
    pub qos: Option<u8>,
    /// Which messages become the bus topic's retained state.
    #[serde(default)]
    pub retain: RetainImport,
    /// How the payload is read.
    #[serde(default)]
    pub payload: PayloadFormat,
}

/// Bus events matching `from` are published on the broker on `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRule {
    /// A bus topic filter.
    pub from: String,
    /// The broker topic; its `+` and `#` take the levels the filter's matched.
    pub to: String,
    /// The publication's QoS (default: `[mqtt] qos`).
    #[serde(default)]
    pub qos: Option<u8>,
    /// Publish retained (default false): for topics that carry state. Only
    /// such rules also export the bus's retained state when the bridge
    /// (re)starts; a command is never sent again from a replay.
    #[serde(default)]
    pub retain: bool,
    /// How the payload is written.
    #[serde(default)]
    pub payload: PayloadFormat,
}

/// Which imported messages the bus keeps as retained state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetainImport {
    /// Those the broker marks retained (subscriptions ask for "retain as
    /// published", so live retained publications keep the mark).
    #[default]
    AsPublished,
    /// Every one: the topic carries state.
    Always,
    /// None.
    Never,
}

/// How an MQTT payload and a bus event's MessagePack document correspond.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// JSON text on the broker, the same document in MessagePack on the bus;
    /// a payload that is not JSON is logged and skipped.
    #[default]
    Json,
    /// UTF-8 text on the broker, a string on the bus.
    Text,
    /// Any bytes on the broker, a bin on the bus.
    Bytes,
}

fn default_keep_alive() -> u64 {
    30
}
fn default_qos() -> u8 {
    1
}
fn default_reconnect_initial() -> u64 {
    500
}
fn default_reconnect_max() -> u64 {
    30_000
}
fn default_offline_queue() -> usize {
    1000
}
fn default_offline_queue_bytes() -> usize {
    1 << 20
}
fn default_max_packet() -> usize {
    1 << 20
}
fn default_plugin_id() -> String {
    DEFAULT_PLUGIN_ID.to_owned()
}

impl MqttConfig {
    /// Checks everything and fills in `host_id` (from `machine_name` if
    /// unset) and `client_id`. `machine_name` is the host name of the
    /// machine, passed in so that this stays a pure function.
    pub fn resolve(&mut self, machine_name: &str) -> Result<(), MqttConfigError> {
        let broker = self.broker()?;
        let host_id = match &self.host_id {
            Some(id) => id.clone(),
            None => sanitize(machine_name),
        };
        if !valid_id(&host_id) {
            return Err(invalid(
                "host_id",
                format!("{host_id:?} is not 1-64 characters of [a-z0-9_-]"),
            ));
        }
        self.host_id = Some(host_id.clone());
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("iglu-{host_id}"));
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(invalid("client_id", "must be 1-128 bytes"));
        }
        self.client_id = Some(client_id);
        if !iglu_bus::handshake::valid_plugin_id(&self.plugin_id) {
            return Err(invalid(
                "plugin_id",
                "must be 1-64 characters of [a-z0-9_-]",
            ));
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            return Err(invalid(
                "password_file",
                "give password_file or password_env, not both",
            ));
        }
        if (self.password_file.is_some() || self.password_env.is_some()) && self.username.is_none()
        {
            return Err(invalid("username", "a password needs a username"));
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(invalid(
                "client_cert_file",
                "give client_cert_file and client_key_file together",
            ));
        }
        let tls_files = self.ca_file.is_some() || self.client_cert_file.is_some();
        if tls_files && !broker.tls {
            return Err(invalid("ca_file", "TLS files need an mqtts:// url"));
        }
        if !(5..=65_535).contains(&self.keep_alive_s) {
            return Err(invalid("keep_alive_s", "must be 5-65535"));
        }
        check_qos("qos", self.qos)?;
        if self.reconnect_initial_ms == 0 || self.reconnect_initial_ms > self.reconnect_max_ms {
            return Err(invalid(
                "reconnect_initial_ms",
                "must be at least 1 and at most reconnect_max_ms",
            ));
        }
        if self.offline_queue == 0 || self.offline_queue_bytes < 1024 {
            return Err(invalid(
                "offline_queue",
                "offline_queue must be at least 1 and offline_queue_bytes at least 1024",
            ));
        }
        if !(1024..=256 << 20).contains(&self.max_packet_bytes) {
            return Err(invalid("max_packet_bytes", "must be 1 KiB-256 MiB"));
        }
        for (i, rule) in self.imports.iter().enumerate() {
            let key = format!("import[{i}]");
            TopicMap::new(&rule.from, &rule.to).map_err(|reason| invalid(key.clone(), reason))?;
            if rule.to.starts_with('$') {
                return Err(invalid(
                    format!("{key}.to"),
                    "bus topics under '$' are the host's own",
                ));
            }
            if let Some(q) = rule.qos {
                check_qos(&format!("{key}.qos"), q)?;
            }
        }
        for (i, rule) in self.exports.iter().enumerate() {
            let key = format!("export[{i}]");
            TopicMap::new(&rule.from, &rule.to).map_err(|reason| invalid(key.clone(), reason))?;
            if rule.to.starts_with('$') {
                return Err(invalid(
                    format!("{key}.to"),
                    "broker topics under '$' are the broker's own",
                ));
            }
            if let Some(q) = rule.qos {
                check_qos(&format!("{key}.qos"), q)?;
            }
        }
        if let Some(z) = &self.zigbee2mqtt {
            for (key, level) in [("base_topic", &z.base_topic), ("bus_prefix", &z.bus_prefix)] {
                iglu_bus::topic::validate_topic(level)
                    .map_err(|reason| invalid(format!("zigbee2mqtt.{key}"), reason))?;
                if level.starts_with('$') {
                    return Err(invalid(
                        format!("zigbee2mqtt.{key}"),
                        "may not start with '$'",
                    ));
                }
            }
        }
        if let Some(h) = &self.homeassistant {
            iglu_bus::topic::validate_topic(&h.prefix)
                .map_err(|reason| invalid("homeassistant.prefix", reason))?;
            iglu_bus::topic::validate_topic(&h.status_topic)
                .map_err(|reason| invalid("homeassistant.status_topic", reason))?;
        }
        Ok(())
    }

    /// The broker's address, from `url`.
    pub fn broker(&self) -> Result<Broker, MqttConfigError> {
        parse_url(&self.url).map_err(|reason| invalid("url", reason))
    }

    /// This host's id; set by [`MqttConfig::resolve`].
    pub fn host_id(&self) -> &str {
        self.host_id.as_deref().unwrap_or("iglu")
    }

    /// Where this host says `online`, and its last will says `offline`.
    pub fn status_topic(&self) -> String {
        format!("iglu/{}/status", self.host_id())
    }
}

fn check_qos(key: &str, qos: u8) -> Result<(), MqttConfigError> {
    if qos > 2 {
        return Err(invalid(key, "QoS is 0, 1 or 2"));
    }
    Ok(())
}

/// A host name as an id: lower case, other characters as `-`, at most 64.
fn sanitize(name: &str) -> String {
    let id: String = name
        .trim()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .take(64)
        .collect();
    if id.is_empty() {
        "iglu".to_owned()
    } else {
        id
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_url: &str) -> MqttConfig {
        serde_json::from_value(serde_json::json!({ "url": toml_url })).expect("minimal config")
    }

    #[test]
    fn resolve_fills_ids_and_checks_rules() {
        let mut c = config("mqtt://127.0.0.1:1883");
        c.resolve("Hub.Local").expect("valid");
        assert_eq!(c.host_id(), "hub-local");
        assert_eq!(c.client_id.as_deref(), Some("iglu-hub-local"));
        assert_eq!(c.status_topic(), "iglu/hub-local/status");

        let mut c = config("mqtt://x");
        c.imports.push(ImportRule {
            from: "a/+/b".into(),
            to: "home/#".into(),
            qos: None,
            retain: RetainImport::AsPublished,
            payload: PayloadFormat::Json,
        });
        let e = c.resolve("h").expect_err("wildcards differ").to_string();
        assert!(e.contains("import[0]"), "{e}");

        let mut c = config("mqtt://x");
        c.ca_file = Some("ca.pem".into());
        assert!(c.resolve("h").is_err(), "TLS files need mqtts");

        let mut c = config("mqtt://x");
        c.password_env = Some("P".into());
        assert!(c.resolve("h").is_err(), "a password needs a username");
    }
}
