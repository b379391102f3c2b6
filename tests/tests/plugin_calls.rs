//! Plugin-to-plugin calls through the host (`plugins.call`), with real
//! plugin processes: allowed by the caller's `calls`, the callee's answers
//! and errors passed through, deadlines carried, CANCEL propagated over
//! both hops, a callee that dies failing the call at once, and waiting for
//! a restarting callee when asked.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use iglu_tests::{plugin, signal_pid, TestHost};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// `a` may call `b`; `b` may call nobody.
fn host() -> TestHost {
    let a = format!("{}calls = [\"b\"]\n", plugin("a", "iglu-plugin-echo", &[]));
    let host = TestHost::start(
        "[restart]\nbackoff_initial_ms = 300\n",
        &[a, plugin("b", "iglu-plugin-echo", &[])],
    );
    host.wait_state("a", "running");
    host.wait_state("b", "running");
    host
}

fn relay(host: &TestHost, from: &str, args: Value) -> Value {
    host.call(from, "relay", args).unwrap()
}

#[test]
fn a_plugin_calls_another_and_gets_its_answers_and_errors() {
    let host = host();
    let r = relay(
        &host,
        "a",
        json!({"plugin": "b", "method": "echo", "args": {"x": [1, 2]}}),
    );
    assert_eq!(r["ok"], json!({"x": [1, 2]}), "{r}");
    let r = relay(
        &host,
        "a",
        json!({"plugin": "b", "method": "fail", "args": {"message": "no"}}),
    );
    assert_eq!(r["code"], json!("handler_error"), "{r}");
    assert!(r["message"].as_str().unwrap().contains("no"), "{r}");
    let r = relay(&host, "a", json!({"plugin": "b", "method": "nope"}));
    assert_eq!(r["code"], json!("method_not_found"), "{r}");
    // Not allowed: b has no `calls`, and a may call only b.
    let r = relay(
        &host,
        "b",
        json!({"plugin": "a", "method": "echo", "args": 1}),
    );
    assert_eq!(r["code"], json!("permission_denied"), "{r}");
    assert!(r["message"].as_str().unwrap().contains("calls"), "{r}");
    let r = relay(&host, "a", json!({"plugin": "nobody", "method": "echo"}));
    assert_eq!(r["code"], json!("permission_denied"), "{r}");
}

#[test]
fn the_deadline_is_carried_and_cancel_reaches_the_callee_over_both_hops() {
    let host = host();
    // The forwarded call's deadline is the caller's: b is told to stop.
    let started = Instant::now();
    let r = relay(
        &host,
        "a",
        json!({"plugin": "b", "method": "sleep", "args": {"ms": 20_000}, "deadline_ms": 300}),
    );
    assert_eq!(r["code"], json!("timeout"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(10));
    host.eventually("b to see the first CANCEL", || {
        (host.call("b", "cancelled", json!(null)).unwrap() == json!(1)).then_some(())
    });
    // The caller's caller gives up: the CLI's 300 ms deadline cancels a's
    // relay, whose dropped host call cancels the forwarded call on b.
    let err = host
        .call_with_timeout(
            "a",
            "relay",
            json!({"plugin": "b", "method": "sleep", "args": {"ms": 20_000}, "deadline_ms": 30_000}),
            300,
        )
        .unwrap_err();
    assert_eq!(err.code, "timeout");
    host.eventually("b to see the CANCEL from two hops away", || {
        (host.call("b", "cancelled", json!(null)).unwrap() == json!(2)).then_some(())
    });
}

#[test]
fn a_callee_that_dies_fails_the_call_at_once_and_a_restarting_one_can_be_waited_for() {
    let host = host();
    let pid = host.plugin("b")["pid"].as_u64().unwrap();
    // b hangs in a call; killing it fails a's call at once, not at the deadline.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        signal_pid(pid, Signal::SIGKILL);
    });
    let started = Instant::now();
    let r = relay(
        &host,
        "a",
        json!({"plugin": "b", "method": "sleep", "args": {"ms": 60_000}, "deadline_ms": 60_000}),
    );
    killer.join().unwrap();
    assert_eq!(r["code"], json!("plugin_crashed"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // While b restarts, a call that asks to wait gets through.
    host.wait_new_pid("b", pid);
    let pid = host.plugin("b")["pid"].as_u64().unwrap();
    signal_pid(pid, Signal::SIGKILL);
    host.wait_plugin("b", "b to be down", |p| p["state"] != json!("running"));
    let r = relay(
        &host,
        "a",
        json!({"plugin": "b", "method": "echo", "args": "late", "deadline_ms": 20_000, "wait_for_running": true}),
    );
    assert_eq!(r["ok"], json!("late"), "{r}");
}
