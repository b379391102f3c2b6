//! Automation: motion turns a room's light on; a quiet room turns it off.
//!
//! It listens on `home/+/motion` and switches lights through the `lights`
//! plugin's `iglu.light` interface, with the typed `LightClient` (a
//! plugin-to-plugin call through the host; the config must allow it with
//! `calls = ["lights"]`). Its rule state (per room: when the light was
//! switched on, how many times) lives in the host's key-value store, so a
//! crash or a restart forgets nothing.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use iglu_interfaces::light::LightClient;
use iglu_sdk::{Context, Event, HandlerError, Manifest, Plugin};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// A lit room with no motion for this long goes dark, unless set otherwise.
const DEFAULT_OFF_AFTER_MS: u64 = 10_000;
/// The plugin that drives the lights.
const LIGHTS: &str = "lights";

#[derive(Deserialize)]
struct Motion {
    /// `occupancy` is what a Zigbee2MQTT motion sensor says (through the
    /// MQTT bridge).
    #[serde(alias = "occupancy")]
    detected: bool,
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct RoomRule {
    room: String,
    /// Times motion switched the light on.
    activations: u64,
    /// When the light was last switched on by motion (ms since epoch), if it is on.
    lit_since_ms: Option<u64>,
    /// Last motion seen (ms since epoch).
    last_motion_ms: Option<u64>,
}

#[derive(Deserialize)]
struct OffAfter {
    seconds: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn off_after(ctx: &Context) -> Result<u64, HandlerError> {
    Ok(ctx
        .host()
        .kv_get("off_after_ms")
        .await?
        .unwrap_or(DEFAULT_OFF_AFTER_MS))
}

async fn on_motion(ctx: Context, event: Event) -> Result<(), HandlerError> {
    // home/<room>/motion
    let Some(room) = event.topic.split('/').nth(1).map(str::to_owned) else {
        return Ok(());
    };
    let motion: Motion = event.decode()?;
    let key = format!("rule/{room}");
    let mut rule: RoomRule = ctx.host().kv_get(&key).await?.unwrap_or(RoomRule {
        room: room.clone(),
        ..RoomRule::default()
    });
    let now = now_ms();
    let lights = LightClient::new(ctx.host().clone(), LIGHTS);
    if motion.detected {
        rule.last_motion_ms = Some(now);
        if rule.lit_since_ms.is_none() && !event.retained {
            rule.lit_since_ms = Some(now);
            rule.activations += 1;
            lights
                .set(room.clone(), true, "automation: motion".into())
                .await?;
            tracing::info!(%room, activations = rule.activations, "motion: light on");
        }
    } else if let Some(lit) = rule.lit_since_ms {
        let quiet_since = rule.last_motion_ms.unwrap_or(lit);
        if now.saturating_sub(quiet_since) >= off_after(&ctx).await? {
            rule.lit_since_ms = None;
            lights
                .set(room.clone(), false, "automation: no motion".into())
                .await?;
            tracing::info!(%room, "quiet: light off");
        }
    }
    ctx.host().kv_set(&key, &rule).await?;
    let mut rooms: Vec<String> = ctx.host().kv_get("rooms").await?.unwrap_or_default();
    if !rooms.contains(&room) {
        rooms.push(room);
        rooms.sort();
        ctx.host().kv_set("rooms", &rooms).await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    Plugin::new(Manifest {
        id: "automation".into(),
        name: "Automation".into(),
        author: "Iglu developers".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Motion turns lights on; quiet turns them off".into(),
    })
    .subscribe("home/+/motion")
    .on_event(on_motion)
    .method("rules", |ctx: Context, _: IgnoredAny| async move {
        let rooms: Vec<String> = ctx.host().kv_get("rooms").await?.unwrap_or_default();
        let mut rules = Vec::new();
        for room in rooms {
            if let Some(rule) = ctx
                .host()
                .kv_get::<RoomRule>(&format!("rule/{room}"))
                .await?
            {
                rules.push(rule);
            }
        }
        Ok::<_, HandlerError>(rules)
    })
    .method("set_off_after", |ctx: Context, args: OffAfter| async move {
        ctx.host()
            .kv_set("off_after_ms", &(args.seconds * 1000))
            .await?;
        Ok::<_, HandlerError>(args.seconds)
    })
    .serve()
}
