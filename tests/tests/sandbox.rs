//! The filesystem and network sandbox, with a real host on this machine's
//! kernel (Landlock): a sandboxed plugin reads the system's files and its
//! own, writes its private directory, and is refused the host's config,
//! another directory and a local TCP port; one with the network
//! permission connects. Without Landlock the test fails under `CI=true`
//! and is skipped elsewhere, saying why.

#![allow(clippy::unwrap_used)]

use iglu_tests::{plugin, TestHost};
use serde_json::json;

#[allow(unsafe_code)]
fn landlock() -> bool {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION):
    // the ABI version where the kernel has Landlock, an error where not.
    // SAFETY: the documented probe, with no attribute to read.
    let abi = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    abi > 0
}

#[test]
fn a_sandboxed_plugin_reaches_only_what_its_policy_allows() {
    if !landlock() {
        let why = "this kernel has no Landlock (landlock_create_ruleset fails)";
        assert!(std::env::var("CI").is_err(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let networked = format!(
        "{}sandbox = {{ network = true }}\n",
        plugin("networked", "iglu-plugin-echo", &[])
    );
    let host = TestHost::start(
        "[sandbox]\nenabled = true\n",
        &[plugin("boxed", "iglu-plugin-echo", &[]), networked],
    );
    host.wait_state("boxed", "running");
    host.wait_state("networked", "running");
    let p = host.plugin("boxed");
    assert!(
        p["isolation"].as_str().unwrap().contains("landlock ABI"),
        "{p}"
    );
    let call = |plugin: &str, method: &str, args: serde_json::Value| {
        host.call(plugin, method, args).unwrap()
    };
    // The system's files: readable.
    let r = call("boxed", "read_file", json!({"path": "/etc/hostname"}));
    assert!(r["ok"].is_string(), "{r}");
    // The host's config, beside the test's files: refused.
    let config = host.config.display().to_string();
    let r = call("boxed", "read_file", json!({"path": config}));
    assert!(
        r["error"].as_str().unwrap().contains("Permission denied"),
        "{r}"
    );
    // Its private directory: writable; elsewhere: refused.
    let private = host.dir.join("data/plugins/boxed/note");
    let r = call(
        "boxed",
        "write_file",
        json!({"path": private.display().to_string()}),
    );
    assert!(r["ok"].is_string(), "{r}");
    assert_eq!(std::fs::read_to_string(&private).unwrap(), "written");
    let outside = host.dir.join("outside");
    let r = call(
        "boxed",
        "write_file",
        json!({"path": outside.display().to_string()}),
    );
    assert!(
        r["error"].as_str().unwrap().contains("Permission denied"),
        "{r}"
    );
    assert!(!outside.exists());
    // TCP: refused without the network permission, allowed with it.
    let r = call("boxed", "connect", json!({"addr": addr}));
    assert!(
        r["error"].as_str().unwrap().contains("Permission denied"),
        "{r}"
    );
    let r = call("networked", "connect", json!({"addr": addr}));
    assert_eq!(r["ok"], json!("\"connected\""), "{r}");
    drop(listener);
    // Its calls and the host's store still work through the host.
    call("boxed", "kv_set", json!({"key": "k", "value": 1}));
    assert_eq!(call("boxed", "kv_get", json!({"key": "k"})), json!(1));
}
