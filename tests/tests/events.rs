//! The event bus through real plugin processes: subscriptions, retained
//! state, lifecycle events, ordering, overflow, restarts, bad publishers.
#![allow(clippy::unwrap_used)]

use iglu_tests::events::{events, publish, stats, subscriber, wait_event};
use iglu_tests::{plugin, plugin_with_env, signal_pid, TestHost};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

#[test]
fn cli_publish_reaches_matching_subscribers_only() {
    let host = TestHost::start(
        "",
        &[
            subscriber("motion", "home/+/motion"),
            subscriber("kitchen", "home/kitchen/#"),
        ],
    );
    host.wait_state("motion", "running");
    host.wait_state("kitchen", "running");
    let out = host.cli(&["publish", "home/kitchen/motion", r#"{"detected":true}"#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    publish(&host, "home/garden/light", json!({"on": true}), false);
    publish(&host, "home/kitchen/light", json!({"on": true}), false);
    let e = wait_event(&host, "motion", "kitchen motion", |e| {
        e["topic"] == json!("home/kitchen/motion")
    });
    assert_eq!(e["payload"], json!({"detected": true}));
    assert_eq!(e["source"], json!("host"));
    assert_eq!(e["retained"], json!(false));
    wait_event(&host, "kitchen", "kitchen light", |e| {
        e["topic"] == json!("home/kitchen/light")
    });
    // Ordering per publisher: the kitchen light came after the motion, so the
    // motion subscriber has seen everything it will; the garden never matched.
    let topics: Vec<Value> = events(&host, "kitchen")
        .iter()
        .map(|e| e["topic"].clone())
        .collect();
    assert_eq!(
        topics,
        vec![json!("home/kitchen/motion"), json!("home/kitchen/light")]
    );
    let motion: Vec<Value> = events(&host, "motion")
        .iter()
        .map(|e| e["topic"].clone())
        .collect();
    assert_eq!(motion, vec![json!("home/kitchen/motion")]);
    let status = host.plugin("kitchen");
    assert_eq!(status["subscriptions"], json!(["home/kitchen/#"]));
    host.wait_plugin("kitchen", "2 delivered", |p| {
        p["events"]["delivered"] == json!(2)
    });

    let bad = host.request(&json!({"cmd": "publish", "topic": "home/+/motion", "payload": null}));
    assert_eq!(bad["code"], json!("bad_arguments"), "{bad}");
}

#[test]
fn retained_state_comes_first_on_subscribe_and_after_a_restart() {
    let host = TestHost::start(
        "[restart]\nbackoff_initial_ms = 50",
        &[
            subscriber("lights", "home/+/light/state"),
            subscriber("late", ""),
        ],
    );
    host.wait_state("lights", "running");
    host.wait_state("late", "running");
    publish(&host, "home/kitchen/light/state", json!({"on": true}), true);
    publish(&host, "home/hall/light/state", json!({"on": false}), true);
    publish(&host, "home/hall/light/state", json!({"on": true}), true);
    wait_event(&host, "lights", "the live hall state", |e| {
        e["topic"] == json!("home/hall/light/state") && e["payload"] == json!({"on": true})
    });

    // A runtime subscription gets the current state of every matching topic.
    host.call(
        "late",
        "subscribe",
        json!({"filters": ["home/+/light/state"]}),
    )
    .unwrap();
    let kitchen = wait_event(&host, "late", "retained kitchen", |e| {
        e["topic"] == json!("home/kitchen/light/state")
    });
    assert_eq!(kitchen["retained"], json!(true));
    let hall = wait_event(&host, "late", "retained hall", |e| {
        e["topic"] == json!("home/hall/light/state")
    });
    assert_eq!(
        hall["payload"],
        json!({"on": true}),
        "only the latest state is retained"
    );
    assert_eq!(events(&host, "late").len(), 2);

    // A restarted plugin starts from the current state too.
    let pid = host.plugin("lights")["pid"].as_u64().unwrap();
    signal_pid(pid, Signal::SIGKILL);
    host.wait_new_pid("lights", pid);
    let got = host.eventually("retained states after the restart", || {
        let evs = events(&host, "lights");
        (evs.len() == 2).then_some(evs)
    });
    assert!(got.iter().all(|e| e["retained"] == json!(true)), "{got:?}");

    // A nil retained payload clears the state.
    publish(&host, "home/kitchen/light/state", json!(null), true);
    host.call("late", "subscribe", json!({"filters": ["home/kitchen/#"]}))
        .unwrap();
    publish(&host, "home/kitchen/marker", json!(1), false);
    wait_event(&host, "late", "the marker", |e| {
        e["topic"] == json!("home/kitchen/marker")
    });
    let kitchen_states = events(&host, "late")
        .iter()
        .filter(|e| e["topic"] == json!("home/kitchen/light/state") && e["retained"] == json!(true))
        .count();
    assert_eq!(kitchen_states, 1, "no retained state after it was cleared");
}

#[test]
fn lifecycle_of_a_killed_plugin_is_seen_by_another() {
    let host = TestHost::start(
        "[restart]\nbackoff_initial_ms = 50",
        &[
            subscriber("watcher", "$iglu/plugins/+/state"),
            plugin("victim", "iglu-plugin-echo", &[]),
        ],
    );
    host.wait_state("watcher", "running");
    let pid = host.wait_state("victim", "running")["pid"]
        .as_u64()
        .unwrap();
    signal_pid(pid, Signal::SIGKILL);
    host.wait_new_pid("victim", pid);
    let crashed = wait_event(&host, "watcher", "victim crashed", |e| {
        e["topic"] == json!("$iglu/plugins/victim/state")
            && e["payload"]["state"] == json!("crashed")
    });
    assert_eq!(
        crashed["payload"]["reason"],
        json!("killed by signal SIGKILL")
    );
    assert_eq!(crashed["source"], json!("host"));
    wait_event(&host, "watcher", "victim running again", |e| {
        e["topic"] == json!("$iglu/plugins/victim/state")
            && e["payload"]["state"] == json!("running")
            && e["payload"]["restarts"] == json!(1)
    });
    // `#` does not reach into the host's `$` tree.
    let host2 = TestHost::start("", &[subscriber("all", "#")]);
    host2.wait_state("all", "running");
    publish(&host2, "home/x", json!(1), false);
    wait_event(&host2, "all", "home/x", |e| e["topic"] == json!("home/x"));
    assert!(events(&host2, "all")
        .iter()
        .all(|e| !e["topic"].as_str().unwrap().starts_with('$')));
}

#[test]
fn subscribe_and_unsubscribe_at_runtime() {
    let host = TestHost::start("", &[subscriber("s", "")]);
    host.wait_state("s", "running");
    host.call("s", "subscribe", json!({"filters": ["a/#", "b/#"]}))
        .unwrap();
    publish(&host, "a/1", json!(1), false);
    wait_event(&host, "s", "a/1", |e| e["topic"] == json!("a/1"));
    assert_eq!(
        host.call("s", "unsubscribe", json!({"filters": ["a/#"]}))
            .unwrap(),
        json!(1)
    );
    publish(&host, "a/2", json!(2), false);
    publish(&host, "b/1", json!(3), false);
    // b/1 was published after a/2, so once b/1 is in, a/2 would be too.
    wait_event(&host, "s", "b/1", |e| e["topic"] == json!("b/1"));
    assert!(!events(&host, "s")
        .iter()
        .any(|e| e["topic"] == json!("a/2")));
    let err = host
        .call("s", "subscribe", json!({"filters": ["a/#/b"]}))
        .unwrap_err();
    assert_eq!(err.code, "handler_error");
    assert!(
        err.message.contains("'#' must be the last level"),
        "{err:?}"
    );
}

#[test]
fn plugins_talk_through_the_host_and_in_order() {
    let host = TestHost::start(
        "",
        &[
            subscriber("talker", "chat/#"),
            subscriber("listener", "chat/#"),
            plugin_with_env(
                "mirror",
                "iglu-plugin-echo",
                &[],
                &[("ECHO_SUBSCRIBE", "chat/#"), ("ECHO_RECEIVE_OWN", "1")],
            ),
        ],
    );
    for id in ["talker", "listener", "mirror"] {
        host.wait_state(id, "running");
    }
    assert_eq!(
        host.call(
            "talker",
            "publish_many",
            json!({"topic": "chat/lines", "count": 1000})
        )
        .unwrap(),
        json!(1000)
    );
    let s = host.eventually("1000 events at the listener", || {
        let s = stats(&host, "listener");
        (s["received"] == json!(1000)).then_some(s)
    });
    assert_eq!(s["out_of_order"], json!(0), "{s}");
    assert_eq!(s["missed"], json!(0), "{s}");
    let first = &events(&host, "listener")[0];
    assert_eq!(first["source"], json!("talker"));
    assert_eq!(first["payload"], json!({"n": 0}));
    // The mirror asked for its own events.
    host.call(
        "mirror",
        "publish",
        json!({"topic": "chat/self", "payload": "me"}),
    )
    .unwrap();
    wait_event(&host, "mirror", "its own event", |e| {
        e["topic"] == json!("chat/self")
    });
    // The talker did not ask: once the mirror's event reached it, its own would have too.
    wait_event(&host, "talker", "the mirror's event", |e| {
        e["topic"] == json!("chat/self")
    });
    assert_eq!(
        stats(&host, "talker")["received"],
        json!(1),
        "only the mirror's event"
    );
}

#[test]
fn a_publisher_sending_garbage_gets_errors_and_nobody_else_is_affected() {
    let host = TestHost::start(
        "",
        &[
            plugin("rude", "iglu-plugin-echo", &[]),
            subscriber("sub", "home/#"),
        ],
    );
    host.wait_state("rude", "running");
    host.wait_state("sub", "running");
    let err = host
        .call(
            "rude",
            "publish_raw",
            json!({"topic": "home/x", "payload": [0x92, 0x01]}),
        )
        .unwrap_err();
    assert_eq!(err.code, "handler_error");
    assert!(
        err.message.contains("not a MessagePack document"),
        "{err:?}"
    );
    let err = host
        .call(
            "rude",
            "publish_raw",
            json!({"topic": "home/x", "payload": [0x01, 0x02]}),
        )
        .unwrap_err();
    assert!(
        err.message.contains("after its MessagePack document"),
        "{err:?}"
    );
    for topic in ["home/+/x", "home//x", "$iglu/plugins/sub/state"] {
        let err = host
            .call("rude", "publish", json!({"topic": topic, "payload": 1}))
            .unwrap_err();
        assert!(err.message.contains("bad_arguments"), "{topic}: {err:?}");
    }
    host.call("rude", "publish", json!({"topic": "home/ok", "payload": 1}))
        .unwrap();
    wait_event(&host, "sub", "the good event", |e| {
        e["topic"] == json!("home/ok")
    });
    assert_eq!(events(&host, "sub").len(), 1, "nothing else got through");
    assert_eq!(host.plugin("rude")["restarts"], json!(0));
    assert_eq!(host.plugin("sub")["restarts"], json!(0));
}

#[test]
fn the_demo_home_runs_and_automation_keeps_its_state() {
    let automation = format!(
        "{}calls = [\"lights\"]\n",
        plugin("automation", "iglu-plugin-automation", &[])
    );
    let host = TestHost::start(
        "[simulator]\nenabled = true\ninterval_ms = 50\n[restart]\nbackoff_initial_ms = 50",
        &[
            plugin_with_env(
                "lights",
                "iglu-plugin-lights",
                &[],
                &[("IGLU_LIGHTS_ROOMS", "kitchen,living_room,bedroom,hallway")],
            ),
            automation,
            plugin("history", "iglu-plugin-history", &[]),
        ],
    );
    host.wait_state("lights", "running");
    host.wait_state("automation", "running");
    host.wait_state("history", "running");
    let motion = host.eventually("motion in the history", || {
        let r = host
            .call(
                "history",
                "query",
                json!({"topic": "home/+/motion", "limit": 10}),
            )
            .ok()?;
        r.as_array().filter(|a| !a.is_empty()).cloned()
    });
    assert!(motion
        .iter()
        .all(|e| e["topic"].as_str().unwrap().ends_with("/motion")));
    // Motion -> automation -> typed call to lights (iglu.light.set, plugin
    // to plugin) -> the light's state, published by lights.
    let switched = host.eventually("a light switched on by automation", || {
        let r = host
            .call(
                "history",
                "query",
                json!({"topic": "home/+/light/state", "limit": 20}),
            )
            .ok()?;
        r.as_array()?
            .iter()
            .find(|e| {
                e["source"] == json!("lights")
                    && e["payload"]["on"] == json!(true)
                    && e["payload"]["by"] == json!("automation: motion")
            })
            .cloned()
    });
    let room = switched["topic"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_owned();
    let light = host
        .call("lights", "iglu.light.state", json!({"room": room}))
        .unwrap();
    assert!(light["ok"]["switches"].as_u64().unwrap() >= 1, "{light}");
    // No command events: automation switched it through the interface.
    let commands = host
        .call(
            "history",
            "query",
            json!({"topic": "home/+/light/set", "limit": 1}),
        )
        .unwrap();
    assert_eq!(
        commands,
        json!([]),
        "automation published commands: {commands}"
    );
    let before = host.eventually("automation rules", || {
        let r = host.call("automation", "rules", json!(null)).ok()?;
        r.as_array().filter(|a| !a.is_empty()).cloned()
    });
    let pid = host.plugin("automation")["pid"].as_u64().unwrap();
    signal_pid(pid, Signal::SIGKILL);
    host.wait_new_pid("automation", pid);
    let after = host.call("automation", "rules", json!(null)).unwrap();
    let activations = |rules: &[Value]| -> u64 {
        rules
            .iter()
            .map(|r| r["activations"].as_u64().unwrap())
            .sum()
    };
    assert!(
        activations(after.as_array().unwrap()) >= activations(&before),
        "{before:?} -> {after}"
    );
}
