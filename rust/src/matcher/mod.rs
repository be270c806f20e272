//! The token-level matcher: which vocabulary ids may come next so that the sequence stays
//! completable to a document valid under the schema, and accepting them one by one.
//!
//! It drives the same [`Machine`] as the decoder, in strict mode, over base ids, and tests
//! trained ids through their base expansions. What makes that fast is built once per
//! vocabulary (`tables.rs`, [`VocabTables`]): masks per UTF-8 state for the inside of
//! strings, the trained ids as a trie of their expansions (`trie.rs`), and caches of walk
//! results per structural context (`cache.rs`). `walk.rs` walks the trie over the machine;
//! `simulate.rs` is the reference every fast path is tested against (`tests.rs`).
//!
//! A matcher is built from a [`MatcherSource`]: the compiled graph, the vocabulary and its
//! tables (a `Tokenizer` is one), not from the tokenizer facade itself.

mod cache;
mod simulate;
mod tables;
#[cfg(test)]
mod tests;
mod trie;
mod walk;

use crate::compile::Graph;
use crate::error::DecodeError;
use crate::machine::{Machine, Mode};
use crate::vocab::Vocab;
use cache::{push_range, CachedMask, Decision, StringPart, CONTEXT_FRAMES, STRUCT_CACHE_ENTRIES};
use std::sync::Arc;

pub(crate) use tables::VocabTables;

/// What a matcher reads, shared by every matcher of one tokenizer: the compiled graph, the
/// vocabulary, and the mask tables built from that vocabulary (`VocabTables::new`).
pub(crate) trait MatcherSource: Send + Sync {
    fn graph(&self) -> &Arc<Graph>;
    fn vocab(&self) -> &Vocab;
    fn tables(&self) -> &VocabTables;
}

/// Constrained-generation state. `fill_allowed` is exact: every allowed id keeps the sequence
/// completable to a document that validates against the schema (see the README for the
/// keywords that are not yet enforced).
// Performance (goal: p50 <= 5 us, p99 <= 50 us per step).
//
// Measured with `benches/matcher_latency.py` (300 corpus workflows, bundled 8,192-id
// tokenizer, `allowed()` + `advance()` from Python, 2-core AMD EPYC dev box, load ~1.5-2.4).
// Before: p50 7.5 us, p99 300 us. Strings (77% of steps) cost 7.4 us, mostly writing the
// 8,192-entry mask three times over (fill, copy, fresh Vec); unions, maps and arrays cost
// 60-220 us: every trained id whose expansion starts with an allowed base id was simulated
// on a copy of the top 3 frames, and the cache keyed by those frames rarely hit (they hold
// used keys, item counts, header choices that differ between documents). After: p50 0.9 us,
// p99 25 us (strings 0.9 us, unions p50 3 us). What did it, in order of effect:
// - Inside an unconstrained string the whole mask is one `copy_from_slice` of a mask
//   precomputed per UTF-8 state (`VocabTables::string_masks`), exclusions patched after;
//   Python's `allowed()` fills the numpy array in place (`allowed_into` reuses one).
// - Trained ids are walked like a trie (`WalkList`): sorted by expansion so a shared
//   prefix is stepped once and a refused prefix drops all ids under it; a structural id's
//   trailing string bytes are decided by UTF-8 tables, not stepped. 987 structural ids
//   share 561 prefixes; a miss steps ~200 of them. Frames got cheap to copy for this: bit
//   sets inline (`Bits`), used-key lists shared (`Arc`), no allocation per state.
// - Walk results are cached per context at levels of 1, 2, 4, 8 and all top frames
//   (`LEVELS`): each decision is stored at the smallest level it read (the walk runs on a
//   copy of 2 frames and brings back deeper ones on demand, `Machine::deepen`, so it knows).
//   Level 1 (the top frame alone) holds most decisions: over 330 workflows it hit 98% of
//   the structural steps (50.5k of 51.6k), the deeper levels 93%, 88% and 72% of the
//   lookups the level before passed on. Keys drop what the walk cannot read
//   (`Machine::cache_key`): counts past their bounds, used keys no trained id spells, the
//   used keys of the map on top (applied to the ids that spell them at each hit). Uncached
//   (first visit) steps still cost 20-80 us; they make the p99.
// - Tried and dropped: keying on the top 3 frames exactly (28% hits over 100 documents; 76%
//   with the normalisation above, 2 frames); caching whole masks as `Vec<bool>` (8 KB each).
//
// Exactness is tested against `fill_allowed_by_simulation` (every id stepped on a full copy
// of the machine) on corpus documents, twice over so the second pass hits the caches, and on
// random walks (`matcher/tests.rs`).
#[derive(Clone)]
pub struct Matcher {
    src: Arc<dyn MatcherSource>,
    machine: Machine,
    /// Base ids accepted so far (to rebuild the document text on demand).
    base: Vec<u32>,
    /// Ids accepted so far (positions in errors count these).
    steps: usize,
    ended: bool,
    allowed_base: Vec<bool>,
    states: WalkStates,
    /// The rules it enforces beyond the schema, if any (see `rules`).
    rules: Option<crate::rules::layer::Layer>,
}

/// Scratch machines for `Matcher::walk`, kept between steps for their allocations. A copy of
/// a matcher starts without them.
#[derive(Default)]
struct WalkStates {
    states: Vec<Machine>,
    /// Ids accepted by decisions within the top frame (level 1).
    local: Vec<u32>,
    /// Decisions that needed more than the level being filled (see `LEVELS`).
    deferred: Vec<Decision>,
    /// Ids a fill cleared from its string part (excluded values).
    cleared: Vec<u32>,
    /// The deepest nesting a depth check saw in the walks (`Machine::deepest_checked`).
    deepest: usize,
}

impl Clone for WalkStates {
    fn clone(&self) -> Self {
        WalkStates::default()
    }
}

impl Matcher {
    /// A matcher at the start of a document, over `src`'s graph, vocabulary and tables.
    pub(crate) fn new(src: Arc<dyn MatcherSource>) -> Matcher {
        let machine = Machine::new(src.graph().clone(), Mode::Strict, false);
        let nb = src.vocab().base_size() as usize;
        Matcher {
            src,
            machine,
            base: Vec::new(),
            steps: 0,
            ended: false,
            allowed_base: vec![false; nb],
            states: WalkStates::default(),
            rules: None,
        }
    }

    /// The same matcher enforcing `rules` too (see `rules`): they only remove ids.
    pub fn with_rules(mut self, rules: Arc<crate::rules::layer::Enforced>) -> Matcher {
        self.rules = Some(crate::rules::layer::Layer::new(rules));
        self
    }

    /// Masks where the rules would have left no id and the schema's mask was kept.
    pub fn rules_fallbacks(&self) -> usize {
        self.rules.as_ref().map_or(0, |r| r.fallbacks)
    }

    /// Accept one id. A disallowed id is an error and leaves the state unchanged. BOS is
    /// accepted (and ignored) before the document; EOS only once it is complete.
    pub fn advance(&mut self, id: u32) -> Result<(), DecodeError> {
        let pos = self.steps;
        let v = self.src.vocab();
        if id == v.bos_id() && self.base.is_empty() && !self.ended {
            return Ok(());
        }
        if self.ended {
            return Err(DecodeError::new(pos, "the sequence already ended with EOS"));
        }
        if id == v.eos_id() {
            if self.machine.is_done() {
                self.ended = true;
                return Ok(());
            }
            return Err(DecodeError::new(pos, "EOS before the document is complete"));
        }
        let mut base = Vec::new();
        v.expand(&[id], &mut base)
            .map_err(|(_, m)| DecodeError::new(pos, m))?;
        if let Some(why) = self.rules.as_ref().and_then(|r| r.refusal(&base)) {
            return Err(DecodeError::new(pos, why));
        }
        // Bytes inside a string: step in place and undo on error (copying the machine would
        // copy the string so far at every id).
        if base.iter().all(|&b| b < 256) {
            if let Some(cp) = self.machine.string_checkpoint() {
                for &b in &base {
                    if let Err(msg) = self.machine.step(b) {
                        self.machine.restore_string(cp);
                        return Err(DecodeError::new(pos, msg));
                    }
                }
                if let Some(r) = &mut self.rules {
                    r.commit(&base);
                }
                self.base.extend_from_slice(&base);
                self.steps += 1;
                return Ok(());
            }
        }
        let mut m = self.machine.clone();
        for &b in &base {
            if m.is_done() {
                return Err(DecodeError::new(
                    pos,
                    "token runs past the end of the document",
                ));
            }
            m.step(b).map_err(|msg| DecodeError::new(pos, msg))?;
        }
        self.machine = m;
        if let Some(r) = &mut self.rules {
            r.commit(&base);
        }
        self.base.extend_from_slice(&base);
        self.steps += 1;
        Ok(())
    }

    /// Write the allowed-next-id mask into `out` (length `vocab_size`).
    ///
    /// Base ids come from the machine. A trained id is allowed when the machine accepts its
    /// whole expansion; testing that by simulation for ~8k ids at every step would be far too
    /// slow, so (the numbers are in the comment above `Matcher`):
    /// - inside an unconstrained string, which is most steps, the mask depends only on the
    ///   UTF-8 decoder state and on whether the string may end: a precomputed mask is copied,
    ///   then exact values the string may not take (used keys) are cleared;
    /// - ids that expand to a string's bytes where a string starts: the same tables; in a
    ///   constrained string (patterns, lengths): simulated once per automaton state and cached;
    /// - the other ids (structural ids, or digits in a number) are walked over the machine
    ///   like a trie (`WalkList`): sorted by expansion, so the states of a shared prefix are
    ///   computed once and a refused prefix rules out every id that starts with it; a
    ///   structural id's trailing string bytes are decided by UTF-8 tables, not stepped.
    pub fn fill_allowed(&mut self, out: &mut [bool]) {
        self.fill_allowed_by_schema(out);
        if let Some(r) = &mut self.rules {
            r.narrow(out);
        }
    }

    /// The mask of the schema alone (`fill_allowed` without rules).
    fn fill_allowed_by_schema(&mut self, out: &mut [bool]) {
        let v = self.src.vocab();
        if self.ended {
            out.fill(false);
            return;
        }
        if self.machine.is_done() {
            out.fill(false);
            if let Some(x) = out.get_mut(v.eos_id() as usize) {
                *x = true;
            }
            return;
        }
        if self.fill_in_string(out) {
            return;
        }
        let Matcher {
            src,
            machine,
            allowed_base,
            states,
            ..
        } = self;
        let t = src.tables();
        // The walks run on a copy of the top frames. An array or object waiting for its first
        // token is opened first, so that its first token is seen in its own context (often the
        // start of a string).
        let mut root = machine.top_copy(CONTEXT_FRAMES);
        root.open_value();
        let spellable = |u: &str| t.spellable.contains(u.as_bytes());
        let key = machine.cache_key_top(spellable);
        let cached = key
            .as_ref()
            .and_then(|k| t.top_cache.lock().ok()?.get(k).cloned())
            .filter(|c| machine.depth() + c.reach <= crate::MAX_DEPTH);
        if let Some(c) = cached {
            c.write(t, out);
            if root.top_keys_unconstrained() {
                // The map's used keys are not in the cache key: forbid the ids that spell them.
                if let Some(ts) = root.trivial_string_top() {
                    let used = crate::machine::Excluded {
                        spec: &[],
                        used_keys: ts.excluded.used_keys,
                        used_items: &crate::machine::NO_USED,
                    };
                    states.cleared.clear();
                    Self::clear_excluded(t, &used, ts.buf, out, &mut states.cleared);
                }
            }
            if !c.redo.is_empty() {
                Self::fill_level(t, 1, &c.redo, &root, machine, states, out);
            }
            return;
        }
        states.local.clear();
        states.deferred.clear();
        states.cleared.clear();
        states.deepest = 0;
        allowed_base.fill(false);
        root.allowed(allowed_base);
        let (first, end) = (t.first as usize, (t.end as usize).min(out.len()));
        let near_max = |len: usize| len + t.max_len >= crate::MAX_STRING_BYTES;
        // Where a byte would start a string, the string tables decide the string-like ids. In
        // an array of objects or arrays, that is inside a fresh item (a byte opens the item
        // and starts its first key or string item): look there.
        // (Bounded: a recursive schema can nest arrays without end; the walk stays exact.)
        let mut item: Option<Machine> = None;
        for _ in 0..8 {
            let cur = item.as_ref().unwrap_or(&root);
            if cur.trivial_string_top().is_some() || cur.string_top().is_some() {
                break;
            }
            match cur.with_new_item() {
                Some(m) => item = Some(m),
                None => break,
            }
        }
        let at = item.as_ref().unwrap_or(&root);
        let mut strings = StringPart::None;
        if let Some(ts) = at.trivial_string_top().filter(|ts| !near_max(ts.buf.len())) {
            let i = 2 * ts.utf8 as usize + ts.context_end_ok as usize;
            strings = StringPart::Table(i);
            CachedMask::fill_strings(&strings, t, out);
            if root.top_keys_unconstrained() {
                // Used keys of the map on top are applied at every hit (see `cache_key_top`):
                // keep them out of the cached clears.
                let (spec, used) = (
                    crate::machine::Excluded {
                        spec: ts.excluded.spec,
                        used_keys: &crate::machine::NO_USED,
                        used_items: ts.excluded.used_items,
                    },
                    crate::machine::Excluded {
                        spec: &[],
                        used_keys: ts.excluded.used_keys,
                        used_items: &crate::machine::NO_USED,
                    },
                );
                Self::clear_excluded(t, &spec, ts.buf, out, &mut states.cleared);
                Self::clear_excluded(t, &used, ts.buf, out, &mut Vec::new());
            } else {
                Self::clear_excluded(t, &ts.excluded, ts.buf, out, &mut states.cleared);
            }
        } else if let Some(top) = at.string_top().filter(|top| !near_max(top.buf.len())) {
            // Exclusions (used keys, named keys, unique items) are finite sets: they are left
            // out of the cached mask and applied to the values they forbid exactly, below.
            let key = (Arc::as_ptr(&top.spec) as usize, top.st_key());
            let cached = t
                .pattern_cache
                .lock()
                .ok()
                .and_then(|c| c.get(&key).cloned());
            let mask = match cached {
                Some(mk) => mk,
                None => {
                    let mask = Arc::new(Self::simulate_string(src.vocab(), at, &top, first, end));
                    if let Ok(mut c) = t.pattern_cache.lock() {
                        if c.len() < 100_000 {
                            c.insert(key, mask.clone());
                        }
                    }
                    mask
                }
            };
            strings = StringPart::Pattern(mask);
            CachedMask::fill_strings(&strings, t, out);
            for e in top.spec.excluded.iter().chain(top.extra.iter()) {
                if let Some(rest) = e.as_bytes().strip_prefix(top.buf.as_slice()) {
                    for &id in t.by_content.get(rest).into_iter().flatten() {
                        if std::mem::take(&mut out[id as usize]) {
                            states.cleared.push(id);
                        }
                    }
                }
            }
        } else {
            out.fill(false);
            // No string here (a number, say): the string-like ids are walked, from the bytes
            // the machine allows.
            Self::walk_all(&t.strings, 0, allowed_base, &root, machine, states, out);
        }
        let nb = allowed_base.len().min(out.len());
        out[..nb].copy_from_slice(&allowed_base[..nb]);
        Self::walk_all(&t.structural, 1, allowed_base, &root, machine, states, out);
        if states.deepest > crate::MAX_DEPTH {
            return;
        }
        let reach = states.deepest.saturating_sub(machine.depth());
        let mut redo = Vec::new();
        for d in &states.deferred {
            push_range(&mut redo, d.range);
        }
        if let Some(k) = key {
            let set = (0..nb as u32)
                .filter(|&i| allowed_base[i as usize])
                .chain(states.local.iter().copied())
                .collect();
            let c = CachedMask {
                reach,
                strings,
                set,
                clear: std::mem::take(&mut states.cleared),
                redo,
            };
            if let Ok(mut cache) = t.top_cache.lock() {
                if cache.len() < STRUCT_CACHE_ENTRIES {
                    cache.insert(k, Arc::new(c));
                }
            }
        }
        let deferred = std::mem::take(&mut states.deferred);
        Self::store_deferred(t, 1, &deferred, reach, machine);
    }

    /// The hot path: inside an unconstrained string, copy the precomputed mask. False when it
    /// does not apply (then `fill_allowed` takes the general path).
    fn fill_in_string(&mut self, out: &mut [bool]) -> bool {
        let t = self.src.tables();
        let Some(ts) = self.machine.trivial_string_top() else {
            return false;
        };
        if !ts.continuing
            || t.structural_from_string
            || out.len() != t.vocab_size
            || ts.buf.len() + t.max_len >= crate::MAX_STRING_BYTES
        {
            return false;
        }
        let ctx = ts.context_end_ok;
        out.copy_from_slice(&t.string_masks[2 * ts.utf8 as usize + ctx as usize]);
        out[crate::base::STR_END as usize] = ts.utf8 == 0 && ctx && !ts.excluded.contains(ts.buf);
        let cleared = &mut self.states.cleared;
        cleared.clear();
        Self::clear_excluded(t, &ts.excluded, ts.buf, out, cleared);
        true
    }

    /// Clear the `bytes... STR_END` ids that would finish the string (bytes `buf` so far) as
    /// one of its excluded values; record those that were set in `cleared`.
    fn clear_excluded(
        t: &VocabTables,
        excluded: &crate::machine::Excluded<'_>,
        buf: &[u8],
        out: &mut [bool],
        cleared: &mut Vec<u32>,
    ) {
        excluded.for_each(|e| {
            if let Some(rest) = e.strip_prefix(buf) {
                for &id in t.by_content.get(rest).into_iter().flatten() {
                    if out.get_mut(id as usize).is_some_and(std::mem::take) {
                        cleared.push(id);
                    }
                }
            }
        });
    }

    pub fn is_complete(&self) -> bool {
        self.machine.is_done()
    }

    /// The decoding machine, read-only (the bitmask layer steps copies of it for its budget).
    pub(crate) fn machine(&self) -> &Machine {
        &self.machine
    }

    /// No base id accepted yet (BOS may still come).
    pub(crate) fn at_start(&self) -> bool {
        self.base.is_empty() && !self.ended
    }

    /// What the matcher waits for next (for profiling).
    pub fn top_kind(&self) -> &'static str {
        self.machine.top_kind()
    }

    /// The document so far. With `complete`, open values are closed with the smallest valid
    /// completion, so the result is a valid document; without, the (possibly partial) text.
    pub fn document(&self, complete: bool) -> Result<String, DecodeError> {
        let mut m = Machine::new(self.src.graph().clone(), Mode::Lenient, true);
        for (i, &b) in self.base.iter().enumerate() {
            m.step(b).map_err(|msg| DecodeError::new(i, msg))?;
        }
        if complete {
            let rest = self
                .machine
                .completion()
                .map_err(|msg| DecodeError::new(self.base.len(), msg))?;
            for &b in &rest {
                m.step(b)
                    .map_err(|msg| DecodeError::new(self.base.len(), msg))?;
            }
        }
        m.output()
            .map(str::to_string)
            .map_err(|msg| DecodeError::new(self.base.len(), msg))
    }
}
