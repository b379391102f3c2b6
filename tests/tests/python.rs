//! A plugin in another language (Python, pyzmq + msgpack) under a real host:
//! the protocol document is enough to write one.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use iglu_tests::{signal_pid, TestHost};
use nix::sys::signal::Signal;
use serde_json::json;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/python/comfort.py")
}

/// A test that cannot run must not pass: without the Python packages it
/// fails, saying what to install.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import zmq, msgpack"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with pyzmq and msgpack is needed for this test: pip install pyzmq msgpack"
    );
    ok
}

#[test]
fn python_plugin_serves_calls_events_and_survives_a_crash() {
    if !python_ready() {
        return;
    }
    let spec = format!(
        "[[plugin]]\nid = \"comfort\"\ncommand = \"python3\"\nargs = [{:?}]\n",
        script().display().to_string()
    );
    let host = TestHost::start("[restart]\nbackoff_initial_ms = 50", &[spec]);
    let p = host.wait_state("comfort", "running");
    assert_eq!(p["name"], json!("Comfort"));
    assert_eq!(
        host.call("comfort", "echo", json!({"a": [1, "x"]}))
            .unwrap(),
        json!({"a": [1, "x"]})
    );
    for c in [20.0, 22.0] {
        let r = host.request(
            &json!({"cmd": "publish", "topic": "home/den/temperature", "payload": {"celsius": c}}),
        );
        assert_eq!(r["ok"], json!(true));
    }
    let avg = host.eventually("two readings averaged", || {
        let a = host
            .call("comfort", "average", json!({"room": "den"}))
            .ok()?;
        (a["readings"] == json!(2)).then_some(a)
    });
    assert_eq!(avg["celsius"], json!(21.0));
    let err = host.call("comfort", "average", json!("den")).unwrap_err();
    assert_eq!(err.code, "bad_arguments");

    // Calls that wait together reach the plugin as one batch (one CALL per
    // frame); a plugin that read only the first frame would leave the rest
    // unanswered.
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let host = &host;
                s.spawn(move || host.call("comfort", "echo", json!(i)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), json!(i), "call {i}");
    }

    let pid = p["pid"].as_u64().unwrap();
    signal_pid(pid, Signal::SIGKILL);
    let p = host.wait_new_pid("comfort", pid);
    assert_eq!(p["last_exit"], json!("killed by signal SIGKILL"));
    assert_eq!(
        host.call("comfort", "rooms", json!(null)).unwrap(),
        json!([])
    );

    let out = host.cli(&["stop", "comfort"]);
    assert!(out.status.success());
    assert_eq!(
        host.plugin("comfort")["last_exit"],
        json!("stopped by the host; exited with code 0")
    );
}
