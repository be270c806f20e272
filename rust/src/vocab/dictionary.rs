//! The dictionary of frequent whole values: counting contents and choosing entries.
//!
//! A dictionary id stands for a whole content, `bytes STR_END` (a string, key or number text),
//! wherever it occurs: one global table, the same id meaning the same value in every field. The
//! per-field alternative and why it was not taken are in [`super::decisions`].

use rayon::prelude::*;

use super::pair_map::FastMap;
use super::STR_END;

/// Occurrences of each whole content (its bytes, without `STR_END`) over all streams. Contents
/// are found without the schema: a maximal run of BYTE ids followed by `STR_END`.
pub(crate) fn count_contents(streams: &[Vec<u32>]) -> FastMap<Vec<u8>, u64> {
    streams
        .par_iter()
        .fold(FastMap::default, |mut acc: FastMap<Vec<u8>, u64>, s| {
            for_each_content(s, |c| {
                if let Some(n) = acc.get_mut(c) {
                    *n += 1;
                } else {
                    acc.insert(c.to_vec(), 1);
                }
            });
            acc
        })
        .reduce(FastMap::default, merge_counts)
}

fn merge_counts(
    mut a: FastMap<Vec<u8>, u64>,
    mut b: FastMap<Vec<u8>, u64>,
) -> FastMap<Vec<u8>, u64> {
    if a.len() < b.len() {
        std::mem::swap(&mut a, &mut b);
    }
    for (k, v) in b {
        *a.entry(k).or_default() += v;
    }
    a
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

/// Chooses up to `size` entries by estimated saving `count * (cost - 1)`, where `cost(bytes)`
/// is what the value would cost without the dictionary. Only valid UTF-8 values that occur at
/// least `min_count` times are considered (the matcher only allows valid UTF-8). Ties go to the
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
