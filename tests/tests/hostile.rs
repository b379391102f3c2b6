//! A hostile peer or a badly written plugin must not freeze, slow, starve or
//! fill the host: floods without reading, rejected peers that hang on, idle
//! control clients, oversized requests and events. Real processes, real sockets.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use iglu_tests::raw::{closed_within, memory_kib, zmtp_frame, zmtp_opening};
use iglu_tests::{alive, fresh_dir, plugin, plugin_with_env, signal_pid, TestHost, PATIENCE};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// Sets the flag when dropped: threads of a scope that loop until it is
/// set must stop even when the test body panics, or the scope never ends.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Lines the misbehave plugin reported, as JSON.
fn reports(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The host still serves: status and an echo call each answer within 10 s.
fn still_serving(host: &TestHost, what: &str) {
    let status = host.request_within(&json!({"cmd": "status"}), Duration::from_secs(10));
    assert!(
        status.as_ref().is_ok_and(|s| s["ok"] == json!(true)),
        "{what}: status did not answer: {status:?}\n--- host log ---\n{}",
        host.log()
    );
    let call = host.request_within(
        &json!({"cmd": "call", "plugin": "echo", "method": "echo", "args": "still here", "timeout_ms": 5000}),
        Duration::from_secs(10),
    );
    assert!(
        call.as_ref()
            .is_ok_and(|r| r["result"] == json!("still here")),
        "{what}: echo did not answer: {call:?}\n--- host log ---\n{}",
        host.log()
    );
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
            plugin_with_env(
                "flooder",
                "iglu-plugin-misbehave",
                &[mode],
                &[
                    ("IGLU_TEST_REPORT", report.to_str().unwrap()),
                    ("IGLU_FLOOD_ONCE", once.to_str().unwrap()),
                ],
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

/// Issue 12, item 5: idle same-user clients held open (and re-opened as
/// they are dropped), and every call slot taken by slow calls: `status` and
/// `stop` still answer, and are not "busy".
#[test]
fn idle_control_clients_and_full_call_slots_do_not_shut_out_status_and_stop() {
    let host = TestHost::start(
        "",
        &[
            plugin("echo", "iglu-plugin-echo", &[]),
            plugin("other", "iglu-plugin-echo", &[]),
        ],
    );
    host.wait_state("echo", "running");
    host.wait_state("other", "running");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // 64 idle connections (all the old limit), each re-opened when the
        // host drops it.
        for _ in 0..64 {
            let (stop, socket) = (&stop, host.control_socket());
            scope.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) {
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 256];
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(_) => break,
                                Err(_) => continue,
                            }
                        }
                    }
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        // 64 slow calls take every call slot.
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let host = &host;
                scope.spawn(move || {
                    host.call_with_timeout("echo", "sleep", json!({"ms": 8000}), 20_000)
                })
            })
            .collect();
        host.wait_plugin("echo", "64 calls in flight", |p| {
            p["calls_in_flight"].as_u64() >= Some(60)
        });
        for attempt in 0..5 {
            let r = host.request_within(&json!({"cmd": "status"}), Duration::from_secs(10));
            assert!(
                r.as_ref().is_ok_and(|r| r["ok"] == json!(true)),
                "status {attempt} with idle clients and full call slots: {r:?}"
            );
        }
        let r = host.request_within(&json!({"cmd": "stop", "plugin": "other"}), PATIENCE);
        assert!(
            r.as_ref().is_ok_and(|r| r["ok"] == json!(true)),
            "stop: {r:?}"
        );
        let out = host.cli(&["status"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in calls {
            let _ = c.join();
        }
    });
    assert_eq!(host.plugin("other")["state"], json!("stopped"));
}

/// Issue 12, item 6: 64 requests that never end push no more than the
/// control socket's byte budget into the host.
#[test]
fn endless_control_requests_are_bounded_in_total() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    let (_, before) = memory_kib(host.pid());
    let chunk = vec![b' '; 1 << 20];
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..64)
            .map(|_| {
                let (socket, chunk) = (host.control_socket(), &chunk);
                scope.spawn(move || {
                    let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) else {
                        return;
                    };
                    let _ = s.set_write_timeout(Some(Duration::from_secs(20)));
                    let _ = s.write_all(b"{\"cmd\": \"status\"");
                    // 16 MiB without a newline: the per-request cap.
                    for _ in 0..16 {
                        if s.write_all(chunk).is_err() {
                            return;
                        }
                    }
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    let mut answer = String::new();
                    let _ = s.read_to_string(&mut answer);
                })
            })
            .collect();
        // While they hold the byte budget, a small request still gets in.
        while writers.iter().any(|w| !w.is_finished()) {
            let r = host.request_within(&json!({"cmd": "status"}), Duration::from_secs(10));
            assert!(
                r.as_ref().is_ok_and(|r| r["ok"] == json!(true)),
                "status during the flood of requests: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (_, peak) = memory_kib(host.pid());
    assert!(
        peak < before + 256 * 1024,
        "host peak RSS grew from {before} KiB to {peak} KiB for 64 endless requests"
    );
    still_serving(&host, "after 64 endless control requests");
}

/// Issue 12, item 7: events are bounded in bytes per plugin, not only in
/// count: two subscribers that never read hold at most their byte bound.
#[test]
fn slow_subscribers_hold_at_most_their_byte_bound_of_events() {
    let deaf = |id: &str| plugin(id, "iglu-plugin-misbehave", &["deaf-subscriber"]);
    let host = TestHost::start(
        "max_message_bytes = 2097152\nevent_queue_bytes = 8388608\nsend_queue_bytes = 67108864",
        &[
            plugin("echo", "iglu-plugin-echo", &[]),
            deaf("deaf1"),
            deaf("deaf2"),
        ],
    );
    host.wait_state("deaf1", "running");
    host.wait_state("deaf2", "running");
    let (_, before) = memory_kib(host.pid());
    let payload = "x".repeat(1 << 20);
    for i in 0..300 {
        let r = host
            .request(&json!({"cmd": "publish", "topic": format!("big/{i}"), "payload": payload}));
        assert_eq!(r["ok"], json!(true), "{r}");
    }
    let (rss, peak) = memory_kib(host.pid());
    // 300 MiB published; by count alone each queue would hold all of it.
    assert!(
        peak < before + 160 * 1024,
        "host RSS {rss} KiB, peak {peak} KiB (from {before}) for two slow subscribers"
    );
    for id in ["deaf1", "deaf2"] {
        let p = host.plugin(id);
        let ev = &p["events"];
        assert!(ev["dropped"].as_u64().unwrap() > 250, "{id}: {ev}");
        assert!(
            ev["queued"].as_u64().unwrap() + ev["in_flight"].as_u64().unwrap() <= 10,
            "{id}: {ev}"
        );
        assert_eq!(p["state"], json!("running"), "{id} must not be cut");
    }
    still_serving(&host, "with two slow subscribers");
}

/// The `$iglu/` topics are the host's alone, and integers MessagePack cannot
/// carry are refused, not turned into floats.
#[test]
fn the_cli_cannot_publish_lifecycle_topics_or_send_wide_integers() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    let out = host.cli(&[
        "publish",
        "$iglu/plugins/echo/state",
        "{\"state\":\"failed\"}",
        "--retain",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the host's own"), "{err}");
    let r = host.request(&json!({"cmd": "publish", "topic": "$iglu/x", "payload": 1}));
    assert_eq!(r["ok"], json!(false), "{r}");

    let out = host.cli(&["call", "echo", "echo", "{\"n\": 18446744073709551616}"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not fit in 64 bits"), "{err}");
    // The same over the control socket, from any client.
    let mut s = std::os::unix::net::UnixStream::connect(host.control_socket()).unwrap();
    s.write_all(b"{\"cmd\":\"call\",\"plugin\":\"echo\",\"method\":\"echo\",\"args\":[-9223372036854775809],\"timeout_ms\":5000}\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.contains("bad_arguments") && answer.contains("64 bits"),
        "{answer}"
    );
    // Within range it goes through as an integer.
    let out = host.cli(&["call", "echo", "echo", "18446744073709551615"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "18446744073709551615"
    );
}

/// A caller may choose to wait for a restarting plugin instead of failing
/// with `not_running`; a stopped one is not waited for.
#[test]
fn a_call_can_wait_for_a_restarting_plugin() {
    let host = TestHost::start(
        "[restart]\nbackoff_initial_ms = 2000",
        &[plugin("echo", "iglu-plugin-echo", &[])],
    );
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    signal_pid(pid, Signal::SIGKILL);
    host.wait_plugin("echo", "down", |p| p["state"] != json!("running"));
    let at_once = host.call("echo", "echo", json!(1)).unwrap_err();
    assert_eq!(at_once.code, "not_running", "{at_once:?}");
    let out = host.cli(&[
        "call",
        "echo",
        "echo",
        "\"waited\"",
        "--wait",
        "--timeout-ms",
        "20000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"waited\"");
    host.cli(&["stop", "echo"]);
    let r = host.request(&json!({"cmd": "call", "plugin": "echo", "method": "echo", "args": 1, "timeout_ms": 20000, "wait": true}));
    assert_eq!(r["code"], json!("not_running"), "{r}");
    assert!(r["message"].as_str().unwrap().contains("iglu start"), "{r}");
}

/// A plugin that never sets its own parent-death signal (here a shell
/// command, no SDK) still dies with a SIGKILLed host.
#[test]
fn a_plugin_that_ignores_the_parent_death_rule_dies_with_the_host() {
    let mut host = TestHost::start(
        "handshake_timeout_ms = 600000",
        &["[[plugin]]\nid = \"stubborn\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"exec sleep 600\"]\n".to_owned()],
    );
    let pid = host.wait_plugin("stubborn", "a process", |p| p["pid"].as_u64().is_some())["pid"]
        .as_u64()
        .unwrap();
    assert!(alive(pid));
    host.signal(Signal::SIGKILL);
    host.wait_exit(PATIENCE).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "plugin {pid} outlived the SIGKILLed host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
