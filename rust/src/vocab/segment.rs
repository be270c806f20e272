//! Cutting a base stream into words, shared by `apply` and training so that both see exactly
//! the same words (see [`super::MergeScope`]).

use super::{classify, Class, MergeScope, STR_END};

pub enum Piece<'a> {
    /// A sequence the merges may join (never empty).
    Word(&'a [u32]),
    /// An id that stays as it is (a dictionary id in the non-`across` scopes, a structural id in
    /// the `strings` scope, `FALLBACK`, a non-base id).
    Single(u32),
}

/// Maps the byte ids of a whole content to its dictionary id (second argument: scratch space).
pub type DictLookup<'a> = &'a dyn Fn(&[u32], &mut Vec<u8>) -> Option<u32>;

/// Cuts `base` into pieces and calls `emit` for each, in order. `dict` maps the byte ids of a
/// whole content (without its `STR_END`) to a dictionary id; its second argument is scratch
/// space. `word` is scratch space for words that are assembled (structural prefixes).
pub fn segment(
    base: &[u32],
    scope: MergeScope,
    base_size: u32,
    dict: DictLookup<'_>,
    word: &mut Vec<u32>,
    emit: &mut dyn FnMut(Piece<'_>),
) {
    let mut scratch = Vec::new();
    word.clear();
    let n = base.len();
    let mut i = 0;
    // Spans only: the pending word already holds content (a structural id ends it).
    let mut has_content = false;
    // Emits the pending structural run / prefix, if any.
    fn flush(word: &mut Vec<u32>, emit: &mut dyn FnMut(Piece<'_>)) {
        match word.len() {
            0 => {}
            1 => emit(Piece::Single(word[0])),
            _ => emit(Piece::Word(word)),
        }
        word.clear();
    }
    while i < n {
        match classify(base[i], base_size) {
            Class::Byte | Class::StrEnd => {
                let mut j = i;
                while j < n && base[j] < STR_END {
                    j += 1;
                }
                let closed = j < n && base[j] == STR_END;
                // A closed content is `base[i..=j]`; an open one (only in truncated or
                // malformed streams) is `base[i..j]` and never a dictionary hit.
                let dict_id = if closed {
                    dict(&base[i..j], &mut scratch)
                } else {
                    None
                };
                let end = if closed { j + 1 } else { j };
                match (scope, dict_id) {
                    (MergeScope::Document, d) => match d {
                        Some(d) => word.push(d),
                        None => word.extend_from_slice(&base[i..end]),
                    },
                    (MergeScope::Spans, d) => {
                        match d {
                            Some(d) => word.push(d),
                            None => word.extend_from_slice(&base[i..end]),
                        }
                        has_content = true;
                        if !closed {
                            flush(word, emit);
                            has_content = false;
                        }
                    }
                    (MergeScope::Across, Some(d)) => {
                        word.push(d);
                        flush(word, emit);
                    }
                    (MergeScope::Across, None) => {
                        if word.is_empty() {
                            emit_word(&base[i..end], emit);
                        } else {
                            word.extend_from_slice(&base[i..end]);
                            flush(word, emit);
                        }
                    }
                    (_, Some(d)) => {
                        flush(word, emit);
                        emit(Piece::Single(d));
                    }
                    (_, None) => {
                        flush(word, emit);
                        emit_word(&base[i..end], emit);
                    }
                }
                i = end;
            }
            Class::Struct => {
                if has_content {
                    // Spans: a structural id after content starts the next word.
                    flush(word, emit);
                    has_content = false;
                }
                if scope == MergeScope::Strings {
                    emit(Piece::Single(base[i]));
                } else {
                    word.push(base[i]);
                }
                i += 1;
            }
            Class::Boundary => {
                flush(word, emit);
                has_content = false;
                emit(Piece::Single(base[i]));
                i += 1;
            }
        }
    }
    flush(word, emit);
}

fn emit_word(w: &[u32], emit: &mut dyn FnMut(Piece<'_>)) {
    if w.len() == 1 {
        emit(Piece::Single(w[0]));
    } else {
        emit(Piece::Word(w));
    }
}
