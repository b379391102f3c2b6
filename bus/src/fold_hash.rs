//! Hash tables for the call path, hashed without SipHash.
//!
//! std's SipHash is built for keys an attacker chooses; on the call path it
//! cost a few hundred instructions per lookup, several lookups per call on
//! each side (seen with callgrind on `iglu bench`). This folds the key's
//! bytes with one multiply per 8 (the FxHash step) instead. Use it only where
//! nobody untrusted picks the keys that go in: call ids (random v4 uuids,
//! made by the side that keys a table with them, or by a plugin's trusted
//! host), a plugin's own method names, and peers that passed the handshake.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::message::CallId;

/// A map hashed by [`FoldHasher`].
pub type FoldMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

/// A set hashed by [`FoldHasher`].
pub type FoldSet<K> = HashSet<K, BuildHasherDefault<FoldHasher>>;

/// A map from call id to `V`.
pub type CallIdMap<V> = FoldMap<CallId, V>;

/// Folds the written bytes 8 at a time. See the module's documentation for
/// where it may be used.
#[derive(Default, Clone, Copy)]
pub struct FoldHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(SEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn equal_ids_hash_equal_and_random_ids_spread_over_buckets() {
        let build = BuildHasherDefault::<FoldHasher>::default();
        let id = CallId::new_v4();
        assert_eq!(build.hash_one(id), build.hash_one(id));
        // hashbrown picks the bucket from the low bits and a tag from the top
        // seven: both must vary from id to id.
        let ids: Vec<CallId> = (0..4096).map(|_| CallId::new_v4()).collect();
        let low: HashSet<u64> = ids.iter().map(|id| build.hash_one(id) & 0xfff).collect();
        let top: HashSet<u64> = ids.iter().map(|id| build.hash_one(id) >> 57).collect();
        assert!(low.len() > 2000, "{} of 4096 low-bit buckets", low.len());
        assert_eq!(top.len(), 128, "every top-7-bit tag appears");
    }

    #[test]
    fn strings_that_differ_only_past_eight_bytes_hash_apart() {
        let build = BuildHasherDefault::<FoldHasher>::default();
        assert_ne!(build.hash_one("set_level"), build.hash_one("set_limit"));
        let set: FoldSet<String> = ["get_state", "get_stats", "echo"]
            .map(String::from)
            .into_iter()
            .collect();
        assert!(set.contains("get_stats") && !set.contains("get_s"));
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map: CallIdMap<u32> = CallIdMap::default();
        let ids: Vec<CallId> = (0..1000).map(|_| CallId::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            map.insert(*id, i as u32);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.remove(id), Some(i as u32));
        }
        assert!(map.is_empty());
    }
}
