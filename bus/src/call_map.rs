//! Tables keyed by call id, hashed without SipHash.
//!
//! A call id is a v4 uuid from the caller's random generator: its bits are
//! already uniform, and the side that keys a table with ids is the side that
//! made them (or, in a plugin, its trusted host), so nobody can choose keys
//! that collide. std's SipHash, built for keys an attacker chooses, cost two
//! hashes of 16 bytes per call on each side (seen with callgrind on
//! `iglu bench`); this folds the bytes with one multiply per 8.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::message::CallId;

/// A map from call id to `V`.
pub type CallIdMap<V> = HashMap<CallId, V, BuildHasherDefault<CallIdHasher>>;

/// Folds the written bytes 8 at a time (the FxHash step). Meant for
/// uniformly random keys only: see the module's documentation.
#[derive(Default, Clone, Copy)]
pub struct CallIdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for CallIdHasher {
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
        let build = BuildHasherDefault::<CallIdHasher>::default();
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
