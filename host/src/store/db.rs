//! The database file: redb, one file in the data directory. Tables: `kv`
//! ((plugin, key) -> value), `retained` (topic -> the retained event) and
//! `meta` (the format version). A commit is durable when it returns
//! (redb's `Durability::Immediate`: checksummed, fsynced).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, StorageError, TableDefinition, TableHandle};

use super::error::StoreError;
use super::mirror::{entry_size, Mirror, Overlay};
use super::RetainedRecord;

const KV: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("kv");
const RETAINED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("retained");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The version of the tables above. A newer file is refused with a reason;
/// an older one would be migrated here.
pub const FORMAT: u64 = 1;

/// The open file, or an in-memory database (for tests and embedders that
/// want no disk).
pub struct Db {
    handle: Handle,
    /// `None` in memory.
    path: Option<PathBuf>,
}

/// A file can be opened read-only when its disk is (an SD card that turned
/// read-only, a read-only mount): the host then serves what is stored and
/// fails writes with `storage_error` until the file can be written again.
enum Handle {
    Writable(Database),
    ReadOnly(redb::ReadOnlyDatabase, String),
    /// Neither: a reopen failed. Nothing is read or written until one works.
    Broken(String),
}

/// Whether opening failed because the file or its disk cannot be written.
fn read_only(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::Storage(StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::PermissionDenied
                || io.kind() == std::io::ErrorKind::ReadOnlyFilesystem
        }
        _ => false,
    }
}

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

impl Db {
    /// Opens (or creates) the store at `path`. A file that is not an Iglu
    /// store, is corrupt, is in use by another host or was written by a
    /// newer format is refused, and left as it is.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let refuse = |reason: String| StoreError::Open {
            path: path.to_owned(),
            reason,
        };
        let handle = match Database::create(path) {
            Ok(db) => Handle::Writable(db),
            Err(e) if read_only(&e) => {
                let ro = redb::ReadOnlyDatabase::open(path).map_err(|second| {
                    refuse(format!("{e}; read-only, it does not open either: {second}"))
                })?;
                tracing::warn!(file = %path.display(), error = %e, "the store cannot be written: serving what it holds, writes fail with storage_error until it can");
                Handle::ReadOnly(ro, e.to_string())
            }
            Err(e) => return Err(refuse(e.to_string())),
        };
        let db = Db {
            handle,
            path: Some(path.to_owned()),
        };
        db.check_format().map_err(|e| match e {
            StoreError::Storage(reason) => refuse(reason),
            other => other,
        })?;
        Ok(db)
    }

    /// A database held in memory only.
    pub fn in_memory() -> Result<Db, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(storage)?;
        let db = Db {
            handle: Handle::Writable(db),
            path: None,
        };
        db.check_format()?;
        Ok(db)
    }

    /// Opens the file again after an I/O error (redb then refuses every
    /// transaction until it is reopened); in memory there is nothing to do.
    pub fn reopen(&mut self) -> Result<(), StoreError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        // The old handle must go first: the file is locked while it is open.
        drop(std::mem::replace(
            &mut self.handle,
            Handle::Broken("being reopened".into()),
        ));
        match Database::create(&path) {
            Ok(db) => {
                self.handle = Handle::Writable(db);
                self.check_format()
            }
            Err(e) => {
                // Still not writable: serve what it holds, if it opens at all.
                self.handle = match redb::ReadOnlyDatabase::open(&path) {
                    Ok(ro) => Handle::ReadOnly(ro, e.to_string()),
                    Err(second) => Handle::Broken(format!("{e}; read-only: {second}")),
                };
                Err(storage(e))
            }
        }
    }

    fn writable(&self) -> Result<&Database, StoreError> {
        match &self.handle {
            Handle::Writable(db) => Ok(db),
            Handle::ReadOnly(_, why) | Handle::Broken(why) => Err(StoreError::Storage(format!(
                "the store's file cannot be written ({why}); nothing is written until it can"
            ))),
        }
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let db = match &self.handle {
            Handle::Writable(db) => db,
            Handle::Broken(why) => return Err(StoreError::Storage(why.clone())),
            Handle::ReadOnly(ro, _) => {
                // Read-only, nothing can be created or migrated: it must be
                // a store of this format already.
                let txn = ro.begin_read().map_err(storage)?;
                let meta = txn.open_table(META).map_err(|e| {
                    StoreError::Storage(format!("read-only and not an Iglu store: {e}"))
                })?;
                return match meta.get("format").map_err(storage)?.map(|v| v.value()) {
                    Some(FORMAT) => Ok(()),
                    other => Err(StoreError::Storage(format!(
                        "read-only, and its store format is {other:?}, not {FORMAT}"
                    ))),
                };
            }
        };
        let txn = db.begin_write().map_err(storage)?;
        let found = {
            let meta = txn.open_table(META).map_err(storage)?;
            let found = meta.get("format").map_err(storage)?.map(|v| v.value());
            found
        };
        match found {
            Some(FORMAT) => {}
            Some(newer) if newer > FORMAT => {
                return Err(StoreError::Storage(format!(
                    "it was written in store format {newer} by a newer iglu; this one reads format {FORMAT} (upgrade iglu, or point data_dir elsewhere)"
                )))
            }
            Some(older) => {
                return Err(StoreError::Storage(format!(
                    "store format {older} is not one this iglu can migrate (it reads format {FORMAT})"
                )))
            }
            None => {
                let empty = txn.list_tables().map_err(storage)?.all(|t| t.name() == "meta");
                if !empty {
                    return Err(StoreError::Storage(
                        "it holds tables but no store format: not an Iglu store".into(),
                    ));
                }
                let mut meta = txn.open_table(META).map_err(storage)?;
                meta.insert("format", FORMAT).map_err(storage)?;
            }
        }
        txn.open_table(KV).map_err(storage)?;
        txn.open_table(RETAINED).map_err(storage)?;
        txn.commit().map_err(storage)
    }

    /// Everything stored: the key-value data and the retained events.
    pub fn load(&self) -> Result<(Mirror, Vec<RetainedRecord>), StoreError> {
        let txn = match &self.handle {
            Handle::Writable(db) => db.begin_read(),
            Handle::ReadOnly(ro, _) => ro.begin_read(),
            Handle::Broken(why) => return Err(StoreError::Storage(why.clone())),
        }
        .map_err(storage)?;
        let mut mirror = Mirror::default();
        let kv = txn.open_table(KV).map_err(storage)?;
        for entry in kv.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let (plugin, key) = k.value();
            let value = Bytes::copy_from_slice(v.value());
            let data = mirror.plugins.entry(plugin.to_owned()).or_default();
            data.bytes += entry_size(key, &value);
            data.entries.insert(key.to_owned(), value);
        }
        let mut retained = Vec::new();
        let table = txn.open_table(RETAINED).map_err(storage)?;
        for entry in table.iter().map_err(storage)? {
            let (topic, record) = entry.map_err(storage)?;
            match rmp_serde::from_slice::<RetainedRecord>(record.value()) {
                Ok(r) => retained.push(r),
                Err(e) => {
                    tracing::warn!(topic = topic.value(), error = %e, "a stored retained event does not decode; skipped")
                }
            }
        }
        Ok((mirror, retained))
    }

    /// Writes a batch in one transaction and commits it (durable on return).
    /// `mirror` is the state the batch applies over (to find what a cleared
    /// plugin held).
    pub fn commit(
        &self,
        mirror: &Mirror,
        overlay: &Overlay,
        retained: &[(String, Option<RetainedRecord>)],
    ) -> Result<(), StoreError> {
        let txn = self.writable()?.begin_write().map_err(storage)?;
        {
            let mut kv = txn.open_table(KV).map_err(storage)?;
            for (plugin, changes) in &overlay.plugins {
                if changes.cleared {
                    if let Some(data) = mirror.plugins.get(plugin) {
                        for key in data.entries.keys() {
                            kv.remove((plugin.as_str(), key.as_str()))
                                .map_err(storage)?;
                        }
                    }
                }
                for (key, value) in &changes.changes {
                    let k = (plugin.as_str(), key.as_str());
                    match value {
                        Some(v) => {
                            kv.insert(k, &v[..]).map_err(storage)?;
                        }
                        None => {
                            kv.remove(k).map_err(storage)?;
                        }
                    }
                }
            }
        }
        // Only a batch with retained events touches their table.
        if !retained.is_empty() {
            let mut table = txn.open_table(RETAINED).map_err(storage)?;
            for (topic, record) in retained {
                match record {
                    Some(r) => {
                        let bytes = rmp_serde::to_vec_named(r).map_err(storage)?;
                        table.insert(topic.as_str(), &bytes[..]).map_err(storage)?;
                    }
                    None => {
                        table.remove(topic.as_str()).map_err(storage)?;
                    }
                }
            }
        }
        txn.commit().map_err(storage)
    }

    /// The file, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}
