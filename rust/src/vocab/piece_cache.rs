//! The per-thread memo of encoded pieces, shared by both encodings (ranked merges in
//! [`super::bpe_apply`], the shortest encoding in [`super::shortest`]).
//!
//! Why a cache: words repeat a lot (step names, action references, the same lines of `run`
//! scripts across jobs and files), and after cutting at safe points the pieces repeat even
//! more: in a 3,000-document sample of the corpus, 78% of the base ids are in a piece seen
//! before. A hit costs a hash, a probe and a copy instead of the merge loop or the dynamic
//! program.
//!
//! Layout: entries live back to back in one arena (`[key len, value len, key.., value..]`),
//! found through a map from the piece's 64-bit hash to the entry's offset; a lookup compares
//! the stored key, so a hash collision only costs a miss (the newer entry replaces the older).
//! No allocation per entry, and emptying is O(1): boxed keys and values spent a fifth of the
//! time in `malloc`/`free`.
//!
//! Why thread-local: encoding is called per document, from Python and from rayon workers; one
//! cache per thread needs no locking and lives as long as the thread. It belongs to one table
//! at a time (its `owner`): using another tokenizer on the same thread empties it. A hit
//! returns exactly what encoding would (the result depends only on the piece and the table),
//! so the output never depends on the cache.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// The cache is emptied when it holds this many pieces.
// The corpus has ~100k distinct pieces per 3,000 documents; a cache that is emptied before a
// pass over its working set repeats gets almost no hits (measured: 64k entries gave no gain
// over no cache on that sample).
const CACHE_ENTRIES: usize = 1 << 18;

/// Hashes a piece (a `[u32]`) eight bytes at a time.
// The std SipHash and the byte-wise fallback of `PairHasher` are several times slower on
// these keys.
#[derive(Default, Clone, Copy)]
struct PieceHasher(u64);

impl Hasher for PieceHasher {
    #[inline]
    fn finish(&self) -> u64 {
        super::pair_map::mix(self.0)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.0 = (self.0.rotate_left(5) ^ v as u64).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        // The index's keys are finished piece hashes already: keep their bits.
        self.0 = v;
    }
}

/// Encoded pieces by their symbols, for the table `owner` (see the module docs).
pub(crate) struct PieceCache {
    owner: u64,
    index: HashMap<u64, u32, BuildHasherDefault<PieceHasher>>,
    arena: Vec<u32>,
    /// The cache is emptied when its arena would hold more ids than this.
    max_ids: usize,
}

impl PieceCache {
    pub(crate) fn new(max_ids: usize) -> Self {
        PieceCache {
            owner: 0,
            index: HashMap::default(),
            arena: Vec::new(),
            max_ids,
        }
    }

    /// Makes the cache belong to table `owner`, emptying it if it held another table's pieces.
    pub(crate) fn claim(&mut self, owner: u64) {
        if self.owner != owner {
            self.owner = owner;
            self.index.clear();
            self.arena.clear();
        }
    }

    pub(crate) fn hash(piece: &[u32]) -> u64 {
        let mut h = PieceHasher::default();
        piece.hash(&mut h);
        h.finish()
    }

    /// The encoding of `piece` (whose hash is `h`), if cached.
    pub(crate) fn get(&self, piece: &[u32], h: u64) -> Option<&[u32]> {
        let off = *self.index.get(&h)? as usize;
        let klen = self.arena[off] as usize;
        let vlen = self.arena[off + 1] as usize;
        let key = &self.arena[off + 2..off + 2 + klen];
        (key == piece).then(|| &self.arena[off + 2 + klen..off + 2 + klen + vlen])
    }

    pub(crate) fn insert(&mut self, piece: &[u32], h: u64, encoded: &[u32]) {
        let need = 2 + piece.len() + encoded.len();
        if self.index.len() >= CACHE_ENTRIES || self.arena.len() + need > self.max_ids {
            self.index.clear();
            self.arena.clear();
        }
        let off = self.arena.len() as u32;
        self.arena.push(piece.len() as u32);
        self.arena.push(encoded.len() as u32);
        self.arena.extend_from_slice(piece);
        self.arena.extend_from_slice(encoded);
        self.index.insert(h, off);
    }
}
