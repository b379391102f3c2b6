//! The store's contents in memory: every read is served from here, so a
//! read never waits on the disk. Only the writer changes it, and only with
//! what a commit has made durable.
//!
//! A batch of writes is worked out against an [`Overlay`] (the batch's
//! changes over the mirror), so a write sees the writes before it in the
//! same batch, a compare-and-set compares with the newest value, and a
//! quota counts what the batch has added.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::error::StoreError;
use super::{Done, Op, Quota, MAX_KEY_LEN};

/// One plugin's keys and their size.
#[derive(Debug, Default, Clone)]
pub struct PluginData {
    /// Its keys, in order (for listing by prefix).
    pub entries: BTreeMap<String, Bytes>,
    /// Bytes of keys and values together.
    pub bytes: u64,
}

/// Every plugin's data.
#[derive(Debug, Default)]
pub struct Mirror {
    /// By plugin id.
    pub plugins: HashMap<String, PluginData>,
}

/// The size an entry counts for against `max_bytes`.
pub fn entry_size(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// One plugin's changes within a batch.
#[derive(Debug, Default, Clone)]
pub struct PluginChanges {
    /// Every key was removed first (an import that replaces).
    pub cleared: bool,
    /// New values (`None`: removed), over the mirror (or nothing, if cleared).
    pub changes: BTreeMap<String, Option<Bytes>>,
    /// Keys and bytes once these changes apply.
    pub keys: u64,
    /// See `keys`.
    pub bytes: u64,
}

/// A batch's changes, by plugin.
#[derive(Debug, Default)]
pub struct Overlay {
    /// By plugin id.
    pub plugins: HashMap<String, PluginChanges>,
}

impl PluginChanges {
    fn starting_from(data: Option<&PluginData>) -> PluginChanges {
        PluginChanges {
            keys: data.map_or(0, |d| d.entries.len() as u64),
            bytes: data.map_or(0, |d| d.bytes),
            ..PluginChanges::default()
        }
    }

    fn current<'a>(&'a self, data: Option<&'a PluginData>, key: &str) -> Option<&'a Bytes> {
        match self.changes.get(key) {
            Some(v) => v.as_ref(),
            None if self.cleared => None,
            None => data.and_then(|d| d.entries.get(key)),
        }
    }

    fn put(&mut self, data: Option<&PluginData>, key: &str, value: Option<Bytes>) {
        if let Some(old) = self.current(data, key).map(|v| entry_size(key, v)) {
            self.keys -= 1;
            self.bytes -= old;
        }
        if let Some(new) = &value {
            self.keys += 1;
            self.bytes += entry_size(key, new);
        }
        self.changes.insert(key.to_owned(), value);
    }
}

/// Checks a key's length.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(StoreError::BadKey {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

impl Overlay {
    /// Works out one write (all of its operations, or none) over the
    /// mirror and what the batch changed before it; on success its changes
    /// join the batch.
    pub fn apply(
        &mut self,
        mirror: &Mirror,
        plugin: &str,
        quota: Quota,
        ops: Vec<Op>,
    ) -> Result<Vec<Done>, StoreError> {
        let data = mirror.plugins.get(plugin);
        let changes = self
            .plugins
            .entry(plugin.to_owned())
            .or_insert_with(|| PluginChanges::starting_from(data));
        // Changed in place, with what is needed to undo this write alone if
        // it fails (a copy per write would cost a big batch dearly).
        let before = (changes.keys, changes.bytes, changes.cleared);
        let mut undo: Vec<(String, Option<Option<Bytes>>)> = Vec::new();
        let mut before_clear: Option<BTreeMap<String, Option<Bytes>>> = None;
        let outcome = run_ops(changes, data, ops, &mut undo, &mut before_clear).and_then(|done| {
            check_quota(plugin, quota, changes, before.0, before.1).map(|()| done)
        });
        if outcome.is_err() {
            // The map as it was at the Clear, then the changes before it undone.
            if let Some(map) = before_clear {
                changes.changes = map;
            }
            for (key, old) in undo.into_iter().rev() {
                match old {
                    Some(v) => {
                        changes.changes.insert(key, v);
                    }
                    None => {
                        changes.changes.remove(&key);
                    }
                }
            }
            (changes.keys, changes.bytes, changes.cleared) = before;
        }
        outcome
    }

    /// Whether the batch changes anything.
    pub fn is_empty(&self) -> bool {
        self.plugins
            .values()
            .all(|c| !c.cleared && c.changes.is_empty())
    }
}

impl Mirror {
    /// Takes in a committed batch.
    pub fn absorb(&mut self, overlay: Overlay) {
        for (plugin, changes) in overlay.plugins {
            let data = self.plugins.entry(plugin).or_default();
            if changes.cleared {
                data.entries.clear();
            }
            for (key, value) in changes.changes {
                match value {
                    Some(v) => {
                        data.entries.insert(key, v);
                    }
                    None => {
                        data.entries.remove(&key);
                    }
                }
            }
            data.bytes = changes.bytes;
        }
        self.plugins.retain(|_, d| !d.entries.is_empty());
    }
}

/// A nil value is no value: setting nil removes the key (so that
/// compare-and-set with `expected` nil means "unset" either way).
fn present(value: Option<Bytes>) -> Option<Bytes> {
    value.filter(|v| v[..] != [0xc0])
}

/// Applies one write's operations to `changes`, noting how to undo them.
fn run_ops(
    changes: &mut PluginChanges,
    data: Option<&PluginData>,
    ops: Vec<Op>,
    undo: &mut Vec<(String, Option<Option<Bytes>>)>,
    before_clear: &mut Option<BTreeMap<String, Option<Bytes>>>,
) -> Result<Vec<Done>, StoreError> {
    // Before a Clear, each change is noted to undo; after it, the map as
    // it was before the Clear is enough.
    let put = |changes: &mut PluginChanges,
               undo: &mut Vec<(String, Option<Option<Bytes>>)>,
               cleared: bool,
               key: &str,
               value: Option<Bytes>| {
        if !cleared {
            undo.push((key.to_owned(), changes.changes.get(key).cloned()));
        }
        changes.put(data, key, value);
    };
    let mut done = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Set { key, value } => {
                check_key(&key)?;
                put(
                    changes,
                    undo,
                    before_clear.is_some(),
                    &key,
                    present(Some(value)),
                );
                done.push(Done::Set);
            }
            Op::Delete { key } => {
                let existed = changes.current(data, &key).is_some();
                if existed {
                    put(changes, undo, before_clear.is_some(), &key, None);
                }
                done.push(Done::Deleted(existed));
            }
            Op::Cas {
                key,
                expected,
                value,
            } => {
                check_key(&key)?;
                let current = changes.current(data, &key).cloned();
                if current == present(expected) {
                    put(changes, undo, before_clear.is_some(), &key, present(value));
                    done.push(Done::Cas {
                        swapped: true,
                        current: None,
                    });
                } else {
                    done.push(Done::Cas {
                        swapped: false,
                        current,
                    });
                }
            }
            Op::Clear => {
                if before_clear.is_none() {
                    *before_clear = Some(std::mem::take(&mut changes.changes));
                } else {
                    changes.changes.clear();
                }
                changes.cleared = true;
                changes.keys = 0;
                changes.bytes = 0;
                done.push(Done::Cleared);
            }
        }
    }
    Ok(done)
}

/// A write that does not grow the store is let through even over a quota
/// (one lowered since, say), so a plugin can always clean up.
fn check_quota(
    plugin: &str,
    quota: Quota,
    changes: &PluginChanges,
    keys_before: u64,
    bytes_before: u64,
) -> Result<(), StoreError> {
    let check = |quota: &'static str, limit: u64, would: u64, was: u64| {
        if would > limit && would > was {
            Err(StoreError::Quota {
                plugin: plugin.to_owned(),
                quota,
                limit,
                would,
            })
        } else {
            Ok(())
        }
    };
    check("max_keys", quota.max_keys, changes.keys, keys_before)?;
    check("max_bytes", quota.max_bytes, changes.bytes, bytes_before)
}
