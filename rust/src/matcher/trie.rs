//! The trained ids as a trie of their base expansions, for walking over the machine.
//!
//! In the spirit of llguidance's `toktrie`: instead of testing each of the ~8k trained ids
//! against the grammar state on its own, the ids are laid out so that a walk visits them as a
//! trie, and the work for a shared prefix is done once. The trie is stored flat
//! (`WalkList`): the entries sorted by the base ids a walk steps through, each with the length
//! of the prefix it shares with the entry before (`lcp`). A walk keeps one machine state per
//! prefix length; moving to the next entry rewinds to its `lcp` and steps only the rest, and
//! when the machine refuses a prefix of length `d`, every following entry with `lcp > d` is
//! skipped at once (the subtree under that prefix). `first[b]` gives the entries whose
//! sequence starts with base id `b`, so a walk visits only the subtrees the machine allows.
//!
//! Two differences from a byte trie: the symbols are base ids (structural ids and string
//! bytes), and an entry's trailing string bytes (its `tail`) are not stepped at all: whether
//! they may follow is decided by UTF-8 tables and the string's end rules (`walk.rs`,
//! `tail_ok`). Which ids go into which list is decided in `tables.rs`.

/// Trained ids sorted by the base ids a walk steps through, so that the walk visits them
/// like a trie: consecutive entries share the machine states of their common prefix, and a
/// prefix the machine refuses rules out every entry that shares it at once.
#[derive(Default)]
pub(super) struct WalkList {
    pub(super) entries: Vec<WalkEntry>,
    /// The walked sequences, back to back.
    pub(super) seqs: Vec<u32>,
    /// `first[b]`: the range of `entries` whose sequence starts with base id `b`.
    pub(super) first: Vec<(u32, u32)>,
}

pub(super) struct WalkEntry {
    pub(super) id: u32,
    pub(super) start: u32,
    pub(super) len: u16,
    /// Length of the prefix shared with the previous entry.
    pub(super) lcp: u16,
    /// The rest of the expansion after the walked part: a string's bytes, maybe `STR_END`.
    pub(super) tail: Vec<u8>,
    pub(super) tail_ends: bool,
    /// The tail is valid UTF-8 as the start of a string (ending on a character boundary when
    /// it ends the string).
    pub(super) tail_utf8_ok: bool,
}

impl WalkList {
    /// `items`: (id, walked sequence, tail bytes, tail ends the string).
    pub(super) fn new(mut items: Vec<(u32, Vec<u32>, Vec<u8>, bool)>, n_base: usize) -> WalkList {
        items.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        let mut l = WalkList {
            first: vec![(0, 0); n_base],
            ..Default::default()
        };
        let mut prev: &[u32] = &[];
        for (i, (id, seq, tail, ends)) in items.iter().enumerate() {
            let lcp = prev.iter().zip(seq).take_while(|(a, b)| a == b).count();
            let mut u = Some(0u8);
            for &b in tail {
                u = u.and_then(|s| crate::strings::utf8_step(s, b));
            }
            l.entries.push(WalkEntry {
                id: *id,
                start: l.seqs.len() as u32,
                len: seq.len() as u16,
                lcp: lcp as u16,
                tail: tail.clone(),
                tail_ends: *ends,
                tail_utf8_ok: u.is_some_and(|s| !*ends || s == 0),
            });
            l.seqs.extend_from_slice(seq);
            if let Some(r) = l.first.get_mut(seq[0] as usize) {
                if r.1 == 0 {
                    r.0 = i as u32;
                }
                r.1 = i as u32 + 1;
            }
            prev = seq;
        }
        l
    }

    pub(super) fn seq(&self, e: &WalkEntry) -> &[u32] {
        &self.seqs[e.start as usize..e.start as usize + e.len as usize]
    }
}
