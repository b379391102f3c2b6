//! `iglu bench` through the real binary: a short pass must produce a
//! complete report. Timing targets are never asserted here (that is what
//! the bench is for); only that it measures and cleans up.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use iglu_tests::bin;
use serde_json::Value;

#[test]
fn a_short_bench_reports_iglu_next_to_both_floors_and_leaves_nothing_running() {
    let out = Command::new(bin("iglu"))
        .args([
            "bench",
            "--json",
            "--workloads",
            "calls,events",
            "--inflight",
            "4",
            "--fanout",
            "1",
            "--duration-ms",
            "200",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "latency and one throughput row");
    for row in calls {
        assert!(row["iglu"]["per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["zmq_floor"]["per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["uds_floor"]["per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["iglu"]["p50_us"].as_u64().unwrap() > 0, "{row}");
    }
    let events = report["events"].as_array().unwrap();
    assert!(events[0]["delivered"].as_u64().unwrap() > 0, "{events:?}");
    assert_eq!(events[0]["dropped"].as_u64().unwrap(), 0);
    assert!(report["targets"].as_array().is_some_and(|t| !t.is_empty()));
    // The bench ran its own host and plugins; none may outlive it.
    let leftover = Command::new("pgrep")
        .args(["-f", "iglu-plugin-bench"])
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "bench plugins left running: {}",
        String::from_utf8_lossy(&leftover.stdout)
    );
}
