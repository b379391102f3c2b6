//! The link to the broker: connect, and on every CONNACK subscribe again
//! (rumqttc does not restore subscriptions after a reconnect, and a broker
//! that restarted has lost them), say `online`, publish the discovery
//! configs; read what comes in; on an error wait (doubling, up to
//! `reconnect_max_ms`) and try again. A second task publishes the outbox
//! while the link is up. Both stop on `stop`, after saying `offline`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use iglu_mqtt::loops::{is_own, HOST_PROPERTY};
use iglu_mqtt::MqttConfig;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PublishProperties, RetainForwardRule};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::sync::{mpsc, watch};

use crate::discovery::Discovery;
use crate::import::Raw;
use crate::options::qos;
use crate::outbox::{Outbox, Outgoing};
use crate::stats::Stats;

/// Requests (publications, subscriptions) queued inside rumqttc: small, the
/// outbox is the real queue.
const CLIENT_CHANNEL: usize = 256;

/// What the link needs.
pub struct Link {
    pub config: Arc<MqttConfig>,
    pub options: rumqttc::v5::MqttOptions,
    pub outbox: Arc<Outbox>,
    pub stats: Arc<Stats>,
    pub discovery: Option<Arc<Discovery>>,
    pub to_importer: mpsc::Sender<Raw>,
}

/// The broker subscriptions: the preset's, every import rule's, Home
/// Assistant's status; no-local (loop rule 1) and retain-as-published (so
/// an import rule can tell live retained publications from others).
fn filters(config: &MqttConfig, discovery: Option<&Discovery>) -> Vec<Filter> {
    let mut wanted: Vec<(String, u8)> = config
        .imports
        .iter()
        .map(|r| (r.from.clone(), r.qos.unwrap_or(config.qos)))
        .collect();
    if let Some(z) = &config.zigbee2mqtt {
        wanted.push((z.filter(), config.qos));
    }
    if let Some(d) = discovery {
        wanted.push((d.ha_status_topic().to_owned(), 1));
    }
    wanted.sort();
    // One subscription per filter, at the highest QoS asked for it.
    let mut merged: Vec<(String, u8)> = Vec::new();
    for (f, q) in wanted {
        match merged.last_mut() {
            Some((last, lq)) if *last == f => *lq = (*lq).max(q),
            _ => merged.push((f, q)),
        }
    }
    merged
        .into_iter()
        .map(|(path, q)| Filter {
            path,
            qos: qos(q),
            nolocal: true,
            preserve_retain: true,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        })
        .collect()
}

pub fn properties(host_id: &str) -> PublishProperties {
    PublishProperties {
        user_properties: vec![(HOST_PROPERTY.to_owned(), host_id.to_owned())],
        ..PublishProperties::default()
    }
}

impl Link {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (client, mut events) = AsyncClient::new(self.options.clone(), CLIENT_CHANNEL);
        let (connected_tx, connected) = watch::channel(false);
        let publisher = tokio::spawn(publish(
            client.clone(),
            self.outbox.clone(),
            self.stats.clone(),
            self.config.host_id().to_owned(),
            connected,
        ));
        let filters = filters(&self.config, self.discovery.as_deref());
        let host_id = self.config.host_id().to_owned();
        let mut backoff = Duration::from_millis(self.config.reconnect_initial_ms);
        let max_backoff = Duration::from_millis(self.config.reconnect_max_ms);
        let mut failures: u64 = 0;
        loop {
            let event = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                e = events.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(self.config.reconnect_initial_ms);
                    failures = 0;
                    Stats::bump(&self.stats.connects);
                    self.stats.set_error(None);
                    self.stats.connected.store(true, Ordering::Relaxed);
                    let _ = connected_tx.send(true);
                    tracing::info!(
                        broker = %self.config.url,
                        session_present = ack.session_present,
                        "connected to the MQTT broker"
                    );
                    // Asked for from a task of its own: the requests go
                    // through rumqttc's channel, which only this loop drains.
                    tokio::spawn(on_connected(
                        client.clone(),
                        filters.clone(),
                        self.config.clone(),
                        self.discovery.clone(),
                        self.outbox.clone(),
                    ));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let own = p
                        .properties
                        .as_ref()
                        .is_some_and(|props| is_own(&props.user_properties, &host_id));
                    if own {
                        Stats::bump(&self.stats.dropped_own);
                        continue;
                    }
                    let Ok(topic) = String::from_utf8(p.topic.to_vec()) else {
                        Stats::bump(&self.stats.skipped);
                        continue;
                    };
                    if let Some(d) = &self.discovery {
                        if topic == d.ha_status_topic() && &p.payload[..] == b"online" {
                            tracing::info!("Home Assistant is online: publishing discovery again");
                            for m in d.all() {
                                self.outbox.push(m);
                            }
                        }
                    }
                    let raw = Raw {
                        topic,
                        payload: p.payload,
                        retain: p.retain,
                    };
                    // Waits when the bus is slower than the broker: the
                    // broker then holds back (receive maximum), bounded.
                    if self.to_importer.send(raw).await.is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|c| !matches!(c, R::Success(_)))
                        .count();
                    if refused > 0 {
                        tracing::warn!(refused, codes = ?ack.return_codes, "the broker refused some subscriptions");
                    }
                }
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    tracing::warn!(reason = ?d.reason_code, "the broker disconnected us");
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.connected.store(false, Ordering::Relaxed);
                    let _ = connected_tx.send(false);
                    self.stats.set_error(Some(e.to_string()));
                    failures += 1;
                    // The first failure of an outage, then one line a minute or so.
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(broker = %self.config.url, error = %e, attempt = failures, retry_in_ms = backoff.as_millis() as u64, "MQTT broker unreachable; retrying");
                    }
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
        publisher.abort();
        if self.stats.connected.load(Ordering::Relaxed) {
            goodbye(&client, &mut events, &self.config).await;
        }
    }
}

/// What every new connection needs: subscriptions, `online`, discovery.
async fn on_connected(
    client: AsyncClient,
    filters: Vec<Filter>,
    config: Arc<MqttConfig>,
    discovery: Option<Arc<Discovery>>,
    outbox: Arc<Outbox>,
) {
    if !filters.is_empty() {
        if let Err(e) = client.subscribe_many(filters).await {
            tracing::warn!(error = %e, "could not subscribe");
        }
    }
    let online = client
        .publish_with_properties(
            config.status_topic(),
            qos(1),
            true,
            "online",
            properties(config.host_id()),
        )
        .await;
    if let Err(e) = online {
        tracing::warn!(error = %e, "could not say online");
    }
    if let Some(d) = discovery {
        for m in d.all() {
            outbox.push(m);
        }
    }
}

/// Publishes the outbox while connected.
async fn publish(
    client: AsyncClient,
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    host_id: String,
    mut connected: watch::Receiver<bool>,
) {
    loop {
        if connected.wait_for(|c| *c).await.is_err() {
            return;
        }
        let m: Outgoing = tokio::select! {
            m = outbox.pop() => m,
            _ = connected.wait_for(|c| !*c) => continue,
        };
        if !*connected.borrow() {
            outbox.unpop(m);
            continue;
        }
        let sent = client
            .publish_with_properties(
                m.topic.clone(),
                qos(m.qos),
                m.retain,
                m.payload.clone(),
                properties(&host_id),
            )
            .await;
        match sent {
            Ok(()) => Stats::bump(&stats.exported),
            Err(rumqttc::v5::ClientError::Request(_)) => {
                Stats::bump(&stats.skipped);
                tracing::warn!(topic = %m.topic, "not a valid MQTT topic; not exported");
            }
            Err(_) => return,
        }
    }
}

/// A clean end: `offline` (retained), then DISCONNECT, within a second or two.
async fn goodbye(client: &AsyncClient, events: &mut EventLoop, config: &MqttConfig) {
    let _ = client
        .publish_with_properties(
            config.status_topic(),
            qos(1),
            true,
            "offline",
            properties(config.host_id()),
        )
        .await;
    let _ = client.disconnect().await;
    let drain = async {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    tracing::info!("disconnected from the MQTT broker");
}
