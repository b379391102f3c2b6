//! Plugins' logs: a plugin's records reach the host's log at their own
//! level and target with their fields, are kept for `iglu logs` (filtered
//! by level, time and count, followed), and a running plugin's filter is
//! changed with `iglu log-level` without a restart.

#![allow(clippy::unwrap_used)]

use iglu_tests::{plugin, TestHost};
use serde_json::{json, Value};

fn log_lines(host: &TestHost, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs", "echo", "--json"];
    all.extend_from_slice(args);
    let out = host.cli(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_plugins_records_keep_their_level_target_and_fields_and_are_kept_for_iglu_logs() {
    // The host's own log at WARN and above: a plugin's WARN must pass, its INFO not.
    let host = TestHost::start_with_env(
        "",
        &[plugin("echo", "iglu-plugin-echo", &[])],
        &[("RUST_LOG", "warn")],
    );
    host.wait_state("echo", "running");
    host.call(
        "echo",
        "log",
        json!({"level": "info", "message": "quiet-2211"}),
    )
    .unwrap();
    host.call(
        "echo",
        "log",
        json!({"level": "warn", "message": "door stuck 9931", "door": "left"}),
    )
    .unwrap();
    let line = host.eventually("the warning in the host's log", || {
        host.log()
            .lines()
            .find(|l| l.contains("door stuck 9931"))
            .map(str::to_owned)
    });
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("echo::probe"), "its own target: {line}");
    assert!(
        line.contains("door=\"left\"") || line.contains("door=left"),
        "{line}"
    );
    assert!(line.contains("plugin=\"echo\""), "{line}");
    assert!(!line.contains(" INFO "), "not re-logged at INFO: {line}");
    assert!(
        !host.log().contains("quiet-2211"),
        "INFO is filtered out of a WARN log"
    );

    // Kept for `iglu logs`, INFO included, whatever the host's own filter.
    let lines = log_lines(&host, &[]);
    let warn = lines
        .iter()
        .find(|l| l["message"] == json!("door stuck 9931"))
        .unwrap();
    assert_eq!(warn["level"], json!("WARN"));
    assert_eq!(warn["target"], json!("echo::probe"));
    assert_eq!(warn["fields"], json!([["door", "left"]]));
    assert!(lines.iter().any(|l| l["message"] == json!("quiet-2211")));
    let only_warn = log_lines(&host, &["--level", "warn"]);
    assert!(!only_warn.is_empty());
    assert!(only_warn
        .iter()
        .all(|l| l["level"] == json!("WARN") || l["level"] == json!("ERROR")));
    assert_eq!(log_lines(&host, &["-n", "1"]).len(), 1);
    assert!(log_lines(&host, &["--since", "1h"]).len() >= 2);

    let out = host.cli(&["logs", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_plugin"));
}

#[test]
fn iglu_log_level_changes_a_running_plugins_filter() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    let pid = host.wait_state("echo", "running")["pid"].clone();
    host.call(
        "echo",
        "log",
        json!({"level": "debug", "message": "hidden-5512"}),
    )
    .unwrap();
    host.call(
        "echo",
        "log",
        json!({"level": "info", "message": "marker-before"}),
    )
    .unwrap();
    host.eventually("the info line kept", || {
        log_lines(&host, &[])
            .iter()
            .any(|l| l["message"] == json!("marker-before"))
            .then_some(())
    });
    assert!(!log_lines(&host, &[])
        .iter()
        .any(|l| l["message"] == json!("hidden-5512")));

    let out = host.cli(&["log-level", "echo", "debug"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("was info"),
        "{out:?}"
    );
    host.call(
        "echo",
        "log",
        json!({"level": "debug", "message": "shown-5513"}),
    )
    .unwrap();
    host.eventually("the debug line after the change", || {
        log_lines(&host, &["--level", "debug"])
            .iter()
            .any(|l| l["message"] == json!("shown-5513"))
            .then_some(())
    });
    assert_eq!(host.plugin("echo")["pid"], pid, "no restart");

    let out = host.cli(&["log-level", "echo", "not a [filter"]);
    assert!(!out.status.success());
}

#[test]
fn iglu_logs_follow_prints_new_lines_as_they_come() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    let mut follower = std::process::Command::new(iglu_tests::bin("iglu"))
        .arg("--config")
        .arg(&host.config)
        .args(["logs", "echo", "-f", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    host.call(
        "echo",
        "log",
        json!({"level": "warn", "message": "followed-7781"}),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + iglu_tests::PATIENCE;
    let mut seen = false;
    while std::time::Instant::now() < deadline && !seen {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            seen = line.contains("followed-7781");
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(seen, "the follower printed the new line");
}
