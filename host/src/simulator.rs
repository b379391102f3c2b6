//! The demo home's devices, simulated inside the host.
//!
//! Every `interval_ms` one room reports motion and its temperature drifts.
//! The lights are a plugin of their own (`lights`, the `iglu.light`
//! interface), which publishes their state on `home/<room>/light/state`; the
//! `automation` plugin closes the loop motion -> typed call to `lights` ->
//! light state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use crate::events::{payload, Source};
use crate::shared::Shared;

#[derive(Serialize)]
struct Motion {
    detected: bool,
}

#[derive(Serialize)]
struct Temperature {
    celsius: f64,
}

/// Runs until the host shuts down.
pub async fn run(shared: Arc<Shared>) {
    let rooms = shared.config.simulator.rooms.clone();
    if rooms.is_empty() {
        return;
    }
    let mut temperature: HashMap<String, f64> = rooms.iter().map(|r| (r.clone(), 20.0)).collect();
    let mut tick =
        tokio::time::interval(Duration::from_millis(shared.config.simulator.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tick.tick() => {
                let (room, detected, celsius) = {
                    let mut rng = rand::thread_rng();
                    let room = rooms[rng.gen_range(0..rooms.len())].clone();
                    let t = temperature.entry(room.clone()).or_insert(20.0);
                    *t = (*t + rng.gen_range(-0.4..0.4)).clamp(15.0, 26.0);
                    (room, rng.gen_bool(0.6), (*t * 10.0).round() / 10.0)
                };
                emit(&shared, &format!("home/{room}/motion"), &Motion { detected }, false);
                emit(&shared, &format!("home/{room}/temperature"), &Temperature { celsius }, true);
            }
        }
    }
}

fn emit<T: Serialize>(shared: &Shared, topic: &str, value: &T, retain: bool) {
    let result = payload(value).and_then(|p| shared.events.publish(Source::Host, topic, p, retain));
    if let Err(e) = result {
        tracing::warn!(%topic, error = %e, "simulator could not publish");
    }
}
