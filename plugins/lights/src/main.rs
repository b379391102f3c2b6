//! Lights: the home's lights, one per room, behind the `iglu.light`
//! interface (`iglu-interfaces`).
//!
//! Callers switch a light through the typed `LightClient` (the automation
//! plugin does, plugin to plugin), by JSON (`iglu call lights
//! iglu.light.set '{"room": "kitchen", "on": true}'`), or with an event on
//! `home/<room>/light/set` (`{"on": bool, "reason": "..."}`). Every change
//! is published, retained, on `home/<room>/light/state` (`{"on": bool,
//! "by": "..."}`): that is where the demo home's light state comes from.
//! Each light's state lives in the host's key-value store, so a crash or a
//! restart of this plugin switches nothing. The rooms come from
//! `IGLU_LIGHTS_ROOMS` (comma-separated); the built-in config passes the
//! simulator's rooms.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use iglu_interfaces::light::{Light, LightError, LightInterface, LightState};
use iglu_sdk::{Context, Event, HandlerError, Manifest, Plugin};
use serde::{Deserialize, Serialize};

/// Rooms when `IGLU_LIGHTS_ROOMS` is not set: the simulator's defaults.
const DEFAULT_ROOMS: &str = "kitchen,living_room,bedroom,hallway";

/// What is published on `home/<room>/light/state`.
#[derive(Serialize)]
struct Published<'a> {
    on: bool,
    by: &'a str,
}

/// A command event on `home/<room>/light/set`.
#[derive(Deserialize)]
struct Command {
    on: bool,
    #[serde(default)]
    reason: String,
}

struct Lights {
    rooms: Vec<String>,
    /// One switch at a time: read, change, store and publish stay in order.
    switching: tokio::sync::Mutex<()>,
}

impl Lights {
    fn check(&self, room: &str) -> Result<(), LightError> {
        if self.rooms.iter().any(|r| r == room) {
            Ok(())
        } else {
            Err(LightError::UnknownRoom {
                room: room.to_owned(),
                rooms: self.rooms.clone(),
            })
        }
    }

    async fn load(&self, ctx: &Context, room: &str) -> Result<LightState, LightError> {
        Ok(ctx
            .host()
            .kv_get::<LightState>(&format!("light/{room}"))
            .await
            .map_err(|e| LightError::Store(e.to_string()))?
            .unwrap_or(LightState {
                room: room.to_owned(),
                ..LightState::default()
            }))
    }

    async fn publish(&self, ctx: &Context, state: &LightState) -> Result<(), HandlerError> {
        let topic = format!("home/{}/light/state", state.room);
        let payload = Published {
            on: state.on,
            by: &state.by,
        };
        Ok(ctx.host().publish_retained(&topic, &payload).await?)
    }

    /// Publishes every light's state: after every WELCOME, so a restarted
    /// host (or a subscriber that comes later) knows them all.
    async fn announce(&self, ctx: Context) -> Result<(), HandlerError> {
        let _one = self.switching.lock().await;
        for room in &self.rooms {
            let state = self.load(&ctx, room).await?;
            self.publish(&ctx, &state).await?;
        }
        Ok(())
    }
}

impl Light for Lights {
    async fn set(
        &self,
        ctx: Context,
        room: String,
        on: bool,
        by: String,
    ) -> Result<LightState, LightError> {
        self.check(&room)?;
        let _one = self.switching.lock().await;
        let mut state = self.load(&ctx, &room).await?;
        if state.on == on {
            return Ok(state);
        }
        state.on = on;
        state.by = if by.is_empty() { "unknown".into() } else { by };
        state.switches += 1;
        state.changed_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        ctx.host()
            .kv_set(&format!("light/{room}"), &state)
            .await
            .map_err(|e| LightError::Store(e.to_string()))?;
        if let Err(e) = self.publish(&ctx, &state).await {
            tracing::warn!(%room, error = %e, "light switched, but its state was not published");
        }
        tracing::info!(%room, on, by = %state.by, "light switched");
        Ok(state)
    }

    async fn state(&self, ctx: Context, room: String) -> Result<LightState, LightError> {
        self.check(&room)?;
        self.load(&ctx, &room).await
    }

    async fn list(&self, ctx: Context) -> Result<Vec<LightState>, LightError> {
        let mut all = Vec::with_capacity(self.rooms.len());
        for room in &self.rooms {
            all.push(self.load(&ctx, room).await?);
        }
        Ok(all)
    }
}

fn rooms() -> Vec<String> {
    let list = std::env::var("IGLU_LIGHTS_ROOMS").unwrap_or_else(|_| DEFAULT_ROOMS.to_owned());
    let mut rooms: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.len() <= 64 && !r.contains(['/', '+', '#']))
        .map(str::to_owned)
        .collect();
    rooms.sort();
    rooms.dedup();
    rooms
}

fn main() -> ExitCode {
    let lights = Arc::new(Lights {
        rooms: rooms(),
        switching: tokio::sync::Mutex::new(()),
    });
    let on_connect = lights.clone();
    let on_command = lights.clone();
    Plugin::new(Manifest {
        id: "lights".into(),
        name: "Lights".into(),
        author: "Iglu developers".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "The home's lights, one per room, behind iglu.light".into(),
    })
    .implement(LightInterface::server(lights))
    .on_connect(move |ctx| {
        let lights = on_connect.clone();
        async move { lights.announce(ctx).await }
    })
    .subscribe("home/+/light/set")
    .on_event(move |ctx: Context, event: Event| {
        let lights = on_command.clone();
        async move {
            // home/<room>/light/set
            let Some(room) = event.topic.split('/').nth(1).map(str::to_owned) else {
                return Ok(());
            };
            let command: Command = event.decode()?;
            let by = if command.reason.is_empty() {
                event.source.clone()
            } else {
                format!("{}: {}", event.source, command.reason)
            };
            lights.set(ctx, room, command.on, by).await?;
            Ok(())
        }
    })
    .serve()
}
