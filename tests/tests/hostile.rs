//! A hostile peer or a badly written plugin must not freeze, slow, starve or
//! fill the host: floods without reading, rejected peers that hang on, idle
//! control clients, oversized requests and events. Real processes, real sockets.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use iglu_tests::{alive, fresh_dir, plugin, plugin_with_env, signal_pid, TestHost, PATIENCE};
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
        call.as_ref().is_ok_and(|r| r["result"] == json!("still here")),
        "{what}: echo did not answer: {call:?}\n--- host log ---\n{}",
        host.log()
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
fn managed_flood_then_sigkill(mode: &str) {
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
    let first = host.wait_state("flooder", "running")["pid"].as_u64().unwrap();
    host.wait_state("echo", "running");
    host.eventually("the flooder to finish its flood", || {
        reports(&report)
            .iter()
            .any(|r| r["event"] == json!("flooded") || r["event"] == json!("flood_stopped"))
            .then_some(())
    });
    still_serving(&host, "while a plugin floods without reading");
    // The host may already have cut it for not reading; kill it either way.
    signal_pid(first, Signal::SIGKILL);
    host.eventually("the flooder's process to be gone", || {
        (!alive(first)).then_some(())
    });
    still_serving(&host, "after the flooder was killed");
    // Its next launch does not flood, and must get through the handshake.
    host.wait_new_pid("flooder", first);
    stops_cleanly(host);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plugin_flooding_host_calls_without_reading_then_killed_does_not_freeze_the_host() {
    managed_flood_then_sigkill("flood-calls");
}

#[test]
fn a_plugin_flooding_garbage_without_reading_then_killed_does_not_freeze_the_host() {
    managed_flood_then_sigkill("flood-garbage");
}
