//! The link to the broker, one loop over rumqttc's event loop:
//!
//! - on every CONNACK: subscribe again (rumqttc does not restore
//!   subscriptions, and a broker that restarted has lost them), with the
//!   broker's retained messages sent again only on a new session (on a
//!   resumed one they were delivered already, and a replay would look like
//!   new device events); say `online`; queue the discovery configs;
//! - publications from the outbox, at most [`WINDOW`] unacknowledged, each
//!   kept until the broker's PUBACK: on a new session (a broker restarted
//!   without persistence forgets what it had not acknowledged, and rumqttc
//!   drops its pending copies) they go back to the front of the outbox;
//! - what comes in goes to the importer, which acknowledges each message
//!   once it is on the bus (manual acks: a message the bridge lost before
//!   that is sent again by the broker);
//! - on an error, wait (doubling, up to `reconnect_max_ms`) and try again;
//! - on `stop`, `offline` and DISCONNECT, within a bounded time.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Requests (publications, acknowledgements, subscriptions) queued inside
/// rumqttc: the outbox is the real queue.
pub const CLIENT_CHANNEL: usize = 512;

/// Publications sent and not yet acknowledged by the broker.
const WINDOW: usize = 64;

/// A connection must stay up this long for the backoff to start again from
/// its first step (two clients with one id throw each other off at once,
/// and must not do it twice a second forever).
const STABLE: Duration = Duration::from_secs(10);

/// How long a clean stop may take to say `offline` and disconnect.
const GOODBYE: Duration = Duration::from_secs(2);

/// What the link needs.
pub struct Link {
    pub config: Arc<MqttConfig>,
    pub client: AsyncClient,
    pub events: EventLoop,
    pub outbox: Arc<Outbox>,
    pub stats: Arc<Stats>,
    pub discovery: Option<Arc<Discovery>>,
    pub to_importer: mpsc::Sender<Raw>,
}

/// The broker subscriptions: the preset's, every import rule's, Home
/// Assistant's status; no-local (loop rule 1) and retain-as-published (so
/// an import rule can tell live retained publications from others).
fn filters(config: &MqttConfig, discovery: Option<&Discovery>, new_session: bool) -> Vec<Filter> {
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
            retain_forward_rule: if new_session {
                RetainForwardRule::OnEverySubscribe
            } else {
                RetainForwardRule::OnNewSubscribe
            },
        })
        .collect()
}

pub fn properties(host_id: &str) -> PublishProperties {
    PublishProperties {
        user_properties: vec![(HOST_PROPERTY.to_owned(), host_id.to_owned())],
        ..PublishProperties::default()
    }
}

/// A publication handed to rumqttc, until the broker has it.
struct Unacked {
    /// The packet id rumqttc gave it (`None` until it was written).
    pkid: Option<u16>,
    message: Outgoing,
}

/// The state of the loop.
struct Flight {
    unacked: VecDeque<Unacked>,
}

impl Flight {
    /// rumqttc wrote a publication: the oldest not yet written is it
    /// (rumqttc sends requests in order); a pkid already held is a resend.
    fn written(&mut self, pkid: u16, stats: &Stats) {
        if pkid != 0 && self.unacked.iter().any(|u| u.pkid == Some(pkid)) {
            return;
        }
        if let Some(i) = self.unacked.iter().position(|u| u.pkid.is_none()) {
            if pkid == 0 {
                // QoS 0: written is all it gets.
                self.unacked.remove(i);
                Stats::bump(&stats.exported);
            } else {
                self.unacked[i].pkid = Some(pkid);
            }
        }
    }

    /// The broker has it.
    fn acked(&mut self, pkid: u16, stats: &Stats) {
        if let Some(i) = self.unacked.iter().position(|u| u.pkid == Some(pkid)) {
            self.unacked.remove(i);
            Stats::bump(&stats.exported);
        }
    }

    /// A new session: nothing unacknowledged will be sent by rumqttc any
    /// more; it all goes back to the front of the outbox, in order.
    fn requeue(&mut self, outbox: &Outbox) {
        while let Some(u) = self.unacked.pop_back() {
            outbox.unpop(u.message);
        }
    }
}

impl Link {
    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let client = self.client.clone();
        let host_id = self.config.host_id().to_owned();
        let initial = Duration::from_millis(self.config.reconnect_initial_ms);
        let max_backoff = Duration::from_millis(self.config.reconnect_max_ms);
        let mut backoff = initial;
        let mut failures: u64 = 0;
        let mut connected_at: Option<Instant> = None;
        let mut flight = Flight {
            unacked: VecDeque::new(),
        };
        loop {
            let connected = self.stats.connected.load(Ordering::Relaxed);
            let room = flight.unacked.len() < WINDOW;
            let event = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                m = self.outbox.pop(), if connected && room => {
                    if m.topic.is_empty() || m.topic.contains(['+', '#']) {
                        Stats::bump(&self.stats.skipped);
                        tracing::warn!(topic = %m.topic, "not a valid MQTT topic; not exported");
                        continue;
                    }
                    let sent = client.try_publish_with_properties(
                        m.topic.clone(),
                        qos(m.qos),
                        m.retain,
                        m.payload.clone(),
                        properties(&host_id),
                    );
                    match sent {
                        Ok(()) => flight.unacked.push_back(Unacked { pkid: None, message: m }),
                        Err(_) => {
                            // rumqttc's channel is full (the topic was
                            // checked): later, in order.
                            self.outbox.unpop(m);
                            tokio::task::yield_now().await;
                        }
                    }
                    continue;
                }
                e = self.events.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if connected_at.is_none_or(|t| t.elapsed() >= STABLE) || failures == 0 {
                        backoff = initial;
                    }
                    failures = 0;
                    connected_at = Some(Instant::now());
                    Stats::bump(&self.stats.connects);
                    self.stats.set_error(None);
                    let new_session = !ack.session_present;
                    if new_session {
                        flight.requeue(&self.outbox);
                    }
                    tracing::info!(
                        broker = %self.config.url,
                        session_present = ack.session_present,
                        "connected to the MQTT broker"
                    );
                    let subscriptions =
                        filters(&self.config, self.discovery.as_deref(), new_session);
                    if !subscriptions.is_empty() {
                        if let Err(e) = client.try_subscribe_many(subscriptions) {
                            tracing::warn!(error = %e, "could not subscribe");
                        }
                    }
                    // `online` first, then the discovery configs, through
                    // the outbox like everything else (so acknowledged).
                    if let Some(d) = &self.discovery {
                        for m in d.all().into_iter().rev() {
                            self.outbox.unpop(m);
                        }
                    }
                    self.outbox.unpop(Outgoing {
                        topic: self.config.status_topic(),
                        payload: bytes::Bytes::from_static(b"online"),
                        qos: 1,
                        retain: true,
                    });
                    self.stats.connected.store(true, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                    flight.written(pkid, &self.stats)
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => flight.acked(ack.pkid, &self.stats),
                Ok(Event::Incoming(Packet::PubComp(comp))) => flight.acked(comp.pkid, &self.stats),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let own = p
                        .properties
                        .as_ref()
                        .is_some_and(|props| is_own(&props.user_properties, &host_id));
                    if own {
                        Stats::bump(&self.stats.dropped_own);
                        let _ = client.try_ack(&p);
                        continue;
                    }
                    let Ok(topic) = String::from_utf8(p.topic.to_vec()) else {
                        Stats::bump(&self.stats.skipped);
                        let _ = client.try_ack(&p);
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
                        payload: p.payload.clone(),
                        retain: p.retain,
                        ack: p,
                        connection: self.stats.connects.load(Ordering::Relaxed),
                    };
                    // Waits when the bus is slower than the broker (bounded
                    // by the broker's flow control and TCP's), but never
                    // past a stop.
                    tokio::select! {
                        sent = self.to_importer.send(raw) => if sent.is_err() { break },
                        _ = stop.wait_for(|s| *s) => break,
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
                    self.stats.set_error(Some(e.to_string()));
                    failures += 1;
                    // The first failure of an outage, then fewer and fewer.
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
        if self.stats.connected.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(GOODBYE, goodbye(&client, &mut self.events, &self.config))
                .await;
        }
    }
}

/// A clean end: `offline` (retained), then DISCONNECT. Requests go in
/// without waiting (a full channel loses the goodbye, not the stop), and
/// the event loop is driven until the DISCONNECT is out.
async fn goodbye(client: &AsyncClient, events: &mut EventLoop, config: &MqttConfig) {
    let _ = client.try_publish_with_properties(
        config.status_topic(),
        qos(1),
        true,
        "offline",
        properties(config.host_id()),
    );
    let _ = client.try_disconnect();
    loop {
        match events.poll().await {
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    tracing::info!("disconnected from the MQTT broker");
}
