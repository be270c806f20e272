//! Hash maps keyed by a pair of ids packed into a `u64`. The std SipHash is several times slower
//! than needed for these integer keys, and its random seed would make iteration order vary from
//! run to run; a fixed multiplicative hash is fast and deterministic.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// `(left, right)` packed as `left << 32 | right`: ordering the keys orders the pairs.
#[inline]
pub(crate) fn key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

#[inline]
pub(crate) fn unkey(k: u64) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

/// Fibonacci hashing of one `u64`, with the high bits folded down (hashbrown uses the top 7 bits
/// for its control bytes and the low bits for the bucket, so both must be mixed). The finish
/// of every hasher in the vocabulary's maps and caches.
#[inline]
pub(crate) fn mix(h: u64) -> u64 {
    let h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// [`mix`] of one `u64` key.
#[derive(Default, Clone, Copy)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    #[inline]
    fn finish(&self) -> u64 {
        mix(self.0)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Only used for non-u64 keys (not in this module); FNV-1a keeps it correct anyway.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(5) ^ v;
    }
}

pub(crate) type PairMap<V> = HashMap<u64, V, BuildHasherDefault<PairHasher>>;

/// Deterministic map for other keys (words as `Vec<u32>`, values as bytes).
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<PairHasher>>;
