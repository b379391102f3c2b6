//! Each plugin's key-value store, held by the host so it outlives the plugin's crashes.
//!
//! Values are opaque MessagePack documents. The store is in memory: it
//! survives plugin restarts, not host restarts. Limits keep one plugin from
//! eating the host's memory; the frame size cap already bounds each value.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// Most keys one plugin may hold.
pub const MAX_KEYS: usize = 10_000;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Why a write was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    /// The key is empty or too long.
    #[error("keys must be 1-{MAX_KEY_LEN} bytes")]
    BadKey,
    /// The plugin holds too many keys already.
    #[error("the store holds {MAX_KEYS} keys already; delete some first")]
    Full,
}

/// All plugins' stores.
#[derive(Default)]
pub struct KvStore {
    stores: Mutex<HashMap<String, HashMap<String, Bytes>>>,
}

impl KvStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Bytes>>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key` in `plugin`'s store.
    pub fn get(&self, plugin: &str, key: &str) -> Option<Bytes> {
        self.lock().get(plugin).and_then(|s| s.get(key)).cloned()
    }

    /// Sets `key` in `plugin`'s store.
    pub fn set(&self, plugin: &str, key: &str, value: Bytes) -> Result<(), KvError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(KvError::BadKey);
        }
        let mut stores = self.lock();
        let store = stores.entry(plugin.to_owned()).or_default();
        if store.len() >= MAX_KEYS && !store.contains_key(key) {
            return Err(KvError::Full);
        }
        store.insert(key.to_owned(), value);
        Ok(())
    }

    /// Removes `key`; whether it existed.
    pub fn delete(&self, plugin: &str, key: &str) -> bool {
        self.lock()
            .get_mut(plugin)
            .map(|s| s.remove(key).is_some())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_per_plugin() {
        let kv = KvStore::default();
        kv.set("a", "k", Bytes::from_static(b"\x01")).expect("set");
        assert_eq!(kv.get("a", "k"), Some(Bytes::from_static(b"\x01")));
        assert_eq!(kv.get("b", "k"), None);
        assert!(kv.delete("a", "k"));
        assert!(!kv.delete("a", "k"));
        assert_eq!(kv.set("a", "", Bytes::new()), Err(KvError::BadKey));
    }
}
