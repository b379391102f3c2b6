//! Broker -> bridge -> plugin, next to the broker's own client in the same
//! run: a Mosquitto on a free port, `mosquitto_sub` subscribed to the
//! stream, and a host of its own whose MQTT bridge imports the same stream
//! into a bench plugin. This process publishes stamped messages (QoS 1) as
//! fast as the broker takes them; both receivers record each message's
//! time from publication to arrival, and the rate they kept.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iglu_host::{CallOptions, Config, Host};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};
use serde::Serialize;

use crate::measure::{histogram, Measure};

/// One receiver's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MqttRow {
    /// `mosquitto_sub` or `bridge -> plugin`.
    pub path: String,
    /// Messages published.
    pub published: u64,
    /// Messages received.
    pub received: u64,
    /// Received per second, from the first publication to the last arrival;
    /// latency from publication to arrival (the plugin's handler, or the
    /// line read from `mosquitto_sub`).
    pub measure: Measure,
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

fn program(name: &str) -> Result<std::path::PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found.ok_or_else(|| {
        format!("{name} is not installed (apt-get install mosquitto mosquitto-clients)")
    })
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Runs the workload with `count` messages.
pub async fn mqtt(dir: &Path, count: u64) -> Result<Vec<MqttRow>, String> {
    let dir = dir.join("mqtt");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\nlog_type error\n"),
    )
    .map_err(|e| e.to_string())?;
    let _broker = Killed(
        Command::new(program("mosquitto")?)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("mosquitto: {e}"))?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("mosquitto did not listen".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A host of its own: one bench plugin, the bridge importing the stream.
    let bench = crate::plugin_binary()?;
    let toml = format!(
        "runtime_dir = {rt:?}\ndata_dir = {data:?}\n\
         [[plugin]]\nid = \"mqtt-sink\"\ncommand = {bench:?}\nenv = {{ BENCH_INDEX = \"0\", RUST_LOG = \"warn\" }}\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nhost_id = \"bench\"\noffline_queue = 100000\n\
         [[mqtt.import]]\nfrom = \"bench/mqtt\"\nto = \"fan/1\"\n",
        rt = dir.join("rt").display().to_string(),
        data = dir.join("data").display().to_string(),
        bench = bench.display().to_string(),
    );
    let config = Config::parse(&toml, &dir.join("mqtt.toml")).map_err(|e| e.to_string())?;
    let host = Host::start(config).await.map_err(|e| e.to_string())?;
    let result = async {
        connected(&host).await?;
        // As fast as the broker takes them, for the rate; then paced well
        // below it, for the latency of one message on a link that is not
        // queueing (unpaced, latency is only the backlog's length).
        let mut rows = phase(&host, port, count, None, "rate").await?;
        let pace = Duration::from_micros(500);
        rows.extend(phase(&host, port, count / 4, Some(pace), "2,000/s").await?);
        Ok(rows)
    }
    .await;
    host.shutdown().await;
    result
}

/// What `mosquitto_sub` saw: latencies, count, the last arrival.
type Seen = Arc<Mutex<(hdrhistogram::Histogram<u64>, u64, u64)>>;

/// The broker's own client, counting and timing what it prints.
fn subscriber(
    port: u16,
    count: u64,
) -> Result<(Killed, Seen, std::thread::JoinHandle<()>), String> {
    let mut sub = Command::new(program("mosquitto_sub")?)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            "mqttv5",
            "-q",
            "1",
        ])
        .args(["-t", "bench/mqtt", "-F", "%p", "-C", &count.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("mosquitto_sub: {e}"))?;
    let stdout = sub.stdout.take().ok_or("no stdout")?;
    let seen: Seen = Arc::new(Mutex::new((histogram(), 0u64, 0u64)));
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let now = now_ns();
            let t = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["t"].as_u64());
            let mut r = sink.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = t {
                let _ = r.0.record((now.saturating_sub(t) / 1000).max(1));
            }
            r.1 += 1;
            r.2 = now;
        }
    });
    Ok((Killed(sub), seen, reader))
}

async fn connected(host: &Host) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = host.status();
        let sink_up = st
            .iter()
            .any(|s| s.id == "mqtt-sink" && s.state == iglu_host::PluginState::Running);
        let bridged = st.iter().any(|s| {
            s.id == "mqtt-bridge" && s.health.as_ref().is_some_and(|h| h.state == "connected")
        });
        if sink_up && bridged {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the bridge did not connect to the bench's broker".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn phase(
    host: &Host,
    port: u16,
    count: u64,
    pace: Option<Duration>,
    label: &str,
) -> Result<Vec<MqttRow>, String> {
    let client = host.client();
    let (sub, sub_record, reader) = subscriber(port, count)?;
    // mosquitto_sub has no readiness signal: 300 ms to subscribe (one that
    // came late would show as fewer messages received, not as a better rate).
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .call_with(
            "mqtt-sink",
            "reset",
            Bytes::from_static(&[0xc0]),
            CallOptions::new(Duration::from_secs(10)),
        )
        .await
        .map_err(|e| e.to_string())?;
    let delivered0 = client.queue_stats("mqtt-sink").map_or(0, |s| s.delivered);

    let mut options = MqttOptions::new("iglu-bench-publisher", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut events) = AsyncClient::new(options, 1024);
    let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let started = now_ns();
    let mut next = tokio::time::Instant::now();
    for _ in 0..count {
        if let Some(pace) = pace {
            next += pace;
            tokio::time::sleep_until(next).await;
        }
        let payload = format!("{{\"t\":{}}}", now_ns());
        let sent = publisher.publish("bench/mqtt", QoS::AtLeastOnce, false, payload);
        tokio::time::timeout(Duration::from_secs(10), sent)
            .await
            .map_err(|_| {
                "the bench's publisher stalled (its link to the broker is down?)".to_owned()
            })?
            .map_err(|e| e.to_string())?;
    }
    // Both receivers have everything, or the deadline says what is missing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let d = client.queue_stats("mqtt-sink").map_or(0, |s| s.delivered) - delivered0;
        let got = sub_record.lock().unwrap_or_else(|p| p.into_inner()).1;
        if (d >= count && got >= count) || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let bridge_done = now_ns();
    pump.abort();
    let mut h = histogram();
    crate::workloads::merge_latency(&client, "mqtt-sink", &mut h).await?;
    drop(sub);
    let _ = reader.join();
    let (sub_h, sub_got, sub_last) = {
        let r = sub_record.lock().unwrap_or_else(|p| p.into_inner());
        (r.0.clone(), r.1, r.2)
    };
    let span = |end: u64| Duration::from_nanos(end.saturating_sub(started));
    Ok(vec![
        MqttRow {
            path: format!("{label}: mosquitto_sub"),
            published: count,
            received: sub_got,
            measure: Measure::of(&sub_h, sub_got, span(sub_last), 16),
        },
        MqttRow {
            path: format!("{label}: bridge -> plugin"),
            published: count,
            received: delivered,
            measure: Measure::of(&h, delivered, span(bridge_done), 16),
        },
    ])
}

/// The rows (or why there are none) as a table for people.
pub fn table(out: &mut String, rows: &[MqttRow], skipped: Option<&str>) {
    use std::fmt::Write as _;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    if let Some(why) = skipped {
        let _ = writeln!(out, "MQTT: not run: {why}\n");
    }
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "MQTT (QoS 1 from one publisher; the broker's own client next to the bridge, same stream)"
        );
        let _ = writeln!(
            out,
            "{:<26} {:>10} {:>10} {:>10} | {:>7} {:>7} {:>8}",
            "path", "published", "received", "msgs/s", "p50us", "p99us", "max us"
        );
        for m in rows {
            let _ = writeln!(
                out,
                "{:<26} {:>10} {:>10} {:>10.0} | {:>7} {:>7} {:>8}",
                m.path,
                m.published,
                m.received,
                m.measure.per_s,
                m.measure.p50_us,
                m.measure.p99_us,
                m.measure.max_us
            );
        }
        if let [sub, bridge, paced_sub, paced_bridge] = rows {
            let _ = writeln!(
                out,
                "bridge / mosquitto_sub: rate {:.2}x; paced p50 {:.2}x, p99 {:.2}x",
                ratio(bridge.measure.per_s, sub.measure.per_s),
                ratio(
                    paced_bridge.measure.p50_us as f64,
                    paced_sub.measure.p50_us as f64
                ),
                ratio(
                    paced_bridge.measure.p99_us as f64,
                    paced_sub.measure.p99_us as f64
                )
            );
        }
        let _ = writeln!(out);
    }
}
