//! Every way a handshake can fail, seen from a real plugin process.
#![allow(clippy::unwrap_used)]

use iglu_tests::{bin, environ, fresh_dir, plugin, plugin_with_env, TestHost};
use serde_json::{json, Value};
use std::process::Command;

/// Runs the misbehaving plugin by hand against `host`, as plugin `id` with `token`.
fn misbehave(host: &TestHost, mode: &str, id: &str, token: &str) -> (Option<i32>, Vec<Value>) {
    let out = Command::new(bin("iglu-plugin-misbehave"))
        .arg(mode)
        .env("IGLU_ENDPOINT", host.endpoint())
        .env("IGLU_PLUGIN_ID", id)
        .env("IGLU_TOKEN", token)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out.status.code(), lines)
}

fn echo_token(host: &TestHost) -> String {
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    environ(pid)
        .into_iter()
        .find(|(k, _)| k == "IGLU_TOKEN")
        .map(|(_, v)| v)
        .unwrap()
}

#[test]
fn every_reject_path_has_its_code_and_the_host_keeps_serving() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    let token = echo_token(&host);
    let cases = [
        ("bad-cookie", "echo", token.as_str(), "bad_cookie"),
        ("bad-version", "echo", token.as_str(), "unsupported_version"),
        ("unknown-plugin", "echo", token.as_str(), "unknown_plugin"),
        ("bad-token", "echo", token.as_str(), "bad_token"),
        ("hello", "echo", token.as_str(), "duplicate_id"),
        ("garbage-hello", "echo", token.as_str(), "malformed_hello"),
    ];
    for (mode, id, tok, code) in cases {
        let (exit, lines) = misbehave(&host, mode, id, tok);
        let reject = lines.iter().find(|l| l["event"] == json!("reject"));
        let reject =
            reject.unwrap_or_else(|| panic!("{mode}: no REJECT, got {lines:?}\n{}", host.log()));
        assert_eq!(reject["code"], json!(code), "{mode}: {reject}");
        assert!(!reject["message"].as_str().unwrap().is_empty());
        assert_eq!(exit, Some(3), "{mode}");
        if mode == "bad-version" {
            assert!(
                reject["message"].as_str().unwrap().contains("[99, 100]"),
                "{reject}"
            );
            assert_eq!(reject["host_versions"], json!([1]));
        }
    }
    // The legitimate plugin never noticed.
    assert_eq!(
        host.call("echo", "echo", json!("still here")).unwrap(),
        json!("still here")
    );
    assert_eq!(host.plugin("echo")["restarts"], json!(0));
    assert!(host.log().contains("handshake rejected"));
}

#[test]
fn malformed_manifest_is_rejected_for_a_managed_plugin() {
    let dir = fresh_dir("manifest");
    let report = dir.join("report");
    let r = report.display().to_string();
    let host = TestHost::start(
        "",
        &[iglu_tests::writing_to(
            plugin_with_env(
                "bad",
                "iglu-plugin-misbehave",
                &["bad-manifest"],
                &[("IGLU_TEST_REPORT", &r)],
            ),
            &dir,
        )],
    );
    let line = host.eventually("the misbehaving plugin's report", || {
        let text = std::fs::read_to_string(&report).ok()?;
        text.lines().next().map(str::to_owned)
    });
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["code"], json!("malformed_manifest"), "{v}");
    assert!(v["message"].as_str().unwrap().contains("name"), "{v}");
    // Its exit counts as a crash, with the exit code recorded.
    host.wait_plugin("bad", "a recorded exit", |p| {
        p["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("exited with code 3"))
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs a raw-ZMTP misbehave `mode` against a host with an echo plugin:
/// the host must cut that one connection, log `reason`, and keep serving.
fn raw_peer_is_cut(settings: &str, mode: &str, reason: &str) {
    let host = TestHost::start(settings, &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    let (exit, lines) = misbehave(&host, mode, "echo", "");
    assert!(
        lines.iter().any(|l| l["event"] == json!("cut")),
        "{mode}: the host did not cut the connection: {lines:?}\n{}",
        host.log()
    );
    assert_eq!(exit, Some(0), "{mode}");
    assert_eq!(
        host.call("echo", "echo", json!("still here")).unwrap(),
        json!("still here")
    );
    assert_eq!(host.plugin("echo")["restarts"], json!(0));
    assert!(
        host.log().contains(reason),
        "{mode}: the cut is not logged with its reason:\n{}",
        host.log()
    );
}

/// A peer on the local socket, before any HELLO, claims a frame of 2^50
/// bytes. Read as claimed, that is an allocation the host cannot survive:
/// the host must cut that connection at the frame's header.
#[test]
fn a_frame_claiming_a_petabyte_cuts_that_peer_and_the_host_keeps_serving() {
    raw_peer_is_cut(
        "",
        "huge-frame",
        "Frame length exceeds the socket's maximum frame size",
    );
}

/// The same peer sends 64 KiB frames flagged MORE without end: one
/// multipart message that never finishes. The host must cut it once the
/// message passes 64 frames at the cap, not buffer it all.
#[test]
fn a_message_that_never_ends_cuts_that_peer_and_the_host_keeps_serving() {
    raw_peer_is_cut(
        "max_message_bytes = 65536",
        "endless-message",
        "Multipart message exceeds the socket's maximum message size",
    );
}

#[test]
fn a_message_before_hello_is_refused_with_a_reason() {
    let dir = fresh_dir("early");
    let report = dir.join("report");
    let r = report.display().to_string();
    let host = TestHost::start(
        "",
        &[iglu_tests::writing_to(
            plugin_with_env(
                "early",
                "iglu-plugin-misbehave",
                &["call-before-hello"],
                &[("IGLU_TEST_REPORT", &r)],
            ),
            &dir,
        )],
    );
    // A CALL, then a HELLO: the host answers the CALL with a REJECT that
    // says why, does not read the HELLO behind it, and hangs up.
    let line = host.eventually("the plugin to report the REJECT", || {
        std::fs::read_to_string(&report)
            .ok()?
            .lines()
            .find(|l| l.contains("\"reject\""))
            .map(str::to_owned)
    });
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["code"], json!("malformed_hello"), "{event}");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("must be a HELLO, not a CALL"),
        "{event}"
    );
    assert!(host
        .log()
        .contains("refused a peer whose first message was not HELLO"));
    assert_ne!(host.plugin("early")["state"], json!("running"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sdk_prints_the_reject_and_exits_non_zero() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    let out = Command::new(bin("iglu-plugin-echo"))
        .env("IGLU_PLUGIN", "MzlK0OGpIRs")
        .env("IGLU_ENDPOINT", host.endpoint())
        .env("IGLU_PLUGIN_ID", "echo")
        .env("IGLU_TOKEN", "wrong")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("rejected the handshake (bad_token)"),
        "{stderr}"
    );
}

#[test]
fn plugin_run_by_hand_says_what_it_is_and_exits_1() {
    let out = Command::new(bin("iglu-plugin-echo"))
        .env_remove("IGLU_PLUGIN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is an Iglu plugin"), "{stderr}");
    assert!(stderr.contains("started by the iglu host"), "{stderr}");
}

#[test]
fn sdk_times_out_on_a_stale_socket_with_a_clear_message() {
    let dir = fresh_dir("stale");
    let path = dir.join("stale.sock");
    // A socket file nobody listens on: what a crashed host leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let out = Command::new(bin("iglu-plugin-echo"))
        .env("IGLU_PLUGIN", "MzlK0OGpIRs")
        .env("IGLU_ENDPOINT", format!("ipc://{}", path.display()))
        .env("IGLU_TOKEN", "t")
        .env("IGLU_HANDSHAKE_TIMEOUT_MS", "1000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("no answer from the host"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn silent_plugin_is_killed_after_the_handshake_timeout() {
    let host = TestHost::start(
        "handshake_timeout_ms = 1000",
        &[plugin("mute", "iglu-plugin-misbehave", &["silent"])],
    );
    let p = host.wait_plugin("mute", "a handshake timeout", |p| {
        p["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("no handshake within 1000 ms"))
    });
    assert!(p["restarts"].as_u64().is_some());
}
