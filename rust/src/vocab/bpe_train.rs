//! Training: dictionary choice, word counting, and ranked BPE merges over base-token streams.
//!
//! The merge learner works on *unique* words with multiplicities (identical words, e.g. the same
//! `run` script in 100 versions of a workflow, are counted once). All words are laid out in one
//! array with `prev`/`next` links; for every pair it keeps the count (weighted by multiplicity)
//! and a list of positions where it may occur. A merge visits exactly the positions in its list
//! (stale ones are skipped by checking the two symbols), updates the counts of the neighbouring
//! pairs locally, and records the positions of the pairs it creates. The best pair comes from a
//! max-heap with lazy invalidation: a pair's count only ever grows in the step that creates its
//! newer id, so any stale heap entry over-estimates and is re-pushed with its true count when it
//! surfaces. Ties go to the smaller `(left, right)` pair.
//!
//! Parallel parts (rayon): counting contents, choosing the dictionary, cutting streams into
//! words, and the initial pair count. The merge loop itself is sequential: each step depends on
//! the previous one, and it is cheap (its cost is the number of occurrences it merges).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use rayon::prelude::*;

use super::dictionary::{count_contents, select, Candidate};
use super::pair_map::{key, unkey, FastMap, PairMap};
use super::prune::prune;
use super::segment::{segment, Piece};
use super::weighting::{groups_of, weighted_counts, Weighting};
use super::{
    Encoding, MergeScope, Vocab, VocabError, DEFAULT_N_POSITIONS, FIRST_SEL, MAX_IDS, STR_END,
};

/// How a dictionary candidate's cost without the dictionary is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DictScoring {
    /// One id per byte plus `STR_END`: favours long values that merges would shrink anyway.
    Raw,
    /// Ids after a provisional BPE (the same merge budget, no dictionary) trained on the contents:
    /// favours values that stay expensive after merging. Costs one extra merge-learning pass.
    Bpe,
}

/// Training configuration. `vocab_size` is the total, specials included; the merges take what
/// the base ids, the dictionary and the 3 specials leave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// `268 + n_sel` of the compiled schema.
    pub base_size: u32,
    pub vocab_size: u32,
    /// At most this many dictionary entries (fewer if fewer values qualify).
    pub dictionary_size: u32,
    pub scope: MergeScope,
    pub dict_scoring: DictScoring,
    /// A value enters the dictionary only if it occurs at least this often.
    pub min_dict_count: u64,
    /// Merging stops when the best pair occurs fewer times than this (so a tiny corpus gives a
    /// smaller vocabulary than asked for).
    pub min_pair_count: u64,
    pub n_positions: u32,
    /// How occurrences in one group (a repository) add up ([`super::weighting`]); only with
    /// group ids ([`train_grouped`]), raw otherwise. `min_dict_count` and `min_pair_count` are
    /// in occurrences of this weighting.
    pub weighting: Weighting,
    /// How `apply` spells a word ([`Encoding`]).
    pub encoding: Encoding,
    /// With [`Encoding::Shortest`]: learn this many merges beyond the budget, then prune the
    /// tokens whose loss costs least back to it ([`super::prune`]). Ignored for ranked merges.
    /// With 0, merges that duplicate a dictionary entry or another merge are still dropped
    /// (never produced), so the vocabulary can come out a little smaller than asked for.
    pub prune_extra: u32,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl TrainConfig {
    /// The defaults chosen in docs/vocabulary-decisions.md for a schema with `n_sel` selector ids.
    pub fn new(n_sel: u32, vocab_size: u32) -> Self {
        TrainConfig {
            base_size: FIRST_SEL + n_sel,
            vocab_size,
            dictionary_size: 128,
            scope: MergeScope::Across,
            dict_scoring: DictScoring::Raw,
            min_dict_count: 2,
            min_pair_count: 2,
            n_positions: DEFAULT_N_POSITIONS,
            weighting: Weighting::Power(60),
            encoding: Encoding::Shortest,
            prune_extra: 6000,
            progress: false,
        }
    }

    fn check(&self) -> Result<(), VocabError> {
        if self.base_size < FIRST_SEL {
            return Err(VocabError::new(
                "/base_size",
                format!(
                    "base_size {} is below the {FIRST_SEL} fixed base ids",
                    self.base_size
                ),
            ));
        }
        if self.vocab_size < self.base_size + 3 {
            return Err(VocabError::new(
                "/vocab_size",
                format!(
                    "vocab_size {} leaves no room for the {} base ids and 3 specials",
                    self.vocab_size, self.base_size
                ),
            ));
        }
        if self.vocab_size as u64 + self.n_positions as u64 > MAX_IDS as u64 {
            return Err(VocabError::new(
                "/vocab_size",
                format!(
                    "vocab_size {} plus {} position ids do not fit in uint16",
                    self.vocab_size, self.n_positions
                ),
            ));
        }
        Ok(())
    }
}

/// What training saw and did, stored in the tokenizer file's `training` section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    pub config: TrainConfig,
    pub documents: u64,
    pub base_tokens: u64,
    pub distinct_contents: u64,
    pub dictionary_entries: u64,
    /// Total and distinct words after the dictionary (the merge learner sees the distinct ones).
    pub words: u64,
    pub distinct_words: u64,
    pub merges: u64,
    /// Count of the last merge learnt (how far down the frequency list training went), in
    /// occurrences of the weighting.
    pub last_merge_count: u64,
    /// Usage recounts of the pruning (0: no pruning).
    pub prune_rounds: u64,
    /// Groups (repositories) training saw, 0 without group ids; and the weighting it used
    /// (raw without group ids, whatever the configuration says).
    pub groups: u64,
    pub weighting: Weighting,
    /// Wall-clock seconds per phase (informational; not part of the content hash).
    pub seconds: Vec<(String, f64)>,
}

/// Trains a vocabulary on base-token streams (one per document, no BOS/EOS).
pub fn train(streams: &[Vec<u32>], config: &TrainConfig) -> Result<Vocab, VocabError> {
    train_with_report(streams, config).map(|(v, _)| v)
}

/// [`train`], also returning what it saw and did.
pub fn train_with_report(
    streams: &[Vec<u32>],
    config: &TrainConfig,
) -> Result<(Vocab, TrainReport), VocabError> {
    train_grouped(streams, None, config)
}

/// [`train_with_report`] with a group id (a repository) per stream: pair occurrences, dictionary
/// candidates and (for pruning) token uses are counted per group and weighed with
/// `config.weighting` ([`super::weighting`]). Without group ids the weighting is raw. Group ids
/// are labels only: renumbering them does not change the result.
pub fn train_grouped(
    streams: &[Vec<u32>],
    groups: Option<&[u32]>,
    config: &TrainConfig,
) -> Result<(Vocab, TrainReport), VocabError> {
    config.check()?;
    if let Some(g) = groups {
        if g.len() != streams.len() {
            return Err(VocabError::new(
                "/groups",
                format!(
                    "{} group ids for {} documents (one per document expected)",
                    g.len(),
                    streams.len()
                ),
            ));
        }
    }
    // Weighting needs groups: without them every occurrence counts 1 (one group per document
    // was measured: 120+ s of training for a worse result, see docs/vocabulary-decisions.md).
    let weighting = if groups.is_some() {
        config.weighting
    } else {
        Weighting::Raw
    };
    let unit = weighting.unit();
    let group_docs = groups_of(streams.len(), groups, weighting);
    let say = |msg: String| {
        if config.progress {
            eprintln!("tct-train: {msg}");
        }
    };
    let mut seconds = Vec::new();
    let t0 = Instant::now();
    let base_tokens: u64 = streams.iter().map(|s| s.len() as u64).sum();
    let budget = (config.vocab_size - config.base_size - 3) as usize;

    // 1. The dictionary.
    let contents = count_contents(streams, &group_docs, weighting);
    say(format!(
        "{} documents, {base_tokens} base tokens, {} distinct values ({:.1}s)",
        streams.len(),
        contents.len(),
        t0.elapsed().as_secs_f64()
    ));
    let dict_cap = (config.dictionary_size as usize).min(budget);
    let chosen: Vec<Candidate> = if dict_cap == 0 {
        Vec::new()
    } else {
        match config.dict_scoring {
            DictScoring::Raw => select(&contents, dict_cap, config.min_dict_count * unit, &|b| {
                b.len() as u64 + 1
            }),
            DictScoring::Bpe => {
                let t = Instant::now();
                let words: Vec<(Vec<u32>, u64)> = contents
                    .par_iter()
                    .filter(|(k, _)| !k.is_empty())
                    .map(|(k, &n)| {
                        let mut w: Vec<u32> = k.iter().map(|&b| u32::from(b)).collect();
                        w.push(STR_END);
                        (w, n)
                    })
                    .collect();
                let provisional = learn_merges(
                    words,
                    budget - dict_cap,
                    config.base_size,
                    config.min_pair_count * unit,
                    &|m| say(format!("provisional merges: {m}")),
                )?;
                let pv = Vocab::new(
                    config.base_size,
                    MergeScope::Strings,
                    Vec::new(),
                    provisional,
                    0,
                )?;
                seconds.push(("provisional_bpe".to_string(), t.elapsed().as_secs_f64()));
                let cost = |b: &[u8]| {
                    let mut w: Vec<u32> = b.iter().map(|&x| u32::from(x)).collect();
                    w.push(STR_END);
                    pv.apply(&w).len() as u64
                };
                select(&contents, dict_cap, config.min_dict_count * unit, &cost)
            }
        }
    };
    let dictionary: Vec<String> = chosen.into_iter().map(|c| c.value).collect();
    let distinct_contents = contents.len() as u64;
    drop(contents);
    seconds.push(("dictionary".to_string(), t0.elapsed().as_secs_f64()));
    say(format!("dictionary: {} entries", dictionary.len()));

    // 2. Words, with the dictionary applied.
    let t = Instant::now();
    let dict_vocab = Vocab::new(
        config.base_size,
        config.scope,
        dictionary.clone(),
        NO_MERGES,
        0,
    )?;
    let (word_counts, n_words) = count_words(streams, &group_docs, weighting, &dict_vocab);
    let distinct_words = word_counts.len() as u64;
    say(format!(
        "{n_words} words, {distinct_words} distinct ({:.1}s)",
        t.elapsed().as_secs_f64()
    ));
    seconds.push(("words".to_string(), t.elapsed().as_secs_f64()));

    // 3. Merges.
    let t = Instant::now();
    let n_merges = budget - dictionary.len();
    let first_id = config.base_size + dictionary.len() as u32;
    let mut last_count = 0u64;
    let extra = match config.encoding {
        Encoding::Shortest => config.prune_extra as usize,
        Encoding::RankedMerges => 0,
    };
    let words = word_counts;
    // The pruner needs the words as base ids (dictionary ids expanded).
    // The pruner needs the words as `apply` sees them with the shortest encoding: cut without
    // dictionary lookups (a whole value that is a dictionary entry is then one word).
    let base_words: Vec<Vec<(Vec<u32>, u64)>> = if extra > 0 {
        let plain = Vocab::new(config.base_size, config.scope, vec![], NO_MERGES, 0)?;
        let (w, _) = count_words(streams, &group_docs, weighting, &plain);
        let mut by_group: Vec<Vec<(Vec<u32>, u64)>> = Vec::new();
        for (k, g, c) in w {
            if by_group.len() <= g as usize {
                by_group.resize(g as usize + 1, Vec::new());
            }
            by_group[g as usize].push((k, c));
        }
        by_group
    } else {
        Vec::new()
    };
    let mut merges: Vec<Vec<u32>> = learn_merges_counted(
        words,
        weighting,
        n_merges + extra,
        first_id,
        config.min_pair_count * unit,
        &|m| say(format!("merges: {m}")),
        &mut last_count,
    )?
    .into_iter()
    .map(Vec::from)
    .collect();
    seconds.push(("merges".to_string(), t.elapsed().as_secs_f64()));
    say(format!(
        "{} merges ({:.1}s)",
        merges.len(),
        t.elapsed().as_secs_f64()
    ));
    let mut dictionary = dictionary;
    let mut prune_rounds = 0;
    // With the shortest encoding, pruning also drops merges that spell a dictionary entry
    // (never produced) and re-spells the merges; without extra merges it removes nothing else.
    if config.encoding == Encoding::Shortest {
        let t = Instant::now();
        let full = Vocab::new(config.base_size, config.scope, dictionary, merges, 0)?;
        let p = prune(&full, &base_words, weighting, budget, &|m| say(m));
        (dictionary, merges, prune_rounds) = (p.dictionary, p.merges, p.rounds);
        seconds.push(("prune".to_string(), t.elapsed().as_secs_f64()));
    }

    let vocab = Vocab::build(
        config.base_size,
        config.scope,
        config.encoding,
        dictionary,
        merges,
        config.n_positions,
    )?;
    seconds.push(("total".to_string(), t0.elapsed().as_secs_f64()));
    let report = TrainReport {
        config: config.clone(),
        documents: streams.len() as u64,
        base_tokens,
        distinct_contents,
        dictionary_entries: vocab.dictionary().len() as u64,
        words: n_words,
        distinct_words,
        merges: vocab.merges().len() as u64,
        last_merge_count: last_count / unit,
        prune_rounds: prune_rounds as u64,
        groups: groups.map_or(0, |_| group_docs.len() as u64),
        weighting,
        seconds,
    };
    Ok((vocab, report))
}

/// Cuts every stream into words (as `apply` does, dictionary applied) and counts them:
/// `(word, group index, count)`, one entry per word and group unless `w` is raw (then groups
/// do not matter and the group index is 0). Also returns the number of words.
pub(crate) fn count_words(
    streams: &[Vec<u32>],
    groups: &[Vec<usize>],
    w: Weighting,
    v: &Vocab,
) -> (Vec<(Vec<u32>, u32, u64)>, u64) {
    let words_of = |d: usize, emit: &mut dyn FnMut(&[u32])| {
        let mut word = Vec::new();
        let lookup = |bytes: &[u32], scratch: &mut Vec<u8>| {
            scratch.clear();
            scratch.extend(bytes.iter().map(|&b| b as u8));
            v.dict_id(scratch)
        };
        segment(
            &streams[d],
            v.scope(),
            v.base_size(),
            &lookup,
            &mut word,
            &mut |piece| {
                if let Piece::Word(w) = piece {
                    emit(w);
                }
            },
        );
    };
    if w == Weighting::Raw {
        let (map, n) = weighted_counts(groups, Weighting::Raw, words_of);
        return (map.into_iter().map(|(k, c)| (k, 0, c)).collect(), n);
    }
    // (word, group, weighted count) per group, and the group's word total.
    #[allow(clippy::type_complexity)]
    let per_group: Vec<(Vec<(Vec<u32>, u32, u64)>, u64)> = groups
        .par_iter()
        .enumerate()
        .map(|(gi, docs)| {
            let mut local: FastMap<Vec<u32>, u64> = FastMap::default();
            let mut n = 0u64;
            for &d in docs {
                words_of(d, &mut |k: &[u32]| {
                    n += 1;
                    if let Some(c) = local.get_mut(k) {
                        *c += 1;
                    } else {
                        local.insert(k.to_vec(), 1);
                    }
                });
            }
            let mut entries: Vec<(Vec<u32>, u32, u64)> =
                local.into_iter().map(|(k, c)| (k, gi as u32, c)).collect();
            // Hash order is deterministic but depends on insertion; sorting makes the
            // learner's layout independent of it.
            entries.sort_unstable();
            (entries, n)
        })
        .collect();
    let n = per_group.iter().map(|(_, n)| n).sum();
    (per_group.into_iter().flat_map(|(e, _)| e).collect(), n)
}

/// An empty merge list for [`Vocab::new`].
const NO_MERGES: Vec<[u32; 2]> = Vec::new();

const NONE: u32 = u32::MAX;
const DEAD: u32 = u32::MAX;

/// Learns up to `n_merges` merges; merge `r` gets id `first_id + r`.
pub(crate) fn learn_merges(
    words: Vec<(Vec<u32>, u64)>,
    n_merges: usize,
    first_id: u32,
    min_count: u64,
    progress: &dyn Fn(String),
) -> Result<Vec<[u32; 2]>, VocabError> {
    let mut last = 0;
    let words = words.into_iter().map(|(w, c)| (w, 0, c)).collect();
    learn_merges_counted(
        words,
        Weighting::Raw,
        n_merges,
        first_id,
        min_count,
        progress,
        &mut last,
    )
}

/// `(pair, group)` packed in a `u64`: ids are below 65,536 (the layout checks it).
#[inline]
fn gkey(pair: u64, group: u32) -> u64 {
    let (a, b) = unkey(pair);
    (u64::from(a) << 48) | (u64::from(b) << 32) | u64::from(group)
}

/// Pair counts: per pair, the sum over groups of `weighting.weigh(occurrences in the group)`.
/// With [`Weighting::Raw`] that is the plain count and the per-group table is not kept.
struct PairCounts {
    w: Weighting,
    total: PairMap<i64>,
    by_group: PairMap<i64>,
}

impl PairCounts {
    #[inline]
    fn f(&self, c: i64) -> i64 {
        if c <= 0 {
            0
        } else {
            self.w.weigh(c as u64) as i64
        }
    }

    /// `d` more (or fewer) occurrences of `k` in `group`.
    #[inline]
    fn bump(&mut self, k: u64, group: u32, d: i64) {
        let delta = if self.w == Weighting::Raw {
            d
        } else {
            let gk = gkey(k, group);
            let e = self.by_group.entry(gk).or_default();
            let old = *e;
            *e += d;
            let new = *e;
            if new == 0 {
                self.by_group.remove(&gk);
            }
            self.f(new) - self.f(old)
        };
        let e = self.total.entry(k).or_default();
        *e += delta;
        if *e == 0 {
            self.total.remove(&k);
        }
    }
}

/// Learns merges over `(word, group, multiplicity)`; pair occurrences are weighed per group
/// with `w` ([`super::weighting`]).
fn learn_merges_counted(
    words: Vec<(Vec<u32>, u32, u64)>,
    w: Weighting,
    n_merges: usize,
    first_id: u32,
    min_count: u64,
    progress: &dyn Fn(String),
    last_count: &mut u64,
) -> Result<Vec<[u32; 2]>, VocabError> {
    let total: usize = words.iter().map(|(w, _, _)| w.len()).sum();
    if total >= NONE as usize {
        return Err(VocabError::new(
            "",
            format!("{total} symbols in distinct words: more than the merge learner's 2^32 - 1"),
        ));
    }
    let t = Instant::now();
    // Flat layout: symbol, links, and the multiplicity and group of the word each position
    // belongs to.
    let mut sym = Vec::with_capacity(total);
    let mut next = Vec::with_capacity(total);
    let mut prev = Vec::with_capacity(total);
    let mut mult: Vec<i64> = Vec::with_capacity(total);
    let mut grp: Vec<u32> = Vec::with_capacity(total);
    for (wd, g, c) in &words {
        let base = sym.len() as u32;
        let n = wd.len() as u32;
        for (k, &t) in wd.iter().enumerate() {
            let k = k as u32;
            sym.push(t);
            prev.push(if k == 0 { NONE } else { base + k - 1 });
            next.push(if k + 1 == n { NONE } else { base + k + 1 });
            mult.push(*c as i64);
            grp.push(*g);
        }
    }
    drop(words);

    // Initial pair counts (per group unless raw) and occurrence lists, built in parallel over
    // chunks of positions.
    let raw = w == Weighting::Raw;
    let chunk = (total / rayon::current_num_threads().max(1)).max(1 << 16);
    let parts: Vec<(PairMap<i64>, PairMap<Vec<u32>>)> = (0..total.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut counts: PairMap<i64> = PairMap::default();
            let mut occ: PairMap<Vec<u32>> = PairMap::default();
            for p in c * chunk..((c + 1) * chunk).min(total) {
                let q = next[p];
                if q != NONE {
                    let k = key(sym[p], sym[q as usize]);
                    let ck = if raw { k } else { gkey(k, grp[p]) };
                    *counts.entry(ck).or_default() += mult[p];
                    occ.entry(k).or_default().push(p as u32);
                }
            }
            (counts, occ)
        })
        .collect();
    let mut counts = PairCounts {
        w,
        total: PairMap::default(),
        by_group: PairMap::default(),
    };
    let mut occ: PairMap<Vec<u32>> = PairMap::default();
    for (c, o) in parts {
        let dst = if raw {
            &mut counts.total
        } else {
            &mut counts.by_group
        };
        for (k, v) in c {
            *dst.entry(k).or_default() += v;
        }
        for (k, mut v) in o {
            occ.entry(k).or_default().append(&mut v);
        }
    }
    if !raw {
        let mut total_w: PairMap<i64> = PairMap::default();
        for (&gk, &c) in &counts.by_group {
            let k = key((gk >> 48) as u32, ((gk >> 32) & 0xFFFF) as u32);
            *total_w.entry(k).or_default() += counts.f(c);
        }
        counts.total = total_w;
    }
    let mut heap: BinaryHeap<(i64, Reverse<u64>)> = counts
        .total
        .iter()
        .map(|(&k, &c)| (c, Reverse(k)))
        .collect();
    progress(format!(
        "{total} symbols, {} distinct pairs ({:.1}s)",
        counts.total.len(),
        t.elapsed().as_secs_f64()
    ));

    let mut merges: Vec<[u32; 2]> = Vec::with_capacity(n_merges);
    let mut created: Vec<u64> = Vec::new();
    while merges.len() < n_merges {
        let Some((c, Reverse(k))) = heap.pop() else {
            break;
        };
        let cur = counts.total.get(&k).copied().unwrap_or(0);
        if cur != c {
            if cur > 0 {
                heap.push((cur, Reverse(k)));
            }
            continue;
        }
        if (c as u64) < min_count {
            break;
        }
        let (a, b) = unkey(k);
        let z = first_id + merges.len() as u32;
        merges.push([a, b]);
        *last_count = c as u64;
        let mut positions = occ.remove(&k).unwrap_or_default();
        positions.sort_unstable();
        positions.dedup();
        created.clear();
        for &p in &positions {
            let p = p as usize;
            // Skip stale occurrences: the pair may have been merged away or changed.
            if sym[p] != a {
                continue;
            }
            let q = next[p];
            if q == NONE || sym[q as usize] != b {
                continue;
            }
            let q = q as usize;
            let m = mult[p];
            let g = grp[p];
            let x = prev[p];
            let y = next[q];
            if x != NONE {
                let sx = sym[x as usize];
                counts.bump(key(sx, a), g, -m);
                counts.bump(key(sx, z), g, m);
                occ.entry(key(sx, z)).or_default().push(x);
                created.push(key(sx, z));
            }
            if y != NONE {
                let sy = sym[y as usize];
                counts.bump(key(b, sy), g, -m);
                counts.bump(key(z, sy), g, m);
                occ.entry(key(z, sy)).or_default().push(p as u32);
                created.push(key(z, sy));
            }
            counts.bump(k, g, -m);
            sym[p] = z;
            sym[q] = DEAD;
            next[p] = y;
            if y != NONE {
                prev[y as usize] = p as u32;
            }
        }
        counts.total.remove(&k);
        created.sort_unstable();
        created.dedup();
        for &nk in &created {
            if let Some(&nc) = counts.total.get(&nk) {
                if nc > 0 {
                    heap.push((nc, Reverse(nk)));
                }
            }
        }
        if merges.len() % 1000 == 0 {
            progress(format!(
                "{} merges, last count {c} ({:.1}s)",
                merges.len(),
                t.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(merges)
}
