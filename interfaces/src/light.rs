//! `iglu.light`: switchable lights, one per room.

use iglu_sdk::Context;
use serde::{Deserialize, Serialize};

/// A light as the plugin that drives it knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LightState {
    /// Its room.
    pub room: String,
    /// Whether it is on.
    pub on: bool,
    /// Who switched it last and why (for example `automation: motion`).
    pub by: String,
    /// How many times it was switched (on or off).
    pub switches: u64,
    /// When it was last switched, in ms since the Unix epoch (0: never).
    pub changed_ms: u64,
}

/// What a light refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum LightError {
    /// No light in that room.
    #[error("no light in room {room:?} (lights: {})", rooms.join(", "))]
    UnknownRoom {
        /// What was asked.
        room: String,
        /// The rooms that have one.
        rooms: Vec<String>,
    },
    /// Its state could not be read or written.
    #[error("the lights' store failed: {0}")]
    Store(String),
}

/// Lights that can be switched and read, one per room.
#[iglu_sdk::interface(name = "iglu.light", version = "1.0.0")]
pub trait Light {
    /// Switches a room's light; `by` says who and why (kept in its state).
    /// Switching it to what it already is changes nothing.
    async fn set(
        &self,
        ctx: Context,
        room: String,
        on: bool,
        #[serde(default)] by: String,
    ) -> Result<LightState, LightError>;
    /// A room's light.
    async fn state(&self, ctx: Context, room: String) -> Result<LightState, LightError>;
    /// Every light, by room.
    async fn list(&self, ctx: Context) -> Result<Vec<LightState>, LightError>;
}
