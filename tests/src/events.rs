//! Helpers for tests of the event bus: echo plugins that subscribe, and
//! what they received, asked over the real control socket.

use serde_json::{json, Value};

use crate::{plugin_with_env, TestHost};

/// An echo plugin subscribing to `filters` (comma-separated).
pub fn subscriber(id: &str, filters: &str) -> String {
    plugin_with_env(id, "iglu-plugin-echo", &[], &[("ECHO_SUBSCRIBE", filters)])
}

/// Publishes as the host, through the CLI's control socket.
pub fn publish(host: &TestHost, topic: &str, payload: Value, retain: bool) {
    let r = host
        .request(&json!({"cmd": "publish", "topic": topic, "payload": payload, "retain": retain}));
    assert_eq!(r["ok"], json!(true), "{r}");
}

/// Every event `id` has received so far.
pub fn events(host: &TestHost, id: &str) -> Vec<Value> {
    host.call(id, "events", json!({"limit": 100_000}))
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `id`'s own counts of what it received.
pub fn stats(host: &TestHost, id: &str) -> Value {
    host.call(id, "event_stats", json!(null)).unwrap()
}

/// Waits until `id` has received an event satisfying `pred`; returns it.
pub fn wait_event(host: &TestHost, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    host.eventually(&format!("{id} to receive {what}"), || {
        events(host, id).into_iter().find(|e| pred(e))
    })
}
