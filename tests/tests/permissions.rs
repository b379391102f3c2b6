//! Permissions the host enforces on a plugin whose config grants them:
//! publishing, subscribing (at run time and in HELLO), host API methods
//! and calls to other plugins outside its grants are refused with
//! `permission_denied` naming the permission, logged and counted; what is
//! granted works, and a plugin without `permissions` is unaffected.

#![allow(clippy::unwrap_used)]

use iglu_tests::{plugin, plugin_with_env, TestHost};
use serde_json::json;

#[test]
fn what_a_plugin_is_not_granted_is_refused_by_the_host_and_counted() {
    let limited = format!(
        "{}permissions = {{ publish = [\"home/+/ok\"], subscribe = [\"home/+/ok\"], host_api = [\"events.*\", \"kv.get\"] }}\ncalls = [\"free\"]\n",
        plugin_with_env(
            "limited",
            "iglu-plugin-echo",
            &[],
            &[("ECHO_SUBSCRIBE", "home/#")]
        )
    );
    let caller = format!(
        "{}permissions = {{ host_api = [\"plugins.call\"] }}\ncalls = [\"free\"]\n",
        plugin("caller", "iglu-plugin-echo", &[])
    );
    let host = TestHost::start(
        "",
        &[limited, caller, plugin("free", "iglu-plugin-echo", &[])],
    );
    host.wait_state("caller", "running");
    host.wait_state("limited", "running");
    host.wait_state("free", "running");
    let denied = |method: &str, args: serde_json::Value, permission: &str| {
        let err = host.call("limited", method, args).unwrap_err();
        assert!(
            err.message.contains("permission_denied") && err.message.contains(permission),
            "{method}: {err:?}"
        );
    };
    // Granted: publish and subscribe within the filters, kv.get.
    host.call(
        "limited",
        "publish",
        json!({"topic": "home/a/ok", "payload": 1}),
    )
    .unwrap();
    host.call("limited", "subscribe", json!({"filters": ["home/b/ok"]}))
        .unwrap();
    host.call("limited", "kv_get", json!({"key": "k"})).unwrap();
    // Not granted.
    denied(
        "publish",
        json!({"topic": "home/a/secret", "payload": 1}),
        "publish \"home/a/secret\"",
    );
    denied(
        "subscribe",
        json!({"filters": ["home/#"]}),
        "subscribe \"home/#\"",
    );
    denied(
        "kv_set",
        json!({"key": "k", "value": 1}),
        "host_api \"kv.set\"",
    );
    // (relay reports the error it got rather than failing)
    let relayed = host
        .call(
            "limited",
            "relay",
            json!({"plugin": "free", "method": "echo", "args": 1}),
        )
        .unwrap();
    assert_eq!(relayed["code"], json!("permission_denied"), "{relayed}");
    assert!(
        relayed["message"]
            .as_str()
            .unwrap()
            .contains("host_api \"plugins.call\""),
        "{relayed}"
    );
    // With plugins.call granted, `calls` decides: free may be called,
    // nobody else.
    let relayed = host
        .call(
            "caller",
            "relay",
            json!({"plugin": "free", "method": "echo", "args": 1}),
        )
        .unwrap();
    assert_eq!(relayed["ok"], json!(1), "{relayed}");
    let relayed = host
        .call(
            "caller",
            "relay",
            json!({"plugin": "limited", "method": "echo", "args": 1}),
        )
        .unwrap();
    assert_eq!(relayed["code"], json!("permission_denied"), "{relayed}");
    assert!(
        relayed["message"]
            .as_str()
            .unwrap()
            .contains("calls \"limited\""),
        "{relayed}"
    );
    assert_eq!(host.plugin("caller")["permission_denied"], json!(1));
    // The HELLO's subscription outside the grants was left out.
    let status = host.plugin("limited");
    assert!(
        !status["subscriptions"]
            .as_array()
            .unwrap()
            .contains(&json!("home/#")),
        "{status}"
    );
    assert!(
        status["permission_denied"].as_u64().unwrap() >= 5,
        "{status}"
    );
    assert!(host.log().contains("permission denied"));
    // A plugin without permissions in its config may do all of it.
    host.call(
        "free",
        "publish",
        json!({"topic": "home/a/secret", "payload": 1}),
    )
    .unwrap();
    host.call("free", "kv_set", json!({"key": "k", "value": 1}))
        .unwrap();
    assert_eq!(host.plugin("free")["permission_denied"], json!(0));
}
