//! The shortest encoding of a word: the fewest ids whose expansions, concatenated, are the
//! word's base ids ([`super::Encoding::Shortest`]).
//!
//! Ranked merges (classic BPE) replay training's greedy choices, which are not the fewest ids:
//! an early merge can take a byte that a longer token needed. Over the same vocabulary the
//! shortest segmentation gives 2-3% fewer ids on held-out workflows (docs/vocabulary-decisions.md).
//!
//! A trie over the expansions of all ids (dictionary and merges; base ids are one-symbol
//! tokens) and a dynamic program from the right end of the word: `best[i] = 1 + min best[j]`
//! over the tokens that match at `i` and end at `j`. Ties go to the longest token at `i`, so
//! the result is unique and deterministic. Cost: `O(n * d)` for a word of `n` base ids, where
//! `d` is the longest match at a position (bounded by the longest expansion), so long `run`
//! scripts stay linear.
//!
//! The trie is built in a hash-map form that can grow one token at a time (pruning re-spells
//! merges while it adds them), then frozen into a double-array trie (`DoubleArray`) for
//! encoding: one transition is an add and one 12-byte slot read, where the hash map cost a
//! hash and a probe into a table of ~100k edges (mostly a cache miss).
//!
// Measured (`cargo test --profile fast --test codec profile_encode -- --ignored
// --nocapture`, 3,014 corpus documents, 9.7M base ids, one thread, idle 2-core AMD EPYC dev
// box; seconds for `Vocab::apply` over all of them):
//
// | version | cold cache | warm cache |
// | --- | ---: | ---: |
// | hash-map trie (deep levels), piece cache of 256k entries | 0.230 | 0.108 |
// | double-array trie, the same cache | 0.110 | 0.062 |
// | double-array trie, no cache | 0.155 | 0.155 |
// | double-array trie, cache, selects instead of branches in the inner loop | 0.104 | 0.056 |
//
// Tried and dropped (same measure, cold / warm seconds against 0.110 / 0.062 at the time):
// cells placed depth first (0.169 / 0.100) or with chains of only children kept adjacent
// (0.118 / 0.066): breadth first keeps the levels every walk starts from compact; a cache of
// 32k or 64k entries (0.108 / 0.107: the same cold, but the working set no longer fits);
// caching only pieces of at least 8, 16 or 32 symbols (0.124, 0.124, 0.139 cold); hashing two
// symbols per multiply (0.109 / 0.062); borrowing the thread-local cache once per document
// instead of once per piece (0.114 vs 0.116 cold); probing the cache for all pieces of a word
// before merging any, so that the cache misses overlap (0.108-0.112 vs 0.104-0.108 cold);
// storing the cache's pieces as `u16` to halve its memory (0.116 vs 0.107 cold: the
// element-wise compare and widening copy cost more than the misses saved).
//
// Later, whole words were memoized before pieces ([`ShortestTable::encode_word`]; and
// for the encoder's output, keyed by the text in place, [`ShortestTable::encode_text_word`]
// with [`super::word_cache`]): in one pass over the whole corpus 89% of the base ids are in a
// word seen before. `apply` over the whole corpus (33,145 documents, 105.6M base ids, one
// cold pass): 0.72 s -> 0.56 s; a larger piece cache (32M ids, 1M entries) gave nothing more
// (0.55 s).
//
// Per piece, the cache costs a hash over its symbols and two probes into tables of several
// MB (mostly cache misses): the warm column is that floor. It still pays for itself: a third
// of the base ids miss it on a cold pass, and the trie walk costs ~4 ns per step and ~4 steps
// per base id.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pair_map::{key, PairMap};
use super::piece_cache::PieceCache;
use super::word_cache::{WordCache, WordHasher};
use crate::base::STR_END;

const NONE: u32 = u32::MAX;

/// Pieces of this many symbols or fewer (and at least 2) are memoized per thread
/// ([`super::piece_cache`]), at most 32 MB of ids per thread.
const CACHE_MAX_PIECE: usize = 256;
const CACHE_IDS: usize = 1 << 23;
/// Whole words up to this many symbols are memoized too ([`ShortestTable::encode_word`]).
const CACHE_MAX_WORD: usize = 1 << 16;

/// Runs `f` on this thread's cache `key`; `None` (run nothing) while the thread is being torn
/// down, when the cache is gone: callers then encode uncached.
fn with_cache<C, R>(
    key: &'static std::thread::LocalKey<RefCell<C>>,
    f: impl FnOnce(&mut C) -> R,
) -> Option<R> {
    key.try_with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
        .ok()
        .flatten()
}

/// A fresh identity for each table (a thread's cache belongs to one table at a time).
static NEXT_TABLE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CACHE: RefCell<PieceCache> = RefCell::new(PieceCache::new(CACHE_IDS));
    static WORDS: RefCell<WordCache> = RefCell::new(WordCache::default());
}

/// The trie of expansions. Node 0 is the root. The first two levels are dense arrays (every
/// word position starts there, and most matches are short), deeper levels a hash map keyed by
/// `(node, symbol)`.
#[derive(Clone, Default)]
pub(crate) struct ShortestTable {
    /// Identity for the per-thread piece cache (0: never cached).
    uid: u64,
    base_size: usize,
    /// Bit `x * base_size + y`: the bigram `x y` occurs inside some token's expansion. Where
    /// it does not, no token spans the boundary and the word can be cut there: the shortest
    /// encoding of the word is that of the pieces, and the tie rule gives the same choices
    /// (adding the same constant to every candidate of the left piece changes no comparison).
    inside: Vec<u64>,
    /// Child of the root by symbol.
    root: Vec<u32>,
    /// Node of the two-symbol prefix `s0 s1` at `s0 * base_size + s1`.
    second: Vec<u32>,
    edges: PairMap<u32>,
    /// The id whose expansion ends at each node (the smallest such id), or `NONE`.
    token: Vec<u32>,
    /// The same trie frozen for encoding; `None` while it is being grown by [`Self::insert`].
    frozen: Option<DoubleArray>,
}

/// One cell of the double array: the cell of a node's child by symbol `s` is `base + s`, and it
/// belongs to that node when its `check` is the node's cell.
#[derive(Clone, Copy)]
struct Cell {
    base: u32,
    check: u32,
    token: u32,
}

const EMPTY: Cell = Cell {
    base: 0,
    check: NONE,
    token: NONE,
};

/// A trie as a double array (Aoe, 1989): the children of a node sit at `base + symbol`, so a
/// transition is one addition and one read, and siblings share cache lines. Cell 0 is the
/// root. Built once from the hash-map trie; the cells are placed first-fit, in breadth-first
/// order, which packs the sparse deep levels (mostly one child per node) densely.
#[derive(Clone)]
struct DoubleArray {
    cells: Vec<Cell>,
    /// The alphabet: symbols `>= alphabet` have no child anywhere.
    alphabet: u32,
}

impl DoubleArray {
    fn build(trie: &ShortestTable) -> Self {
        let bs = trie.base_size;
        // Children of each hash-map node, by symbol.
        let mut children: Vec<Vec<(u32, u32)>> = vec![Vec::new(); trie.token.len()];
        for (s, &c) in trie.root.iter().enumerate() {
            if c != NONE {
                children[0].push((s as u32, c));
            }
        }
        for (k, &c) in trie.second.iter().enumerate() {
            if c != NONE {
                let first = trie.root[k / bs];
                children[first as usize].push(((k % bs) as u32, c));
            }
        }
        for (&k, &c) in &trie.edges {
            let (node, s) = super::pair_map::unkey(k);
            children[node as usize].push((s, c));
        }
        let mut cells = vec![EMPTY; 1 + bs];
        cells[0].check = 0;
        cells[0].token = trie.token[0];
        // First cell that may be free: every cell below it is taken.
        let mut first_free = 1usize;
        let mut queue = std::collections::VecDeque::from([(0u32, 0usize)]);
        while let Some((node, cell)) = queue.pop_front() {
            let kids = &mut children[node as usize];
            if kids.is_empty() {
                continue;
            }
            kids.sort_unstable();
            let lo = kids[0].0 as usize;
            while cells[first_free].check != NONE {
                first_free += 1;
            }
            // Smallest base (>= 1, so that no child lands on the root) with all children free.
            let mut b = first_free.saturating_sub(lo).max(1);
            loop {
                let need = b + kids.last().map_or(0, |k| k.0 as usize) + 1;
                if cells.len() < need + bs {
                    cells.resize(need + bs, EMPTY);
                }
                if kids
                    .iter()
                    .all(|&(s, _)| cells[b + s as usize].check == NONE)
                {
                    break;
                }
                b += 1;
            }
            cells[cell].base = b as u32;
            for &(s, c) in kids.iter() {
                let at = b + s as usize;
                cells[at].check = cell as u32;
                cells[at].token = trie.token[c as usize];
                queue.push_back((c, at));
            }
        }
        // Every `base + s` with `s < alphabet` stays inside: the last base is followed by at
        // least `bs` cells.
        DoubleArray {
            cells,
            alphabet: bs as u32,
        }
    }

    #[inline]
    fn child(&self, cell: u32, s: u32) -> Option<(u32, u32)> {
        if s >= self.alphabet {
            return None;
        }
        let at = self.cells[cell as usize].base + s;
        let c = self.cells[at as usize];
        (c.check == cell).then_some((at, c.token))
    }
}

/// Reusable buffers for [`ShortestTable::encode_into`].
#[derive(Default)]
pub(crate) struct Scratch {
    best: Vec<u32>,
    choice: Vec<(u32, u32)>,
    /// A word spelt out as base ids ([`ShortestTable::encode_text_word`]).
    word: Vec<u32>,
}

impl ShortestTable {
    /// The trie over the expansions of ids `[0, n_ids)`; `expansion(id)` gives base ids, and
    /// base ids (`< base_size`) expand to themselves.
    pub(crate) fn new<'a>(
        n_ids: u32,
        base_size: u32,
        expansion: impl Fn(u32) -> &'a [u32],
    ) -> Self {
        let bs = base_size as usize;
        let mut t = ShortestTable {
            uid: NEXT_TABLE.fetch_add(1, Ordering::Relaxed),
            inside: vec![0; (bs * bs).div_ceil(64)],
            base_size: bs,
            root: vec![NONE; bs],
            second: vec![NONE; bs * bs],
            edges: PairMap::default(),
            token: vec![NONE],
            frozen: None,
        };
        for id in 0..n_ids {
            t.insert(id, expansion(id));
        }
        t.frozen = Some(DoubleArray::build(&t));
        t
    }

    /// Adds token `id` spelling `e` (nothing for an empty `e`). If an id with the same
    /// expansion is already there, that one stays: callers insert in increasing id order, and
    /// a later duplicate is never produced.
    pub(crate) fn insert(&mut self, id: u32, e: &[u32]) {
        // The table changes: cached encodings of the old one must not be reused, and the
        // frozen trie is out of date (encoding falls back to the hash-map trie).
        self.uid = NEXT_TABLE.fetch_add(1, Ordering::Relaxed);
        self.frozen = None;
        for p in e.windows(2) {
            let bit = p[0] as usize * self.base_size + p[1] as usize;
            self.inside[bit / 64] |= 1 << (bit % 64);
        }
        let mut node = 0u32;
        for (depth, &s) in e.iter().enumerate() {
            node = match self.child(node, depth, e.first().copied().unwrap_or(0), s) {
                Some(c) => c,
                None => {
                    let c = self.token.len() as u32;
                    self.token.push(NONE);
                    match depth {
                        0 => self.root[s as usize] = c,
                        1 => self.second[e[0] as usize * self.base_size + s as usize] = c,
                        _ => {
                            self.edges.insert(key(node, s), c);
                        }
                    }
                    c
                }
            };
        }
        if !e.is_empty() && self.token[node as usize] == NONE {
            self.token[node as usize] = id;
        }
    }

    /// The child of `node` (at `depth`, the number of symbols matched so far; `first` is the
    /// first of them) by symbol `s`. Symbols outside the base range have no child.
    #[inline]
    fn child(&self, node: u32, depth: usize, first: u32, s: u32) -> Option<u32> {
        let bs = self.base_size;
        let c = match depth {
            0 => *self.root.get(s as usize)?,
            1 if (s as usize) < bs => self.second[first as usize * bs + s as usize],
            1 => NONE,
            _ => *self.edges.get(&key(node, s))?,
        };
        (c != NONE).then_some(c)
    }

    /// The shortest encoding of `word` into `out`; with `exclude_whole`, the token that spells
    /// all of `word` (if any) is not used.
    fn encode_impl(&self, word: &[u32], exclude_whole: bool, out: &mut Vec<u32>, sc: &mut Scratch) {
        match &self.frozen {
            Some(da) => dp(word, exclude_whole, out, sc, |cell, _, _, s| {
                da.child(cell, s)
            }),
            None => dp(word, exclude_whole, out, sc, |node, depth, first, s| {
                let c = self.child(node, depth, first, s)?;
                Some((c, self.token[c as usize]))
            }),
        }
    }

    /// Appends the shortest encoding of `word` (base ids only) to `out`. A symbol the trie does
    /// not know (not a base id) is passed through as one id.
    ///
    /// The word is cut where no token can span (see `inside`), and pieces of 2 to 256 symbols
    /// are memoized per thread: values and script lines recur across documents.
    pub(crate) fn encode_into(&self, word: &[u32], out: &mut Vec<u32>, sc: &mut Scratch) {
        let bs = self.base_size;
        let mut start = 0;
        for k in 1..=word.len() {
            if k < word.len() {
                let (x, y) = (word[k - 1] as usize, word[k] as usize);
                let bit = x * bs + y;
                if x < bs && y < bs && self.inside[bit / 64] & (1 << (bit % 64)) != 0 {
                    continue;
                }
            }
            self.encode_piece(&word[start..k], out, sc);
            start = k;
        }
    }

    /// [`Self::encode_into`] for a whole word of a document, memoized as a whole first.
    // Most words recur verbatim (in one pass over the corpus, 89% of the base ids are in a
    // word seen before), and one hash and probe per word costs less than one per piece.
    pub(crate) fn encode_word(&self, word: &[u32], out: &mut Vec<u32>, sc: &mut Scratch) {
        if word.len() < 2 || word.len() > CACHE_MAX_WORD || self.uid == 0 {
            return self.encode_into(word, out, sc);
        }
        let h = PieceCache::hash(word);
        let hit = with_cache(&CACHE, |c| {
            c.claim(self.uid);
            c.get(word, h)
                .map(|hit| out.extend_from_slice(hit))
                .is_some()
        });
        if hit == Some(true) {
            return;
        }
        let from = out.len();
        self.encode_into(word, out, sc);
        with_cache(&CACHE, |c| c.insert(word, h, &out[from..]));
    }

    /// The shortest encoding of the word `prefix` (structural ids) + the bytes of `text` +
    /// `STR_END`, as [`Self::encode_word`] would give for it spelt out, appended to `out`. The
    /// word is memoized whole, keyed by its text where it lies ([`super::word_cache`]); only a
    /// miss spells it out as base ids.
    pub(crate) fn encode_text_word(
        &self,
        prefix: &[u32],
        text: &[u8],
        out: &mut Vec<u32>,
        sc: &mut Scratch,
    ) {
        let n = prefix.len() + text.len() + 1;
        if n == 1 {
            out.push(STR_END);
            return;
        }
        // The word's hash, where it is memoized.
        let h = (self.uid != 0 && n <= CACHE_MAX_WORD).then(|| WordHasher::word(prefix, text));
        if let Some(h) = h {
            let hit = with_cache(&WORDS, |c| {
                c.claim(self.uid);
                c.get(prefix, text, h)
                    .map(|hit| out.extend_from_slice(hit))
                    .is_some()
            });
            if hit == Some(true) {
                return;
            }
        }
        let mut word = std::mem::take(&mut sc.word);
        word.clear();
        word.extend_from_slice(prefix);
        word.extend(text.iter().map(|&b| u32::from(b)));
        word.push(STR_END);
        let from = out.len();
        self.encode_into(&word, out, sc);
        sc.word = word;
        if let Some(h) = h {
            with_cache(&WORDS, |c| c.insert(prefix, text, h, &out[from..]));
        }
    }

    fn encode_piece(&self, piece: &[u32], out: &mut Vec<u32>, sc: &mut Scratch) {
        if piece.len() < 2 || piece.len() > CACHE_MAX_PIECE || self.uid == 0 {
            return self.encode_impl(piece, false, out, sc);
        }
        // The cache is unavailable only while the thread is being torn down: encode uncached.
        let cached = CACHE.try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return false;
            };
            c.claim(self.uid);
            let h = PieceCache::hash(piece);
            if let Some(hit) = c.get(piece, h) {
                out.extend_from_slice(hit);
                return true;
            }
            let from = out.len();
            self.encode_impl(piece, false, out, sc);
            c.insert(piece, h, &out[from..]);
            true
        });
        if !cached.unwrap_or(false) {
            self.encode_impl(piece, false, out, sc);
        }
    }

    /// The shortest encoding of `word` without the one token that spells all of it (what a use
    /// of that token becomes once it is gone, before its neighbours re-segment), appended to
    /// `out`.
    pub(crate) fn encode_without_whole(&self, word: &[u32], out: &mut Vec<u32>, sc: &mut Scratch) {
        self.encode_impl(word, true, out, sc);
    }

    /// How many ids each token gets in the shortest encodings of `words` (weighted by the
    /// word's count), indexed by id; ids `>= n_ids` are not counted.
    pub(crate) fn usage(&self, words: &[(Vec<u32>, u64)], n_ids: usize) -> Vec<u64> {
        use rayon::prelude::*;
        words
            .par_iter()
            .fold(
                || (vec![0u64; n_ids], Vec::new(), Scratch::default()),
                |(mut u, mut out, mut sc), (w, c)| {
                    out.clear();
                    self.encode_into(w, &mut out, &mut sc);
                    for &t in &out {
                        if let Some(x) = u.get_mut(t as usize) {
                            *x += c;
                        }
                    }
                    (u, out, sc)
                },
            )
            .map(|(u, _, _)| u)
            .reduce(
                || vec![0u64; n_ids],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                },
            )
    }
}

/// The dynamic program of [`ShortestTable::encode_impl`] over any form of the trie: `child(node,
/// depth, first symbol, symbol)` gives the child and the token that ends there (or `NONE`).
#[inline(always)]
fn dp(
    word: &[u32],
    exclude_whole: bool,
    out: &mut Vec<u32>,
    sc: &mut Scratch,
    child: impl Fn(u32, usize, u32, u32) -> Option<(u32, u32)>,
) {
    let n = word.len();
    if n < 2 {
        out.extend_from_slice(word);
        return;
    }
    sc.best.clear();
    sc.best.resize(n + 1, 0);
    sc.choice.clear();
    sc.choice.resize(n, (0, 0));
    for i in (0..n).rev() {
        // The symbol alone is always a candidate (base ids are tokens).
        let mut best = 1 + sc.best[i + 1];
        let mut pick = (word[i], 1u32);
        let mut node = 0u32;
        let after = &sc.best[i + 1..];
        for (j, &s) in word[i..].iter().enumerate() {
            let Some((c, tok)) = child(node, j, word[i], s) else {
                break;
            };
            node = c;
            // Selects rather than branches: whether a node ends a token, and whether it is
            // the better choice, are coin flips to the branch predictor.
            let usable = tok != NONE && !(exclude_whole && i == 0 && j + 1 == n);
            let cand = if usable { 1 + after[j] } else { u32::MAX };
            // `<=`: among equally short encodings, the longest token first.
            let take = cand <= best;
            best = if take { cand } else { best };
            pick = if take { (tok, j as u32 + 1) } else { pick };
        }
        sc.best[i] = best;
        sc.choice[i] = pick;
    }
    let mut i = 0;
    while i < n {
        let (tok, len) = sc.choice[i];
        out.push(tok);
        i += len as usize;
    }
}
