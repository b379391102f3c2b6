//! `iglu bench` through the real binary: a short pass must produce a
//! complete report. Timing targets are never asserted here (that is what
//! the bench is for); only that it measures and cleans up, whether it
//! finishes or is interrupted.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use iglu_tests::{alive, bin, descendants, signal_pid};
use nix::sys::signal::Signal;
use serde_json::Value;

/// A bench run, with every process seen below it while it ran.
struct Watched {
    child: Child,
    seen: BTreeMap<u64, String>,
    /// Read on threads of their own, so a full pipe never stalls the bench.
    output: Vec<std::thread::JoinHandle<String>>,
}

impl Watched {
    fn start(args: &[&str]) -> Watched {
        let mut child = Command::new(bin("iglu"))
            .arg("bench")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let output = [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(stderr) as Box<dyn Read + Send>,
        ]
        .into_iter()
        .map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        })
        .collect();
        Watched {
            child,
            seen: BTreeMap::new(),
            output,
        }
    }

    fn look(&mut self) {
        for (pid, cmd) in descendants(u64::from(self.child.id())) {
            // A process seen again as a zombie (or between clone and exec)
            // has an empty command line: what it was stays.
            let known = self.seen.entry(pid).or_default();
            if !cmd.is_empty() {
                *known = cmd;
            }
        }
    }

    /// Polls until `done` holds for what has been seen, or `within` passes.
    fn watch_until(&mut self, within: Duration, done: impl Fn(&Watched) -> bool) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            self.look();
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the bench to exit, watching its processes meanwhile; kills
    /// it past `within`. Returns its status, stdout and stderr.
    fn wait(&mut self, within: Duration) -> (ExitStatus, String, String) {
        let end = Instant::now() + within;
        let status = loop {
            self.look();
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the bench did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut texts = self.output.drain(..).map(|t| t.join().unwrap_or_default());
        let out = texts.next().unwrap_or_default();
        let err = texts.next().unwrap_or_default();
        (status, out, err)
    }

    fn seen_any(&self, what: &str) -> bool {
        self.seen.values().any(|c| c.contains(what))
    }

    /// Every process the bench started must be gone (given a moment to be reaped).
    fn assert_nothing_left(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        let left = loop {
            let left: Vec<_> = self.seen.iter().filter(|(pid, _)| alive(**pid)).collect();
            if left.is_empty() || Instant::now() > end {
                break left;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(left.is_empty(), "left running: {left:?}");
    }
}

#[test]
fn a_short_bench_reports_iglu_next_to_both_floors_and_leaves_nothing_running() {
    let mut bench = Watched::start(&[
        "--json",
        "--workloads",
        "calls,events",
        "--inflight",
        "4",
        "--fanout",
        "1",
        "--duration-ms",
        "200",
    ]);
    let (status, out, err) = bench.wait(Duration::from_secs(300));
    assert!(status.success(), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
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
    // The bench ran its own plugins and floor peers; none may outlive it.
    assert!(bench.seen_any("iglu-plugin-bench"), "{:?}", bench.seen);
    bench.assert_nothing_left();
}

#[test]
fn an_interrupted_bench_stops_every_process_it_started() {
    // Long enough that only the interrupt can end it.
    let mut bench = Watched::start(&[
        "--workloads",
        "calls",
        "--inflight",
        "1",
        "--duration-ms",
        "600000",
    ]);
    let measuring = bench.watch_until(Duration::from_secs(120), |b| {
        b.seen_any("iglu-plugin-bench") && b.seen_any("peer zmq") && b.seen_any("peer uds")
    });
    if !measuring {
        let _ = bench.child.kill();
        let _ = bench.child.wait();
        panic!(
            "the bench never started its plugins and floors: {:?}",
            bench.seen
        );
    }
    signal_pid(u64::from(bench.child.id()), Signal::SIGINT);
    let (status, _, err) = bench.wait(Duration::from_secs(60));
    assert!(
        !status.success(),
        "an interrupted bench must not report success"
    );
    assert!(err.contains("interrupted"), "{err}");
    bench.assert_nothing_left();
}
