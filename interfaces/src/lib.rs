//! The interfaces of Iglu's example plugins, one module each, declared once
//! and imported by both sides: the plugin that implements one, and the
//! embedding program or plugin that calls it through the typed client.

pub mod echo;
pub mod light;
pub mod thermostat;
