//! The host's bounds, from the outside: idle and endless control clients,
//! slow subscribers and big events, what the CLI may not publish or send,
//! waiting for a restarting plugin, and plugins that ignore the
//! parent-death rule. Real processes, real sockets.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use iglu_tests::raw::memory_kib;
use iglu_tests::{alive, plugin, signal_pid, still_serving, StopOnDrop, TestHost, PATIENCE};
use nix::sys::signal::Signal;
use serde_json::json;

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
