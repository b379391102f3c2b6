//! Thermostat: per-room target temperatures and a heating decision with
//! hysteresis, the way a smart-home thermostat decides.
//!
//! All state lives in the host's key-value store, so a crash or restart of
//! this plugin loses no setting and no heating decision.

use std::process::ExitCode;

use iglu_sdk::{Context, HandlerError, Manifest, Plugin};
use serde::{Deserialize, Serialize};

/// Heating switches on below `target - HYSTERESIS` and off above
/// `target + HYSTERESIS`, so it does not flap around the target.
const HYSTERESIS: f64 = 0.5;
/// Target for a room nobody configured, in °C.
const DEFAULT_TARGET: f64 = 20.0;

#[derive(Deserialize)]
struct SetTarget {
    room: String,
    celsius: f64,
}

#[derive(Deserialize)]
struct Reading {
    room: String,
    celsius: f64,
}

#[derive(Deserialize)]
struct Room {
    room: String,
}

#[derive(Serialize, Deserialize, Clone, Default)]
struct RoomState {
    room: String,
    target: f64,
    current: Option<f64>,
    heating: bool,
}

async fn load(ctx: &Context, room: &str) -> Result<RoomState, HandlerError> {
    Ok(ctx
        .host()
        .kv_get::<RoomState>(&format!("room/{room}"))
        .await?
        .unwrap_or(RoomState {
            room: room.to_owned(),
            target: DEFAULT_TARGET,
            current: None,
            heating: false,
        }))
}

async fn save(ctx: &Context, state: &RoomState) -> Result<(), HandlerError> {
    ctx.host()
        .kv_set(&format!("room/{}", state.room), state)
        .await?;
    Ok(())
}

fn check_room(room: &str) -> Result<(), HandlerError> {
    if room.is_empty() || room.len() > 64 {
        return Err(HandlerError::msg("room must be 1-64 characters"));
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

fn main() -> ExitCode {
    Plugin::new(Manifest {
        id: "thermostat".into(),
        name: "Thermostat".into(),
        author: "Iglu developers".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Per-room target temperatures and heating decisions with hysteresis".into(),
    })
    .method("set_target", |ctx: Context, args: SetTarget| async move {
        check_room(&args.room)?;
        if !(5.0..=30.0).contains(&args.celsius) {
            return Err(HandlerError::msg("target must be between 5 and 30 °C"));
        }
        let mut state = load(&ctx, &args.room).await?;
        state.target = args.celsius;
        decide(&mut state);
        save(&ctx, &state).await?;
        Ok(state)
    })
    .method("reading", |ctx: Context, args: Reading| async move {
        check_room(&args.room)?;
        let mut state = load(&ctx, &args.room).await?;
        state.current = Some(args.celsius);
        decide(&mut state);
        save(&ctx, &state).await?;
        Ok(state)
    })
    .method("room", |ctx: Context, args: Room| async move {
        check_room(&args.room)?;
        load(&ctx, &args.room).await
    })
    .serve()
}
