//! The built-in default config, as `iglu run` with no config file starts
//! it (the README's first command): every example plugin runs, the slots
//! that must provide an interface do, and the demo home's loop closes
//! through a typed plugin-to-plugin call (automation -> lights).

#![allow(clippy::unwrap_used)]

use iglu_tests::TestHost;
use serde_json::json;

#[test]
fn the_built_in_config_runs_the_demo_home_through_typed_plugin_calls() {
    let host = TestHost::start_builtin();
    for id in ["echo", "thermostat", "lights", "automation", "history"] {
        host.wait_state(id, "running");
    }
    let interfaces = |id: &str| -> Vec<String> {
        host.plugin(id)["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(interfaces("lights").contains(&"iglu.light".to_owned()));
    assert!(interfaces("thermostat").contains(&"iglu.thermostat".to_owned()));
    // Simulated motion (every 2 s, in one of four rooms) -> automation ->
    // LightClient::set on lights -> the light's state.
    let lit = host.eventually("automation to switch a light on", || {
        let list = host.call("lights", "iglu.light.list", json!({})).ok()?;
        list["ok"]
            .as_array()?
            .iter()
            .find(|l| l["by"] == json!("automation: motion"))
            .cloned()
    });
    let room = lit["room"].as_str().unwrap();
    // Its state is what lights published, retained, for the room.
    let state = host.eventually("the light's published state", || {
        let r = host
            .call(
                "history",
                "query",
                json!({"topic": format!("home/{room}/light/state"), "limit": 5}),
            )
            .ok()?;
        r.as_array()?
            .iter()
            .find(|e| {
                e["source"] == json!("lights") && e["payload"]["by"] == json!("automation: motion")
            })
            .cloned()
    });
    assert_eq!(state["payload"]["on"], json!(true), "{state}");
    assert_eq!(host.plugin("automation")["restarts"], json!(0));
    // The built-in config grants the demo plugins just what they need.
    for id in ["lights", "automation"] {
        assert_eq!(
            host.plugin(id)["permission_denied"],
            json!(0),
            "{id}: {}",
            host.log()
        );
    }
}
