//! The MQTT bridge's rules, shared by the host and the bridge plugin.
//!
//! The host reads `[mqtt]` from its config ([`config`]), checks it at load
//! and hands it to the bridge plugin (`plugins/mqtt-bridge`) as JSON in
//! [`config::ENV`]; the bridge follows the same types, so what the host
//! accepted is what runs. A message crosses the bridge through:
//!
//! - [`broker`]: the broker's URL;
//! - [`mapping`]: a rule's topic filter and its target, with wildcards
//!   carried over (`zigbee2mqtt/+` -> `home/+/state`);
//! - [`zigbee2mqtt`]: the Zigbee2MQTT preset's topics (device state,
//!   availability, the bridge's state, commands) in both directions;
//! - [`payload`]: MQTT payload bytes to the bus's MessagePack and back;
//! - [`loops`]: the user property that names the host that published a
//!   message, so a bridge never takes back its own.
#![deny(missing_docs)]

pub mod broker;
pub mod config;
pub mod loops;
pub mod mapping;
pub mod payload;
pub mod zigbee2mqtt;

pub use config::{MqttConfig, MqttConfigError};
