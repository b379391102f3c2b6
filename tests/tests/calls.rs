//! Calls from the host to a plugin and from a plugin to the host, through real processes.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use iglu_tests::{fresh_dir, plugin, plugin_with_env, TestHost};
use serde_json::{json, Value};

fn echo_host(settings: &str) -> TestHost {
    let host = TestHost::start(settings, &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    host
}

#[test]
fn cli_status_json_and_call() {
    let host = echo_host("");
    let out = host.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let echo = &status[0];
    for field in [
        "id",
        "name",
        "version",
        "state",
        "pid",
        "restarts",
        "last_exit",
        "last_heartbeat_ms_ago",
    ] {
        assert!(echo.get(field).is_some(), "missing {field} in {echo}");
    }
    assert_eq!(echo["id"], json!("echo"));
    assert_eq!(echo["name"], json!("Echo"));
    assert_eq!(echo["state"], json!("running"));
    assert_eq!(echo["restarts"], json!(0));
    assert!(echo["pid"].as_u64().unwrap() > 0);

    let table = host.cli(&["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains("echo") && text.contains("running"), "{text}");

    let out = host.cli(&[
        "call",
        "echo",
        "echo",
        r#"{"rooms":["kitchen",1,2.5,null,true]}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"rooms": ["kitchen", 1, 2.5, null, true]}));

    let out = host.cli(&["call", "echo", "fail", r#"{"message":"the boiler is off"}"#]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("handler_error") && err.contains("the boiler is off"),
        "{err}"
    );

    let out = host.cli(&["call", "echo", "no_such_method"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("method_not_found"));

    let out = host.cli(&["call", "nobody", "echo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_plugin"));
}

#[test]
fn sixty_four_concurrent_calls_on_one_plugin() {
    let host = echo_host("");
    let started = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let host = &host;
                s.spawn(move || {
                    let r = host.call("echo", "sleep", json!({"ms": 500}));
                    (i, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in &results {
        assert_eq!(r.as_ref().unwrap(), &json!(500), "call {i}");
    }
    // Served one at a time they would take 32 s; concurrently about 0.5 s.
    // The bound is loose on purpose: it checks concurrency, not speed.
    assert!(
        started.elapsed() < Duration::from_secs(16),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_panicking_handler_is_an_error_and_the_plugin_lives_on() {
    let host = echo_host("");
    let pid = host.plugin("echo")["pid"].clone();
    let err = host
        .call("echo", "panic", json!({"message": "oh no"}))
        .unwrap_err();
    assert_eq!(err.code, "handler_panicked");
    assert!(err.message.contains("oh no"), "{err:?}");
    assert_eq!(host.call("echo", "echo", json!(1)).unwrap(), json!(1));
    let now = host.plugin("echo");
    assert_eq!(now["pid"], pid);
    assert_eq!(now["restarts"], json!(0));
}

#[test]
fn bad_arguments_are_refused_without_calling_the_method() {
    let host = echo_host("");
    let err = host
        .call("echo", "sleep", json!({"milliseconds": "soon"}))
        .unwrap_err();
    assert_eq!(err.code, "bad_arguments");
    assert!(err.message.contains("ms"), "{err:?}");
}

#[test]
fn deadline_exceeded_is_a_timeout_the_plugin_drops_the_work_and_stays() {
    let host = echo_host("");
    let pid = host.plugin("echo")["pid"].clone();
    let err = host
        .call_with_timeout("echo", "sleep", json!({"ms": 20_000}), 300)
        .unwrap_err();
    // The host's deadline keeper and the plugin's own deadline race; either
    // answer is a timeout naming the deadline.
    assert_eq!(err.code, "timeout");
    assert!(err.message.contains("300 ms"), "{err:?}");
    // The plugin stops the work at the deadline too (its own and the host's CANCEL).
    host.eventually("the timed-out sleep to be cancelled in the plugin", || {
        let n = host.call("echo", "cancelled", json!(null)).ok()?;
        (n == json!(1)).then_some(())
    });
    // A call with an earlier deadline than one already waiting expires at
    // its own, and the later one is not cut short.
    let long = std::thread::scope(|s| {
        let long =
            s.spawn(|| host.call_with_timeout("echo", "sleep", json!({"ms": 1_500}), 20_000));
        host.wait_plugin("echo", "the long call in flight", |p| {
            p["calls_in_flight"] == json!(1)
        });
        let short = host
            .call_with_timeout("echo", "sleep", json!({"ms": 20_000}), 200)
            .unwrap_err();
        assert_eq!(short.code, "timeout", "{short:?}");
        long.join().unwrap()
    });
    assert_eq!(
        long.unwrap(),
        json!(1_500),
        "the longer deadline was not cut short"
    );
    assert_eq!(
        host.call("echo", "echo", json!("after")).unwrap(),
        json!("after")
    );
    assert_eq!(host.plugin("echo")["pid"], pid);
}

#[test]
fn oversized_results_and_arguments_are_too_large() {
    let host = echo_host("max_message_bytes = 65536");
    let ok = host
        .call("echo", "payload", json!({"bytes": 60_000}))
        .unwrap();
    assert_eq!(ok["data"].as_array().unwrap().len(), 60_000);
    let err = host
        .call("echo", "payload", json!({"bytes": 70_000}))
        .unwrap_err();
    assert_eq!(err.code, "too_large", "{err:?}");
    let big = "x".repeat(70_000);
    let err = host.call("echo", "echo", json!(big)).unwrap_err();
    assert_eq!(err.code, "too_large", "{err:?}");
    assert_eq!(host.call("echo", "echo", json!(2)).unwrap(), json!(2));
}

#[test]
fn key_value_state_survives_a_plugin_crash() {
    let host = echo_host("");
    host.call(
        "echo",
        "kv_set",
        json!({"key": "scene", "value": {"living": "movie", "dim": 30}}),
    )
    .unwrap();
    let pid = host.plugin("echo")["pid"].as_u64().unwrap();
    let err = host.call("echo", "exit", json!({"code": 7})).unwrap_err();
    assert_eq!(err.code, "plugin_crashed", "{err:?}");
    let p = host.wait_new_pid("echo", pid);
    assert_eq!(p["last_exit"], json!("exited with code 7"));
    assert_eq!(
        host.call("echo", "kv_get", json!({"key": "scene"}))
            .unwrap(),
        json!({"living": "movie", "dim": 30})
    );
    assert_eq!(
        host.call("echo", "kv_delete", json!({"key": "scene"}))
            .unwrap(),
        json!(true)
    );
    assert_eq!(
        host.call("echo", "kv_get", json!({"key": "scene"}))
            .unwrap(),
        json!(null)
    );
    let info = host.call("echo", "host_info", json!(null)).unwrap();
    assert_eq!(info["name"], json!("iglu"));
    assert_eq!(info["plugin_id"], json!("echo"));
}

#[test]
fn busy_handlers_do_not_make_a_false_crash() {
    // 500 ms x 3 = 1.5 s of silence would be a crash; burn every core for 4 s.
    let host = echo_host("[heartbeat]\ninterval_ms = 500\nliveness = 3");
    let pid = host.plugin("echo")["pid"].clone();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let host = &host;
                s.spawn(move || {
                    host.call("echo", "burn", json!({"ms": 4000, "threads": cores + 1}))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        assert_eq!(r.unwrap(), json!(4000));
    }
    let p = host.plugin("echo");
    assert_eq!(p["pid"], pid, "{p}");
    assert_eq!(p["restarts"], json!(0), "{p}");
    assert_eq!(p["state"], json!("running"));
}

#[test]
fn garbage_from_a_plugin_gets_errors_and_nobody_else_is_hurt() {
    let dir = fresh_dir("garbage");
    let report = dir.join("report");
    let r = report.display().to_string();
    let host = TestHost::start(
        "max_message_bytes = 65536",
        &[
            plugin("echo", "iglu-plugin-echo", &[]),
            iglu_tests::writing_to(
                plugin_with_env(
                    "rude",
                    "iglu-plugin-misbehave",
                    &["garbage"],
                    &[("IGLU_TEST_REPORT", &r)],
                ),
                report.parent().unwrap(),
            ),
        ],
    );
    let codes = host.eventually("four ERRORs to the rude plugin", || {
        let text = std::fs::read_to_string(&report).ok()?;
        let codes: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == json!("error"))
            .map(|v| v["code"].as_str().unwrap_or_default().to_owned())
            .collect();
        (codes.len() >= 4).then_some(codes)
    });
    assert_eq!(
        codes,
        vec!["bad_message", "bad_message", "too_large", "bad_message"]
    );
    // The rude plugin keeps its session; the other plugin is untouched.
    assert_eq!(host.call("rude", "echo", json!("ok")).unwrap(), json!("ok"));
    host.wait_state("echo", "running");
    assert_eq!(
        host.call("echo", "echo", json!("fine")).unwrap(),
        json!("fine")
    );
    assert_eq!(host.plugin("rude")["restarts"], json!(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn thermostat_keeps_its_rooms_across_a_restart() {
    let host = TestHost::start("", &[plugin("thermostat", "iglu-plugin-thermostat", &[])]);
    host.wait_state("thermostat", "running");
    host.call(
        "thermostat",
        "set_target",
        json!({"room": "kitchen", "celsius": 21.0}),
    )
    .unwrap();
    let cold = host
        .call(
            "thermostat",
            "reading",
            json!({"room": "kitchen", "celsius": 19.0}),
        )
        .unwrap();
    assert_eq!(cold["heating"], json!(true));
    // Inside the hysteresis band the decision holds.
    let band = host
        .call(
            "thermostat",
            "reading",
            json!({"room": "kitchen", "celsius": 21.2}),
        )
        .unwrap();
    assert_eq!(band["heating"], json!(true));
    let out = host.cli(&["restart", "thermostat"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.wait_state("thermostat", "running");
    let room = host
        .call("thermostat", "room", json!({"room": "kitchen"}))
        .unwrap();
    assert_eq!(room["target"], json!(21.0));
    assert_eq!(room["heating"], json!(true));
    let err = host
        .call(
            "thermostat",
            "set_target",
            json!({"room": "kitchen", "celsius": 80.0}),
        )
        .unwrap_err();
    assert_eq!(err.code, "handler_error");
}

/// The host keeps its own deadline: a plugin that reads every call and
/// answers none (nor heeds CANCEL) still has its caller told `timeout` on
/// time, by the host, not after the harness gives up.
#[test]
fn the_host_ends_a_call_at_its_deadline_even_if_the_plugin_never_answers() {
    let host = TestHost::start(
        "",
        &[plugin("mute", "iglu-plugin-misbehave", &["ignore-calls"])],
    );
    host.wait_state("mute", "running");
    for _ in 0..3 {
        let err = host
            .call_with_timeout("mute", "echo", json!("anyone?"), 300)
            .unwrap_err();
        assert_eq!(err.code, "timeout", "{err:?}");
        assert!(
            err.message.contains("did not answer") && err.message.contains("300 ms"),
            "the host's own deadline, not the plugin's: {err:?}"
        );
    }
    let p = host.plugin("mute");
    assert_eq!(p["calls_in_flight"], json!(0), "{p}");
    assert_eq!(p["state"], json!("running"), "{p}");
}

/// A plugin that reads is never cut as "not reading", however large the
/// calls it is sent: 16 calls of 1 MiB in flight, round after round (the
/// host's count of queued bytes once ran a batch ahead and cut one).
#[test]
fn large_calls_in_flight_never_get_a_reading_plugin_cut() {
    let host = echo_host("");
    let big = "x".repeat(1 << 20);
    std::thread::scope(|s| {
        for _ in 0..16 {
            let (host, big) = (&host, &big);
            s.spawn(move || {
                for _ in 0..8 {
                    let r = host.call_with_timeout("echo", "echo", json!(big), 60_000);
                    assert_eq!(r.map(|v| v.as_str().map(str::len)), Ok(Some(1 << 20)));
                }
            });
        }
    });
    let p = host.plugin("echo");
    assert_eq!(p["restarts"], json!(0), "{p}");
}

#[test]
fn a_caller_that_goes_away_cancels_its_call_at_once() {
    let host = echo_host("");
    let mut cli = std::process::Command::new(iglu_tests::bin("iglu"))
        .arg("--config")
        .arg(&host.config)
        .args([
            "call",
            "echo",
            "sleep",
            r#"{"ms": 60000}"#,
            "--timeout-ms",
            "60000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    host.wait_plugin("echo", "the call to be in flight", |p| {
        p["calls_in_flight"] == json!(1)
    });
    let killed = Instant::now();
    cli.kill().unwrap();
    cli.wait().unwrap();
    host.wait_plugin("echo", "the call to be gone", |p| {
        p["calls_in_flight"] == json!(0)
    });
    host.eventually("echo to hear CANCEL", || {
        (host.call("echo", "cancelled", json!(null)).unwrap() == json!(1)).then_some(())
    });
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "cancelled after {:?}, not at the 60 s deadline",
        killed.elapsed()
    );
}
