//! Weighting occurrences by *group* (a repository) so that the vocabulary is spent on what
//! recurs across repositories, not on one repository's scripts repeated in its history.
//!
//! The development corpus holds up to 200 versions of the same files per repository: with raw
//! counts, a `run` script that one repository keeps in 150 versions outweighs a value that 40
//! repositories use once each, and the merges it buys never recur in a new repository. Training
//! therefore counts each word (and each dictionary candidate) per group and adds up `f(count in
//! group)` over the groups, with `f` from [`Weighting`]. Without group ids, every document is its
//! own group. The numbers are in docs/vocabulary-decisions.md.
//!
//! Weights are fixed-point integers ([`Weighting::unit`] per occurrence-equivalent) so that the
//! merge learner keeps exact integer counts and training stays deterministic.

use std::collections::BTreeMap;
use std::hash::Hash;

use rayon::prelude::*;

use super::pair_map::FastMap;

/// How the occurrences of one word inside one group add up to its training weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weighting {
    /// Every occurrence counts 1 (groups do not matter).
    Raw,
    /// `count in group ^ (p / 100)`: `Power(50)` is the square root.
    Power(u32),
    /// `1 + ln(count in group)`.
    Log,
    /// 1 per group the word occurs in (document / repository frequency).
    Distinct,
}

/// Fixed-point scale of the non-raw weightings.
const UNIT: u64 = 1 << 10;

impl Weighting {
    /// Weight of one occurrence-equivalent: counts are compared with `min_*_count * unit()`.
    pub fn unit(self) -> u64 {
        match self {
            Weighting::Raw => 1,
            _ => UNIT,
        }
    }

    /// The weight of `count >= 1` occurrences in one group, in units of [`Weighting::unit`].
    pub fn weigh(self, count: u64) -> u64 {
        match self {
            Weighting::Raw => count,
            Weighting::Power(p) => {
                ((count as f64).powf(f64::from(p) / 100.0) * UNIT as f64).round() as u64
            }
            Weighting::Log => ((1.0 + (count as f64).ln()) * UNIT as f64).round() as u64,
            Weighting::Distinct => UNIT,
        }
    }
}

/// Document indices per group, groups in increasing id order (so the work is deterministic).
/// Without group ids, or with [`Weighting::Raw`] (where groups do not change the result),
/// documents are taken in chunks instead (fewer, larger maps; the weighting is then raw: see
/// `train_grouped`).
pub(crate) fn groups_of(n_docs: usize, groups: Option<&[u32]>, w: Weighting) -> Vec<Vec<usize>> {
    match groups {
        Some(g) if w != Weighting::Raw => {
            let mut by: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for (i, &gid) in g.iter().enumerate() {
                by.entry(gid).or_default().push(i);
            }
            by.into_values().collect()
        }
        _ => {
            let chunk = n_docs
                .div_ceil(4 * rayon::current_num_threads().max(1))
                .max(1);
            (0..n_docs)
                .collect::<Vec<_>>()
                .chunks(chunk)
                .map(<[usize]>::to_vec)
                .collect()
        }
    }
}

/// Weighted counts of the keys (slices of `T`) that `each` finds in the documents: for every
/// group, the occurrences of each key are counted and weighed with `w`, and the weights are
/// summed over the groups. Also returns the total number of occurrences (unweighted).
pub(crate) fn weighted_counts<T, F>(
    groups: &[Vec<usize>],
    w: Weighting,
    each: F,
) -> (FastMap<Vec<T>, u64>, u64)
where
    T: Eq + Hash + Clone + Send,
    F: Fn(usize, &mut dyn FnMut(&[T])) + Sync,
{
    groups
        .par_iter()
        .fold(
            || (FastMap::default(), 0u64),
            |(mut acc, mut n): (FastMap<Vec<T>, u64>, u64), docs| {
                let mut local: FastMap<Vec<T>, u64> = FastMap::default();
                for &d in docs {
                    each(d, &mut |k: &[T]| {
                        n += 1;
                        if let Some(c) = local.get_mut(k) {
                            *c += 1;
                        } else {
                            local.insert(k.to_vec(), 1);
                        }
                    });
                }
                if acc.is_empty() && w == Weighting::Raw {
                    return (local, n);
                }
                for (k, c) in local {
                    *acc.entry(k).or_default() += w.weigh(c);
                }
                (acc, n)
            },
        )
        .reduce(
            || (FastMap::default(), 0),
            |(mut a, na), (mut b, nb)| {
                if a.len() < b.len() {
                    std::mem::swap(&mut a, &mut b);
                }
                for (k, c) in b {
                    *a.entry(k).or_default() += c;
                }
                (a, na + nb)
            },
        )
}
