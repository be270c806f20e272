//! The dictionary of frequent whole values: counting contents and choosing entries.
//!
//! A dictionary id stands for a whole content, `bytes STR_END` (a string, key or number text),
//! wherever it occurs: one global table, the same id meaning the same value in every field. The
//! per-field alternative and why it was not taken are in docs/vocabulary-decisions.md.

use rayon::prelude::*;

use super::pair_map::FastMap;
use super::weighting::{weighted_counts, Weighting};
use super::STR_END;

/// Weighted occurrences of each whole content (its bytes, without `STR_END`) over all streams
/// (see [`super::weighting`]), and the number of contents. Contents are found without the
/// schema: a maximal run of BYTE ids followed by `STR_END`.
pub(crate) fn count_contents(
    streams: &[Vec<u32>],
    groups: &[Vec<usize>],
    w: Weighting,
) -> FastMap<Vec<u8>, u64> {
    weighted_counts(groups, w, |d, emit: &mut dyn FnMut(&[u8])| {
        for_each_content(&streams[d], |c| emit(c));
    })
    .0
}

/// Calls `f` with the bytes of every closed content of `stream`, in order.
pub(crate) fn for_each_content(stream: &[u32], mut f: impl FnMut(&[u8])) {
    let mut bytes = Vec::new();
    for &t in stream {
        if t < STR_END {
            bytes.push(t as u8);
        } else {
            if t == STR_END {
                f(&bytes);
            }
            // Bytes followed by anything but STR_END (not in an encoder's stream) are not a
            // whole content: dropped, exactly as `segment` never looks them up.
            bytes.clear();
        }
    }
}

/// A candidate value and its estimated saving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub value: String,
    pub count: u64,
    /// Ids the value (with its `STR_END`) costs without the dictionary.
    pub cost: u64,
}

impl Candidate {
    /// Ids saved over the training streams if the value gets one dictionary id.
    pub fn saving(&self) -> u64 {
        self.count * self.cost.saturating_sub(1)
    }
}

/// Chooses up to `size` entries by estimated saving `count * (cost - 1)`, where `count` is the
/// (weighted) count and `cost(bytes)` is what the value would cost without the dictionary. Only
/// valid UTF-8 values with a count of at least `min_count` are considered (the matcher only allows valid UTF-8). Ties go to the
/// smaller byte string, so the choice is deterministic.
pub(crate) fn select(
    counts: &FastMap<Vec<u8>, u64>,
    size: usize,
    min_count: u64,
    cost: &(dyn Fn(&[u8]) -> u64 + Sync),
) -> Vec<Candidate> {
    if size == 0 {
        return Vec::new();
    }
    let mut cands: Vec<Candidate> = counts
        .par_iter()
        .filter(|(k, &n)| n >= min_count && !k.is_empty())
        .filter_map(|(k, &n)| {
            let value = std::str::from_utf8(k).ok()?.to_owned();
            let c = Candidate {
                cost: cost(k),
                value,
                count: n,
            };
            (c.saving() > 0).then_some(c)
        })
        .collect();
    cands.par_sort_unstable_by(|x, y| {
        y.saving()
            .cmp(&x.saving())
            .then_with(|| x.value.as_bytes().cmp(y.value.as_bytes()))
    });
    cands.truncate(size);
    cands
}
