//! Limits the host holds plugins to, whether they cooperate or not: a
//! plugin that leaks memory is killed at its limit and restarted, with
//! `last_exit` saying so, while another plugin keeps serving; a plugin that
//! opens files without bound gets "too many open files" at its limit; and
//! `iglu status` shows every plugin's memory, CPU and limits, with the
//! mechanism in force.

#![allow(clippy::unwrap_used)]

use iglu_tests::{plugin, still_serving, TestHost};
use serde_json::json;

#[test]
fn a_leaking_plugin_is_stopped_at_its_memory_limit_and_restarted() {
    let leaker = format!(
        "{}limits = {{ memory_mib = 64 }}\n",
        plugin("leaker", "iglu-plugin-echo", &[])
    );
    let host = TestHost::start(
        "[limits]\nmemory_mib = 512\n",
        &[leaker, plugin("echo", "iglu-plugin-echo", &[])],
    );
    host.wait_state("leaker", "running");
    host.wait_state("echo", "running");
    // The defaults (from `[limits]`) and what the watchdog reads.
    let echo = host.wait_plugin("echo", "its memory read", |p| {
        p["usage"]["rss_kib"].as_u64().is_some_and(|k| k > 0)
    });
    assert_eq!(echo["limits"]["memory_mib"], json!(512), "{echo}");
    assert!(
        echo["isolation"].as_str().unwrap().contains("watchdog"),
        "{echo}"
    );
    // Slow enough that the watchdog (every heartbeat, 1 s) sees it pass
    // 64 MiB before the RLIMIT_DATA backstop (4x) could stop it.
    host.call("leaker", "leak", json!({"mib_per_s": 40}))
        .unwrap();
    let p = host.wait_plugin("leaker", "killed at its limit", |p| {
        p["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("memory limit 64 MiB exceeded"))
    });
    assert!(
        p["restarts"].as_u64().unwrap() >= 1 || p["state"] != json!("running"),
        "{p}"
    );
    still_serving(&host, "after the leaker was killed");
    // The restart policy applies: it comes back.
    host.wait_plugin("leaker", "running again", |p| {
        p["state"] == json!("running") && p["restarts"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(host.plugin("echo")["restarts"], json!(0));
    let table = String::from_utf8(host.cli(&["status"]).stdout).unwrap();
    assert!(table.contains("RSS") && table.contains("MiB"), "{table}");
}

#[test]
fn a_plugin_that_opens_files_without_bound_gets_an_error_at_its_limit() {
    let hoarder = format!(
        "{}limits = {{ max_open_files = 64 }}\n",
        plugin("hoarder", "iglu-plugin-echo", &[])
    );
    let host = TestHost::start("", &[hoarder]);
    host.wait_state("hoarder", "running");
    let r = host
        .call("hoarder", "open_files", json!({"n": 100000}))
        .unwrap();
    assert!(r["opened"].as_u64().unwrap() < 64, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("Too many open files"),
        "{r}"
    );
    assert_eq!(
        host.plugin("hoarder")["limits"]["max_open_files"],
        json!(64)
    );
    assert_eq!(host.plugin("hoarder")["limits"]["memory_mib"], json!(1024));
}

#[test]
fn a_fork_bomb_is_contained_by_the_watchdog_and_leaves_nothing_behind() {
    fork_bomb("");
}

#[test]
fn a_fork_bomb_is_refused_by_the_kernel_with_a_pids_cgroup() {
    fork_bomb("[limits]\npids_cgroup_v1 = true\n");
}

/// A bounded fork bomb (4,096 processes at most: a host that fails to
/// contain it does not take the machine) against a limit of 48.
fn fork_bomb(settings: &str) {
    let bomb = format!(
        "{}limits = {{ max_processes = 48 }}\n",
        plugin("bomb", "iglu-plugin-echo", &[])
    );
    let host = TestHost::start(settings, &[bomb, plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("bomb", "running");
    let pid = host.plugin("bomb")["pid"].as_u64().unwrap();
    let isolation = host.plugin("bomb")["isolation"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = host.call("bomb", "fork", json!({"n": 4096}));
    let cgroup = isolation.contains("processes: the kernel");
    if !settings.is_empty() && !cgroup {
        // No writable pids hierarchy (not root): the watchdog holds it.
        eprintln!("no pids cgroup here ({isolation}): checking the watchdog instead");
    }
    if cgroup {
        // The kernel refuses the fork past the limit (threads count too).
        let r = r.unwrap();
        assert!(r["opened"].as_u64().unwrap() < 48, "{r}");
        assert!(r["error"].as_str().is_some(), "{r}");
    } else {
        // The watchdog kills the group past the limit.
        let _ = r;
        host.wait_plugin("bomb", "killed at its process limit", |p| {
            p["last_exit"]
                .as_str()
                .is_some_and(|e| e.contains("process limit 48 exceeded"))
        });
    }
    still_serving(&host, "next to the fork bomb");
    // Stopped: nothing of its group is left.
    assert!(host.cli(&["stop", "bomb"]).status.success());
    host.eventually("the bomb's processes to be gone", || {
        let left = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(2))
                    .is_some_and(|pgrp| pgrp == pid.to_string())
            })
            .count();
        (left == 0).then_some(())
    });
}

#[test]
fn a_plugin_spinning_every_core_starves_no_one() {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let host = TestHost::start(
        "",
        &[
            plugin("spinner", "iglu-plugin-echo", &[]),
            plugin("echo", "iglu-plugin-echo", &[]),
        ],
    );
    host.wait_state("spinner", "running");
    host.wait_state("echo", "running");
    // Every core, twice over, for 6 s (six heartbeat intervals, twice the
    // liveness window), in the background.
    let busy = std::thread::scope(|scope| {
        let spin = scope.spawn(|| {
            host.call_with_timeout(
                "spinner",
                "burn",
                json!({"ms": 6000, "threads": cpus * 2}),
                20_000,
            )
        });
        let p = host.wait_plugin("spinner", "its CPU read", |p| {
            p["usage"]["cpu_percent"].as_f64().is_some_and(|c| c > 50.0)
        });
        while !spin.is_finished() {
            still_serving(&host, "while a plugin spins every core");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert!(spin.join().unwrap().is_ok());
        p
    });
    assert!(
        busy["usage"]["cpu_percent"].as_f64().unwrap() > 50.0,
        "{busy}"
    );
    for id in ["spinner", "echo"] {
        let p = host.plugin(id);
        assert_eq!(p["restarts"], json!(0), "no false crash: {p}");
        assert_eq!(p["state"], json!("running"), "{p}");
    }
}

/// A process that leaves the plugin's process group (as a daemon does) is
/// held by the plugin's cgroup v2: counted as the plugin's, and killed with
/// it. Needs a cgroup v2 the host can write (root, or a delegated subtree).
#[test]
fn a_process_that_leaves_its_plugins_group_dies_with_the_plugin() {
    let host = TestHost::start("", &[plugin("escaper", "iglu-plugin-echo", &[])]);
    host.wait_state("escaper", "running");
    let isolation = host.plugin("escaper")["isolation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        isolation.starts_with("cgroup v2 /"),
        "this test needs a cgroup v2 subtree the host may write (run it as root, or in a systemd unit with Delegate=yes): {isolation}"
    );
    let escaped = host.call("escaper", "escape", json!(null)).unwrap();
    let escaped = escaped.as_u64().unwrap();
    let alive = |pid: u64| std::path::Path::new(&format!("/proc/{pid}/stat")).exists();
    assert!(alive(escaped));
    // Counted as the plugin's: its process and the one that left.
    host.wait_plugin("escaper", "the escaped process counted", |p| {
        p["usage"]["processes"].as_u64().is_some_and(|n| n >= 2)
    });
    assert!(host.cli(&["stop", "escaper"]).status.success());
    host.eventually("the escaped process to be killed", || {
        // Reparented when the plugin died: gone, or a zombie, is dead.
        let stat = std::fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        (stat.is_empty() || state == Some("Z")).then_some(())
    });
}
