//! Each plugin's key-value store and the retained events, on disk.
//!
//! One redb file in the host's data directory ([`db`]), mirrored in memory
//! ([`mirror`]) so reads never wait on the disk, and written by one thread
//! that commits writes in groups ([`writer`]). The rule: a write is
//! answered only once its commit is durable, so what a plugin was told is
//! stored survives a crash of the host, a power cut or a reboot. Retained
//! events are written by the same commits, without anyone waiting for them.
//!
//! Every plugin reaches only its own keys; quotas (keys and bytes) bound
//! what one plugin may store.

pub mod db;
pub mod error;
pub mod mirror;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use error::StoreError;
pub use writer::Answer;
use writer::{Job, Write};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Writes that may wait for their commit at once; more fail with `overloaded`.
pub const MAX_WAITING: usize = 8192;
/// Most entries one `kv.list` page holds.
pub const MAX_PAGE: usize = 1000;
/// The file in the data directory.
pub const FILE: &str = "store.redb";

/// What one plugin may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Most keys.
    pub max_keys: u64,
    /// Most bytes of keys and values together.
    pub max_bytes: u64,
}

/// One operation of a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Sets a key to a value (one MessagePack document).
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Removes a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Sets (or, with `value` `None`, removes) a key only if its current
    /// value is `expected` (`None`: only if it is unset).
    Cas {
        /// The key.
        key: String,
        /// What it must hold now.
        expected: Option<Bytes>,
        /// What it is to hold then.
        value: Option<Bytes>,
    },
    /// Removes every key of the plugin (an import that replaces).
    Clear,
}

/// What one operation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// Set.
    Set,
    /// Removed; whether it existed.
    Deleted(bool),
    /// Compared: whether it swapped, and if not, the current value.
    Cas {
        /// It matched and was changed.
        swapped: bool,
        /// The value it holds, when it did not match.
        current: Option<Bytes>,
    },
    /// Every key removed.
    Cleared,
}

/// A retained event as stored: enough to give it again after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetainedRecord {
    /// Its topic.
    pub topic: String,
    /// Who published it.
    pub source: String,
    /// When, in ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The payload, one MessagePack document.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Keys and values, in key order.
    pub entries: Vec<(String, Bytes)>,
    /// The key to list after for the next page, if there is more.
    pub next: Option<String>,
}

/// The store of a running host.
pub struct Store {
    shared: Arc<writer::Shared>,
    jobs: mpsc::Sender<Job>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Retained events found at open, for the event hub to take once.
    restored: Mutex<Vec<RetainedRecord>>,
    path: Option<PathBuf>,
}

impl Store {
    /// Opens the store in `dir` (creating the directory, mode 0700, and
    /// the file). A file that cannot be used is refused and left alone.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(dir).map_err(|e| StoreError::Open {
            path: dir.to_owned(),
            reason: format!("cannot create the data directory: {e}"),
        })?;
        Store::start(db::Db::open(&dir.join(FILE))?)
    }

    /// A store in memory only (lost with the host): for tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::start(db::Db::in_memory()?)
    }

    fn start(db: db::Db) -> Result<Store, StoreError> {
        let (mirror, restored) = db.load()?;
        let path = db.path().map(Path::to_owned);
        let shared = Arc::new(writer::Shared {
            mirror: RwLock::new(mirror),
            retained: Mutex::new(Default::default()),
        });
        let (jobs, rx) = mpsc::channel(MAX_WAITING);
        let runtime = tokio::runtime::Handle::try_current().ok();
        let thread = std::thread::Builder::new()
            .name("iglu-store".into())
            .spawn({
                let shared = shared.clone();
                move || writer::run(db, shared, rx, runtime)
            })
            .map_err(|e| StoreError::Storage(format!("cannot start the store's writer: {e}")))?;
        Ok(Store {
            shared,
            jobs,
            thread: Mutex::new(Some(thread)),
            restored: Mutex::new(restored),
            path,
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The value of `key` in `plugin`'s store.
    pub fn get(&self, plugin: &str, key: &str) -> Option<Bytes> {
        self.shared
            .read()
            .plugins
            .get(plugin)
            .and_then(|d| d.entries.get(key))
            .cloned()
    }

    /// Keys of `plugin` starting with `prefix`, in order, after `after`
    /// (exclusive), at most `limit` (and [`MAX_PAGE`]) of them, and no more
    /// than `max_bytes` of keys and values (at least one entry), so a page
    /// always fits in a frame.
    pub fn list(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Page {
        let limit = limit.clamp(1, MAX_PAGE);
        let mirror = self.shared.read();
        let Some(data) = mirror.plugins.get(plugin) else {
            return Page {
                entries: Vec::new(),
                next: None,
            };
        };
        let start = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a.to_owned()),
            _ => std::ops::Bound::Included(prefix.to_owned()),
        };
        let mut entries: Vec<(String, Bytes)> = Vec::new();
        let mut bytes = 0usize;
        let mut more = false;
        for (k, v) in data
            .entries
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            let size = k.len() + v.len();
            if entries.len() == limit || (!entries.is_empty() && bytes + size > max_bytes) {
                more = true;
                break;
            }
            bytes += size;
            entries.push((k.clone(), v.clone()));
        }
        let next = if more {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Page { entries, next }
    }

    /// Every plugin's id that holds keys.
    pub fn plugins(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.read().plugins.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// How many keys and bytes `plugin` holds.
    pub fn usage(&self, plugin: &str) -> (u64, u64) {
        self.shared
            .read()
            .plugins
            .get(plugin)
            .map_or((0, 0), |d| (d.entries.len() as u64, d.bytes))
    }

    /// Queues a write for the next commit; `answer` is called (on the
    /// writer's thread, inside the host's runtime) once it is durable or
    /// refused. Fails at once, without calling `answer`, if the store is
    /// closed or too many writes wait already.
    pub fn submit(
        &self,
        plugin: &str,
        quota: Quota,
        ops: Vec<Op>,
        answer: writer::Answer,
    ) -> Result<(), StoreError> {
        for op in &ops {
            if let Op::Set { key, .. } | Op::Cas { key, .. } = op {
                mirror::check_key(key)?;
            }
        }
        let job = Job::Write(Write {
            plugin: plugin.to_owned(),
            quota,
            ops,
            answer,
        });
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded(MAX_WAITING),
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })
    }

    /// A write, waited for.
    pub async fn write(
        &self,
        plugin: &str,
        quota: Quota,
        ops: Vec<Op>,
    ) -> Result<Vec<Done>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            plugin,
            quota,
            ops,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        )?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Keeps a topic's retained state (`None`: cleared) for the next commit.
    /// Nobody waits for it; a burst of changes to one topic writes the newest.
    pub fn retain(&self, topic: &str, record: Option<RetainedRecord>) {
        let first = {
            let mut pending = self.shared.pending_retained();
            let first = pending.is_empty();
            pending.insert(topic.to_owned(), record);
            first
        };
        if first {
            // Full: writes are queued, and their commit takes this along.
            let _ = self.jobs.try_send(Job::Flush);
        }
    }

    /// The retained events stored at open (once; empty after).
    pub fn take_restored(&self) -> Vec<RetainedRecord> {
        std::mem::take(&mut *self.restored.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Commits what is waiting and stops the writer.
    pub async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        if self.jobs.send(Job::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Creates `dir` (and its parents) with mode 0700 for what it creates.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
