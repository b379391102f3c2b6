//! Bus -> broker: every bus event the bridge is subscribed to, through the
//! export rules and the Zigbee2MQTT preset's commands, into the outbox.
//! Runs inside the event handler, so it never waits: the outbox is bounded
//! and drops its oldest.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iglu_mqtt::config::{ExportRule, PayloadFormat, Zigbee2MqttConfig};
use iglu_mqtt::mapping::TopicMap;
use iglu_mqtt::{payload, MqttConfig};
use iglu_sdk::Event;

use crate::discovery::Discovery;
use crate::outbox::{Outbox, Outgoing};
use crate::stats::Stats;
use crate::throttle::Throttle;

/// The export side's rules.
pub struct Exporter {
    /// This bridge's plugin id: events it published came from the broker
    /// and never go back (loop rule 3).
    own_id: String,
    rules: Vec<(ExportRule, TopicMap)>,
    z2m: Option<Zigbee2MqttConfig>,
    qos: u8,
    /// Largest packet the broker was told of: a bigger publication would
    /// fail in rumqttc and be sent again at every reconnect.
    max_packet: usize,
    discovery: Option<Arc<Discovery>>,
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    throttle: Mutex<Throttle>,
}

impl Exporter {
    pub fn new(
        config: &MqttConfig,
        discovery: Option<Arc<Discovery>>,
        outbox: Arc<Outbox>,
        stats: Arc<Stats>,
    ) -> Exporter {
        Exporter {
            own_id: config.plugin_id.clone(),
            rules: config
                .exports
                .iter()
                .filter_map(|r| TopicMap::new(&r.from, &r.to).ok().map(|m| (r.clone(), m)))
                .collect(),
            z2m: config.zigbee2mqtt.clone(),
            qos: config.qos,
            max_packet: config.max_packet_bytes,
            discovery,
            outbox,
            stats,
            throttle: Mutex::new(Throttle::new(Duration::from_secs(10))),
        }
    }

    /// The bus filters to subscribe to.
    pub fn filters(&self) -> Vec<String> {
        let mut f: Vec<String> = self.rules.iter().map(|(r, _)| r.from.clone()).collect();
        if let Some(z) = &self.z2m {
            f.push(z.command_filter());
        }
        if self.discovery.is_some() {
            f.push(crate::discovery::LIFECYCLE_FILTER.to_owned());
        }
        f.sort();
        f.dedup();
        f
    }

    /// Takes one bus event.
    pub fn offer(&self, event: &Event) {
        if event.source == self.own_id {
            return;
        }
        if let Some(d) = &self.discovery {
            for m in d.on_bus_event(event) {
                self.queue(m);
            }
        }
        for (rule, map) in &self.rules {
            let Some(topic) = map.apply(&event.topic) else {
                continue;
            };
            // A replay of the bus's retained state goes out only as state.
            if event.retained && !rule.retain {
                continue;
            }
            self.convert(
                event,
                topic,
                rule.payload,
                rule.qos.unwrap_or(self.qos),
                rule.retain,
            );
        }
        if let Some(z) = &self.z2m {
            if let Some(topic) = z.command(&event.topic) {
                // Commands are never replayed: a retained `set` on the bus
                // must not switch a lamp each time the bridge restarts.
                if !event.retained {
                    self.convert(event, topic, PayloadFormat::Json, self.qos, false);
                }
            }
        }
    }

    fn convert(&self, event: &Event, topic: String, format: PayloadFormat, qos: u8, retain: bool) {
        match payload::to_mqtt(format, &event.payload) {
            Ok(bytes) => self.queue(Outgoing {
                topic,
                payload: Bytes::from(bytes),
                qos,
                retain,
            }),
            Err(e) => {
                Stats::bump(&self.stats.skipped);
                let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(held) = t.allow(Instant::now()) {
                    tracing::warn!(topic = %event.topic, reason = %e, more_skipped = held, "not exporting a bus event");
                }
            }
        }
    }

    fn queue(&self, m: Outgoing) {
        // The PUBLISH header and our user property, generously.
        let size = m.payload.len() + m.topic.len() + 128;
        if size > self.max_packet {
            Stats::bump(&self.stats.skipped);
            let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(held) = t.allow(Instant::now()) {
                tracing::warn!(topic = %m.topic, bytes = size, max_packet_bytes = self.max_packet, more_skipped = held, "not exporting a publication bigger than max_packet_bytes");
            }
            return;
        }
        let dropped = self.outbox.push(m);
        if dropped > 0 {
            self.stats
                .dropped_offline
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
