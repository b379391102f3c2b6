//! The host embedded as a library in a Rust program, with real plugin processes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use iglu_host::events::payload;
use iglu_host::{Config, Host, PluginState};
use iglu_tests::{fresh_dir, plugin_with_env};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(30);

/// A host embedded in this test with the echo plugin, once the plugin is Running.
async fn host_with_echo(
    tag: &str,
) -> (
    Host,
    tokio::sync::broadcast::Receiver<iglu_host::events::lifecycle::LifecycleEvent>,
    std::path::PathBuf,
) {
    let dir = fresh_dir(tag);
    let text = format!(
        "runtime_dir = {:?}\ndata_dir = \"data\"\n{}",
        dir.join("rt").display().to_string(),
        plugin_with_env(
            "echo",
            "iglu-plugin-echo",
            &[],
            &[("ECHO_SUBSCRIBE", "home/#")]
        )
    );
    let config = Config::parse(&text, &dir.join("iglu.toml")).unwrap();
    let host = Host::start(config).await.unwrap();
    let mut lifecycle = host.lifecycle();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let change = lifecycle.recv().await.unwrap();
            if change.plugin == "echo" && change.state == PluginState::Running {
                break;
            }
        }
    })
    .await
    .unwrap();
    (host, lifecycle, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_its_caller_abandons_is_cancelled_in_the_plugin() {
    let (host, _lifecycle, dir) = host_with_echo("embed-cancel").await;
    let args = payload(&json!({"ms": 120_000})).unwrap();
    // The caller gives up long before the call's own deadline (and the
    // plugin's, which counts from the same 120 s): only a CANCEL can stop it.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        host.call("echo", "sleep", args, Duration::from_secs(120)),
    )
    .await;
    assert!(abandoned.is_err(), "the sleep cannot have finished");
    tokio::time::timeout(PATIENCE, async {
        loop {
            let r = host
                .call(
                    "echo",
                    "cancelled",
                    payload(&json!(null)).unwrap(),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            if rmp_serde::from_slice::<u64>(&r).unwrap() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the plugin stopped the abandoned call");
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_publish_call_and_watch_lifecycle() {
    let (host, mut lifecycle, dir) = host_with_echo("embed").await;

    // Publish from the embedding program; an in-process subscriber and the plugin both get it.
    let mut tap = host.subscribe(vec!["home/#".into()], 16).unwrap();
    host.publish(
        "home/porch/motion",
        payload(&json!({"detected": true})).unwrap(),
        false,
    )
    .unwrap();
    let seen = tokio::time::timeout(PATIENCE, tap.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.topic, "home/porch/motion");
    assert_eq!(seen.source, "host");

    let got = tokio::time::timeout(PATIENCE, async {
        loop {
            let args = payload(&json!({"limit": 10})).unwrap();
            let r = host
                .call("echo", "events", args, Duration::from_secs(10))
                .await
                .unwrap();
            let events: Value = rmp_serde::from_slice(&r).unwrap();
            if let Some(e) = events.as_array().and_then(|a| a.first()).cloned() {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(got["topic"], json!("home/porch/motion"));
    assert_eq!(got["payload"], json!({"detected": true}));

    // A retained state is given first to a new in-process subscriber.
    host.publish(
        "home/porch/light",
        payload(&json!({"on": true})).unwrap(),
        true,
    )
    .unwrap();
    let mut late = host.subscribe(vec!["home/porch/+".into()], 16).unwrap();
    let first = tokio::time::timeout(PATIENCE, late.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.topic, "home/porch/light");
    assert!(first.retained, "{first:?}");

    // Lifecycle of a restart, seen from the embedding program.
    host.restart_plugin("echo").await.unwrap();
    let mut states = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let change = lifecycle.recv().await.unwrap();
            if change.plugin == "echo" {
                states.push(change.state);
                if change.state == PluginState::Running {
                    break;
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        states,
        vec![
            PluginState::Stopping,
            PluginState::Stopped,
            PluginState::Starting,
            PluginState::Running
        ],
        "{states:?}"
    );
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A Rust caller tells the ways a call fails apart by type, not by string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_says_how_it_failed_as_a_type() {
    let (host, _lifecycle, dir) = host_with_echo("errors").await;
    let args = || payload(&json!({"ms": 60_000})).unwrap();
    let short = Duration::from_millis(200);
    match host.call("nobody", "echo", args(), short).await {
        Err(iglu_host::CallError::UnknownPlugin(id)) => assert_eq!(id, "nobody"),
        other => panic!("{other:?}"),
    }
    match host.call("echo", "sleep", args(), short).await {
        Err(e @ iglu_host::CallError::Timeout { deadline, .. }) => {
            assert_eq!(deadline, short);
            assert_eq!(e.code(), iglu_bus::ErrorCode::Timeout);
        }
        other => panic!("{other:?}"),
    }
    match host.call("echo", "no_such_method", args(), short).await {
        Err(iglu_host::CallError::Remote(e)) => {
            assert_eq!(e.code, iglu_bus::ErrorCode::MethodNotFound)
        }
        other => panic!("{other:?}"),
    }
    host.stop_plugin("echo").await.unwrap();
    match host.call("echo", "echo", args(), short).await {
        Err(iglu_host::CallError::NotRunning { plugin, .. }) => assert_eq!(plugin, "echo"),
        other => panic!("{other:?}"),
    }
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
