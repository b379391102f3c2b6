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
        let before = match self.plugins.get(plugin) {
            Some(c) => c.clone(),
            None => PluginChanges::starting_from(data),
        };
        let mut next = before.clone();
        let mut done = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Set { key, value } => {
                    check_key(&key)?;
                    next.put(data, &key, Some(value));
                    done.push(Done::Set);
                }
                Op::Delete { key } => {
                    let existed = next.current(data, &key).is_some();
                    if existed {
                        next.put(data, &key, None);
                    }
                    done.push(Done::Deleted(existed));
                }
                Op::Cas {
                    key,
                    expected,
                    value,
                } => {
                    check_key(&key)?;
                    let current = next.current(data, &key).cloned();
                    if current == expected {
                        next.put(data, &key, value);
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
                    next.cleared = true;
                    next.changes.clear();
                    next.keys = 0;
                    next.bytes = 0;
                    done.push(Done::Cleared);
                }
            }
        }
        // A write that does not grow the store is let through even over a
        // quota (one lowered since, say), so a plugin can always clean up.
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
        check("max_keys", quota.max_keys, next.keys, before.keys)?;
        check("max_bytes", quota.max_bytes, next.bytes, before.bytes)?;
        self.plugins.insert(plugin.to_owned(), next);
        Ok(done)
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
