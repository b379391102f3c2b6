//! `iglu bench` (the `iglu-bench` binary; `iglu bench` runs it): load-tests
//! the real host with real plugin processes, next to the floors it stands
//! on, in one run.
//!
//! The host runs in this process through the public embedding API only
//! (`iglu_host::Host` and its `HostClient`), the plugins are
//! `iglu-plugin-bench` processes, and the floors ([`floors`], their wire
//! in [`floor_wire`]) are echo servers in child processes of their own
//! (`iglu-bench peer`). [`workloads`] measures calls, payloads, fan-out;
//! [`lifecycle`], [`neighbours`] and [`footprint`] measure starts and
//! crashes, a noisy neighbour, and memory; [`report`] prints a table or
//! JSON. Everything started is stopped at the
//! end or on Ctrl-C: plugins by the host's shutdown, floor peers and the
//! memory workload's host by kill-on-drop.

pub mod floor_wire;
pub mod floors;
pub mod footprint;
pub mod hops;
pub mod lifecycle;
pub mod measure;
pub mod metrics_cost;
pub mod mqtt;
pub mod neighbours;
pub mod report;
pub mod store;
pub mod upgrade;
pub mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use iglu_host::{Config, Host};
use report::Report;

/// Options of `iglu bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// A full pass in under a minute (shorter runs, fewer repetitions).
    #[arg(long)]
    pub quick: bool,
    /// Print JSON (stable field names, see README) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Workloads to run: calls, metrics, payloads, plugins, hops, store, upgrade, events, mqtt, neighbours, lifecycle, memory.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "calls,metrics,payloads,plugins,hops,store,upgrade,events,mqtt,neighbours,lifecycle,memory"
    )]
    pub workloads: Vec<String>,
    /// Calls in flight for the throughput workload.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub inflight: Vec<usize>,
    /// Payload sizes in bytes for the payload workload.
    #[arg(long, value_delimiter = ',', default_value = "64,4096,65536,1048576")]
    pub payloads: Vec<usize>,
    /// Plugin counts for the many-plugins workload.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub plugins: Vec<usize>,
    /// Subscriber counts for the fan-out workload (each must be 1, 8 or 32).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub fanout: Vec<usize>,
    /// Measured time per configuration, in ms (default 2000; 250 with --quick).
    #[arg(long)]
    pub duration_ms: Option<u64>,
    /// Repetitions of each lifecycle measurement (default 20; 5 with --quick).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Calls of the memory-growth run (default 1,000,000; 100,000 with --quick).
    #[arg(long)]
    pub long_calls: Option<u64>,
}

/// What every workload needs.
pub struct Bench {
    /// The host under test.
    pub host: Host,
    /// Scratch directory for sockets and configs.
    pub dir: PathBuf,
    /// Unmeasured time before each measurement.
    pub warmup: Duration,
    /// Measured time per configuration.
    pub duration: Duration,
}

/// The bench plugin binary, beside this executable.
pub fn plugin_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name("iglu-plugin-bench");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release --workspace --bins`",
            path.display()
        ))
    }
}

fn host_config(dir: &std::path::Path, plugins: usize) -> Result<Config, String> {
    let bench = plugin_binary()?;
    let mut toml = format!(
        "runtime_dir = {:?}\ndata_dir = {:?}\n\
         [heartbeat]\ninterval_ms = 250\nliveness = 3\n\
         [restart]\nbackoff_initial_ms = 50\nbackoff_max_ms = 50\nmax_restarts = 1000000\nwindow_s = 1\n",
        dir.join("rt").display().to_string(),
        dir.join("data").display().to_string()
    );
    for i in 0..plugins {
        toml.push_str(&format!(
            "[[plugin]]\nid = \"bench-{i}\"\ncommand = {:?}\ncalls = [\"*\"]\nenv = {{ BENCH_INDEX = \"{i}\", RUST_LOG = \"warn\" }}\n",
            bench.display().to_string()
        ));
    }
    toml.push_str(&format!(
        "[[plugin]]\nid = \"life\"\ncommand = {:?}\nautostart = false\nenv = {{ RUST_LOG = \"warn\" }}\nsandbox = {{ enabled = false }}\n",
        bench.display().to_string()
    ));
    toml.push_str(&format!(
        "[[plugin]]\nid = \"life-boxed\"\ncommand = {:?}\nautostart = false\nenv = {{ RUST_LOG = \"warn\" }}\nsandbox = {{ enabled = true }}\n",
        bench.display().to_string()
    ));
    // The neighbour that floods and never reads (see `neighbours`).
    toml.push_str(&format!(
        "[[external]]\nid = \"deaf\"\ntoken = {:?}\n",
        neighbours::DEAF_TOKEN
    ));
    Config::parse(&toml, &dir.join("bench.toml")).map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
    cpu_model: String,
}

fn machine() -> serde_json::Value {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    serde_json::to_value(Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        kernel,
        cpu_model,
    })
    .unwrap_or_default()
}

/// Runs the selected workloads and prints the report. Cleans up on every path.
pub async fn run(options: Options) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("iglu-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = run_in(&options, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report::table(&report));
    }
    Ok(())
}

async fn run_in(o: &Options, dir: &std::path::Path) -> Result<Report, String> {
    let wants = |w: &str| o.workloads.iter().any(|x| x == w);
    let quick = o.quick;
    let duration = Duration::from_millis(o.duration_ms.unwrap_or(if quick { 250 } else { 2000 }));
    let warmup = if quick {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(300)
    };
    let repeat = o.repeat.unwrap_or(if quick { 5 } else { 20 });
    let long_calls = o
        .long_calls
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let mut needed = 1usize;
    if wants("plugins") {
        needed = needed.max(o.plugins.iter().copied().max().unwrap_or(1));
    }
    if wants("events") {
        needed = needed.max(o.fanout.iter().copied().max().unwrap_or(1));
    }
    if wants("hops") {
        needed = needed.max(2);
    }
    let mut steps = 0u64;
    if wants("calls") {
        steps += 1 + o.inflight.len() as u64;
    }
    if wants("payloads") {
        steps += o.payloads.len() as u64;
    }
    if wants("plugins") {
        steps += o.plugins.len() as u64;
    }
    if wants("events") {
        steps += o.fanout.len() as u64;
    }
    steps += u64::from(wants("hops"))
        + u64::from(wants("store"))
        + u64::from(wants("upgrade"))
        + u64::from(wants("mqtt"))
        + 2 * u64::from(wants("metrics"));
    steps += u64::from(wants("lifecycle"))
        + u64::from(wants("memory"))
        + u64::from(wants("neighbours"))
        + 1;
    let progress = ProgressBar::new(steps);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    progress.set_message(format!("starting the host and {needed} bench plugins"));

    let host = Host::start(host_config(dir, needed)?)
        .await
        .map_err(|e| e.to_string())?;
    let bench = Bench {
        host,
        dir: dir.to_owned(),
        warmup,
        duration,
    };
    let outcome = tokio::select! {
        r = workloads_in(o, &bench, &progress, repeat, long_calls) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    progress.set_message("stopping the host");
    bench.host.shutdown().await;
    progress.finish_and_clear();
    let mut report = outcome?;
    report.machine = machine();
    report.settings = serde_json::json!({
        "quick": quick,
        "duration_ms": duration.as_millis() as u64,
        "warmup_ms": warmup.as_millis() as u64,
        "lifecycle_repeat": repeat,
        "long_run_calls": long_calls,
    });
    report.evaluate_targets();
    Ok(report)
}

async fn workloads_in(
    o: &Options,
    b: &Bench,
    p: &ProgressBar,
    repeat: usize,
    long_calls: u64,
) -> Result<Report, String> {
    let wants = |w: &str| o.workloads.iter().any(|x| x == w);
    // Wait until every autostarted plugin is Running.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let st = b.host.status();
        if st
            .iter()
            .filter(|s| s.id != "life" && s.id != "life-boxed" && s.id != "deaf")
            .all(|s| s.state == iglu_host::PluginState::Running)
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err("bench plugins did not all start".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.inc(1);
    let mut report = Report::default();
    // Lifecycle first, on a fresh host: forking a plugin copies the host's
    // page tables, and the 1 MiB payload workload grows this process's heap
    // far beyond what a real `iglu run` host holds (about 8 MiB).
    if wants("lifecycle") {
        p.set_message(format!("lifecycle x{repeat}"));
        report.lifecycle = workloads::lifecycle(b, repeat).await?;
        p.inc(1);
    }
    if wants("calls") {
        p.set_message("sequential latency");
        report
            .calls
            .push(workloads::call_row(b, "latency", 1, 64, 1).await?);
        p.inc(1);
        for &k in &o.inflight {
            p.set_message(format!("throughput, {k} in flight"));
            report
                .calls
                .push(workloads::call_row(b, "throughput", k, 64, 1).await?);
            p.inc(1);
        }
    }
    if wants("metrics") {
        for k in [1, 64] {
            p.set_message(format!("metrics recording on vs off, {k} in flight"));
            report
                .metrics_cost
                .push(metrics_cost::metrics_cost(b, k).await?);
            p.inc(1);
        }
    }
    if wants("payloads") {
        for &size in &o.payloads {
            p.set_message(format!("payload {size} B"));
            let k = if size >= 65536 { 16 } else { 64 };
            report
                .calls
                .push(workloads::call_row(b, "payload", k, size, 1).await?);
            p.inc(1);
        }
    }
    if wants("plugins") {
        for &n in &o.plugins {
            p.set_message(format!("{n} plugins"));
            report
                .calls
                .push(workloads::call_row(b, "plugins", 64, 64, n).await?);
            p.inc(1);
        }
    }
    if wants("hops") {
        p.set_message("typed and plugin-to-plugin calls");
        report.hops = hops::hops(b).await?;
        p.inc(1);
    }
    if wants("store") {
        p.set_message("durable writes, next to the disk's commit rate");
        report.store = Some(store::store(b).await?);
        p.inc(1);
    }
    if wants("upgrade") {
        let n = if repeat >= 20 { 10 } else { 3 };
        p.set_message(format!(
            "{n} upgrades under {} calls in flight",
            upgrade::IN_FLIGHT
        ));
        report.upgrade = Some(upgrade::upgrade(b, n).await?);
        p.inc(1);
    }
    if wants("events") {
        for &n in &o.fanout {
            p.set_message(format!("event fan-out to {n}"));
            report.events.push(workloads::fanout(b, n).await?);
            p.inc(1);
        }
    }
    if wants("mqtt") {
        let n = if repeat >= 20 { 20_000 } else { 2_000 };
        p.set_message(format!(
            "{n} MQTT messages: broker -> bridge -> plugin, next to mosquitto_sub"
        ));
        match mqtt::mqtt(&b.dir, n).await {
            Ok(rows) => report.mqtt = rows,
            Err(e) => report.mqtt_skipped = Some(e),
        }
        p.inc(1);
    }
    if wants("neighbours") {
        p.set_message("calls next to a neighbour that floods and never reads");
        report.neighbours = Some(neighbours::neighbours(b, workloads::slices(b.duration)).await?);
        p.inc(1);
    }
    if wants("memory") {
        p.set_message(format!("memory ({long_calls} calls)"));
        report.memory = Some(workloads::memory(b, long_calls).await?);
        p.inc(1);
    }
    Ok(report)
}
