//! Durable writes: `kv.set` from a plugin, answered once on disk, at 1, 16
//! and 64 writers at once (measured inside bench-0), next to the
//! database's own rate of one commit (one fsync) after another, measured
//! in the same run on the same disk. Group commit is what lets many
//! writers go past that rate.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::hops::run_in_plugin;
use super::measure::{histogram, record, Measure};
use super::Bench;

/// The writer counts measured.
pub const WRITERS: [usize; 3] = [1, 16, 64];
/// Bytes of each value.
const VALUE: usize = 64;

/// Durable writes at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRow {
    /// Writers at once.
    pub writers: usize,
    /// Writes.
    pub measure: Measure,
    /// Its rate over the database's commit-after-commit rate.
    pub rate_ratio: f64,
    /// Its p50 over one commit's p50.
    pub p50_ratio: f64,
}

/// The store workload: the floor, then every writer count.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// redb, one insert and commit after another, in this run's directory.
    pub fsync_floor: Measure,
    /// `kv.set` through the host.
    pub rows: Vec<StoreRow>,
}

/// Measures the floor and the writes.
pub async fn store(b: &Bench) -> Result<StoreReport, String> {
    let path = b.dir.join("fsync-floor.redb");
    let duration = b.duration;
    let floor = tokio::task::spawn_blocking(move || commit_floor(&path, duration))
        .await
        .map_err(|e| e.to_string())??;
    let mut rows = Vec::new();
    for writers in WRITERS {
        let measure = writes(b, writers).await?;
        rows.push(StoreRow {
            writers,
            rate_ratio: measure.per_s / floor.per_s.max(1e-9),
            p50_ratio: measure.p50_us as f64 / floor.p50_us.max(1) as f64,
            measure,
        });
    }
    Ok(StoreReport {
        fsync_floor: floor,
        rows,
    })
}

/// One insert and one durable commit after another, for `duration`.
fn commit_floor(path: &std::path::Path, duration: Duration) -> Result<Measure, String> {
    const TABLE: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("floor");
    let _ = std::fs::remove_file(path);
    let db = redb::Database::create(path).map_err(|e| e.to_string())?;
    let value = [0x5au8; VALUE];
    let mut h = histogram();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        let t = Instant::now();
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
            table
                .insert(n % 64, &value[..])
                .map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        record(&mut h, t.elapsed());
        n += 1;
    }
    let m = Measure::of(&h, n, started.elapsed(), VALUE);
    drop(db);
    let _ = std::fs::remove_file(path);
    Ok(m)
}

async fn writes(b: &Bench, writers: usize) -> Result<Measure, String> {
    #[derive(Serialize)]
    struct KvLoad {
        writes: u64,
        writers: u64,
        size: usize,
    }
    let load = |writes: u64| KvLoad {
        writes,
        writers: writers as u64,
        size: VALUE,
    };
    // About the bench's duration of writes, from a short trial.
    let trial = run_in_plugin(b, "kv_load", &load((20 * writers) as u64)).await?;
    let per_s = trial.latency.count as f64 / (trial.elapsed_us.max(1) as f64 / 1e6);
    let total = ((per_s * b.duration.as_secs_f64()) as u64).max(50 * writers as u64);
    Ok(run_in_plugin(b, "kv_load", &load(total))
        .await?
        .measure(VALUE))
}

/// The table of the text report.
pub fn print(out: &mut String, r: &StoreReport) {
    let f = &r.fsync_floor;
    let _ = writeln!(
        out,
        "DURABLE WRITES (kv.set of {VALUE} B from a plugin, answered once on disk; floor: redb commit after commit, same disk, same run)"
    );
    let _ = writeln!(
        out,
        "fsync floor            {:>9.0}/s   p50 {:>6} us   p99 {:>6} us",
        f.per_s, f.p50_us, f.p99_us
    );
    for row in &r.rows {
        let m = &row.measure;
        let _ = writeln!(
            out,
            "writers {:<3}            {:>9.0}/s   p50 {:>6} us   p99 {:>6} us   rate x{:.2}   p50 x{:.2}",
            row.writers, m.per_s, m.p50_us, m.p99_us, row.rate_ratio, row.p50_ratio
        );
    }
    let _ = writeln!(out);
}
