//! The walks over the trie of trained ids (`trie.rs`) on copies of the machine's top frames,
//! and the levels of cached decisions they fill (`cache.rs`).

use super::cache::*;
use super::trie::{WalkEntry, WalkList};
use super::*;

impl Matcher {
    /// The decisions a cache level deferred (`ranges`), at level `LEVELS[i]`: from its cache,
    /// or walked and stored.
    pub(super) fn fill_level(
        t: &VocabTables,
        i: usize,
        ranges: &[EntryRange],
        root: &Machine,
        full: &Machine,
        states: &mut WalkStates,
        out: &mut [bool],
    ) {
        let list = |tag: u8| if tag == 0 { &t.strings } else { &t.structural };
        if i >= LEVELS.len() {
            // Deeper than the caches go: walk at every step.
            for &(tag, lo, hi) in ranges {
                let (lo, hi) = (lo as usize, hi as usize);
                Self::walk(list(tag), tag, lo, hi, root, full, states, out);
            }
            return;
        }
        let spellable = |u: &str| t.spellable.contains(u.as_bytes());
        let key = full.cache_key(LEVELS[i], LEVELS[i] != usize::MAX, spellable);
        let cached = key
            .as_ref()
            .and_then(|k| t.deep_cache[i - 1].lock().ok()?.get(k).cloned())
            .filter(|c| full.depth() + c.reach <= crate::MAX_DEPTH);
        if let Some(c) = cached {
            for &id in &c.ids {
                out[id as usize] = true;
            }
            if !c.redo.is_empty() {
                Self::fill_level(t, i + 1, &c.redo, root, full, states, out);
            }
            return;
        }
        states.local.clear();
        states.deferred.clear();
        states.deepest = 0;
        for &(tag, lo, hi) in ranges {
            let (lo, hi) = (lo as usize, hi as usize);
            Self::walk(list(tag), tag, lo, hi, root, full, states, out);
        }
        if states.deepest <= crate::MAX_DEPTH {
            let reach = states.deepest.saturating_sub(full.depth());
            let deferred = std::mem::take(&mut states.deferred);
            Self::store_deferred(t, i, &deferred, reach, full);
        }
    }

    /// Store the `deferred` decisions of a walk in the caches of levels `LEVELS[i..]`.
    pub(super) fn store_deferred(
        t: &VocabTables,
        i: usize,
        deferred: &[Decision],
        reach: usize,
        full: &Machine,
    ) {
        let spellable = |u: &str| t.spellable.contains(u.as_bytes());
        let mut below = LEVELS[i - 1];
        for (level, cache) in LEVELS[i..].iter().copied().zip(&t.deep_cache[i - 1..]) {
            let mine = || deferred.iter().filter(move |d| d.level > below);
            if mine().next().is_none() {
                return;
            }
            let Some(key) = full.cache_key(level, level != usize::MAX, spellable) else {
                return;
            };
            let ids = mine()
                .filter(|d| d.level <= level)
                .filter_map(|d| d.accepted)
                .collect();
            let mut redo = Vec::new();
            for d in mine().filter(|d| d.level > level) {
                push_range(&mut redo, d.range);
            }
            if let Ok(mut cache) = cache.lock() {
                if cache.len() < STRUCT_CACHE_ENTRIES && !cache.contains_key(&key) {
                    cache.insert(key, Arc::new(CachedDeep { reach, ids, redo }));
                }
            }
            below = level;
        }
    }

    /// Walk the entries of `list` (`tag`: 0 strings, 1 structural) whose first base id is
    /// allowed (`base`), from `root` (a copy of the top frames of `full`), marking in `out`
    /// the ids the machine accepts.
    pub(super) fn walk_all(
        list: &WalkList,
        tag: u8,
        base: &[bool],
        root: &Machine,
        full: &Machine,
        states: &mut WalkStates,
        out: &mut [bool],
    ) {
        for (b, &(lo, hi)) in list.first.iter().enumerate() {
            if lo < hi && base.get(b).copied().unwrap_or(false) {
                let (lo, hi) = (lo as usize, hi as usize);
                Self::walk(list, tag, lo, hi, root, full, states, out);
            }
        }
    }

    /// Walk the entries `lo..hi` of `list`, marking in `out` the ids the machine accepts.
    /// Records, for the caches, the ids accepted within the top frame (`states.local`) and the
    /// decisions that needed more (`states.deferred`, with their level).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn walk(
        list: &WalkList,
        tag: u8,
        lo: usize,
        hi: usize,
        root: &Machine,
        full: &Machine,
        ws: &mut WalkStates,
        out: &mut [bool],
    ) {
        // Ids that start a key of the map on top read its used keys, which the cache keys
        // below the last level leave out (`Machine::cache_key`): their decisions go there.
        let keys = root.top_takes_keys();
        let WalkStates {
            states,
            local,
            deferred,
            deepest,
            ..
        } = ws;
        // states[d]: the machine after the first d base ids of the current entry's sequence;
        // valid for d <= `valid`.
        let need = list.entries[lo..hi]
            .iter()
            .map(|e| e.len as usize + 1)
            .max()
            .unwrap_or(1);
        while states.len() < need {
            states.push(root.clone());
        }
        states[0].copy_from(root);
        let mut valid = 0usize;
        let mut i = lo;
        while i < hi {
            let e = &list.entries[i];
            let seq = list.seq(e);
            let at_least = if keys && seq[0] <= crate::base::STR_END {
                usize::MAX
            } else {
                1
            };
            let mut d = if i == lo {
                0
            } else {
                (e.lcp as usize).min(valid)
            };
            let mut refused = None;
            while d < seq.len() {
                let (done, rest) = states.split_at_mut(d + 1);
                let cur = &mut done[d];
                Self::make_exact(cur, full);
                let next = &mut rest[0];
                if cur.is_done() {
                    refused = Some((d, Self::level(cur, full).max(at_least)));
                    break;
                }
                next.copy_from(cur);
                let err = next.step(seq[d]).is_err();
                *deepest = (*deepest).max(next.deepest_checked());
                if err {
                    let level = Self::level(cur, full).max(Self::level(next, full));
                    refused = Some((d, level.max(at_least)));
                    break;
                }
                d += 1;
            }
            match refused {
                Some((d, level)) => {
                    // Every following entry that shares the refused prefix is refused too.
                    valid = d;
                    let start = i;
                    i += 1;
                    while i < hi && list.entries[i].lcp as usize > d {
                        i += 1;
                    }
                    if level > 1 {
                        let range = (tag, start as u32, i as u32);
                        deferred.push(Decision {
                            range,
                            level,
                            accepted: None,
                        });
                    }
                }
                None => {
                    valid = seq.len();
                    let (ok, level) = Self::tail_ok(e, &mut states[seq.len()], full, deepest);
                    let level = level.max(at_least);
                    if ok {
                        out[e.id as usize] = true;
                    }
                    if level > 1 {
                        deferred.push(Decision {
                            range: (tag, i as u32, i as u32 + 1),
                            level,
                            accepted: ok.then_some(e.id),
                        });
                    } else if ok {
                        local.push(e.id);
                    }
                    i += 1;
                }
            }
        }
    }

    /// How many of `full`'s top frames what `m` decided may depend on (see `LEVELS`): 1 while
    /// the walk has not popped the top frame, else the frames copied (2 at least: whether
    /// frames lie below is part of those keys).
    pub(super) fn level(m: &Machine, full: &Machine) -> usize {
        if m.floor() >= full.depth() {
            1
        } else {
            full.depth().saturating_sub(m.frames_below()).max(2)
        }
    }

    /// A walk's copy holds only the top frames: bring back frames of `full` when it holds
    /// fewer than a step reads.
    pub(super) fn make_exact(m: &mut Machine, full: &Machine) {
        while !m.is_exact() {
            if !m.deepen(full, 2) {
                break;
            }
        }
    }

    /// Whether the machine `m`, having accepted the walked part of `e`, accepts its tail (a
    /// string's bytes, maybe `STR_END`); and the level of that decision (see `level`).
    pub(super) fn tail_ok(
        e: &WalkEntry,
        m: &mut Machine,
        full: &Machine,
        deepest: &mut usize,
    ) -> (bool, usize) {
        if e.tail.is_empty() && !e.tail_ends {
            return (true, Self::level(m, full));
        }
        Self::make_exact(m, full);
        if let Some(ts) = m.trivial_string_top().filter(|ts| !ts.continuing) {
            // A fresh unconstrained string: only UTF-8, its context and its exclusions matter.
            let ok = e.tail_utf8_ok
                && (!e.tail_ends || (ts.context_end_ok && !ts.excluded.contains(&e.tail)));
            return (ok, Self::level(m, full));
        }
        let mut m = m.clone();
        let end = e.tail_ends.then_some(crate::base::STR_END);
        for b in e.tail.iter().map(|&b| b as u32).chain(end) {
            Self::make_exact(&mut m, full);
            let refused = m.is_done() || m.step(b).is_err();
            *deepest = (*deepest).max(m.deepest_checked());
            if refused {
                return (false, Self::level(&m, full));
            }
        }
        (true, Self::level(&m, full))
    }
}
