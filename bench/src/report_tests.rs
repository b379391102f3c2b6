//! The report's tables and targets from fixed figures.

use super::*;
use crate::measure::Measure;

fn measure(base: u64) -> Measure {
    Measure {
        per_s: 1000.0,
        p50_us: base,
        p90_us: base + 1,
        p99_us: base + 2,
        p999_us: base + 3,
        max_us: base + 4,
        count: 10,
        ..Measure::default()
    }
}

#[test]
fn sequential_calls_show_their_whole_distribution_next_to_both_floors() {
    let report = Report {
        calls: vec![CallRow {
            workload: "latency".into(),
            in_flight: 1,
            payload_bytes: 64,
            plugins: 1,
            iglu: measure(70),
            zmq_floor: Some(measure(60)),
            uds_floor: Some(measure(50)),
            host_cpu_percent: None,
        }],
        ..Report::default()
    };
    let text = table(&report);
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("SEQUENTIAL LATENCY"))
        .take(5)
        .collect();
    assert_eq!(block.len(), 5, "{text}");
    for (line, who, base) in [(2, "iglu", 70), (3, "zmq floor", 60), (4, "uds floor", 50)] {
        let cells: Vec<&str> = block[line].split_whitespace().collect();
        let figures: Vec<&str> = cells[cells.len() - 5..].to_vec();
        let want: Vec<String> = (base..base + 5).map(|v| v.to_string()).collect();
        assert!(block[line].contains(who), "{}", block[line]);
        assert_eq!(figures, want, "{}", block[line]);
    }
}
