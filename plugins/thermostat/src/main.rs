//! Thermostat: per-room target temperatures and a heating decision with
//! hysteresis, the way a smart-home thermostat decides.
//!
//! It implements the `iglu.thermostat` interface (`iglu-interfaces`), so
//! embedding programs and other plugins call it through the typed
//! `ThermostatClient`; the same methods are served under their plain names
//! for JSON callers (`iglu call thermostat room '{"room": "hall"}'`).
//! All state lives in the host's key-value store, so a crash or restart of
//! this plugin loses no setting and no heating decision.

use std::process::ExitCode;

use iglu_interfaces::thermostat::{RoomState, Thermostat, ThermostatError, ThermostatInterface};
use iglu_sdk::{Context, HandlerError, Manifest, Plugin};
use serde::Deserialize;

/// Heating switches on below `target - HYSTERESIS` and off above
/// `target + HYSTERESIS`, so it does not flap around the target.
const HYSTERESIS: f64 = 0.5;
/// Target for a room nobody configured, in °C.
const DEFAULT_TARGET: f64 = 20.0;
/// The targets it accepts, in °C.
const MIN_TARGET: f64 = 5.0;
const MAX_TARGET: f64 = 30.0;

#[derive(Deserialize)]
struct SetTarget {
    room: String,
    celsius: f64,
}

#[derive(Deserialize)]
struct Room {
    room: String,
}

async fn load(ctx: &Context, room: &str) -> Result<RoomState, ThermostatError> {
    Ok(ctx
        .host()
        .kv_get::<RoomState>(&format!("room/{room}"))
        .await
        .map_err(|e| ThermostatError::Store(e.to_string()))?
        .unwrap_or(RoomState {
            room: room.to_owned(),
            target: DEFAULT_TARGET,
            current: None,
            heating: false,
        }))
}

async fn save(ctx: &Context, state: &RoomState) -> Result<(), ThermostatError> {
    ctx.host()
        .kv_set(&format!("room/{}", state.room), state)
        .await
        .map_err(|e| ThermostatError::Store(e.to_string()))
}

fn check_room(room: &str) -> Result<(), ThermostatError> {
    if room.is_empty() || room.len() > 64 {
        return Err(ThermostatError::BadRoom);
    }
    Ok(())
}

fn decide(state: &mut RoomState) {
    if let Some(current) = state.current {
        if current < state.target - HYSTERESIS {
            state.heating = true;
        } else if current > state.target + HYSTERESIS {
            state.heating = false;
        }
    }
}

/// Changes a room's state, decides again whether to heat, and stores it.
async fn update(
    ctx: &Context,
    room: &str,
    change: impl FnOnce(&mut RoomState),
) -> Result<RoomState, ThermostatError> {
    let mut state = load(ctx, room).await?;
    change(&mut state);
    decide(&mut state);
    save(ctx, &state).await?;
    Ok(state)
}

/// The thermostat; it keeps nothing in memory.
struct Heating;

impl Thermostat for Heating {
    async fn set_target(
        &self,
        ctx: Context,
        room: String,
        celsius: f64,
    ) -> Result<RoomState, ThermostatError> {
        check_room(&room)?;
        if !(MIN_TARGET..=MAX_TARGET).contains(&celsius) {
            return Err(ThermostatError::OutOfRange {
                celsius,
                min: MIN_TARGET,
                max: MAX_TARGET,
            });
        }
        update(&ctx, &room, |state| state.target = celsius).await
    }

    async fn reading(
        &self,
        ctx: Context,
        room: String,
        celsius: f64,
    ) -> Result<RoomState, ThermostatError> {
        check_room(&room)?;
        update(&ctx, &room, |state| state.current = Some(celsius)).await
    }

    async fn room(&self, ctx: Context, room: String) -> Result<RoomState, ThermostatError> {
        check_room(&room)?;
        load(&ctx, &room).await
    }
}

fn main() -> ExitCode {
    Plugin::new(Manifest {
        id: "thermostat".into(),
        name: "Thermostat".into(),
        author: "Iglu developers".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Per-room target temperatures and heating decisions with hysteresis".into(),
    })
    .implement(ThermostatInterface::server(Heating))
    // The same, under plain names, for JSON callers.
    .method("set_target", |ctx: Context, args: SetTarget| async move {
        Ok::<_, HandlerError>(Heating.set_target(ctx, args.room, args.celsius).await?)
    })
    .method("reading", |ctx: Context, args: SetTarget| async move {
        Ok::<_, HandlerError>(Heating.reading(ctx, args.room, args.celsius).await?)
    })
    .method("room", |ctx: Context, args: Room| async move {
        Ok::<_, HandlerError>(Heating.room(ctx, args.room).await?)
    })
    .serve()
}
