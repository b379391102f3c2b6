//! The writer: one thread that owns the database file and commits writes
//! in groups. It takes every write waiting when it starts a batch, works
//! them out in order over the mirror (quotas, compare-and-set), writes them
//! and the retained events in one transaction, commits once (one fsync for
//! the whole group), then puts the batch into the mirror and answers each
//! write. Many writers at once therefore share commits instead of queueing
//! for one fsync each; one writer alone pays one commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot};

/// Where a write's outcome goes: called on the writer's thread once the
/// commit is durable (or refused), so an answer leaves with no task hop.
pub type Answer = Box<dyn FnOnce(Result<Vec<Done>, StoreError>) + Send>;

use super::db::Db;
use super::error::StoreError;
use super::mirror::{Mirror, Overlay};
use super::{Done, Op, Quota, RetainedRecord};

/// How long a failing store waits before trying retained events again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// How often a failing commit is logged, at most.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes in one batch, at most; more wait for the next commit.
const MAX_BATCH: usize = 1024;

/// One write: all its operations commit together, or none does.
pub struct Write {
    pub plugin: String,
    pub quota: Quota,
    pub ops: Vec<Op>,
    pub answer: Answer,
}

/// What the writer is sent.
pub enum Job {
    Write(Write),
    /// Retained events are waiting (in [`Shared::retained`]).
    Flush,
    /// Commit what is waiting, then end.
    Stop(oneshot::Sender<()>),
}

/// What the writer shares with the store's handle.
pub struct Shared {
    pub mirror: RwLock<Mirror>,
    /// Retained events not yet written, by topic (the newest wins).
    pub retained: Mutex<HashMap<String, Option<RetainedRecord>>>,
}

impl Shared {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        self.mirror.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Mirror> {
        self.mirror.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pending_retained(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Option<RetainedRecord>>> {
        self.retained.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs until a `Stop` (or until every sender is gone), inside `runtime`'s
/// context if there is one (answers may start tasks).
pub fn run(
    mut db: Db,
    shared: Arc<Shared>,
    mut jobs: mpsc::Receiver<Job>,
    runtime: Option<tokio::runtime::Handle>,
) {
    let _inside = runtime.as_ref().map(|r| r.enter());
    let mut broken = false;
    let mut warned: Option<std::time::Instant> = None;
    loop {
        // After a failed commit, retained events may be waiting with nobody
        // to send a Flush: look again on a timer.
        let first = if broken && !shared.pending_retained().is_empty() {
            match jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(RETRY);
                    Job::Flush
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        } else {
            match jobs.blocking_recv() {
                Some(job) => job,
                None => return,
            }
        };
        let mut writes = Vec::new();
        let mut stop = None;
        let mut job = Some(first);
        while let Some(j) = job.take() {
            match j {
                Job::Write(w) => writes.push(w),
                Job::Flush => {}
                Job::Stop(done) => stop = Some(done),
            }
            if writes.len() < MAX_BATCH && stop.is_none() {
                job = jobs.try_recv().ok();
            }
        }
        if broken {
            // An I/O error left redb refusing everything until reopened;
            // what a late failure did commit is read back, so the mirror
            // is the file again.
            match db.reopen().and_then(|()| db.load()) {
                Ok((mirror, _)) => {
                    *shared.write() = mirror;
                    broken = false;
                }
                Err(e) => {
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        warned = Some(std::time::Instant::now());
                        tracing::warn!(error = %e, "the store is still failing");
                    }
                    for w in writes {
                        (w.answer)(Err(e.clone()));
                    }
                    if let Some(done) = stop {
                        refuse_the_rest(&mut jobs);
                        let _ = done.send(());
                        return;
                    }
                    continue;
                }
            }
        }
        broken |= commit_batch(&db, &shared, writes, &mut warned);
        if let Some(done) = stop {
            refuse_the_rest(&mut jobs);
            let _ = done.send(());
            return;
        }
    }
}

/// Writes that came after `Stop` are answered, not dropped.
fn refuse_the_rest(jobs: &mut mpsc::Receiver<Job>) {
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        if let Job::Write(w) = job {
            (w.answer)(Err(StoreError::Closed));
        }
    }
}

/// Works out, commits and answers one batch; true if the commit failed
/// (the file must be reopened before the next).
fn commit_batch(
    db: &Db,
    shared: &Shared,
    writes: Vec<Write>,
    warned: &mut Option<std::time::Instant>,
) -> bool {
    let mut overlay = Overlay::default();
    let mut answers = Vec::with_capacity(writes.len());
    {
        let mirror = shared.read();
        for w in writes {
            let outcome = overlay.apply(&mirror, &w.plugin, w.quota, w.ops);
            answers.push((w.answer, outcome));
        }
    }
    let retained: Vec<(String, Option<RetainedRecord>)> =
        shared.pending_retained().drain().collect();
    if overlay.is_empty() && retained.is_empty() {
        for (answer, outcome) in answers {
            answer(outcome);
        }
        return false;
    }
    let committed = {
        let mirror = shared.read();
        db.commit(&mirror, &overlay, &retained)
    };
    match committed {
        Ok(()) => {
            shared.write().absorb(overlay);
            for (answer, outcome) in answers {
                answer(outcome);
            }
            false
        }
        Err(e) => {
            // A failing disk fails every commit: say so every 10 s, not each time.
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                *warned = Some(std::time::Instant::now());
                tracing::warn!(error = %e, writes = answers.len(), retained = retained.len(), "a store commit failed: its writes were refused");
            }
            {
                // Retained state is not lost on a failed commit: it goes
                // again with the next one (unless newer state came since).
                let mut pending = shared.pending_retained();
                for (topic, record) in retained {
                    pending.entry(topic).or_insert(record);
                }
            }
            for (answer, outcome) in answers {
                answer(outcome.and(Err(e.clone())));
            }
            true
        }
    }
}
