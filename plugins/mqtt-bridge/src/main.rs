//! The MQTT bridge: Iglu's event bus and an MQTT broker, both ways.
//!
//! The host starts it from `[mqtt]` (checked there, handed over as JSON in
//! `IGLU_MQTT_CONFIG`), as a supervised plugin: a broker client that fails
//! is restarted like any plugin, and the host keeps serving.
//!
//! - [`options`]: the broker connection's options (TLS, login, last will);
//! - [`link`]: the connection loop (reconnects with backoff, resubscribes
//!   on every CONNACK, says online/offline) and the outbox's publisher;
//! - [`import`]: broker -> bus, pipelined and in order;
//! - [`export`]: bus -> broker, through the bounded [`outbox`];
//! - [`discovery`]: Home Assistant's discovery configs;
//! - [`stats`]: counters, reported to the host for `iglu status`.
//!
//! The MQTT side runs on a runtime of its own, so that it outlives the
//! plugin's link to the host long enough to say `offline` and disconnect.

mod discovery;
mod export;
mod import;
mod link;
mod options;
mod outbox;
mod stats;
mod throttle;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use iglu_mqtt::MqttConfig;
use iglu_sdk::{Context, HandlerError, HostClient, Manifest, Plugin};
use serde::de::IgnoredAny;
use tokio::sync::{mpsc, watch};

/// Broker messages waiting for the importer; past it the link waits, and
/// the broker holds back.
const IMPORT_QUEUE: usize = 4096;

/// How often the bridge tells the host its state, at most (and only when
/// something changed).
const REPORT_EVERY: Duration = Duration::from_millis(500);

fn load() -> Result<MqttConfig, String> {
    let text = std::env::var(iglu_mqtt::config::ENV).map_err(|_| {
        format!(
            "{} is not set: the host starts this plugin from the [mqtt] section of its config",
            iglu_mqtt::config::ENV
        )
    })?;
    let mut config: MqttConfig =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", iglu_mqtt::config::ENV))?;
    let host_id = config.host_id().to_owned();
    config.resolve(&host_id).map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() -> ExitCode {
    let config = match load() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("iglu-plugin-mqtt-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let options = match options::build(&config) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("iglu-plugin-mqtt-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let stats = Arc::new(stats::Stats::default());
    let outbox = Arc::new(outbox::Outbox::new(
        config.offline_queue,
        config.offline_queue_bytes,
    ));
    let discovery = discovery::Discovery::new(&config).map(Arc::new);
    let exporter = Arc::new(export::Exporter::new(
        &config,
        discovery.clone(),
        outbox.clone(),
        stats.clone(),
    ));
    let (host_tx, host_rx) = watch::channel::<Option<HostClient>>(None);
    let (stop_tx, stop_rx) = watch::channel(false);

    let mqtt = {
        let (config, stats, outbox) = (config.clone(), stats.clone(), outbox.clone());
        std::thread::Builder::new()
            .name("iglu-mqtt".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the MQTT runtime");
                        return;
                    }
                };
                runtime.block_on(run_mqtt(
                    config, options, stats, outbox, discovery, host_rx, stop_rx,
                ));
            })
    };
    let mqtt = match mqtt {
        Ok(t) => t,
        Err(e) => {
            eprintln!("iglu-plugin-mqtt-bridge: cannot start its thread: {e}");
            return ExitCode::from(1);
        }
    };

    let mut plugin = Plugin::new(Manifest {
        id: config.plugin_id.clone(),
        name: "MQTT bridge".into(),
        author: "Iglu developers".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: format!("Bridges the event bus and {}", config.url),
    });
    for f in exporter.filters() {
        plugin = plugin.subscribe(&f);
    }
    let on_event = exporter.clone();
    let (status_stats, status_outbox, status_config) =
        (stats.clone(), outbox.clone(), config.clone());
    let plugin = plugin
        .event_window(1024)
        .on_connect(move |ctx: Context| {
            let _ = host_tx.send(Some(ctx.host().clone()));
            async { Ok(()) }
        })
        .on_event(move |_ctx, event| {
            on_event.offer(&event);
            async { Ok(()) }
        })
        .method("status", move |_ctx: Context, _: IgnoredAny| {
            let s = status_stats.snapshot(
                &status_config.url,
                status_config.client_id.as_deref().unwrap_or(""),
                status_outbox.len(),
            );
            async move { Ok::<_, HandlerError>(s) }
        });
    let outcome = plugin.run();
    let _ = stop_tx.send(true);
    let _ = mqtt.join();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iglu-plugin-mqtt-bridge: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The MQTT side: the link, the importer and the reporter, until `stop`.
async fn run_mqtt(
    config: Arc<MqttConfig>,
    options: rumqttc::v5::MqttOptions,
    stats: Arc<stats::Stats>,
    outbox: Arc<outbox::Outbox>,
    discovery: Option<Arc<discovery::Discovery>>,
    host: watch::Receiver<Option<HostClient>>,
    stop: watch::Receiver<bool>,
) {
    let (to_importer, from_broker) = mpsc::channel(IMPORT_QUEUE);
    let (client, events) = rumqttc::v5::AsyncClient::new(options, link::CLIENT_CHANNEL);
    let importer = import::Importer::new(&config, stats.clone());
    let importing = tokio::spawn(import::run(
        importer,
        from_broker,
        host.clone(),
        client.clone(),
    ));
    let reporting = tokio::spawn(report(
        config.clone(),
        stats.clone(),
        outbox.clone(),
        host,
        stop.clone(),
    ));
    link::Link {
        config,
        client,
        events,
        outbox,
        stats,
        discovery,
        to_importer,
    }
    .run(stop)
    .await;
    // The link's sender is gone: the importer finishes what it holds.
    let _ = tokio::time::timeout(Duration::from_secs(1), importing).await;
    reporting.abort();
}

/// Tells the host the bridge's state whenever it changes (`iglu status`).
async fn report(
    config: Arc<MqttConfig>,
    stats: Arc<stats::Stats>,
    outbox: Arc<outbox::Outbox>,
    mut host: watch::Receiver<Option<HostClient>>,
    mut stop: watch::Receiver<bool>,
) {
    let client = match host.wait_for(Option::is_some).await {
        Ok(c) => c.clone(),
        Err(_) => return,
    };
    let Some(client) = client else { return };
    let client_id = config.client_id.clone().unwrap_or_default();
    let mut last = None;
    loop {
        let snapshot = stats.snapshot(&config.url, &client_id, outbox.len());
        if last.as_ref() != Some(&snapshot) {
            let (state, detail) = snapshot.headline();
            if let Err(e) = client.report_status(state, &detail, &snapshot).await {
                tracing::debug!(error = %e, "could not report the bridge's state");
            }
            last = Some(snapshot);
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(REPORT_EVERY) => {}
        }
    }
}
