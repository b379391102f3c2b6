//! A plugin in another language (Python, pyzmq + msgpack) under a real host
//! (unsandboxed: its interpreter lives wherever the machine keeps it, pyenv
//! here; the sandbox itself is tested in `sandbox.rs`):
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
        "[[plugin]]\nid = \"comfort\"\ncommand = \"python3\"\nargs = [{:?}]\nsandbox = {{ enabled = false }}\n",
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

/// The interface the Python plugin implements, declared here as a Rust
/// crate would declare it; its typed client calls the Python plugin.
mod comfort {
    use iglu_sdk::Context;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct RoomAverage {
        pub room: String,
        pub celsius: f64,
        pub readings: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum ComfortError {
        NoReadings,
    }

    #[iglu_sdk::interface(name = "iglu.comfort", version = "1.0.0")]
    pub trait Comfort {
        async fn average(&self, ctx: Context, room: String) -> Result<RoomAverage, ComfortError>;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_typed_client_calls_the_python_plugins_interface() {
    use comfort::{ComfortClient, ComfortError};
    use iglu_sdk::interface::InterfaceError;
    if !python_ready() {
        return;
    }
    let dir = iglu_tests::fresh_dir("python-typed");
    let text = format!(
        "runtime_dir = {:?}\ndata_dir = \"data\"\n[[plugin]]\nid = \"comfort\"\ncommand = \"python3\"\nargs = [{:?}]\nsandbox = {{ enabled = false }}\nprovides = [\"iglu.comfort@^1\"]\n",
        dir.join("rt").display().to_string(),
        script().display().to_string()
    );
    let config = iglu_host::Config::parse(&text, &dir.join("iglu.toml")).unwrap();
    let host = iglu_host::Host::start(config).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while host
            .plugin_status("comfort")
            .is_none_or(|p| p.state != iglu_host::PluginState::Running)
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let status = host.plugin_status("comfort").unwrap();
    assert_eq!(status.interfaces[0].name, "iglu.comfort");
    let comfort = ComfortClient::new(host.client(), "comfort");
    match comfort.average("den".into()).await {
        Err(InterfaceError::Plugin(ComfortError::NoReadings)) => {}
        other => panic!("{other:?}"),
    }
    for c in [18.0, 20.0] {
        host.publish(
            "home/den/temperature",
            iglu_host::events::payload(&json!({"celsius": c})).unwrap(),
            false,
        )
        .unwrap();
    }
    let avg = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let Ok(a) = comfort.average("den".into()).await {
                if a.readings == 2 {
                    break a;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(avg.celsius, 19.0);
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
