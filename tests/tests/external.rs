//! External plugins over the guarded TCP endpoint: real processes, real sockets.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpStream;

use iglu_tests::raw::{closed_within, memory_kib, zmtp_greeting};
use iglu_tests::{alive, external_plugin, free_port, plugin, signal_pid, TestHost, PATIENCE};
use nix::sys::signal::Signal;
use serde_json::json;

const TOKEN: &str = "a-test-token-of-some-length";

fn settings(port: u16) -> String {
    format!(
        "[heartbeat]\ninterval_ms = 250\nliveness = 4\n[tcp]\nbind = \"127.0.0.1:{port}\"\nmax_connections = 20\nhandshake_timeout_ms = 1500\n\
         [[external]]\nid = \"ext\"\ntoken = {TOKEN:?}\n"
    )
}

/// A host with the TCP endpoint on a free port and plugin `ext` connected to it.
fn host_with_running_ext() -> (TestHost, iglu_tests::Proc) {
    let port = free_port();
    let host = TestHost::start(&settings(port), &[]);
    let log = host.dir.join("ext.log");
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let ext = external_plugin("iglu-plugin-echo", &endpoint, "ext", TOKEN, &[], &log);
    host.wait_state("ext", "running");
    (host, ext)
}

#[test]
fn external_plugin_connects_by_name_crashes_and_comes_back_with_its_state() {
    let port = free_port();
    let host = TestHost::start(&settings(port), &[plugin("echo", "iglu-plugin-echo", &[])]);
    let endpoint = format!("tcp://localhost:{port}");
    let log = host.dir.join("ext.log");
    let env = [("ECHO_SUBSCRIBE", "home/#")];
    let first = external_plugin("iglu-plugin-echo", &endpoint, "ext", TOKEN, &env, &log);
    let p = host.wait_state("ext", "running");
    assert_eq!(p["kind"], json!("external"));
    assert_eq!(host.plugin("echo")["kind"], json!("managed"));
    host.call("ext", "kv_set", json!({"key": "k", "value": 42}))
        .unwrap();

    // SIGKILL while a call is in flight: the call fails at once, the plugin is Crashed.
    let errors: Vec<_> = std::thread::scope(|s| {
        let call =
            s.spawn(|| host.call_with_timeout("ext", "sleep", json!({"ms": 600_000}), 600_000));
        host.wait_plugin("ext", "the call in flight", |p| {
            p["calls_in_flight"] == json!(1)
        });
        signal_pid(first.pid(), Signal::SIGKILL);
        vec![call.join().unwrap()]
    });
    assert_eq!(errors[0].as_ref().unwrap_err().code, "plugin_crashed");
    host.wait_state("ext", "crashed");
    // Events published meanwhile wait for it.
    let r = host.request(&json!({"cmd": "publish", "topic": "home/while_away", "payload": 1}));
    assert_eq!(r["ok"], json!(true));
    drop(first);

    let _second = external_plugin("iglu-plugin-echo", &endpoint, "ext", TOKEN, &env, &log);
    host.wait_state("ext", "running");
    assert_eq!(
        host.call("ext", "kv_get", json!({"key": "k"})).unwrap(),
        json!(42)
    );
    host.eventually("the queued event", || {
        let evs = host.call("ext", "events", json!({})).ok()?;
        evs.as_array()?
            .iter()
            .any(|e| e["topic"] == json!("home/while_away"))
            .then_some(())
    });
}

#[test]
fn a_host_restart_brings_external_plugins_back_without_restarting_them() {
    let (mut host, ext) = host_with_running_ext();
    let config = std::fs::read_to_string(&host.config).unwrap();
    host.signal(Signal::SIGTERM);
    host.wait_exit(PATIENCE).unwrap();
    assert!(
        alive(ext.pid()),
        "the external plugin must outlive the host"
    );
    // A new host on the same port: the plugin reconnects and re-handshakes by itself.
    // Without the first host's runtime_dir and data_dir lines (the new host has its own).
    let settings_again = config.lines().skip(2).collect::<Vec<_>>().join("\n");
    let host2 = TestHost::start(&settings_again, &[]);
    let who = host2.eventually("the plugin to come back", || {
        host2.wait_state("ext", "running");
        host2.call("ext", "whoami", json!(null)).ok()
    });
    assert_eq!(who["pid"], json!(ext.pid()), "same process, not restarted");
}

#[test]
fn wrong_token_and_unknown_id_are_rejected_with_a_reason() {
    let port = free_port();
    let host = TestHost::start(&settings(port), &[]);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    for (id, token, code) in [
        ("ext", "wrong-token-wrong-token", "bad_token"),
        ("nobody", TOKEN, "unknown_plugin"),
    ] {
        let log = host.dir.join(format!("{id}.log"));
        let mut p = external_plugin("iglu-plugin-echo", &endpoint, id, token, &[], &log);
        let status = host.eventually("the plugin to give up", || p.0.try_wait().ok().flatten());
        assert_eq!(status.code(), Some(3));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(code), "{text}");
    }
    assert!(host.log().contains("handshake rejected"));
}

#[test]
fn frozen_external_plugin_is_crashed_then_reconnects_when_thawed() {
    let (host, ext) = host_with_running_ext();
    signal_pid(ext.pid(), Signal::SIGSTOP);
    let p = host.wait_state("ext", "crashed");
    assert!(
        p["last_exit"].as_str().unwrap().contains("no heartbeat"),
        "{p}"
    );
    signal_pid(ext.pid(), Signal::SIGCONT);
    host.wait_state("ext", "running");
    assert_eq!(
        host.call("ext", "whoami", json!(null)).unwrap()["pid"],
        json!(ext.pid())
    );
}

#[test]
fn the_tcp_guard_cuts_hostile_connections_and_the_host_keeps_serving() {
    let port = free_port();
    let host = TestHost::start(&settings(port), &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    let addr = format!("127.0.0.1:{port}");

    // 73 bytes that abort a bare zeromq listener: a greeting and a frame claiming 2^50 bytes.
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut bytes = zmtp_greeting();
    bytes.push(0x02);
    bytes.extend_from_slice(&(1u64 << 50).to_be_bytes());
    assert_eq!(bytes.len(), 73);
    s.write_all(&bytes).unwrap();
    assert!(
        closed_within(&mut s, PATIENCE),
        "the huge frame must be cut"
    );
    assert_eq!(host.call("echo", "echo", json!(1)).unwrap(), json!(1));

    // Random bytes.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not zmtp at all, just noise")
        .unwrap();
    assert!(closed_within(&mut s, PATIENCE), "noise must be cut");

    // A peer that never handshakes is cut after the deadline (1.5 s here).
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&zmtp_greeting()).unwrap();
    assert!(closed_within(&mut s, PATIENCE), "a silent peer must be cut");

    // 1,000 idle connections: beyond the strangers' budget they are closed at once,
    // the rest at the deadline; memory stays bounded and calls keep working.
    let idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert_eq!(
        host.call("echo", "echo", json!("busy")).unwrap(),
        json!("busy")
    );
    let (rss_kib, _) = memory_kib(host.pid());
    assert!(
        rss_kib < 200 * 1024,
        "host RSS {rss_kib} KiB with 1000 hostile connections"
    );
    drop(idle);
    let log = host.log();
    assert!(log.contains("over the cap"), "{log}");
    assert!(log.contains("already pending"), "{log}");
    assert!(log.contains("not admitted within"), "{log}");
    // A legitimate external plugin still gets in.
    let plog = host.dir.join("ext.log");
    let _ext = external_plugin(
        "iglu-plugin-echo",
        &format!("tcp://{addr}"),
        "ext",
        TOKEN,
        &[],
        &plog,
    );
    host.wait_state("ext", "running");
}

#[test]
fn a_crashed_external_plugin_is_started_again_by_its_restart_command() {
    let port = free_port();
    let marks = iglu_tests::fresh_dir("restart-command").join("ran");
    let config = format!(
        "{}restart_command = [\"sh\", \"-c\", \"echo ran >> {}\"]\n[restart]\nbackoff_initial_ms = 200\n",
        settings(port),
        marks.display()
    );
    let host = TestHost::start(&config, &[]);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let log = host.dir.join("ext.log");
    let ext = external_plugin("iglu-plugin-echo", &endpoint, "ext", TOKEN, &[], &log);
    host.wait_state("ext", "running");
    signal_pid(ext.pid(), Signal::SIGKILL);
    // Crashed, the backoff (Restarting), then the command is its start: it
    // is Starting, waiting for the plugin the command brought back.
    let p = host.wait_plugin("ext", "the restart command to have run", |p| {
        p["state"] == json!("starting") && marks.exists()
    });
    assert_eq!(p["restarts"], json!(1), "{p}");
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "ran\n");
    let _again = external_plugin("iglu-plugin-echo", &endpoint, "ext", TOKEN, &[], &log);
    host.wait_state("ext", "running");
    assert!(host.log().contains("running the restart command"));
}
