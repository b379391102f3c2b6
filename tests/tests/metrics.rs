//! The Prometheus endpoint of a real host: per-plugin state and restarts,
//! calls by method and outcome with their durations, event counters, memory
//! and CPU, the host's own; labels only from declared methods.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};

use iglu_tests::{free_port, plugin, TestHost};
use serde_json::json;

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("application/openmetrics-text"), "{out}");
    out
}

/// The value of the sample `name{labels}` (labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_metrics_endpoint_shows_plugins_calls_and_the_host() {
    let port = free_port();
    let host = TestHost::start(
        &format!("[metrics]\nbind = \"127.0.0.1:{port}\"\n"),
        &[plugin("echo", "iglu-plugin-echo", &[])],
    );
    host.wait_state("echo", "running");
    // Memory and CPU are read once per heartbeat interval.
    host.wait_plugin("echo", "its memory read", |p| {
        p["usage"]["rss_kib"].as_u64().is_some_and(|k| k > 0)
    });
    for _ in 0..3 {
        host.call("echo", "echo", json!(1)).unwrap();
    }
    assert!(host.call("echo", "fail", json!({"message": "no"})).is_err());
    assert!(host.call("echo", "no_such_method", json!(1)).is_err());
    let text = scrape(port);
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    assert_eq!(
        sample(&text, r#"iglu_plugin_up{plugin="echo"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"iglu_plugin_state{plugin="echo",state="running"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"iglu_calls_total{plugin="echo",method="echo",outcome="ok"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"iglu_calls_total{plugin="echo",method="fail",outcome="handler_error"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"iglu_call_duration_seconds_count{plugin="echo",method="echo"}"#
        ),
        Some(3.0)
    );
    assert!(
        !text.contains("no_such_method"),
        "labels come from declared methods only"
    );
    assert!(
        sample(&text, r#"iglu_plugin_resident_memory_bytes{plugin="echo"}"#).unwrap_or(0.0) > 0.0
    );
    assert!(sample(&text, "iglu_host_resident_memory_bytes").unwrap_or(0.0) > 0.0);
    assert!(sample(&text, "iglu_host_uptime_seconds").is_some());
    assert!(sample(&text, r#"iglu_events_delivered_total{plugin="echo"}"#).is_some());
    assert!(sample(&text, r#"iglu_event_queue_depth{plugin="echo"}"#).is_some());

    // A crash shows as a restart.
    let pid = host.plugin("echo")["pid"].as_u64().unwrap();
    iglu_tests::signal_pid(pid, nix::sys::signal::Signal::SIGKILL);
    host.eventually("the restart counted", || {
        (sample(
            &scrape(port),
            r#"iglu_plugin_restarts_total{plugin="echo"}"#,
        ) >= Some(1.0))
        .then_some(())
    });
}
