//! Applying ranked merges to one word: classic BPE semantics (repeatedly join the adjacent pair
//! of lowest rank, leftmost occurrence first), in three steps that each give exactly the same
//! result as the textbook loop (tested against it):
//!
//! 1. **Cut the word at safe points.** A cut between symbols `x y` is safe when the bigram
//!    `x y` occurs inside no merge's expansion (expanded down to non-merge ids). Then no token
//!    the merges can ever build spans the cut (a token's expansion is exactly the run of
//!    symbols it covers), the pair across the cut is never joined, and the lowest-rank-first
//!    order restricted to each side is that side's own BPE order: BPE of the word is the
//!    concatenation of BPE of the pieces. Only ~2,200 distinct bigrams occur inside the
//!    bundled tokenizer's merges, so long `run` scripts fall apart into pieces of a few dozen
//!    symbols (the longest in a 3,000-document sample: 701), and the heap below is rarely
//!    needed.
//! 2. **Pieces up to `SCAN_MAX` (128) symbols** use tiktoken's loop: one rank per adjacent pair
//!    in an array, a linear scan for the leftmost minimum, then only the two ranks next to the
//!    merge are looked up again. That costs `n + 2 * merges` rank lookups (the hash lookups
//!    are what is expensive) plus cheap integer compares.
//! 3. **Longer pieces** use a binary heap of candidate pairs over a doubly linked list of
//!    symbols, with lazy invalidation: a popped candidate is used only if both symbols are
//!    still alive and still form that pair. A merge of rank `r` only creates pairs that
//!    contain the new id, whose ranks are all greater than `r` (a merge's parts are defined
//!    before it), so processing candidates in `(rank, position)` order is exactly "lowest rank
//!    first, leftmost first": `O(n log n)`.
//!
//! Rank lookups for pairs of small ids (bytes, `STR_END`, structural ids: almost all lookups)
//! use a dense table instead of the hash map.
//!
//! Cut pieces of 4 to 256 symbols are memoized per thread (`piece_cache`).
//!
// Measured (release builds, one thread, process CPU time on the shared 2-core AMD EPYC dev
// box, `python benches/codec_speed.py --limit 5000 --repeat 2`, the same 5,000 documents):
//
// | version | trained encode | vs o200k | encode_batch(1 thread) | 1 MB `run` string |
// | --- | ---: | ---: | ---: | ---: |
// | heap above 8 symbols, direct scan below (before) | 11.6 MB/s | 0.85x | 13.9 MB/s | 282 ns/B |
// | cuts + rank-array scan + dense ranks + piece cache | 22.5 MB/s | 1.60x | 32.7 MB/s | 20.8 ns/B |
//
// On `apply` alone (a since-removed test with the ranked-merge tokenizer of the time, 3,000
// documents, 9.6M base ids, `--profile fast`; `profile_encode` in rust/tests/codec.rs
// measures today's pipeline): 36 ns per base id with cuts and scan but a 64k-entry cache of boxed pieces (emptied
// before the working set repeats: no hits), 27.7 ns with the arena cache of 256k entries
// (cold), 15.2 ns when every piece hits. The base encoder (parse + schema walk) costs
// ~20 ns per base id on top, so together they stay below 4x o200k.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pair_map::{key, PairMap};
use super::piece_cache::PieceCache;

/// Pieces up to this many symbols use the rank-array scan, longer ones the heap. The scan is
/// `O(n * merges)` integer compares, the heap `O(n log n)` with a larger constant.
const SCAN_MAX: usize = 128;
/// Pairs of ids below this (and below the first merge id) use the dense tables: every byte,
/// `STR_END` and structural id of a schema with up to 52 selectors. 320² ranks as `u16` is
/// 200 KB; the cut bitset 12.5 KB.
const DENSE_IDS: u32 = 320;
const NO_RANK_16: u16 = u16::MAX;
const NONE: u32 = u32::MAX;
/// Marks a symbol that was joined into its left neighbour.
const DEAD: u32 = u32::MAX;
/// Pieces of at least this many symbols go through the piece cache; shorter ones cost about
/// as much to merge as to look up.
const CACHE_MIN: usize = 4;
/// Longer pieces are not cached: they rarely repeat and would crowd out the rest.
const CACHE_MAX: usize = 256;
/// At most 16 MB of cached ids per thread (plus ~4 MB of index).
const CACHE_IDS: usize = 1 << 22;

/// Source of [`MergeTable`] identities (0 is the empty default table).
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CACHE: RefCell<PieceCache> = RefCell::new(PieceCache::new(CACHE_IDS));
}

/// Rank lookup for the merges of a vocabulary, and where words may be cut.
#[derive(Clone, Default)]
pub(crate) struct MergeTable {
    ranks: PairMap<u32>,
    merge_start: u32,
    /// `min(merge_start, DENSE_IDS)`: the side of the dense tables.
    dense_n: u32,
    /// `dense[a * dense_n + b]`: rank of `(a, b)`, `NO_RANK_16` if none. Ranks fit in `u16`
    /// because every id does.
    dense: Vec<u16>,
    /// Bit `a * dense_n + b`: the bigram `a b` occurs inside some merge's expansion.
    inner_dense: Vec<u64>,
    /// The same for bigrams with an id `>= dense_n` (dictionary ids).
    inner_sparse: PairMap<()>,
    /// Identity for the piece cache: unique per constructed table, shared by its clones
    /// (which merge identically).
    id: u64,
}

/// Reusable buffers, so that applying merges word after word does not allocate.
#[derive(Default)]
pub(crate) struct Workspace {
    prev: Vec<u32>,
    next: Vec<u32>,
    heap: BinaryHeap<Reverse<(u32, u32)>>,
    /// The word being cut into pieces.
    word: Vec<u32>,
    /// Pair ranks of the piece being scanned.
    pair_ranks: Vec<u32>,
}

impl MergeTable {
    pub(crate) fn new(merges: &[[u32; 2]], merge_start: u32) -> Self {
        let mut ranks = PairMap::default();
        ranks.reserve(merges.len());
        for (r, &[a, b]) in merges.iter().enumerate() {
            ranks.insert(key(a, b), r as u32);
        }
        let dense_n = merge_start.min(DENSE_IDS);
        let n = dense_n as usize;
        let mut dense = vec![NO_RANK_16; n * n];
        for (r, &[a, b]) in merges.iter().enumerate() {
            if a < dense_n && b < dense_n {
                // A vocabulary's ids all fit in u16 (checked by `Vocab::new`), so do its
                // ranks; a larger table (only possible through this internal API) keeps the
                // exact rank in the hash map and leaves the dense slot empty.
                if let Ok(r16) = u16::try_from(r) {
                    if r16 != NO_RANK_16 {
                        dense[a as usize * n + b as usize] = r16;
                    }
                }
            }
        }
        // Expansions down to non-merge ids, to find the bigrams a token can span.
        let mut exp_off: Vec<usize> = vec![0];
        let mut exp: Vec<u32> = Vec::new();
        let mut inner_dense = vec![0u64; (n * n).div_ceil(64)];
        let mut inner_sparse = PairMap::default();
        for &[a, b] in merges {
            let start = exp.len();
            for part in [a, b] {
                if part >= merge_start && ((part - merge_start) as usize) < exp_off.len() - 1 {
                    let i = (part - merge_start) as usize;
                    exp.extend_from_within(exp_off[i]..exp_off[i + 1]);
                } else {
                    // A non-merge id, or (only in malformed tables) a merge defined later:
                    // then it stands for itself, and words never hold merge ids anyway
                    // (`can_cut` never cuts next to one).
                    exp.push(part);
                }
            }
            for w in exp[start..].windows(2) {
                let (x, y) = (w[0], w[1]);
                if x < dense_n && y < dense_n {
                    let bit = x as usize * n + y as usize;
                    inner_dense[bit / 64] |= 1 << (bit % 64);
                } else {
                    inner_sparse.insert(key(x, y), ());
                }
            }
            exp_off.push(exp.len());
        }
        MergeTable {
            ranks,
            merge_start,
            dense_n,
            dense,
            inner_dense,
            inner_sparse,
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    #[inline]
    fn rank(&self, a: u32, b: u32) -> Option<u32> {
        if a < self.dense_n && b < self.dense_n {
            let r = self.dense[(a * self.dense_n + b) as usize];
            if r != NO_RANK_16 {
                return Some(u32::from(r));
            }
            // Empty dense slot: no merge, except in the (unreachable for real vocabularies)
            // case of a rank that did not fit in u16.
            if self.ranks.len() < NO_RANK_16 as usize {
                return None;
            }
        }
        self.ranks.get(&key(a, b)).copied()
    }

    /// Whether a word may be cut between `a` and `b` (see the module docs).
    #[inline]
    fn can_cut(&self, a: u32, b: u32) -> bool {
        if a < self.dense_n && b < self.dense_n {
            let bit = (a * self.dense_n + b) as usize;
            return self.inner_dense[bit / 64] & (1 << (bit % 64)) == 0;
        }
        // Words hold base and dictionary ids only; never cut next to anything else.
        a < self.merge_start && b < self.merge_start && !self.inner_sparse.contains_key(&key(a, b))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }

    /// Applies the merges to the word `buf[start..]` in place (the buffer is truncated to the
    /// merged word).
    pub(crate) fn merge_tail(&self, buf: &mut Vec<u32>, start: usize, ws: &mut Workspace) {
        let n = buf.len() - start;
        if n < 2 || self.is_empty() {
            return;
        }
        // The cache is unavailable only while the thread is being torn down: merge uncached.
        let done = CACHE
            .try_with(|c| match c.try_borrow_mut() {
                Ok(mut cache) => {
                    cache.claim(self.id);
                    self.merge_cut(buf, start, ws, Some(&mut cache));
                    true
                }
                Err(_) => false,
            })
            .unwrap_or(false);
        if !done {
            self.merge_cut(buf, start, ws, None);
        }
    }

    /// Cuts `buf[start..]` at safe points and merges each piece.
    fn merge_cut(
        &self,
        buf: &mut Vec<u32>,
        start: usize,
        ws: &mut Workspace,
        mut cache: Option<&mut PieceCache>,
    ) {
        let mut word = std::mem::take(&mut ws.word);
        word.clear();
        word.extend_from_slice(&buf[start..]);
        buf.truncate(start);
        let mut s = 0;
        for p in 1..word.len() {
            if self.can_cut(word[p - 1], word[p]) {
                self.merge_piece(&word[s..p], buf, ws, cache.as_deref_mut());
                s = p;
            }
        }
        self.merge_piece(&word[s..], buf, ws, cache);
        ws.word = word;
    }

    /// Appends the merged `piece` to `out`.
    fn merge_piece(
        &self,
        piece: &[u32],
        out: &mut Vec<u32>,
        ws: &mut Workspace,
        cache: Option<&mut PieceCache>,
    ) {
        let n = piece.len();
        let cache = cache.filter(|_| (CACHE_MIN..=CACHE_MAX).contains(&n));
        let h = if cache.is_some() {
            PieceCache::hash(piece)
        } else {
            0
        };
        if let Some(c) = &cache {
            if let Some(hit) = c.get(piece, h) {
                out.extend_from_slice(hit);
                return;
            }
        }
        let start = out.len();
        out.extend_from_slice(piece);
        match n {
            0 | 1 => {}
            n if n <= SCAN_MAX => self.merge_scan(out, start, &mut ws.pair_ranks),
            _ => self.merge_long(out, start, ws),
        }
        if let Some(c) = cache {
            c.insert(piece, h, &out[start..]);
        }
    }

    /// tiktoken's loop over `buf[start..]`: ranks of adjacent pairs in an array, leftmost
    /// minimum by linear scan, two lookups after each merge.
    fn merge_scan(&self, buf: &mut Vec<u32>, start: usize, ranks: &mut Vec<u32>) {
        ranks.clear();
        ranks.extend(
            buf[start..]
                .windows(2)
                .map(|p| self.rank(p[0], p[1]).unwrap_or(NONE)),
        );
        loop {
            // Leftmost minimum (strict `<`).
            let mut best = NONE;
            let mut at = 0;
            for (i, &r) in ranks.iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == NONE {
                return;
            }
            let i = start + at;
            buf[i] = self.merge_start + best;
            buf.remove(i + 1);
            ranks.remove(at);
            if at < ranks.len() {
                ranks[at] = self.rank(buf[i], buf[i + 1]).unwrap_or(NONE);
            }
            if at > 0 {
                ranks[at - 1] = self.rank(buf[i - 1], buf[i]).unwrap_or(NONE);
            }
        }
    }

    fn merge_long(&self, buf: &mut Vec<u32>, start: usize, ws: &mut Workspace) {
        let w = &mut buf[start..];
        let n = w.len();
        ws.prev.clear();
        ws.next.clear();
        ws.heap.clear();
        ws.prev
            .extend((0..n as u32).map(|i| if i == 0 { NONE } else { i - 1 }));
        ws.next
            .extend((1..=n as u32).map(|i| if i as usize == n { NONE } else { i }));
        for i in 0..n - 1 {
            if let Some(r) = self.rank(w[i], w[i + 1]) {
                ws.heap.push(Reverse((r, i as u32)));
            }
        }
        while let Some(Reverse((r, p))) = ws.heap.pop() {
            let p = p as usize;
            let a = w[p];
            if a == DEAD {
                continue;
            }
            let q = ws.next[p];
            if q == NONE {
                continue;
            }
            let q = q as usize;
            if self.rank(a, w[q]) != Some(r) {
                continue;
            }
            w[p] = self.merge_start + r;
            w[q] = DEAD;
            let after = ws.next[q];
            ws.next[p] = after;
            if after != NONE {
                ws.prev[after as usize] = p as u32;
                if let Some(r2) = self.rank(w[p], w[after as usize]) {
                    ws.heap.push(Reverse((r2, p as u32)));
                }
            }
            let before = ws.prev[p];
            if before != NONE {
                if let Some(r2) = self.rank(w[before as usize], w[p]) {
                    ws.heap.push(Reverse((r2, before)));
                }
            }
        }
        // Compact the surviving symbols.
        let mut write = start;
        for read in start..buf.len() {
            if buf[read] != DEAD {
                buf[write] = buf[read];
                write += 1;
            }
        }
        buf.truncate(write);
    }

    /// The heap path on any length, without cuts (tests compare it with the other paths).
    #[cfg(test)]
    pub(crate) fn merge_with_heap(&self, buf: &mut Vec<u32>, ws: &mut Workspace) {
        if buf.len() >= 2 && !self.is_empty() {
            self.merge_long(buf, 0, ws);
        }
    }

    /// The scan path on any length, without cuts (tests compare it with the other paths).
    #[cfg(test)]
    pub(crate) fn merge_with_scan(&self, buf: &mut Vec<u32>) {
        if buf.len() >= 2 && !self.is_empty() {
            self.merge_scan(buf, 0, &mut Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook loop: find the lowest-rank pair (leftmost on ties), join it, repeat.
    fn reference(table: &MergeTable, merges: &[[u32; 2]], word: &[u32]) -> Vec<u32> {
        let mut w = word.to_vec();
        loop {
            let best = w
                .windows(2)
                .enumerate()
                .filter_map(|(i, p)| {
                    merges
                        .iter()
                        .position(|m| m == &[p[0], p[1]])
                        .map(|r| (r, i))
                })
                .min();
            let Some((r, i)) = best else { return w };
            w[i] = table.merge_start + r as u32;
            w.remove(i + 1);
        }
    }

    /// Merges over a small alphabet (with ids in and out of the dense range), parts defined
    /// before each merge.
    fn arb_table(merge_start: u32) -> impl Strategy<Value = Vec<[u32; 2]>> {
        let alphabet = [97u32, 98, 99, 256, 300, DENSE_IDS + 5];
        prop::collection::vec((0u32..60, 0u32..60), 0..40).prop_map(move |raw| {
            let mut merges: Vec<[u32; 2]> = Vec::new();
            for (x, y) in raw {
                let n = (alphabet.len() + merges.len()) as u32;
                let pick = |i: u32| {
                    let i = i % n;
                    if (i as usize) < alphabet.len() {
                        alphabet[i as usize]
                    } else {
                        merge_start + i - alphabet.len() as u32
                    }
                };
                let m = [pick(x), pick(y)];
                if !merges.contains(&m) {
                    merges.push(m);
                }
            }
            merges
        })
    }

    const MERGE_START: u32 = 400;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn every_path_equals_the_textbook_loop(
            merges in arb_table(MERGE_START),
            word in prop::collection::vec(prop::sample::select(vec![97u32, 98, 99, 256, 300, DENSE_IDS + 5]), 0..300),
        ) {
            let table = MergeTable::new(&merges, MERGE_START);
            let want = reference(&table, &merges, &word);
            let mut ws = Workspace::default();
            let mut heap = word.clone();
            table.merge_with_heap(&mut heap, &mut ws);
            prop_assert_eq!(&heap, &want);
            let mut scan = word.clone();
            table.merge_with_scan(&mut scan);
            prop_assert_eq!(&scan, &want);
            // Cut into pieces, behind a prefix that must stay untouched.
            let mut tail = vec![7u32, 8];
            tail.extend_from_slice(&word);
            table.merge_tail(&mut tail, 2, &mut ws);
            prop_assert_eq!(&tail[..2], &[7u32, 8][..]);
            prop_assert_eq!(&tail[2..], &want[..]);
            // Again: now the pieces come from the cache.
            let mut again = word.clone();
            table.merge_tail(&mut again, 0, &mut ws);
            prop_assert_eq!(&again, &want);
            let mut uncached = word.clone();
            if uncached.len() >= 2 {
                table.merge_cut(&mut uncached, 0, &mut ws, None);
            }
            prop_assert_eq!(&uncached, &want);
        }
    }

    #[test]
    fn cuts_only_where_no_merge_spans() {
        // "ab" -> X, "Xc" -> Y: "b c" is inside Y, "c a" is inside nothing.
        let merges = [[97, 98], [MERGE_START, 99]];
        let t = MergeTable::new(&merges, MERGE_START);
        assert!(!t.can_cut(97, 98));
        assert!(!t.can_cut(98, 99));
        assert!(t.can_cut(99, 97));
        assert!(t.can_cut(98, 97));
        // Never next to a merge id or an id beyond the table.
        assert!(!t.can_cut(MERGE_START, 97));
        let mut w = vec![97, 98, 99, 97, 98, 99, 99];
        t.merge_tail(&mut w, 0, &mut Workspace::default());
        assert_eq!(w, vec![MERGE_START + 1, MERGE_START + 1, 99]);
    }
}
