//! Applying ranked merges to one word: classic BPE semantics (repeatedly join the adjacent pair
//! of lowest rank, leftmost occurrence first) in `O(n log n)`.
//!
//! Long words use a binary heap of candidate pairs over a doubly linked list of symbols, with
//! lazy invalidation: a popped candidate is used only if both symbols are still alive and still
//! form that pair. A merge of rank `r` only creates pairs that contain the new id, whose ranks
//! are all greater than `r` (a merge's parts are defined before it), so processing candidates
//! in `(rank, position)` order is exactly "lowest rank first, leftmost first".
//!
//! Short words (the vast majority: names, action references, versions) use a direct scan,
//! which is faster below a few dozen symbols and gives identical results (tested).
//!
//! Measured on the 200 KB single-string test (`tests::apply_is_not_quadratic`): see
//! [`super::decisions`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::pair_map::{key, PairMap};

/// Words up to this many symbols use the direct scan. Measured on the stand-in held-out split
/// (11.7M base ids, noisy shared 2-core box): 2: 10.5, 4: 9.6-14.6, 8: 11.1-16.9, 24: 7.7,
/// 64: 10.7 M base ids/s.
const SHORT_WORD: usize = 8;
const NONE: u32 = u32::MAX;
/// Marks a symbol that was joined into its left neighbour.
const DEAD: u32 = u32::MAX;

/// Rank lookup for the merges of a vocabulary.
#[derive(Clone, Default)]
pub(crate) struct MergeTable {
    ranks: PairMap<u32>,
    merge_start: u32,
}

/// Reusable buffers, so that applying merges word after word does not allocate.
#[derive(Default)]
pub(crate) struct Workspace {
    prev: Vec<u32>,
    next: Vec<u32>,
    heap: BinaryHeap<Reverse<(u32, u32)>>,
}

impl MergeTable {
    pub(crate) fn new(merges: &[[u32; 2]], merge_start: u32) -> Self {
        let mut ranks = PairMap::default();
        ranks.reserve(merges.len());
        for (r, &[a, b]) in merges.iter().enumerate() {
            ranks.insert(key(a, b), r as u32);
        }
        MergeTable { ranks, merge_start }
    }

    #[inline]
    fn rank(&self, a: u32, b: u32) -> Option<u32> {
        self.ranks.get(&key(a, b)).copied()
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
        if n <= SHORT_WORD {
            self.merge_short(buf, start);
        } else {
            self.merge_long(buf, start, ws);
        }
    }

    fn merge_short(&self, buf: &mut Vec<u32>, start: usize) {
        loop {
            let w = &buf[start..];
            let mut best: Option<(u32, u32, u32)> = None;
            for p in w.windows(2) {
                if let Some(r) = self.rank(p[0], p[1]) {
                    if best.is_none_or(|(br, _, _)| r < br) {
                        best = Some((r, p[0], p[1]));
                    }
                }
            }
            let Some((r, a, b)) = best else { return };
            let z = self.merge_start + r;
            // Join every occurrence, left to right, without overlap.
            let mut read = start;
            let mut write = start;
            let end = buf.len();
            while read < end {
                if read + 1 < end && buf[read] == a && buf[read + 1] == b {
                    buf[write] = z;
                    read += 2;
                } else {
                    buf[write] = buf[read];
                    read += 1;
                }
                write += 1;
            }
            buf.truncate(write);
            if buf.len() - start < 2 {
                return;
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

    /// The heap path on any length (tests compare it with the short path).
    #[cfg(test)]
    pub(crate) fn merge_with_heap(&self, buf: &mut Vec<u32>, ws: &mut Workspace) {
        if buf.len() >= 2 && !self.is_empty() {
            self.merge_long(buf, 0, ws);
        }
    }

    /// The short path on any length (tests compare it with the heap path).
    #[cfg(test)]
    pub(crate) fn merge_with_scan(&self, buf: &mut Vec<u32>) {
        if buf.len() >= 2 && !self.is_empty() {
            self.merge_short(buf, 0);
        }
    }
}
