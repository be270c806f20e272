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
use super::segment::{segment, Piece};
use super::{MergeScope, Vocab, VocabError, DEFAULT_N_POSITIONS, FIRST_SEL, MAX_IDS, STR_END};

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
    /// Progress lines on stderr.
    pub progress: bool,
}

impl TrainConfig {
    /// The defaults chosen in [`super::decisions`] for a schema with `n_sel` selector ids.
    pub fn new(n_sel: u32, vocab_size: u32) -> Self {
        TrainConfig {
            base_size: FIRST_SEL + n_sel,
            vocab_size,
            dictionary_size: 256,
            scope: MergeScope::Across,
            dict_scoring: DictScoring::Raw,
            min_dict_count: 2,
            min_pair_count: 2,
            n_positions: DEFAULT_N_POSITIONS,
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
    /// Count of the last merge learnt (how far down the frequency list training went).
    pub last_merge_count: u64,
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
    config.check()?;
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
    let contents = count_contents(streams);
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
            DictScoring::Raw => select(&contents, dict_cap, config.min_dict_count, &|b| {
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
                    config.min_pair_count,
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
                select(&contents, dict_cap, config.min_dict_count, &cost)
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
        Vec::new(),
        0,
    )?;
    let (word_counts, n_words) = count_words(streams, &dict_vocab);
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
    let merges = learn_merges_counted(
        word_counts.into_iter().collect(),
        n_merges,
        first_id,
        config.min_pair_count,
        &|m| say(format!("merges: {m}")),
        &mut last_count,
    )?;
    seconds.push(("merges".to_string(), t.elapsed().as_secs_f64()));
    say(format!(
        "{} merges ({:.1}s)",
        merges.len(),
        t.elapsed().as_secs_f64()
    ));

    let vocab = Vocab::new(
        config.base_size,
        config.scope,
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
        last_merge_count: last_count,
        seconds,
    };
    Ok((vocab, report))
}

/// Cuts every stream into words (as `apply` does, dictionary applied) and counts them.
fn count_words(streams: &[Vec<u32>], v: &Vocab) -> (FastMap<Vec<u32>, u64>, u64) {
    streams
        .par_iter()
        .fold(
            || (FastMap::default(), 0u64),
            |(mut acc, mut n): (FastMap<Vec<u32>, u64>, u64), s| {
                let mut word = Vec::new();
                let lookup = |bytes: &[u32], scratch: &mut Vec<u8>| {
                    scratch.clear();
                    scratch.extend(bytes.iter().map(|&b| b as u8));
                    v.dict_id(scratch)
                };
                segment(
                    s,
                    v.scope(),
                    v.base_size(),
                    &lookup,
                    &mut word,
                    &mut |piece| {
                        if let Piece::Word(w) = piece {
                            n += 1;
                            if let Some(c) = acc.get_mut(w) {
                                *c += 1;
                            } else {
                                acc.insert(w.to_vec(), 1);
                            }
                        }
                    },
                );
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
    learn_merges_counted(words, n_merges, first_id, min_count, progress, &mut last)
}

fn learn_merges_counted(
    words: Vec<(Vec<u32>, u64)>,
    n_merges: usize,
    first_id: u32,
    min_count: u64,
    progress: &dyn Fn(String),
    last_count: &mut u64,
) -> Result<Vec<[u32; 2]>, VocabError> {
    let total: usize = words.iter().map(|(w, _)| w.len()).sum();
    if total >= NONE as usize {
        return Err(VocabError::new(
            "",
            format!("{total} symbols in distinct words: more than the merge learner's 2^32 - 1"),
        ));
    }
    let t = Instant::now();
    // Flat layout: symbol, links, and the multiplicity of the word each position belongs to.
    let mut sym = Vec::with_capacity(total);
    let mut next = Vec::with_capacity(total);
    let mut prev = Vec::with_capacity(total);
    let mut mult: Vec<i64> = Vec::with_capacity(total);
    for (w, c) in &words {
        let base = sym.len() as u32;
        let n = w.len() as u32;
        for (k, &t) in w.iter().enumerate() {
            let k = k as u32;
            sym.push(t);
            prev.push(if k == 0 { NONE } else { base + k - 1 });
            next.push(if k + 1 == n { NONE } else { base + k + 1 });
            mult.push(*c as i64);
        }
    }
    drop(words);

    // Initial pair counts and occurrence lists, built in parallel over chunks of positions.
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
                    *counts.entry(k).or_default() += mult[p];
                    occ.entry(k).or_default().push(p as u32);
                }
            }
            (counts, occ)
        })
        .collect();
    let mut counts: PairMap<i64> = PairMap::default();
    let mut occ: PairMap<Vec<u32>> = PairMap::default();
    for (c, o) in parts {
        for (k, v) in c {
            *counts.entry(k).or_default() += v;
        }
        for (k, mut v) in o {
            occ.entry(k).or_default().append(&mut v);
        }
    }
    let mut heap: BinaryHeap<(i64, Reverse<u64>)> =
        counts.iter().map(|(&k, &c)| (c, Reverse(k))).collect();
    progress(format!(
        "{total} symbols, {} distinct pairs ({:.1}s)",
        counts.len(),
        t.elapsed().as_secs_f64()
    ));

    let mut merges: Vec<[u32; 2]> = Vec::with_capacity(n_merges);
    let mut created: Vec<u64> = Vec::new();
    let bump = |counts: &mut PairMap<i64>, k: u64, d: i64| {
        let e = counts.entry(k).or_default();
        *e += d;
        if *e == 0 {
            counts.remove(&k);
        }
    };
    while merges.len() < n_merges {
        let Some((c, Reverse(k))) = heap.pop() else {
            break;
        };
        let cur = counts.get(&k).copied().unwrap_or(0);
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
            let x = prev[p];
            let y = next[q];
            if x != NONE {
                let sx = sym[x as usize];
                bump(&mut counts, key(sx, a), -m);
                bump(&mut counts, key(sx, z), m);
                occ.entry(key(sx, z)).or_default().push(x);
                created.push(key(sx, z));
            }
            if y != NONE {
                let sy = sym[y as usize];
                bump(&mut counts, key(b, sy), -m);
                bump(&mut counts, key(z, sy), m);
                occ.entry(key(z, sy)).or_default().push(p as u32);
                created.push(key(z, sy));
            }
            bump(&mut counts, k, -m);
            sym[p] = z;
            sym[q] = DEAD;
            next[p] = y;
            if y != NONE {
                prev[y as usize] = p as u32;
            }
        }
        counts.remove(&k);
        created.sort_unstable();
        created.dedup();
        for &nk in &created {
            if let Some(&nc) = counts.get(&nk) {
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
