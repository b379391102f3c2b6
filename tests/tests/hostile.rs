//! A hostile peer or a badly written plugin must not freeze, slow, starve or
//! fill the host: floods without reading, garbage, unauthenticated TCP
//! peers that flood or hang on. Real processes, real sockets (the host's
//! other bounds are in `bounds.rs`).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use iglu_tests::raw::{closed_within, zmtp_frame, zmtp_opening};
use iglu_tests::{
    alive, fresh_dir, plugin, plugin_with_env, signal_pid, still_serving, StopOnDrop, TestHost,
    PATIENCE,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// Lines the misbehave plugin reported, as JSON.
fn reports(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A flood wrote 23-40 MB of warnings before the rate limits: now a few
/// lines per source and window, and the counts.
fn log_stays_small(host: &TestHost) {
    let log = host.log();
    assert!(
        log.len() < 256 * 1024,
        "the host logged {} bytes for one flood\n--- head of the log ---\n{}",
        log.len(),
        &log[..log.len().min(4000)]
    );
}

/// Ends the host with SIGTERM; it must exit by itself.
fn stops_cleanly(mut host: TestHost) {
    host.signal(Signal::SIGTERM);
    let status = host.wait_exit(PATIENCE);
    assert!(
        status.is_some(),
        "the host did not finish SIGTERM within {PATIENCE:?}\n--- host log ---\n{}",
        host.log()
    );
}

/// Issue 12, item 1, second trigger: a managed plugin floods (valid host
/// calls, or garbage) without reading, then is SIGKILLed. On one worker
/// thread this froze the host for good (a synchronous removal from the
/// ROUTER's peer map waited on an entry held by a send suspended on that
/// peer's full queue).
fn managed_flood_then_sigkill(mode: &str, cut_for: &str) {
    let dir = fresh_dir("flood");
    let report = dir.join("report.jsonl");
    let once = dir.join("once");
    let host = TestHost::start(
        "worker_threads = 1",
        &[
            plugin("echo", "iglu-plugin-echo", &[]),
            iglu_tests::writing_to(
                plugin_with_env(
                    "flooder",
                    "iglu-plugin-misbehave",
                    &[mode],
                    &[
                        ("IGLU_TEST_REPORT", report.to_str().unwrap()),
                        ("IGLU_FLOOD_ONCE", once.to_str().unwrap()),
                    ],
                ),
                &dir,
            ),
        ],
    );
    let first = host.wait_state("flooder", "running")["pid"]
        .as_u64()
        .unwrap();
    host.wait_state("echo", "running");
    host.eventually("the flooder to finish its flood", || {
        reports(&report)
            .iter()
            .any(|r| r["event"] == json!("flooded") || r["event"] == json!("flood_stopped"))
            .then_some(())
    });
    still_serving(&host, "while a plugin floods without reading");
    // The host cuts the flooder by itself: its queue filled (it does not
    // read), or it sent bad frames past the budget. The original trigger
    // (a SIGKILL while the host waited on that queue) cannot happen any
    // more, since nothing waits; the kill below finds it gone or kills it.
    host.wait_plugin(
        "flooder",
        &format!("its first launch cut ({cut_for})"),
        |p| p["last_exit"].as_str().is_some_and(|e| e.contains(cut_for)),
    );
    signal_pid(first, Signal::SIGKILL);
    host.eventually("the flooder's process to be gone", || {
        (!alive(first)).then_some(())
    });
    still_serving(&host, "after the flooder was cut and killed");
    // Its next launch does not flood, and must get through the handshake.
    host.wait_new_pid("flooder", first);
    log_stays_small(&host);
    stops_cleanly(host);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plugin_flooding_host_calls_without_reading_then_killed_does_not_freeze_the_host() {
    managed_flood_then_sigkill("flood-calls", "stopped reading its socket");
}

#[test]
fn a_plugin_flooding_garbage_without_reading_then_killed_does_not_freeze_the_host() {
    managed_flood_then_sigkill("flood-garbage", "cut for misbehaving");
}

const TOKEN: &str = "a-test-token-of-some-length";

/// A host with the TCP endpoint on 127.0.0.1:`port`, plugin `echo`, and
/// external plugin `ext` configured. The handshake deadline is a minute,
/// far beyond the tests' patience: whatever closes a connection within a
/// test is not that deadline.
fn tcp_host(port: u16, extra: &str) -> TestHost {
    TestHost::start(
        &format!(
            "worker_threads = 1\n{extra}\n[tcp]\nbind = \"127.0.0.1:{port}\"\nmax_connections = 20\nhandshake_timeout_ms = 60000\n\
             [[external]]\nid = \"ext\"\ntoken = {TOKEN:?}\n"
        ),
        &[plugin("echo", "iglu-plugin-echo", &[])],
    )
}

/// The real external plugin `ext`, connected and running.
fn start_ext(host: &TestHost, port: u16) -> iglu_tests::Proc {
    let ext = iglu_tests::external_plugin(
        "iglu-plugin-echo",
        &format!("tcp://127.0.0.1:{port}"),
        "ext",
        TOKEN,
        &[],
        &host.dir.join("ext.log"),
    );
    host.wait_state("ext", "running");
    ext
}

/// A HELLO for `ext` with a wrong token.
fn wrong_hello() -> Vec<u8> {
    let hello = iglu_bus::Message::Hello(iglu_bus::Hello {
        cookie: iglu_bus::handshake::COOKIE_VALUE.to_owned(),
        versions: iglu_bus::handshake::PROTOCOL_VERSIONS.to_vec(),
        plugin_id: "ext".into(),
        token: "not-the-token-at-all-no".into(),
        manifest: iglu_bus::Manifest {
            id: "ext".into(),
            name: "Attacker".into(),
            author: "nobody".into(),
            version: "0.0.0".into(),
            description: "guesses tokens".into(),
        },
        methods: vec![],
        subscriptions: vec![],
        receive_own: false,
        interfaces: Vec::new(),
    });
    zmtp_frame(&iglu_bus::encode(&hello).unwrap())
}

/// A TCP connection to `port` on 127.0.0.1 from source address `from`.
fn connect_from(from: [u8; 4], port: u16) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from((from, 0)).into())?;
    socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(socket.into())
}

/// Issue 12, item 1, first trigger: no token needed. A HELLO with a wrong
/// token, then 160,000 garbage frames without reading, then a close.
#[test]
fn an_unauthenticated_tcp_flood_does_not_freeze_the_host() {
    let port = iglu_tests::free_port();
    let host = tcp_host(port, "");
    host.wait_state("echo", "running");
    let mut s = connect_from([127, 0, 0, 1], port).unwrap();
    s.write_all(&zmtp_opening()).unwrap();
    s.write_all(&wrong_hello()).unwrap();
    let garbage = zmtp_frame(&[0xc1, 0xff, 0x00]);
    let mut batch = Vec::with_capacity(garbage.len() * 1000);
    for _ in 0..1000 {
        batch.extend_from_slice(&garbage);
    }
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sent = 0;
    // Stops when the host cuts us (it should, right after the REJECT).
    while sent < 160_000 && s.write_all(&batch).is_ok() {
        sent += 1000;
    }
    assert!(
        closed_within(&mut s, PATIENCE),
        "a peer whose HELLO was rejected must be cut"
    );
    drop(s);
    still_serving(&host, "after an unauthenticated flood");
    log_stays_small(&host);
    // A real external plugin still gets in.
    let _ext = start_ext(&host, port);
    stops_cleanly(host);
}

/// Issue 12, item 3: peers that were rejected but keep talking, and peers
/// that never say HELLO, from many addresses, must not lock out a real
/// external plugin coming back; a rejected connection is closed at once.
#[test]
fn rejected_and_idle_strangers_cannot_lock_out_an_external_plugin() {
    let port = iglu_tests::free_port();
    let host = tcp_host(port, "");
    host.wait_state("echo", "running");
    // The plugin has been here before (its address is known), then went away.
    drop(start_ext(&host, port));
    host.wait_plugin("ext", "gone", |p| p["state"] != json!("running"));
    // Rejected at once: closed well before any idle or handshake deadline.
    let mut s = connect_from([127, 0, 0, 2], port).unwrap();
    s.write_all(&zmtp_opening()).unwrap();
    s.write_all(&wrong_hello()).unwrap();
    assert!(
        closed_within(&mut s, PATIENCE),
        "a rejected peer must be cut"
    );
    // 128 strangers from 32 addresses (4 each, the per-address budget) keep
    // connecting: half say a wrong HELLO and keep chattering, half stay
    // silent, four times the 32 pending places; each reconnects when cut.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for i in 0..128u8 {
            let stop = &stop;
            scope.spawn(move || {
                let from = [127, 0, 1, 1 + i / 4];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut s) = connect_from(from, port) else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                    if s.write_all(&zmtp_opening()).is_err() {
                        continue;
                    }
                    if i % 2 == 0 {
                        let _ = s.write_all(&wrong_hello());
                        while !stop.load(std::sync::atomic::Ordering::Relaxed)
                            && s.write_all(&zmtp_frame(b"\x81\xa1x\x80")).is_ok()
                        {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    } else {
                        let _ = closed_within(&mut s, Duration::from_secs(10));
                    }
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(500));
        let _ext = start_ext(&host, port);
        let who = host.call("ext", "whoami", json!(null));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(who.is_ok(), "{who:?}");
    });
    still_serving(&host, "after the strangers left");
}
