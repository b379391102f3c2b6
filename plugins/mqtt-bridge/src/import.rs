//! Broker -> bus: each broker message through the Zigbee2MQTT preset and
//! every matching import rule, then published on the bus, pipelined (up
//! to [`IN_FLIGHT`] host calls at once) and in the broker's order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use iglu_mqtt::config::{ImportRule, PayloadFormat, RetainImport, Zigbee2MqttConfig};
use iglu_mqtt::mapping::TopicMap;
use iglu_mqtt::zigbee2mqtt::{availability, availability_payload, Incoming};
use iglu_mqtt::{payload, MqttConfig};
use iglu_sdk::{CallError, HostClient};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, watch};

use crate::stats::Stats;
use crate::throttle::Throttle;

/// Host calls in flight at once: enough to hide the round trip, far below
/// the SDK's own bound (4,096).
const IN_FLIGHT: usize = 128;

/// A message as it came from the broker.
pub struct Raw {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    /// The packet, to acknowledge once the message is on the bus.
    pub ack: rumqttc::v5::mqttbytes::v5::Publish,
    /// The connection it came on (`connects` then): an acknowledgement
    /// belongs to that connection only.
    pub connection: u64,
}

/// One bus publication.
#[derive(Debug, PartialEq)]
pub struct BusPublish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The import side's rules.
pub struct Importer {
    rules: Vec<(ImportRule, TopicMap)>,
    z2m: Option<Zigbee2MqttConfig>,
    stats: Arc<Stats>,
    throttle: Throttle,
}

impl Importer {
    pub fn new(config: &MqttConfig, stats: Arc<Stats>) -> Importer {
        let rules = config
            .imports
            .iter()
            .filter_map(|r| TopicMap::new(&r.from, &r.to).ok().map(|m| (r.clone(), m)))
            .collect();
        Importer {
            rules,
            z2m: config.zigbee2mqtt.clone(),
            stats,
            throttle: Throttle::new(Duration::from_secs(10)),
        }
    }

    /// Logs (rate-limited) and counts a message that cannot cross.
    fn skip(&mut self, topic: &str, why: &str) {
        Stats::bump(&self.stats.skipped);
        if let Some(held) = self.throttle.allow(Instant::now()) {
            tracing::warn!(
                topic,
                reason = why,
                more_skipped = held,
                "skipping a broker message"
            );
        }
    }

    /// The bus publications one broker message makes (none if it matches
    /// nothing or does not fit).
    pub fn map(&mut self, raw: &Raw) -> Vec<BusPublish> {
        let mut out = Vec::new();
        if let Some(z) = self.z2m.clone() {
            self.zigbee2mqtt(&z, raw, &mut out);
        }
        for i in 0..self.rules.len() {
            let (rule, map) = &self.rules[i];
            let Some(topic) = map.apply(&raw.topic) else {
                continue;
            };
            let retain = match rule.retain {
                RetainImport::AsPublished => raw.retain,
                RetainImport::Always => true,
                RetainImport::Never => false,
            };
            match payload::to_bus(rule.payload, &raw.payload) {
                Ok(payload) => out.push(BusPublish {
                    topic,
                    payload,
                    retain,
                }),
                Err(e) => {
                    let why = e.to_string();
                    self.skip(&raw.topic, &why);
                }
            }
        }
        out.retain(|p| match iglu_bus::topic::validate_topic(&p.topic) {
            Ok(()) => true,
            Err(e) => {
                Stats::bump(&self.stats.skipped);
                tracing::warn!(topic = %p.topic, reason = %e, "skipping a broker message: the bus refuses its topic");
                false
            }
        });
        out
    }

    fn zigbee2mqtt(&mut self, z: &Zigbee2MqttConfig, raw: &Raw, out: &mut Vec<BusPublish>) {
        let state = |topic: String, word: &str| BusPublish {
            topic,
            payload: availability_payload(word),
            retain: true,
        };
        match z.classify(&raw.topic) {
            Incoming::State(name) => match payload::to_bus(PayloadFormat::Json, &raw.payload) {
                Ok(payload) => out.push(BusPublish {
                    topic: z.state_topic(name),
                    payload,
                    retain: true,
                }),
                Err(e) => self.skip(&raw.topic, &format!("device state {e}")),
            },
            Incoming::Availability(name) => match availability(&raw.payload) {
                Some(word) => out.push(state(z.availability_topic(name), word)),
                None if raw.payload.is_empty() => {}
                None => self.skip(
                    &raw.topic,
                    "availability is neither online/offline nor {\"state\": ...}",
                ),
            },
            Incoming::BridgeState => match availability(&raw.payload) {
                Some(word) => out.push(state(z.bridge_state_topic(), word)),
                None => self.skip(
                    &raw.topic,
                    "bridge state is neither online/offline nor {\"state\": ...}",
                ),
            },
            Incoming::Other => {}
        }
    }
}

/// Publishes what comes from the broker, in order, until the link's
/// sender is dropped, and acknowledges each message to the broker once all
/// it made is on the bus (MQTT wants acknowledgements in the order the
/// messages came, so a message that made nothing waits its turn too).
pub async fn run(
    mut importer: Importer,
    mut from_broker: mpsc::Receiver<Raw>,
    mut host: watch::Receiver<Option<HostClient>>,
    client: rumqttc::v5::AsyncClient,
) {
    type Ack = Option<(rumqttc::v5::mqttbytes::v5::Publish, u64)>;
    type Done = BoxFuture<'static, (Result<bool, (String, CallError)>, Ack)>;
    let stats = importer.stats.clone();
    // Each: whether it published (or only waits to acknowledge), and the
    // acknowledgement it carries.
    let mut inflight: FuturesOrdered<Done> = FuturesOrdered::new();
    let mut throttle = Throttle::new(Duration::from_secs(10));
    let done = |outcome: Result<bool, (String, CallError)>, ack: Ack, throttle: &mut Throttle| {
        match outcome {
            Ok(true) => Stats::bump(&stats.imported),
            Ok(false) => {}
            Err((topic, e)) => {
                Stats::bump(&stats.skipped);
                if let Some(held) = throttle.allow(Instant::now()) {
                    tracing::warn!(%topic, error = %e, more_refused = held, "the host refused an imported event");
                }
            }
        }
        if let Some((publish, connection)) = ack {
            if connection == stats.connects.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.try_ack(&publish);
            }
        }
    };
    loop {
        tokio::select! {
            biased;
            Some((outcome, ack)) = inflight.next(), if !inflight.is_empty() => {
                done(outcome, ack, &mut throttle);
            }
            raw = from_broker.recv(), if inflight.len() < IN_FLIGHT => {
                let Some(raw) = raw else { break };
                let publications = importer.map(&raw);
                let ack: Ack = Some((raw.ack, raw.connection));
                if publications.is_empty() {
                    inflight.push_back(Box::pin(async move { (Ok(false), ack) }));
                    continue;
                }
                let client = match host.wait_for(Option::is_some).await {
                    Ok(c) => c.clone(),
                    Err(_) => break,
                };
                let Some(client) = client else { break };
                let last = publications.len() - 1;
                let mut ack = ack;
                for (i, p) in publications.into_iter().enumerate() {
                    let client = client.clone();
                    let ack = if i == last { ack.take() } else { None };
                    inflight.push_back(Box::pin(async move {
                        let outcome = client
                            .api()
                            .events_publish(p.topic.clone(), ByteBuf::from(p.payload), p.retain)
                            .await
                            .map(|_| ())
                            .map_err(|e| (p.topic, e));
                        (outcome.map(|()| true), ack)
                    }));
                }
            }
        }
    }
    while let Some((outcome, ack)) = inflight.next().await {
        done(outcome, ack, &mut throttle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn importer(toml_rules: serde_json::Value) -> Importer {
        let mut config: MqttConfig = serde_json::from_value(toml_rules).expect("config");
        config.resolve("test").expect("valid");
        Importer::new(&config, Arc::default())
    }

    fn raw(topic: &str, payload: &[u8], retain: bool) -> Raw {
        let payload = Bytes::copy_from_slice(payload);
        Raw {
            topic: topic.into(),
            payload: payload.clone(),
            retain,
            ack: rumqttc::v5::mqttbytes::v5::Publish::new(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                payload,
                None,
            ),
            connection: 1,
        }
    }

    #[test]
    fn zigbee2mqtt_state_availability_and_bridge() {
        let mut i = importer(serde_json::json!({"url": "mqtt://x", "zigbee2mqtt": {}}));
        let p = i.map(&raw(
            "zigbee2mqtt/kitchen/light",
            br#"{"state":"ON"}"#,
            false,
        ));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].topic, "home/kitchen/light/state");
        assert!(p[0].retain);
        let online = availability_payload("online");
        for payload in [&b"online"[..], br#"{"state":"online"}"#] {
            let p = i.map(&raw("zigbee2mqtt/lamp/availability", payload, true));
            assert_eq!(p[0].topic, "home/lamp/availability");
            assert_eq!(p[0].payload, online);
            let p = i.map(&raw("zigbee2mqtt/bridge/state", payload, true));
            assert_eq!(p[0].topic, "home/bridge/state");
            assert_eq!(p[0].payload, online);
        }
        assert!(i.map(&raw("zigbee2mqtt/lamp/set", b"{}", false)).is_empty());
        assert!(i
            .map(&raw("zigbee2mqtt/lamp", b"{broken", false))
            .is_empty());
        assert_eq!(
            i.stats.skipped.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn rules_map_topics_payloads_and_retain() {
        let mut i = importer(serde_json::json!({"url": "mqtt://x", "import": [
            {"from": "sensors/+/temp", "to": "home/+/temperature"},
            {"from": "raw/#", "to": "home/raw/#", "payload": "text", "retain": "never"},
        ]}));
        let p = i.map(&raw("sensors/attic/temp", b"21.5", true));
        assert_eq!(p[0].topic, "home/attic/temperature");
        assert!(p[0].retain, "as published");
        assert_eq!(p[0].payload, rmp_serde::to_vec(&21.5f64).expect("f64"));
        let p = i.map(&raw("raw/a/b", b"hello", true));
        assert_eq!(p[0].topic, "home/raw/a/b");
        assert!(!p[0].retain);
        assert!(i.map(&raw("elsewhere", b"1", false)).is_empty());
    }
}
