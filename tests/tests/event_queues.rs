//! Each plugin's event queue through real plugin processes: bounded with
//! the oldest dropped (and counted, with a visible gap), a slow subscriber
//! apart from a fast one, and events kept across a SIGKILL restart.
#![allow(clippy::unwrap_used)]

use iglu_tests::events::{events, publish, stats, subscriber};
use iglu_tests::{plugin, plugin_with_env, signal_pid, TestHost};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

#[test]
fn a_full_queue_drops_the_oldest_with_counters_and_visible_gaps() {
    let host = TestHost::start(
        "event_queue = 10",
        &[
            plugin_with_env(
                "slow",
                "iglu-plugin-echo",
                &[],
                &[("ECHO_SUBSCRIBE", "burst/#"), ("ECHO_EVENT_WINDOW", "4")],
            ),
            plugin("pub", "iglu-plugin-echo", &[]),
        ],
    );
    host.wait_state("slow", "running");
    host.wait_state("pub", "running");
    host.call("slow", "set_event_delay", json!({"ms": 100}))
        .unwrap();
    host.call(
        "pub",
        "publish_many",
        json!({"topic": "burst/x", "count": 200}),
    )
    .unwrap();
    // Once the queue drains, every event is either delivered or dropped.
    let p = host.wait_plugin("slow", "its queue drained", |p| {
        let e = &p["events"];
        e["queued"] == json!(0)
            && e["in_flight"] == json!(0)
            && e["delivered"].as_u64().unwrap() > 0
    });
    let dropped = p["events"]["dropped"].as_u64().unwrap();
    let delivered = p["events"]["delivered"].as_u64().unwrap();
    assert!(dropped > 0, "{p}");
    assert_eq!(dropped + delivered, 200, "{p}");
    let s = stats(&host, "slow");
    assert_eq!(s["received"].as_u64().unwrap(), delivered, "{s}");
    assert_eq!(
        s["missed"].as_u64().unwrap(),
        dropped,
        "the SDK saw every drop as a gap: {s}"
    );
    assert_eq!(s["out_of_order"], json!(0));
    // The newest events survived, the oldest were dropped: after the last
    // gap comes an unbroken run of the newest, at least a full queue of them
    // (dropping the newest instead would leave only the very last after it).
    let evs = events(&host, "slow");
    assert_eq!(evs.last().unwrap()["payload"], json!({"n": 199}));
    let last_gap = evs
        .iter()
        .rposition(|e| e["missed"].as_u64().unwrap() > 0)
        .expect("a gap where the oldest were dropped");
    let run: Vec<u64> = evs[last_gap..]
        .iter()
        .map(|e| e["payload"]["n"].as_u64().unwrap())
        .collect();
    assert!(run.len() >= 10, "after the last gap only {run:?}");
    assert!(
        run.windows(2).all(|w| w[1] == w[0] + 1),
        "the newest events arrived with holes: {run:?}"
    );
}

#[test]
fn a_slow_subscriber_does_not_slow_a_fast_one() {
    let host = TestHost::start(
        "",
        &[
            subscriber("slow", "load/#"),
            subscriber("fast", "load/#"),
            plugin("pub", "iglu-plugin-echo", &[]),
        ],
    );
    for id in ["slow", "fast", "pub"] {
        host.wait_state(id, "running");
    }
    host.call("slow", "set_event_delay", json!({"ms": 100}))
        .unwrap();
    host.call_with_timeout(
        "pub",
        "publish_many",
        json!({"topic": "load/n", "count": 10_000}),
        120_000,
    )
    .unwrap();
    let s = host.eventually("10,000 events at the fast subscriber", || {
        let s = stats(&host, "fast");
        (s["received"] == json!(10_000)).then_some(s)
    });
    assert_eq!(s["out_of_order"], json!(0), "{s}");
    assert_eq!(s["missed"], json!(0), "{s}");
    assert_eq!(host.plugin("fast")["events"]["dropped"], json!(0));
    // The slow one is still far behind, and losing only its own oldest events.
    let slow = host.plugin("slow");
    assert!(
        slow["events"]["delivered"].as_u64().unwrap() < 10_000,
        "{slow}"
    );
}

#[test]
fn events_queued_across_a_sigkill_restart_are_delivered() {
    let host = TestHost::start(
        "[restart]\nbackoff_initial_ms = 1500",
        &[subscriber("sub", "home/#")],
    );
    let pid = host.wait_state("sub", "running")["pid"].as_u64().unwrap();
    signal_pid(pid, Signal::SIGKILL);
    host.wait_plugin("sub", "down", |p| p["state"] != json!("running"));
    for n in 0..5 {
        publish(&host, "home/while_down", json!({"n": n}), false);
    }
    let queued = host.plugin("sub")["events"]["queued"].as_u64().unwrap();
    assert_eq!(queued, 5, "the events wait in the plugin's queue");
    host.wait_new_pid("sub", pid);
    let got = host.eventually("the 5 queued events", || {
        let evs: Vec<Value> = events(&host, "sub")
            .into_iter()
            .filter(|e| e["topic"] == json!("home/while_down"))
            .collect();
        (evs.len() == 5).then_some(evs)
    });
    let ns: Vec<Value> = got.iter().map(|e| e["payload"]["n"].clone()).collect();
    assert_eq!(ns, (0..5).map(|n| json!(n)).collect::<Vec<_>>());
}
