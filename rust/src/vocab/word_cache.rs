//! The per-thread memo of whole encoded words, keyed by the word as the encoder produces it: a
//! run of structural ids (`prefix`) and the text of one content (its bytes; `STR_END` implied).
//! See [`super::Vocab::apply_with_contents`].
//!
//! Why a second cache beside [`super::piece_cache`]: most words recur verbatim (in one pass over
//! the corpus, 89% of the base ids are in a word seen before), and a word's text can be hashed
//! and compared where it lies in the document, eight bytes per step, instead of as one `u32`
//! per byte after the encoder has widened it. Keeping texts as bytes also makes an entry a
//! quarter of the size. A hit returns exactly what encoding the word would (the encoding of a
//! word depends only on its symbols and the table), so the output never depends on the cache.
//!
//! Layout as in the piece cache: entries back to back in two arenas (ids: `[prefix len, value
//! len, text offset, text len, prefix.., value..]`; text bytes), a map from the 64-bit hash to
//! the entry; a lookup compares the stored key, so a collision costs only a miss. Emptied
//! whole when full.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Entries, ids (prefixes and values) and text bytes kept at most; then the cache is emptied.
// Sized for the whole corpus (33k documents): ~190k distinct words, ~12 MB of text.
const MAX_ENTRIES: usize = 1 << 19;
const MAX_IDS: usize = 1 << 23;
const MAX_TEXT: usize = 1 << 25;

/// FxHash-style: a rotate, xor and multiply per eight bytes.
#[derive(Default, Clone, Copy)]
pub(crate) struct WordHasher(u64);

const K: u64 = 0x517C_C1B7_2722_0A95;

impl WordHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
    }

    /// The hash of the word `prefix` + `text` + `STR_END`.
    #[inline]
    pub(crate) fn word(prefix: &[u32], text: &[u8]) -> u64 {
        let mut h = WordHasher((prefix.len() as u64) << 32 | text.len() as u64);
        let mut pairs = prefix.chunks_exact(2);
        for p in &mut pairs {
            h.add(u64::from(p[0]) | u64::from(p[1]) << 32);
        }
        if let [x] = pairs.remainder() {
            h.add(u64::from(*x));
        }
        let mut chunks = text.chunks_exact(8);
        for c in &mut chunks {
            h.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            h.add(u64::from_le_bytes(last));
        }
        h.finish()
    }
}

impl Hasher for WordHasher {
    #[inline]
    fn finish(&self) -> u64 {
        super::pair_map::mix(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        // The map's keys are finished word hashes already: keep their bits.
        self.0 = v;
    }
}

/// Encoded words for the table `owner` (see the module docs).
#[derive(Default)]
pub(crate) struct WordCache {
    owner: u64,
    index: HashMap<u64, u32, BuildHasherDefault<WordHasher>>,
    ids: Vec<u32>,
    text: Vec<u8>,
}

impl WordCache {
    /// Makes the cache belong to table `owner`, emptying it if it held another table's words.
    pub(crate) fn claim(&mut self, owner: u64) {
        if self.owner != owner {
            self.owner = owner;
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.ids.clear();
        self.text.clear();
    }

    /// The encoding of the word (`prefix`, `text`), whose hash is `h`, if cached.
    #[inline]
    pub(crate) fn get(&self, prefix: &[u32], text: &[u8], h: u64) -> Option<&[u32]> {
        let off = *self.index.get(&h)? as usize;
        let head = self.ids.get(off..off + 4)?;
        let (plen, vlen) = (head[0] as usize, head[1] as usize);
        let (toff, tlen) = (head[2] as usize, head[3] as usize);
        let body = &self.ids[off + 4..off + 4 + plen + vlen];
        let (stored_prefix, value) = body.split_at(plen);
        (stored_prefix == prefix && self.text.get(toff..toff + tlen) == Some(text)).then_some(value)
    }

    pub(crate) fn insert(&mut self, prefix: &[u32], text: &[u8], h: u64, encoded: &[u32]) {
        let need = 4 + prefix.len() + encoded.len();
        if self.index.len() >= MAX_ENTRIES
            || self.ids.len() + need > MAX_IDS
            || self.text.len() + text.len() > MAX_TEXT
        {
            self.clear();
        }
        if need > MAX_IDS || text.len() > MAX_TEXT {
            return;
        }
        let off = self.ids.len() as u32;
        self.ids.extend_from_slice(&[
            prefix.len() as u32,
            encoded.len() as u32,
            self.text.len() as u32,
            text.len() as u32,
        ]);
        self.ids.extend_from_slice(prefix);
        self.ids.extend_from_slice(encoded);
        self.text.extend_from_slice(text);
        self.index.insert(h, off);
    }
}
