//! `iglu.thermostat`: per-room target temperatures and heating decisions.

use iglu_sdk::Context;
use serde::{Deserialize, Serialize};

/// A room as the thermostat sees it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RoomState {
    /// The room.
    pub room: String,
    /// Its target, in °C.
    pub target: f64,
    /// The last reading, in °C, if any.
    pub current: Option<f64>,
    /// Whether it heats now.
    pub heating: bool,
}

/// What the thermostat refuses, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ThermostatError {
    /// The room name is empty or longer than 64 characters.
    #[error("room must be 1-64 characters")]
    BadRoom,
    /// The target is outside what the thermostat allows.
    #[error("target {celsius} °C is outside {min}-{max} °C")]
    OutOfRange {
        /// What was asked.
        celsius: f64,
        /// The lowest target.
        min: f64,
        /// The highest target.
        max: f64,
    },
    /// Its state could not be read or written.
    #[error("the thermostat's store failed: {0}")]
    Store(String),
}

/// Heating control per room, with hysteresis.
#[iglu_sdk::interface(name = "iglu.thermostat", version = "1.0.0")]
pub trait Thermostat {
    /// Sets a room's target temperature.
    async fn set_target(
        &self,
        ctx: Context,
        room: String,
        celsius: f64,
    ) -> Result<RoomState, ThermostatError>;
    /// Records a temperature reading and decides whether to heat.
    async fn reading(
        &self,
        ctx: Context,
        room: String,
        celsius: f64,
    ) -> Result<RoomState, ThermostatError>;
    /// A room's state.
    async fn room(&self, ctx: Context, room: String) -> Result<RoomState, ThermostatError>;
}
