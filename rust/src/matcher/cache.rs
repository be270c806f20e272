//! Caches of the matcher's walk results, per structural context.
//!
//! Outside strings the allowed trained ids depend on the machine's top frames. A walk
//! (`walk.rs`) records, for each decision, how many top frames it read; the decision is stored
//! at the smallest level of `LEVELS` that covers it, keyed by those frames normalised to what
//! the walk can read (`Machine::cache_key`). Level 1 holds a whole mask (`CachedMask`); deeper
//! levels hold the decisions the level before deferred (`CachedDeep`). Constrained strings get
//! their own cache of masks per automaton state (`PatternCache`).

use super::tables::VocabTables;
use crate::machine::FrameKey;
use std::sync::Arc;

/// How many top frames the walk over trained ids starts from (`Machine::top_copy`), and its
/// cache is keyed by (`Machine::cache_key`); a walk that pops below them brings back frames
/// of the full machine (`Machine::deepen`), and what it decides there is not cached.
pub(super) const CONTEXT_FRAMES: usize = 2;

/// (string spec address, automaton state) -> mask over trained ids.
pub(super) type PatternCache = std::collections::HashMap<(usize, Vec<u32>), Arc<Vec<bool>>>;

/// The levels of the structural cache: how many of the machine's top frames a cached
/// decision may depend on. Level 1 is the top frame alone (`Machine::cache_key_top`), where
/// most decisions fall (an id that does not close the value on top); an id that closes it
/// depends on the frame below too (level 2), rarely on more (level 4); beyond that, ids are
/// walked at every step.
pub(super) const LEVELS: [usize; 5] = [1, 2, 4, 8, usize::MAX];

/// Structural contexts by their normalised top frame: the mask.
pub(super) type TopCache = std::collections::HashMap<FrameKey, Arc<CachedMask>>;
/// By normalised top frames (levels 2 and 4): the decisions deferred by the level before.
pub(super) type DeepCache = std::collections::HashMap<FrameKey, Arc<CachedDeep>>;

/// At most this many entries per cache level (a few hundred bytes each, typically).
pub(super) const STRUCT_CACHE_ENTRIES: usize = 100_000;

/// A range of walk entries: (list: 0 = strings, 1 = structural; first entry; end).
pub(super) type EntryRange = (u8, u32, u32);

/// Where a cached mask's string-like ids come from.
pub(super) enum StringPart {
    None,
    /// `VocabTables::string_masks[i]` over the trained ids.
    Table(usize),
    /// A constrained string's mask over the trained ids (`PatternCache`).
    Pattern(Arc<Vec<bool>>),
}

/// A structural context's mask at level 1: its string part, the ids set besides (base ids,
/// walked ids) and cleared (excluded values), and the walk entries deferred to level 2.
pub(super) struct CachedMask {
    /// How much deeper than the context its walks nested (a hit needs room for that below
    /// `MAX_DEPTH`: the results assumed that no depth check fails).
    pub(super) reach: usize,
    pub(super) strings: StringPart,
    pub(super) set: Vec<u32>,
    pub(super) clear: Vec<u32>,
    pub(super) redo: Vec<EntryRange>,
}

/// Decisions deferred to a level: the ids accepted there, and the ranges deferred further.
pub(super) struct CachedDeep {
    pub(super) reach: usize,
    pub(super) ids: Vec<u32>,
    pub(super) redo: Vec<EntryRange>,
}

/// A walk decision that needed more than the top frame.
pub(super) struct Decision {
    pub(super) range: EntryRange,
    pub(super) level: usize,
    pub(super) accepted: Option<u32>,
}

impl CachedMask {
    /// Write the string part into `out` (trained ids `first..end`; everything else false).
    pub(super) fn fill_strings(strings: &StringPart, t: &VocabTables, out: &mut [bool]) {
        let (first, end) = (t.first as usize, (t.end as usize).min(out.len()));
        match strings {
            StringPart::Table(i) if out.len() == t.vocab_size => {
                out.copy_from_slice(&t.string_masks[*i]);
                out[..first].fill(false);
                out[end..].fill(false);
            }
            StringPart::Pattern(m) if m.len() == end - first => {
                out.fill(false);
                out[first..end].copy_from_slice(m);
            }
            _ => out.fill(false),
        }
    }

    pub(super) fn write(&self, t: &VocabTables, out: &mut [bool]) {
        Self::fill_strings(&self.strings, t, out);
        for &i in &self.set {
            out[i as usize] = true;
        }
        for &i in &self.clear {
            out[i as usize] = false;
        }
    }
}

/// Merge consecutive ranges of the same list.
pub(super) fn push_range(ranges: &mut Vec<EntryRange>, r: EntryRange) {
    match ranges.last_mut() {
        Some((t, _, h)) if *t == r.0 && *h == r.1 => *h = r.2,
        _ => ranges.push(r),
    }
}
