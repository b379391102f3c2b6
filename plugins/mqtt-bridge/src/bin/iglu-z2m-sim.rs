//! A simulated Zigbee2MQTT for the compose demo: a motion sensor, a
//! thermometer and a bulb (`<room>/bulb`) per room, published the way Zigbee2MQTT does
//! (`zigbee2mqtt/<room>/<device>` JSON state, `/availability` and
//! `bridge/state` as `{"state": ...}`, retained; a bulb takes `/set`).
//!
//! Environment: `MQTT_HOST` (default `mosquitto`), `MQTT_PORT` (1883),
//! `ROOMS` (`kitchen,living_room,bedroom,hallway`), `INTERVAL_MS` (1000).

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};

const BASE: &str = "zigbee2mqtt";

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let host = env("MQTT_HOST", "mosquitto");
    let port: u16 = env("MQTT_PORT", "1883").parse().unwrap_or(1883);
    let rooms: Vec<String> = env("ROOMS", "kitchen,living_room,bedroom,hallway")
        .split(',')
        .map(str::to_owned)
        .collect();
    let interval = Duration::from_millis(env("INTERVAL_MS", "1000").parse().unwrap_or(1000));
    let mut options = MqttOptions::new("zigbee2mqtt-sim", host, port);
    options.set_keep_alive(Duration::from_secs(10));
    let offline = json!({"state": "offline"}).to_string();
    options.set_last_will(LastWill::new(
        format!("{BASE}/bridge/state"),
        offline,
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let (client, mut events) = AsyncClient::new(options, 256);
    let publisher = client.clone();
    let devices = rooms.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let room = &devices[(n as usize) % devices.len()];
            let occupancy = n.is_multiple_of(3);
            let temperature = 19.0 + ((n * 7) % 50) as f64 / 10.0;
            let linkquality = 80 + (n % 100);
            let states = [
                (
                    format!("{room}/motion"),
                    json!({"occupancy": occupancy, "battery": 97, "linkquality": linkquality}),
                ),
                (
                    format!("{room}/thermometer"),
                    json!({"temperature": temperature, "humidity": 45, "linkquality": linkquality}),
                ),
            ];
            for (device, state) in states {
                let _ = publisher
                    .publish(
                        format!("{BASE}/{device}"),
                        QoS::AtLeastOnce,
                        true,
                        state.to_string(),
                    )
                    .await;
            }
            n += 1;
        }
    });
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                eprintln!("zigbee2mqtt-sim: connected");
                let online = json!({"state": "online"}).to_string();
                let _ = client
                    .publish(
                        format!("{BASE}/bridge/state"),
                        QoS::AtLeastOnce,
                        true,
                        online.clone(),
                    )
                    .await;
                for room in &rooms {
                    for device in ["motion", "thermometer", "bulb"] {
                        let _ = client
                            .publish(
                                format!("{BASE}/{room}/{device}/availability"),
                                QoS::AtLeastOnce,
                                true,
                                online.clone(),
                            )
                            .await;
                    }
                }
                let _ = client
                    .subscribe(format!("{BASE}/+/bulb/set"), QoS::AtLeastOnce)
                    .await;
            }
            // A bulb does what it is told and says so, as Zigbee2MQTT does.
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = String::from_utf8_lossy(&p.topic).to_string();
                let Some(bulb) = topic.strip_suffix("/set") else {
                    continue;
                };
                let mut state: Value = serde_json::from_slice(&p.payload).unwrap_or(json!({}));
                if let Some(map) = state.as_object_mut() {
                    map.insert("linkquality".into(), json!(120));
                }
                let _ = client
                    .publish(bulb.to_owned(), QoS::AtLeastOnce, true, state.to_string())
                    .await;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("zigbee2mqtt-sim: {e}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
