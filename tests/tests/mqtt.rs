//! The MQTT bridge against a real Mosquitto: device messages in, commands
//! out, retained state for late plugins, Zigbee2MQTT's formats, Home
//! Assistant discovery, the last will, no echo, and a broker that dies
//! mid-stream. Needs `mosquitto` and `mosquitto-clients` installed.

#![allow(clippy::unwrap_used)]

use iglu_tests::mosquitto::{Mosquitto, Subscriber};
use iglu_tests::{fresh_dir, plugin, TestHost};
use serde_json::{json, Value};

const BRIDGE: &str = "mqtt-bridge";

/// `[mqtt]` for a broker at `url` as host `test`, reconnecting fast, with
/// more keys (and sub-tables) after it.
fn mqtt(url: &str, more: &str) -> String {
    format!(
        "[mqtt]\nurl = \"{url}\"\nhost_id = \"test\"\nreconnect_initial_ms = 100\nreconnect_max_ms = 1000\nkeep_alive_s = 5\n{more}\n"
    )
}

fn connected(host: &TestHost) -> Value {
    host.wait_plugin(BRIDGE, "connected to the broker", |p| {
        p["health"]["state"] == json!("connected")
    })
}

fn bridge_stats(host: &TestHost) -> Value {
    host.call(BRIDGE, "status", json!({})).unwrap()
}

/// What history recorded on `filter`, newest first.
fn recorded(host: &TestHost, filter: &str) -> Vec<Value> {
    let v = host
        .call("history", "query", json!({"topic": filter, "limit": 1000}))
        .unwrap();
    v.as_array().unwrap().clone()
}

fn wait_recorded(
    host: &TestHost,
    filter: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    host.eventually(what, || {
        recorded(host, filter).into_iter().find(|e| pred(e))
    })
}

fn wait_seen(
    host: &TestHost,
    sub: &Subscriber,
    topic: &str,
    what: &str,
    n: usize,
) -> Vec<(bool, String)> {
    host.eventually(what, || {
        let seen = sub.on(topic);
        (seen.len() >= n).then_some(seen)
    })
}

#[test]
fn device_messages_reach_plugins_and_commands_reach_the_broker() {
    let dir = fresh_dir("mqtt-basic");
    let broker = Mosquitto::start(&dir);
    let sub = broker.subscribe(&["zigbee2mqtt/+/+/set", "iglu/test/status"]);
    let host = TestHost::start_in(
        &dir,
        &mqtt(&broker.url(), "[mqtt.zigbee2mqtt]\n"),
        &[
            plugin("history", "iglu-plugin-history", &[]),
            plugin("echo", "iglu-plugin-echo", &[]),
        ],
    );
    let status = connected(&host);
    assert!(
        status["health"]["detail"]
            .as_str()
            .unwrap()
            .contains(&broker.url()),
        "{status}"
    );
    wait_seen(&host, &sub, "iglu/test/status", "the host to say online", 1);
    assert_eq!(sub.on("iglu/test/status")[0].1, "online");
    let table = String::from_utf8(host.cli(&["status"]).stdout).unwrap();
    assert!(table.contains("mqtt-bridge: connected"), "{table}");

    // A device's state, as Zigbee2MQTT publishes it, reaches a plugin.
    broker.publish(
        "zigbee2mqtt/kitchen/lamp",
        r#"{"state":"ON","brightness":200}"#,
        false,
    );
    let e = wait_recorded(
        &host,
        "home/kitchen/lamp/state",
        "the lamp's state on the bus",
        |_| true,
    );
    assert_eq!(
        e["payload"],
        json!({"state": "ON", "brightness": 200}),
        "{e}"
    );
    assert_eq!(e["source"], json!(BRIDGE));

    // A malformed payload is logged and skipped; the next one still arrives.
    broker.publish("zigbee2mqtt/kitchen/lamp", "{not json", false);
    broker.publish("zigbee2mqtt/kitchen/lamp", r#"{"state":"OFF"}"#, false);
    wait_recorded(
        &host,
        "home/kitchen/lamp/state",
        "the next state after the bad one",
        |e| e["payload"]["state"] == json!("OFF"),
    );
    assert_eq!(recorded(&host, "home/kitchen/lamp/state").len(), 2);
    assert_eq!(bridge_stats(&host)["skipped"], json!(1));
    host.eventually("the skip to be logged", || {
        host.log()
            .contains("skipping a broker message")
            .then_some(())
    });

    // Availability and the bridge's state, in both of Zigbee2MQTT's formats.
    broker.publish("zigbee2mqtt/lamp/availability", "offline", true);
    wait_recorded(
        &host,
        "home/lamp/availability",
        "old-style availability",
        |e| e["payload"] == json!({"state": "offline"}),
    );
    broker.publish(
        "zigbee2mqtt/lamp/availability",
        r#"{"state":"online"}"#,
        true,
    );
    wait_recorded(
        &host,
        "home/lamp/availability",
        "new-style availability",
        |e| e["payload"] == json!({"state": "online"}),
    );
    broker.publish("zigbee2mqtt/bridge/state", r#"{"state":"online"}"#, true);
    wait_recorded(&host, "home/bridge/state", "the bridge's state", |e| {
        e["payload"] == json!({"state": "online"})
    });

    // A plugin's command reaches the device's `set` topic.
    host.call(
        "echo",
        "publish",
        json!({"topic": "home/kitchen/lamp/set", "payload": {"state": "OFF"}}),
    )
    .unwrap();
    let seen = wait_seen(
        &host,
        &sub,
        "zigbee2mqtt/kitchen/lamp/set",
        "the command on the broker",
        1,
    );
    let sent: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(sent, json!({"state": "OFF"}));
    assert!(!seen[0].0, "a command is not retained");

    // A clean stop says offline itself and exits cleanly.
    sub.clear();
    assert!(host.cli(&["stop", BRIDGE]).status.success());
    let p = host.wait_state(BRIDGE, "stopped");
    assert_eq!(
        p["last_exit"],
        json!("stopped by the host; exited with code 0"),
        "{p}"
    );
    assert!(
        p["health"].is_null(),
        "its report went with its session: {p}"
    );
    wait_seen(
        &host,
        &sub,
        "iglu/test/status",
        "offline on a clean stop",
        1,
    );
    assert_eq!(sub.on("iglu/test/status")[0].1, "offline");
}

#[test]
fn retained_device_state_reaches_a_plugin_that_starts_later() {
    let dir = fresh_dir("mqtt-retained");
    let broker = Mosquitto::start(&dir);
    // Published before the host exists: only the broker holds it.
    broker.publish("zigbee2mqtt/hall/sensor", r#"{"occupancy":true}"#, true);
    let late = format!(
        "{}autostart = false\n",
        plugin("history", "iglu-plugin-history", &[])
    );
    let host = TestHost::start_in(&dir, &mqtt(&broker.url(), "[mqtt.zigbee2mqtt]\n"), &[late]);
    connected(&host);
    host.eventually("the retained state imported", || {
        (bridge_stats(&host)["imported"].as_u64().unwrap() >= 1).then_some(())
    });
    host.cli(&["start", "history"]);
    host.wait_state("history", "running");
    let e = wait_recorded(
        &host,
        "home/hall/sensor/state",
        "the retained state for the late plugin",
        |_| true,
    );
    assert_eq!(e["retained"], json!(true), "{e}");
    assert_eq!(e["payload"], json!({"occupancy": true}));
}

#[test]
fn nothing_echoes_between_the_bus_and_the_broker() {
    let dir = fresh_dir("mqtt-echo");
    let broker = Mosquitto::start(&dir);
    let sub = broker.subscribe(&["mirror/#"]);
    // Export home/# to mirror/# and import mirror/# into home/mirror/#:
    // without the loop rules, every event would come back and go out again.
    let rules = "[[mqtt.export]]\nfrom = \"home/#\"\nto = \"mirror/#\"\n[[mqtt.import]]\nfrom = \"mirror/#\"\nto = \"home/mirror/#\"\n";
    let host = TestHost::start_in(
        &dir,
        &mqtt(&broker.url(), rules),
        &[
            plugin("history", "iglu-plugin-history", &[]),
            plugin("echo", "iglu-plugin-echo", &[]),
        ],
    );
    connected(&host);
    host.call(
        "echo",
        "publish_many",
        json!({"topic": "home/loop/x", "count": 20}),
    )
    .unwrap();
    // An event published after them marks the end: the bridge keeps order.
    host.call(
        "echo",
        "publish",
        json!({"topic": "home/loop/end", "payload": 1}),
    )
    .unwrap();
    wait_seen(
        &host,
        &sub,
        "mirror/loop/end",
        "the end marker on the broker",
        1,
    );
    assert_eq!(sub.on("mirror/loop/x").len(), 20, "each event out once");

    // A message tagged with this host's id (as a reflecting broker bridge
    // would send it back) is dropped; one from another host comes in once
    // and is not sent out again.
    broker.publish_with("mirror/own", "1", false, &[("iglu-host", "test")]);
    broker.publish_with("mirror/other", "2", false, &[("iglu-host", "elsewhere")]);
    broker.publish("mirror/end", "3", false);
    wait_recorded(&host, "home/mirror/end", "the import end marker", |_| true);
    host.call(
        "echo",
        "publish",
        json!({"topic": "home/loop/end2", "payload": 1}),
    )
    .unwrap();
    wait_seen(&host, &sub, "mirror/loop/end2", "the second end marker", 1);

    let stats = bridge_stats(&host);
    assert_eq!(stats["dropped_own"], json!(1), "{stats}");
    assert_eq!(
        stats["imported"],
        json!(2),
        "other + end, nothing of ours: {stats}"
    );
    assert!(recorded(&host, "home/mirror/own").is_empty());
    assert_eq!(recorded(&host, "home/mirror/other").len(), 1);
    assert!(
        sub.on("mirror/mirror/other").is_empty() && sub.on("mirror/mirror/end").is_empty(),
        "an imported event was exported again: {:?}",
        sub.lines()
    );
    assert!(
        recorded(&host, "home/mirror/loop/#").is_empty(),
        "an export came back"
    );
    // 22 from echo (20 + 2 markers), nothing else: no loop ran.
    let total = sub.lines().len();
    assert_eq!(total, 22 + 3, "{:?}", sub.lines());
}

#[test]
fn the_bridge_recovers_from_a_broker_restart_and_queues_while_it_is_down() {
    let dir = fresh_dir("mqtt-restart");
    // As Mosquitto runs by default: a restart forgets every session.
    let mut broker = Mosquitto::start_volatile(&dir);
    let more = "offline_queue = 20\n[mqtt.zigbee2mqtt]\n[[mqtt.export]]\nfrom = \"home/outage/+\"\nto = \"outage/+\"\nretain = true\n";
    let host = TestHost::start_in(
        &dir,
        &mqtt(&broker.url(), more),
        &[
            plugin("history", "iglu-plugin-history", &[]),
            plugin("echo", "iglu-plugin-echo", &[]),
        ],
    );
    connected(&host);

    // Mid-stream: device messages flowing, then the broker dies.
    for n in 0..10 {
        broker.publish("zigbee2mqtt/porch/light", &format!("{{\"n\":{n}}}"), false);
    }
    wait_recorded(&host, "home/porch/light/state", "the stream", |e| {
        e["payload"]["n"] == json!(9)
    });
    broker.kill();
    host.wait_plugin(BRIDGE, "reconnecting", |p| {
        p["health"]["state"] == json!("reconnecting")
    });
    // Published while the broker is away: 50 into a queue of 20.
    for n in 0..50 {
        host.call(
            "echo",
            "publish",
            json!({"topic": format!("home/outage/{n}"), "payload": n}),
        )
        .unwrap();
    }
    host.eventually("the queue to hold its bound", || {
        let s = bridge_stats(&host);
        (s["queued"] == json!(20) && s["dropped_offline"] == json!(30)).then_some(())
    });
    broker.restart();
    let p = connected(&host);
    assert!(
        p["health"]["facts"]["connects"].as_u64().unwrap() >= 2,
        "{p}"
    );
    host.eventually("the queue to drain to the broker", || {
        let s = bridge_stats(&host);
        (s["queued"] == json!(0) && s["exported"].as_u64().unwrap() >= 20).then_some(())
    });
    // The newest 20, each once, as published (retained, so a subscriber
    // that comes now sees exactly what reached the broker).
    let sub = broker.subscribe(&["outage/#"]);
    host.eventually("the queued exports on the broker", || {
        (sub.lines().len() >= 20).then_some(())
    });
    let mut got: Vec<(String, String)> = sub
        .lines()
        .iter()
        .map(|l| {
            let parts: Vec<&str> = l.splitn(3, '|').collect();
            assert_eq!(parts[0], "1", "retained: {l}");
            (parts[1].to_owned(), parts[2].to_owned())
        })
        .collect();
    got.sort_by_key(|(t, _)| t.trim_start_matches("outage/").parse::<u32>().unwrap());
    let want: Vec<(String, String)> = (30..50)
        .map(|n| (format!("outage/{n}"), n.to_string()))
        .collect();
    assert_eq!(got, want);

    // A new session has no subscriptions but those the bridge makes again.
    broker.publish("zigbee2mqtt/porch/light", r#"{"n":100}"#, false);
    wait_recorded(
        &host,
        "home/porch/light/state",
        "a new message after the restart",
        |e| e["payload"]["n"] == json!(100),
    );
    let s = bridge_stats(&host);
    assert_eq!(s["imported"], json!(11), "{s}");
    assert_eq!(s["dropped_own"], json!(0), "{s}");
}

#[test]
fn a_resumed_session_brings_no_duplicate_device_events() {
    let dir = fresh_dir("mqtt-resume");
    // Keeps sessions and retained messages across a restart.
    let mut broker = Mosquitto::start(&dir);
    broker.publish("zigbee2mqtt/porch/light", r#"{"state":"ON"}"#, true);
    let host = TestHost::start_in(
        &dir,
        &mqtt(&broker.url(), "[mqtt.zigbee2mqtt]\n"),
        &[plugin("history", "iglu-plugin-history", &[])],
    );
    connected(&host);
    wait_recorded(
        &host,
        "home/porch/light/state",
        "the retained state",
        |_| true,
    );
    broker.restart();
    host.wait_plugin(BRIDGE, "connected again", |p| {
        p["health"]["state"] == json!("connected")
            && p["health"]["facts"]["connects"].as_u64() >= Some(2)
    });
    broker.publish("zigbee2mqtt/porch/light", r#"{"state":"OFF"}"#, false);
    wait_recorded(
        &host,
        "home/porch/light/state",
        "a new message after the restart",
        |e| e["payload"]["state"] == json!("OFF"),
    );
    // The retained state once (first connection), the new message once:
    // the resumed session replayed nothing.
    assert_eq!(recorded(&host, "home/porch/light/state").len(), 2);
}

#[test]
fn home_assistant_discovery_and_the_last_will() {
    let dir = fresh_dir("mqtt-ha");
    let broker = Mosquitto::start(&dir);
    let sub = broker.subscribe(&["homeassistant/+/+/+/config", "iglu/test/#"]);
    let host = TestHost::start_in(
        &dir,
        &mqtt(&broker.url(), "[mqtt.homeassistant]\n"),
        &[plugin("echo", "iglu-plugin-echo", &[])],
    );
    connected(&host);
    let host_config = "homeassistant/binary_sensor/iglu_test/status/config";
    let seen = wait_seen(&host, &sub, host_config, "the host's discovery config", 1);
    let config: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(config["state_topic"], json!("iglu/test/status"), "{config}");
    assert_eq!(config["device_class"], json!("connectivity"));
    wait_seen(
        &host,
        &sub,
        "homeassistant/sensor/iglu_test/plugin_echo/config",
        "the echo plugin's discovery config",
        1,
    );
    host.eventually("the echo plugin's state on the broker", || {
        sub.on("iglu/test/plugins/echo/state")
            .iter()
            .any(|(_, p)| p == "running")
            .then_some(())
    });

    // Home Assistant restarts: everything is published again.
    sub.clear();
    broker.publish("homeassistant/status", "online", false);
    wait_seen(
        &host,
        &sub,
        host_config,
        "the configs again after HA's online",
        1,
    );

    // The bridge dies without a word: the broker sends its last will.
    sub.clear();
    let pid = host.plugin(BRIDGE)["pid"].as_u64().unwrap();
    iglu_tests::signal_pid(pid, nix::sys::signal::Signal::SIGKILL);
    host.eventually("the last will", || {
        sub.on("iglu/test/status")
            .iter()
            .any(|(_, p)| p == "offline")
            .then_some(())
    });
    // Restarted by the host, it says online again.
    host.eventually("online after the restart", || {
        sub.on("iglu/test/status")
            .iter()
            .any(|(_, p)| p == "online")
            .then_some(())
    });
}

/// A CA and a server certificate for `localhost`/127.0.0.1, with openssl.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("openssl: {e}; the TLS test needs it: apt-get install openssl")
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=iglu test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[test]
fn the_bridge_connects_over_tls_trusting_the_configured_ca() {
    let dir = fresh_dir("mqtt-tls");
    certificates(&dir);
    let tls_port = iglu_tests::free_port();
    let listener = format!(
        "listener {tls_port} 127.0.0.1\nallow_anonymous true\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        d = dir.display()
    );
    let broker = Mosquitto::start_with(&dir, &listener);
    let more = format!(
        "ca_file = \"{}/ca.pem\"\n[mqtt.zigbee2mqtt]\n",
        dir.display()
    );
    let host = TestHost::start_in(
        &dir,
        &mqtt(&format!("mqtts://localhost:{tls_port}"), &more),
        &[plugin("history", "iglu-plugin-history", &[])],
    );
    connected(&host);
    broker.publish("zigbee2mqtt/vault/door", r#"{"contact":true}"#, false);
    let e = wait_recorded(
        &host,
        "home/vault/door/state",
        "a device message over TLS",
        |_| true,
    );
    assert_eq!(e["payload"], json!({"contact": true}));
}

#[test]
fn the_bridge_logs_in_with_a_password_from_a_file() {
    let dir = fresh_dir("mqtt-login");
    let passwords = dir.join("passwords");
    let out = std::process::Command::new(iglu_tests::mosquitto::program("mosquitto_passwd"))
        .arg("-c")
        .arg("-b")
        .arg(&passwords)
        .args(["iglu", "s3cret-for-the-test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = iglu_tests::free_port();
    let listener = format!(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
        passwords.display()
    );
    let broker = Mosquitto::start_with(&dir, &listener);
    std::fs::write(dir.join("mqtt.password"), "s3cret-for-the-test\n").unwrap();
    let login = "username = \"iglu\"\npassword_file = \"mqtt.password\"\n[mqtt.zigbee2mqtt]\n";
    let host = TestHost::start_in(
        &dir,
        &mqtt(&format!("mqtt://127.0.0.1:{port}"), login),
        &[plugin("history", "iglu-plugin-history", &[])],
    );
    connected(&host);
    broker.publish("zigbee2mqtt/safe/lock", r#"{"locked":true}"#, false);
    wait_recorded(
        &host,
        "home/safe/lock/state",
        "a device message after logging in",
        |_| true,
    );

    // A wrong password: refused, said so in status, retried (not a crash loop).
    std::fs::write(dir.join("mqtt.password"), "wrong\n").unwrap();
    host.cli(&["restart", BRIDGE]);
    let p = host.wait_plugin(BRIDGE, "refused by the broker", |p| {
        p["health"]["facts"]["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("refused"))
    });
    assert_eq!(p["state"], json!("running"), "{p}");
    // Retried by the bridge, not a crash loop: the same process, a while later.
    let restarts = p["restarts"].clone();
    let p = host.wait_plugin(BRIDGE, "still retrying 3 s later", |p| {
        p["uptime_ms"].as_u64().is_some_and(|u| u >= 3000) || p["restarts"] != restarts
    });
    assert_eq!(p["restarts"], restarts, "{p}");
}
