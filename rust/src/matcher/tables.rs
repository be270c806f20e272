//! Per-vocabulary tables that make the matcher's mask fast, built once per tokenizer: the
//! masks inside unconstrained strings per UTF-8 state, the trained ids split into the string
//! and structural tries, the strings the vocabulary can spell whole, and the caches.

use super::cache::*;
use super::trie::WalkList;
use crate::vocab::Vocab;

/// Per-vocabulary tables that make the matcher's mask fast (see `Matcher::fill_allowed`).
pub(crate) struct VocabTables {
    /// First trained id (= base_size) and the end of trained ids (= pad).
    pub(super) first: u32,
    pub(super) end: u32,
    pub(super) vocab_size: usize,
    /// `string_masks[2 * u + end_ok]`: the whole mask inside an unconstrained string whose
    /// UTF-8 decoder is in state `u`: the bytes that continue it, the trained ids that expand
    /// to bytes only, and with `end_ok` those that expand to bytes then `STR_END` (ending on a
    /// character boundary). `STR_END` itself and exclusions are the caller's.
    pub(super) string_masks: Vec<Vec<bool>>,
    /// The content of each `bytes... STR_END` id, to forbid exact values (used keys).
    pub(super) by_content: std::collections::HashMap<Vec<u8>, Vec<u32>>,
    /// Masks over trained ids for constrained strings, by (spec, state): strings with patterns
    /// recur in few states, so each state is simulated once per tokenizer.
    pub(super) pattern_cache: std::sync::Mutex<PatternCache>,
    /// Masks of structural contexts (see `LEVELS` and `Matcher::fill_allowed`).
    pub(super) top_cache: std::sync::Mutex<TopCache>,
    pub(super) deep_cache: [std::sync::Mutex<DeepCache>; LEVELS.len() - 1],
    /// Trained ids whose expansion holds an id other than a string byte or a final `STR_END`
    /// ("structural" ids, 987 of the bundled tokenizer's 7,886), walked up to where their
    /// expansion turns into a string's bytes (the tail, decided by UTF-8 tables).
    pub(super) structural: WalkList,
    /// The other trained ids (`bytes...` or `bytes... STR_END`), walked whole where the string
    /// tables do not apply (numbers).
    pub(super) strings: WalkList,
    /// Some structural id starts with a byte or `STR_END` (none in the bundled tokenizer): the
    /// precomputed string masks alone are then not the whole answer inside a string.
    pub(super) structural_from_string: bool,
    /// Every string a trained id spells whole (bytes then `STR_END`, starting at the start of
    /// the expansion or after a structural id): the only used keys a walk can run into.
    pub(super) spellable: std::collections::HashSet<Vec<u8>>,
    /// The longest expansion (base ids): strings this close to `MAX_STRING_BYTES` take the
    /// exact walk.
    pub(super) max_len: usize,
}

impl VocabTables {
    pub(crate) fn new(v: &Vocab) -> VocabTables {
        let first = v.base_size();
        let end = v.pad_id();
        let vocab_size = v.vocab_size() as usize;
        let mut string_masks = vec![vec![false; vocab_size]; 16];
        for u in 0..8u8 {
            for b in 0..=255u8 {
                let ok = crate::strings::utf8_step(u, b).is_some();
                string_masks[2 * u as usize][b as usize] = ok;
                string_masks[2 * u as usize + 1][b as usize] = ok;
            }
        }
        let mut by_content: std::collections::HashMap<Vec<u8>, Vec<u32>> = Default::default();
        let mut structural = Vec::new();
        let mut strings = Vec::new();
        for id in first..end {
            let Some(e) = v.expansion(id) else { continue };
            if e.is_empty() {
                continue;
            }
            // Split off the tail: the longest suffix `bytes... [STR_END]`.
            let mut k = e.len();
            let ends = e[k - 1] == crate::base::STR_END;
            if ends {
                k -= 1;
            }
            while k > 0 && e[k - 1] < 256 {
                k -= 1;
            }
            let tail: Vec<u8> = e[k..e.len() - ends as usize]
                .iter()
                .map(|&b| b as u8)
                .collect();
            if k > 0 {
                structural.push((id, e[..k].to_vec(), tail, ends));
                continue;
            }
            strings.push((id, e.to_vec(), Vec::new(), false));
            if ends {
                by_content.entry(tail.clone()).or_default().push(id);
            }
            for u in 0..8u8 {
                let mut st = Some(u);
                for &b in &tail {
                    st = st.and_then(|s| crate::strings::utf8_step(s, b));
                }
                let (i, u) = (id as usize, u as usize);
                match st {
                    Some(s) if ends => string_masks[2 * u + 1][i] = s == 0,
                    Some(_) => {
                        string_masks[2 * u][i] = true;
                        string_masks[2 * u + 1][i] = true;
                    }
                    None => {}
                }
            }
        }
        let n_base = first as usize;
        let structural_from_string = structural.iter().any(|s| s.1[0] <= crate::base::STR_END);
        let max_len = (first..end)
            .filter_map(|id| v.expansion(id))
            .map(<[u32]>::len)
            .max()
            .unwrap_or(0);
        // The empty key too: the base mask of a map asks whether "" is used.
        let mut spellable = std::collections::HashSet::from([Vec::new()]);
        for id in first..end {
            let Some(e) = v.expansion(id) else { continue };
            let mut run: Option<Vec<u8>> = Some(Vec::new());
            for &b in e {
                match (b < 256, &mut run) {
                    (true, Some(r)) => r.push(b as u8),
                    (true, None) => {}
                    (false, r) => {
                        if b == crate::base::STR_END {
                            if let Some(r) = r.take() {
                                spellable.insert(r);
                            }
                        }
                        *r = Some(Vec::new());
                    }
                }
            }
        }
        VocabTables {
            spellable,
            structural_from_string,
            max_len,
            first,
            end,
            vocab_size,
            string_masks,
            by_content,
            pattern_cache: Default::default(),
            top_cache: Default::default(),
            deep_cache: Default::default(),
            structural: WalkList::new(structural, n_base),
            strings: WalkList::new(strings, n_base),
        }
    }
}
