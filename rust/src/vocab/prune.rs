//! Pruning a vocabulary for the shortest encoding ([`super::Encoding::Shortest`]).
//!
//! BPE merges are greedy, and many of them are only stepping stones towards longer tokens:
//! under the shortest encoding the longer tokens are used and the stepping stones rarely are.
//! Training therefore learns more merges than the budget (`TrainConfig::prune_extra`), then
//! removes the tokens whose loss costs least, until the budget is met:
//!
//! - the cost of removing token `t` is `usage(t) * (len'(t) - 1)`, where `usage` counts the
//!   uses of `t` in the shortest encodings of the (weighted) training words and `len'(t)` is
//!   the length of the shortest encoding of `t`'s own expansion without `t`: each use would
//!   be spelt that way (a slight over-estimate, since the neighbours can re-segment too);
//! - usage shifts as tokens go, so tokens are removed in batches (a quarter of the remaining
//!   excess, at least 16) and usage is recounted after each batch; within a batch, tokens
//!   that stand in for each other are not removed together (see the loop);
//! - ties go to the later id; everything is integer arithmetic, so the result is
//!   deterministic.
//!
//! Any token can go, including the parts a kept BPE merge was built from, so a kept merge is
//! re-spelt as the shortest encoding of its expansion by the kept ids before it: merges of
//! a shortest-encoding vocabulary have two or more parts.

// Measured in docs/vocabulary-decisions.md (pruning only the leaves of the merge graph, which
// keeps pairs, gained 4x less).

use super::shortest::{Scratch, ShortestTable};
use super::weighting::Weighting;
use super::Vocab;

/// What pruning keeps: the dictionary entries and the merges (renumbered, re-spelt), in order.
pub(crate) struct Pruned {
    pub dictionary: Vec<String>,
    pub merges: Vec<Vec<u32>>,
    /// Batches (usage recounts) it took.
    pub rounds: usize,
}

/// Keeps at most `keep` of the trained ids (dictionary + merges) of `full`. `words[g]` are
/// the training words of group `g` as base ids (cut as `apply` cuts them) with their counts;
/// a token's usage is counted per group and weighed with `w` like pair counts in training.
pub(crate) fn prune(
    full: &Vocab,
    words: &[Vec<(Vec<u32>, u64)>],
    w: Weighting,
    keep: usize,
    progress: &dyn Fn(String),
) -> Pruned {
    let base = full.base_size();
    let dict_end = full.merge_start();
    let end = full.pad_id();
    let n = end as usize;
    let exp = |id: u32| full.expansion(id).unwrap_or(&[]);
    let mut alive = vec![true; n];
    // A token with the same expansion as an earlier one is never produced: drop it first.
    let mut seen: std::collections::HashMap<&[u32], u32> = Default::default();
    for id in base..end {
        if seen.insert(exp(id), id).is_some() {
            alive[id as usize] = false;
        }
    }
    let mut n_alive = alive[base as usize..].iter().filter(|&&a| a).count();
    let mut rounds = 0;
    let table_of = |alive: &[bool]| {
        ShortestTable::new(
            end,
            base,
            |id| {
                if alive[id as usize] {
                    exp(id)
                } else {
                    &[]
                }
            },
        )
    };
    let mut sc = Scratch::default();
    while n_alive > keep {
        rounds += 1;
        let table = table_of(&alive);
        let mut usage = vec![0u64; n];
        for g in words {
            for (u, c) in usage.iter_mut().zip(table.usage(g, n)) {
                if c > 0 {
                    *u += w.weigh(c);
                }
            }
        }
        let mut alt: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut costed: Vec<(u64, std::cmp::Reverse<u32>)> = Vec::new();
        for id in (base..end).filter(|&id| alive[id as usize]) {
            let a = &mut alt[id as usize];
            table.encode_without_whole(exp(id), a, &mut sc);
            let c = usage[id as usize] * (a.len() as u64).saturating_sub(1);
            costed.push((c, std::cmp::Reverse(id)));
        }
        costed.sort_unstable();
        let excess = n_alive - keep;
        let target = excess.min((excess / 4).max(16));
        // Tokens that stand in for each other (`ab` spelt `a` `b`, `abc` spelt `ab` `c`) each
        // look cheap while the other is there: within a batch, a token is not removed if its
        // replacement uses a token removed in this batch, or if a token removed in this batch
        // is spelt with it. The next round sees their true cost.
        let mut removed_now = vec![false; n];
        let mut needed = vec![false; n];
        let mut batch = 0;
        let mut last_cost = 0;
        for &(c, std::cmp::Reverse(id)) in &costed {
            if batch == target {
                break;
            }
            let parts = &alt[id as usize];
            if needed[id as usize] || parts.iter().any(|&p| removed_now[p as usize]) {
                continue;
            }
            removed_now[id as usize] = true;
            alive[id as usize] = false;
            for &p in parts {
                needed[p as usize] = true;
            }
            batch += 1;
            last_cost = c;
        }
        n_alive -= batch;
        progress(format!(
            "pruning: {n_alive} ids kept, the last removed cost {last_cost}"
        ));
    }
    // Renumber (base ids stay; kept dictionary entries, then kept merges, in order) and re-spell
    // each kept merge with the kept ids before it.
    let mut new_id = vec![u32::MAX; n];
    for (id, slot) in new_id.iter_mut().enumerate().take(base as usize) {
        *slot = id as u32;
    }
    let mut next = base;
    let mut dictionary = Vec::new();
    for (i, s) in full.dictionary().iter().enumerate() {
        let id = base as usize + i;
        if alive[id] {
            new_id[id] = next;
            next += 1;
            dictionary.push(s.clone());
        }
    }
    let mut merges = Vec::new();
    let mut before = vec![false; n];
    before[..dict_end as usize].copy_from_slice(&alive[..dict_end as usize]);
    before[..base as usize].iter_mut().for_each(|b| *b = true);
    let mut table = table_of(&before);
    for id in dict_end..end {
        if !alive[id as usize] {
            continue;
        }
        let mut parts = Vec::new();
        table.encode_into(exp(id), &mut parts, &mut sc);
        merges.push(parts.iter().map(|&p| new_id[p as usize]).collect());
        new_id[id as usize] = next;
        next += 1;
        before[id as usize] = true;
        // The next merge may use this one: extend the trie (cheap: one expansion).
        table.insert(id, exp(id));
    }
    Pruned {
        dictionary,
        merges,
        rounds,
    }
}
