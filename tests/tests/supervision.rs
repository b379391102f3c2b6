//! Crashes, hangs, restarts, giving up, and shutdown, with real signals on real processes.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use iglu_tests::{alive, bin, fresh_dir, plugin, signal_pid, TestHost, PATIENCE};
use nix::sys::signal::Signal;
use serde_json::json;

#[test]
fn sigkill_fails_calls_in_flight_at_once_and_restarts() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    let started = Instant::now();
    let errors: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let host = &host;
                // Deadlines far beyond the test's patience: only crash detection can end these.
                s.spawn(move || {
                    host.call_with_timeout("echo", "sleep", json!({"ms": 600_000}), 600_000)
                })
            })
            .collect();
        // Kill once the calls are all in flight.
        host.wait_plugin("echo", "8 calls in flight", |p| {
            p["calls_in_flight"] == json!(8)
        });
        signal_pid(pid, Signal::SIGKILL);
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for e in errors {
        let e = e.unwrap_err();
        assert_eq!(e.code, "plugin_crashed", "{e:?}");
    }
    assert!(started.elapsed() < PATIENCE);
    let p = host.wait_new_pid("echo", pid);
    assert_eq!(p["restarts"], json!(1));
    assert_eq!(p["last_exit"], json!("killed by signal SIGKILL"));
    assert_eq!(
        host.call("echo", "echo", json!("back")).unwrap(),
        json!("back")
    );
}

#[test]
fn sigstop_is_caught_by_heartbeats_and_the_plugin_restarted() {
    let host = TestHost::start(
        "[heartbeat]\ninterval_ms = 300\nliveness = 4",
        &[plugin("echo", "iglu-plugin-echo", &[])],
    );
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    signal_pid(pid, Signal::SIGSTOP);
    let p = host.wait_new_pid("echo", pid);
    let exit = p["last_exit"].as_str().unwrap();
    assert!(exit.contains("no heartbeat for"), "{exit}");
    assert!(exit.contains("killed by the host"), "{exit}");
    assert_eq!(p["restarts"], json!(1));
    host.eventually("the frozen process to be gone", || {
        (!alive(pid)).then_some(())
    });
    assert_eq!(host.call("echo", "echo", json!(1)).unwrap(), json!(1));
}

#[test]
fn a_plugin_that_hangs_itself_is_caught_too() {
    let host = TestHost::start(
        "[heartbeat]\ninterval_ms = 300\nliveness = 4",
        &[plugin("echo", "iglu-plugin-echo", &[])],
    );
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    let err = host
        .call_with_timeout("echo", "hang", json!(null), 600_000)
        .unwrap_err();
    assert_eq!(err.code, "plugin_crashed", "{err:?}");
    assert!(err.message.contains("no heartbeat"), "{err:?}");
    host.wait_new_pid("echo", pid);
}

#[test]
fn crash_loop_goes_failed_until_started_by_hand() {
    let host = TestHost::start(
        "[restart]\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\nmax_restarts = 2\nwindow_s = 60",
        &[plugin("echo", "iglu-plugin-echo", &[])],
    );
    for round in 0..3 {
        let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
        signal_pid(pid, Signal::SIGKILL);
        if round < 2 {
            host.wait_new_pid("echo", pid);
        }
    }
    let p = host.wait_state("echo", "failed");
    assert_eq!(p["restarts"], json!(2));
    assert_eq!(p["pid"], json!(null));
    let err = host.call("echo", "echo", json!(1)).unwrap_err();
    assert_eq!(err.code, "not_running");
    assert!(err.message.contains("failed"), "{err:?}");

    let out = host.cli(&["start", "echo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.wait_state("echo", "running");
    assert_eq!(host.call("echo", "echo", json!(2)).unwrap(), json!(2));
}

#[test]
fn stop_start_restart_through_the_cli() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();

    let out = host.cli(&["stop", "echo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = host.plugin("echo");
    assert_eq!(p["state"], json!("stopped"));
    // It left by itself after GOODBYE: exit code 0, no signal needed.
    assert_eq!(
        p["last_exit"],
        json!("stopped by the host; exited with code 0")
    );
    assert!(!alive(pid));
    assert_eq!(
        host.call("echo", "echo", json!(1)).unwrap_err().code,
        "not_running"
    );

    assert!(host.cli(&["start", "echo"]).status.success());
    let pid2 = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    assert!(host.cli(&["restart", "echo"]).status.success());
    let p = host.wait_new_pid("echo", pid2);
    assert_eq!(
        p["restarts"],
        json!(0),
        "a requested restart is not a crash"
    );
    // And the new process stays: the old session's end, arriving late,
    // is not taken for the new one's.
    let pid3 = p["pid"].as_u64().unwrap();
    let p = host.wait_plugin("echo", "up for 2 s after the restart", |p| {
        p["uptime_ms"].as_u64().is_some_and(|u| u >= 2000) || p["pid"].as_u64() != Some(pid3)
    });
    assert_eq!(p["pid"].as_u64(), Some(pid3), "{p}");
    assert_eq!(p["restarts"], json!(0), "{p}");

    let out = host.cli(&["stop", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_plugin"));
}

#[test]
fn host_sigkill_leaves_no_plugin_behind() {
    let mut host = TestHost::start(
        "",
        &[
            plugin("a", "iglu-plugin-echo", &[]),
            plugin("b", "iglu-plugin-thermostat", &[]),
        ],
    );
    let a = host.wait_state("a", "running")["pid"].as_u64().unwrap();
    let b = host.wait_state("b", "running")["pid"].as_u64().unwrap();
    host.signal(Signal::SIGKILL);
    host.wait_exit(PATIENCE).unwrap();
    host.eventually("every plugin process to exit", || {
        (!alive(a) && !alive(b)).then_some(())
    });
}

#[test]
fn host_sigterm_stops_plugins_cleanly() {
    let mut host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    host.signal(Signal::SIGTERM);
    let status = host.wait_exit(PATIENCE).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!alive(pid));
    let log = host.log();
    assert!(
        log.contains("stopped by the host; exited with code 0"),
        "{log}"
    );
    assert!(log.contains("host stopped"));
    assert!(!host.control_socket().exists());
}

#[test]
fn every_executable_in_the_plugin_dir_is_started() {
    let dir = fresh_dir("plugdir");
    for name in ["echo-one", "echo-two"] {
        std::fs::copy(bin("iglu-plugin-echo"), dir.join(name)).unwrap();
    }
    // Not executable, so not a plugin.
    std::fs::write(dir.join("README"), "notes").unwrap();
    std::fs::set_permissions(dir.join("README"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let host = TestHost::start(
        &format!("plugin_dir = {:?}", dir.display().to_string()),
        &[],
    );
    host.wait_state("echo-one", "running");
    host.wait_state("echo-two", "running");
    assert_eq!(host.status().len(), 2);
    let who = host.call("echo-two", "whoami", json!(null)).unwrap();
    assert_eq!(who["plugin_id"], json!("echo-two"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plugin_output_is_logged_under_its_id() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    let _ = host.call("echo", "panic", json!({"message": "marker-7731"}));
    host.eventually("the panic message in the host log", || {
        let log = host.log();
        log.lines()
            .any(|l| {
                l.contains("marker-7731")
                    && l.contains("plugin=\"echo\"")
                    && l.contains("stream=\"stderr\"")
            })
            .then_some(())
    });
}

#[test]
fn a_second_host_on_the_same_runtime_dir_is_refused_and_stale_sockets_are_cleared() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    let out = std::process::Command::new(bin("iglu"))
        .arg("--config")
        .arg(&host.config)
        .arg("run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    // The first host is unharmed.
    assert_eq!(host.call("echo", "echo", json!(1)).unwrap(), json!(1));
}

#[test]
fn plugins_exit_when_the_host_falls_silent() {
    // A frozen host sends no signal and no heartbeat: plugins must notice the silence.
    let mut host = TestHost::start(
        "[heartbeat]\ninterval_ms = 200\nliveness = 3",
        &[plugin("echo", "iglu-plugin-echo", &[])],
    );
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    host.signal(Signal::SIGSTOP);
    let deadline = Instant::now() + PATIENCE;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    let gone = !alive(pid);
    host.signal(Signal::SIGCONT);
    assert!(gone, "the plugin outlived a silent host");
    host.signal(Signal::SIGTERM);
    host.wait_exit(PATIENCE);
}

/// Restarts wait out the backoff, doubling per crash in the window: never
/// sooner than the policy says (a slow machine can only make them later).
#[test]
fn restarts_wait_out_a_doubling_backoff() {
    let host = TestHost::start(
        "[restart]\nbackoff_initial_ms = 1000\nbackoff_max_ms = 8000\nmax_restarts = 5\nwindow_s = 60",
        &[plugin("echo", "iglu-plugin-echo", &[])],
    );
    let mut pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    for (crash, at_least) in [(1, 1000u128), (2, 2000)] {
        let killed = Instant::now();
        signal_pid(pid, Signal::SIGKILL);
        let p = host.wait_new_pid("echo", pid);
        let waited = killed.elapsed().as_millis();
        assert!(
            waited >= at_least,
            "crash {crash}: back after {waited} ms, the backoff is {at_least} ms"
        );
        assert_eq!(p["restarts"], json!(crash));
        pid = p["pid"].as_u64().unwrap();
    }
}

#[test]
fn a_plugin_that_leaves_cleanly_is_stopped_not_crashed() {
    let host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    let pid = host.wait_state("echo", "running")["pid"].as_u64().unwrap();
    // SIGTERM to the plugin itself (not from the host): it drains, says
    // GOODBYE and exits 0. That is its choice, not a crash.
    signal_pid(pid, Signal::SIGTERM);
    let p = host.wait_state("echo", "stopped");
    assert_eq!(p["restarts"], json!(0), "{p}");
    let exit = p["last_exit"].as_str().unwrap();
    assert!(exit.starts_with("left cleanly"), "{exit}");
    assert!(exit.contains("exited with code 0"), "{exit}");
    // `iglu start` brings it back.
    assert!(host.cli(&["start", "echo"]).status.success());
    host.wait_state("echo", "running");
}
