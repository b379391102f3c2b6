//! Interfaces end to end: the thermostat plugin implements
//! `iglu.thermostat`, and this program (embedding the host) calls it through
//! the typed client; the plugin's own errors, a plugin that does not
//! implement it, an incompatible major version and a missing required
//! interface are each their own case. Plugin-to-plugin typed calls go
//! through the host (`echo`'s `thermostat_room`).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use iglu_host::{Config, Host, PluginState};
use iglu_interfaces::thermostat::{ThermostatClient, ThermostatError};
use iglu_sdk::interface::InterfaceError;
use iglu_sdk::Context;
use iglu_tests::{fresh_dir, plugin};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(30);

/// The same interface, one major version later: its client must be refused.
mod v2 {
    use super::*;
    use iglu_interfaces::thermostat::RoomState;

    #[iglu_sdk::interface(name = "iglu.thermostat", version = "2.0.0")]
    pub trait Thermostat {
        async fn room(&self, ctx: Context, room: String) -> Result<RoomState, ThermostatError>;
    }
}

async fn start(tag: &str, extra: &str) -> (Host, std::path::PathBuf) {
    let dir = fresh_dir(tag);
    let echo = format!(
        "{}calls = [\"thermostat\", \"echo\"]\n",
        plugin("echo", "iglu-plugin-echo", &[])
    );
    let text = format!(
        "runtime_dir = {:?}\ndata_dir = \"data\"\n{}{}provides = [\"iglu.thermostat@^1\"]\n{echo}{extra}",
        dir.join("rt").display().to_string(),
        plugin("thermostat", "iglu-plugin-thermostat", &[]),
        "",
    );
    let config = Config::parse(&text, &dir.join("iglu.toml")).unwrap();
    let host = Host::start(config).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let st = host.status();
            if ["thermostat", "echo"].iter().all(|id| {
                st.iter()
                    .any(|p| p.id == *id && p.state == PluginState::Running)
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    (host, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_program_calls_a_plugin_through_its_typed_client() {
    let (host, dir) = start("typed-embedding", "").await;
    let thermostat = ThermostatClient::new(host.client(), "thermostat");
    let state = thermostat.set_target("hall".into(), 21.5).await.unwrap();
    assert_eq!((state.room.as_str(), state.target), ("hall", 21.5));
    let state = thermostat.reading("hall".into(), 19.0).await.unwrap();
    assert!(state.heating, "{state:?}");
    assert_eq!(thermostat.room("hall".into()).await.unwrap(), state);
    // The interface's own error, typed.
    match thermostat.set_target("hall".into(), 99.0).await {
        Err(InterfaceError::Plugin(ThermostatError::OutOfRange { celsius, max, .. })) => {
            assert_eq!((celsius, max), (99.0, 30.0))
        }
        other => panic!("{other:?}"),
    }
    match thermostat.room(String::new()).await {
        Err(InterfaceError::Plugin(ThermostatError::BadRoom)) => {}
        other => panic!("{other:?}"),
    }
    // A plugin that does not implement it: refused before any call, naming what it has.
    match ThermostatClient::new(host.client(), "echo")
        .room("hall".into())
        .await
    {
        Err(InterfaceError::NotImplemented(m)) => {
            assert!(m.contains("does not implement iglu.thermostat"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Another major version: refused, naming both.
    match v2::ThermostatClient::new(host.client(), "thermostat")
        .room("hall".into())
        .await
    {
        Err(InterfaceError::Incompatible(m)) => {
            assert!(m.contains("1.0.0") && m.contains("2.0.0"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    match ThermostatClient::new(host.client(), "nobody")
        .room("hall".into())
        .await
    {
        Err(InterfaceError::UnknownPlugin(_)) => {}
        other => panic!("{other:?}"),
    }
    // A dead plugin: its calls fail with the crash, typed.
    host.stop_plugin("thermostat").await.unwrap();
    match thermostat.room("hall".into()).await {
        Err(InterfaceError::NotRunning(_)) => {}
        other => panic!("{other:?}"),
    }
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_calls_another_through_the_typed_client_and_the_host_checks_versions() {
    let (host, dir) = start("typed-plugins", "").await;
    let args = iglu_host::json_msgpack::to_msgpack(&json!({"room": "attic"})).unwrap();
    let answer = host
        .call(
            "echo",
            "thermostat_room",
            args.into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let answer = iglu_host::json_msgpack::to_json(&answer).unwrap();
    assert_eq!(answer["room"]["room"], json!("attic"), "{answer}");
    assert_eq!(answer["room"]["target"], json!(20.0), "{answer}");
    // Through the host, a plugin's typed call to a plugin without the
    // interface is refused by the host before anything is sent.
    let args =
        iglu_host::json_msgpack::to_msgpack(&json!({"room": "attic", "plugin": "echo"})).unwrap();
    let answer = host
        .call(
            "echo",
            "thermostat_room",
            args.into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let answer = iglu_host::json_msgpack::to_json(&answer).unwrap();
    assert_eq!(answer["error"], json!("not_implemented"), "{answer}");
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_without_the_interface_its_slot_requires_is_refused_with_a_reason() {
    let dir = fresh_dir("typed-provides");
    let text = format!(
        "runtime_dir = {:?}\ndata_dir = \"data\"\n{}provides = [\"iglu.thermostat@^1\"]\n",
        dir.join("rt").display().to_string(),
        plugin("echo", "iglu-plugin-echo", &[]),
    );
    let config = Config::parse(&text, &dir.join("iglu.toml")).unwrap();
    let host = Host::start(config).await.unwrap();
    let exit = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(p) = host.plugin_status("echo") {
                if let Some(e) = p.last_exit.filter(|_| p.state != PluginState::Running) {
                    break e;
                }
                assert_ne!(
                    p.state,
                    PluginState::Running,
                    "admitted without the interface"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(exit.contains("exited with code 3"), "{exit}");
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_cli_describes_interfaces_and_calls_them_by_interface_method_names() {
    let host =
        iglu_tests::TestHost::start("", &[plugin("thermostat", "iglu-plugin-thermostat", &[])]);
    host.wait_state("thermostat", "running");
    let out = host.cli(&["describe", "thermostat"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("iglu.thermostat")
            && [
                "1.0.0",
                "set_target",
                "room: String, celsius: f64",
                "RoomState",
                "ThermostatError"
            ]
            .iter()
            .all(|cell| l.contains(cell))),
        "{text}"
    );
    let out = host.cli(&["describe", "thermostat", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["interfaces"][0]["name"],
        json!("iglu.thermostat"),
        "{json}"
    );
    assert_eq!(
        json["interfaces"][0]["methods"][0]["args"][1],
        json!({"name": "celsius", "type": "f64"})
    );
    // `interface.method` names work from the CLI, with JSON; the answer is {"ok": ...} or {"err": ...}.
    let r = host
        .call(
            "thermostat",
            "iglu.thermostat.set_target",
            json!({"room": "den", "celsius": 18.0}),
        )
        .unwrap();
    assert_eq!(r["ok"]["target"], json!(18.0), "{r}");
    let r = host
        .call(
            "thermostat",
            "iglu.thermostat.set_target",
            json!({"room": "den", "celsius": 40.0}),
        )
        .unwrap();
    assert_eq!(r["err"]["out_of_range"]["celsius"], json!(40.0), "{r}");
    // A wrong name says which exist.
    let err = host
        .call("thermostat", "iglu.thermostat.rom", json!({}))
        .unwrap_err();
    assert_eq!(err.code, "method_not_found");
    assert!(
        err.message.contains("iglu.thermostat.room"),
        "{}",
        err.message
    );
}
