//! Upgrades under load: a package of the bench plugin is installed through
//! the host's own install path (a bundle checked and unpacked into the
//! package store), then upgraded to a new bundle several times while 64
//! calls are in flight to it, the whole time. Every call must succeed; the
//! report gives the switch-over's times and the calls' latency during the
//! upgrades next to the same load with no upgrade, in the same run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::measure::{histogram, median_max, record, Measure, Sample};
use super::workloads::payload_args;
use super::Bench;
use iglu_host::package::manifest::Permissions;
use iglu_host::CallOptions;

/// Calls in flight during the upgrades.
pub const IN_FLIGHT: usize = 64;
/// The package's id.
const ID: &str = "upgraded";

/// The upgrade workload's figures.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    /// Calls in flight.
    pub in_flight: usize,
    /// Upgrades made under load.
    pub upgrades: usize,
    /// Calls answered during the upgrades.
    pub calls: u64,
    /// Calls that failed during the upgrades (must be 0).
    pub failed: u64,
    /// The first failure, in words.
    pub first_failure: Option<String>,
    /// From the upgrade's start to the new version's handshake, median and
    /// worst, in µs.
    pub started_us: (u64, u64),
    /// The switch itself (traffic from the old session to the new), median
    /// and worst, in µs.
    pub switch_us: (u64, u64),
    /// From the switch to the old version's exit (it drains first), median
    /// and worst, in µs.
    pub drained_us: (u64, u64),
    /// The calls' figures during the upgrades.
    pub during: Measure,
    /// The same load with no upgrade, just before.
    pub steady: Measure,
}

/// A package directory of the bench plugin at `version`, and its bundle.
fn bundle(dir: &Path, version: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let pkg = dir.join(format!("pkg-{version}"));
    std::fs::create_dir_all(pkg.join("bin")).map_err(|e| e.to_string())?;
    let exe = pkg.join("bin/run");
    let script = format!(
        "#!/bin/sh\nexport RUST_LOG=warn\nexec {:?} \"$@\"\n",
        super::plugin_binary()?.display().to_string()
    );
    std::fs::write(&exe, script).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let manifest = format!(
        "id = \"{ID}\"\nname = \"Upgraded\"\nversion = \"{version}\"\nexecutable = \"bin/run\"\n"
    );
    std::fs::write(pkg.join("iglu-plugin.toml"), manifest).map_err(|e| e.to_string())?;
    let packed = iglu_host::package::commands::package(&pkg, &dir.join("bundles"), None)
        .map_err(|e| e.to_string())?;
    Ok(packed.bundle)
}

/// The bench's own bundles, unsigned.
fn unsigned(path: &Path) -> iglu_host::install::Bundle<'_> {
    iglu_host::install::Bundle {
        path,
        allow_unsigned: true,
        sha256: None,
    }
}

/// Calls at `IN_FLIGHT` until `stop`; counts failures instead of stopping.
async fn load(
    b: &Bench,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
    first: Arc<Mutex<Option<String>>>,
) -> Sample {
    let client = b.host.client();
    let args = payload_args(64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, args, stop) = (client.clone(), args.clone(), stop.clone());
        let (failures, first) = (failures.clone(), first.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let options = CallOptions::new(Duration::from_secs(30));
                match client.call_with(ID, "echo", args.clone(), options).await {
                    Ok(_) => {
                        record(&mut h, t.elapsed());
                        n += 1;
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        first
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e.to_string());
                    }
                }
            }
            (h, n)
        }));
    }
    let mut total = histogram();
    let mut count = 0;
    for t in tasks {
        if let Ok((h, n)) = t.await {
            let _ = total.add(&h);
            count += n;
        }
    }
    Sample::new(total, count, started.elapsed())
}

/// Installs the package, measures the steady load, then upgrades under it.
pub async fn upgrade(b: &Bench, upgrades: usize) -> Result<UpgradeReport, String> {
    let dir = b.dir.join("upgrade");
    let shared = b.host.shared().clone();
    let first = bundle(&dir, "1.0.0")?;
    iglu_host::install::install(&shared, unsigned(&first), &Permissions::default())
        .await
        .map_err(|e| format!("install: {e}"))?;
    let mut bundles = Vec::new();
    for i in 1..=upgrades {
        bundles.push(bundle(&dir, &format!("1.0.{i}"))?);
    }
    let flags = || {
        (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(Mutex::new(None)),
        )
    };
    // Steady: the same load, no upgrade.
    let (stop, failures, first_failure) = flags();
    let steady = load(b, stop.clone(), failures, first_failure);
    let steady = tokio::join!(steady, async {
        tokio::time::sleep(b.warmup + b.duration).await;
        stop.store(true, Ordering::Relaxed);
    })
    .0;
    let (stop, failures, first_failure) = flags();
    let during = load(b, stop.clone(), failures.clone(), first_failure.clone());
    let upgrading = async {
        tokio::time::sleep(b.warmup).await;
        let mut times = Vec::new();
        for path in &bundles {
            let outcome = iglu_host::install::upgrade(&shared, unsigned(path), None).await;
            times.push(outcome.map_err(|e| format!("upgrade: {e}"))?.upgrade);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::Relaxed);
        Ok::<_, String>(times)
    };
    let (during, times) = tokio::join!(during, upgrading);
    let times: Vec<_> = times?.into_iter().flatten().collect();
    let us = |f: fn(&iglu_host::plugin::handle::Upgraded) -> f64| {
        let mut v: Vec<Duration> = times
            .iter()
            .map(|u| Duration::from_secs_f64(f(u) / 1e3))
            .collect();
        median_max(&mut v)
    };
    let _ = iglu_host::install::uninstall(&shared, ID, true).await;
    let report = UpgradeReport {
        in_flight: IN_FLIGHT,
        upgrades: times.len(),
        calls: during.measure(64).count,
        failed: failures.load(Ordering::Relaxed),
        first_failure: first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        started_us: us(|u| u.started_ms),
        switch_us: us(|u| u.switch_ms),
        drained_us: us(|u| u.drained_ms),
        during: during.measure(64),
        steady: steady.measure(64),
    };
    Ok(report)
}

/// The table of the text report.
pub fn print(out: &mut String, r: &UpgradeReport) {
    let _ = writeln!(
        out,
        "UPGRADES UNDER LOAD ({} upgrades of an installed package, {} calls in flight throughout)",
        r.upgrades, r.in_flight
    );
    let _ = writeln!(
        out,
        "failed calls {}   calls {}   new version up (median/max) {}/{} us   switch {}/{} us   old drained {}/{} us",
        r.failed,
        r.calls,
        r.started_us.0,
        r.started_us.1,
        r.switch_us.0,
        r.switch_us.1,
        r.drained_us.0,
        r.drained_us.1
    );
    if let Some(f) = &r.first_failure {
        let _ = writeln!(out, "first failure: {f}");
    }
    for (name, m) in [("steady", &r.steady), ("upgrading", &r.during)] {
        let _ = writeln!(
            out,
            "{name:<10} {:>9.0} calls/s   p50 {:>6} us   p99 {:>6} us   max {:>7} us",
            m.per_s, m.p50_us, m.p99_us, m.max_us
        );
    }
    let _ = writeln!(out);
}
