//! The trained vocabulary over base tokens: a dictionary of frequent whole values and merges
//! (BPE, pruned), an explicit versioned id layout, and the versioned tokenizer file.
//!
//! # Id layout (vocabulary layout version 1)
//!
//! | ids | what |
//! | --- | --- |
//! | `[0, base_size)` | base ids of `docs/token-format.md`; `base_size = 268 + n_sel` depends on the schema |
//! | `[base_size, merge_start)` | dictionary ids: id `base_size + i` expands to `bytes(dictionary[i]) STR_END` |
//! | `[merge_start, pad)` | merge ids: merge `r` is id `merge_start + r` and expands to the concatenated expansions of its parts (two for ranked merges, two or more for the shortest encoding), all defined before it |
//! | `pad, bos, eos` | `vocab_size - 3`, `- 2`, `- 1`; never produced by [`Vocab::apply`], never part of a merge |
//! | `[vocab_size, vocab_size + n_positions)` | position ids of the window format ([`Vocab::position_id`]) |
//!
//! Everything is below 65,536 (checked), so token streams are `uint16`. Every non-base,
//! non-special id has a fixed expansion into base ids ([`Vocab::expansion`]), so decoding is
//! "expand, then decode base ids", and the matcher can test an id by walking its expansion.
//!
//! # Canonical encoding ([`Vocab::apply`])
//!
//! In the base stream, BYTE ids (0..=255) appear only inside strings, keys and number texts, and
//! each such *content* ends with `STR_END` (256). So a maximal run of BYTEs followed by `STR_END`
//! is exactly one value, found without the schema. `apply` cuts the stream into *words*
//! according to the vocabulary's [`MergeScope`], then spells each word by its [`Encoding`]:
//! - [`Encoding::Shortest`] (the default): the fewest ids whose expansions spell the word,
//!   ties to the longest id first ([`shortest`]): a dynamic program over a trie of all
//!   expansions, `O(n * longest match)`, with words cut where no id can span and recurring
//!   pieces memoized per thread;
//! - [`Encoding::RankedMerges`] (classic BPE, the first layout): each content that is a
//!   dictionary entry becomes its dictionary id, then the merges apply inside each word,
//!   lowest rank first, leftmost first ([`bpe_apply`]).
//!
//! `FALLBACK` (260) and any id that is not a base id are word boundaries and never merged:
//! the matcher never allows `FALLBACK`, so a merge containing it would be a dead id.
//!
//! # Training ([`train_grouped`], [`train`])
//!
//! 1. Count whole contents over all streams (in parallel) and choose the dictionary
//!    ([`DictScoring`]).
//! 2. Cut every stream into words (dictionary applied), count identical words once with a
//!    multiplicity, and learn merges with incremental pair counts over a linked list of symbols,
//!    a lazy max-heap and per-pair occurrence lists: each merge costs the number of its
//!    occurrences, not the length of the words it touches. Ties go to the smaller pair
//!    `(left, right)`, so training is deterministic (and independent of input order).
//! 3. With group ids (repositories), pair counts and dictionary counts are summed per group
//!    through a concave weighting ([`weighting`]): 150 versions of one repository's script
//!    count far less than 150 repositories using a value.
//! 4. For the shortest encoding, more merges than the budget are learnt, then the tokens whose
//!    loss costs least are pruned away ([`prune`]) and the kept merges are re-spelt.
//!
//! # File ([`file_format`])
//!
//! One JSON file: format name and version, name, schema and registry, layout, merge scope,
//! encoding, dictionary, merges, training metadata, and a SHA-256 content hash (the
//! tokenizer's identity).
//!
//! # Decisions and measurements
//!
//! See docs/vocabulary-decisions.md for the variants tried and their numbers.

pub mod bpe_apply;
pub mod bpe_train;
pub mod dictionary;
pub mod file_format;
mod pair_map;
mod piece_cache;
pub mod prune;
// Public but hidden: the corpus experiments (rust/tests/vocab_experiments.rs) break the
// held-out cost down by word; not part of the supported API.
#[doc(hidden)]
pub mod segment;
pub mod shortest;
pub mod weighting;
mod word_cache;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::base::CONTENT_REF;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use bpe_train::{train, train_grouped, DictScoring, TrainConfig, TrainReport};
pub use file_format::TokenizerFile;
pub use weighting::Weighting;

use bpe_apply::MergeTable;

/// Version of the id layout described in the module docs. Stored in the tokenizer file.
pub const VOCAB_LAYOUT_VERSION: u32 = 1;
/// Version of the base token format (`docs/token-format.md`) this vocabulary is built on.
pub const TOKEN_LAYOUT_VERSION: u32 = 1;

/// Base ids this module relies on (`docs/token-format.md`, layout version 1).
pub const STR_END: u32 = 256;
pub const FALLBACK: u32 = 260;
/// First `SEL(k)` id; `base_size = FIRST_SEL + n_sel`.
pub const FIRST_SEL: u32 = 268;
/// All ids, including position ids, must fit in `uint16`.
pub const MAX_IDS: u32 = 65_536;

/// Default number of position ids for the window format. See [`Vocab::position_id`].
pub const DEFAULT_N_POSITIONS: u32 = 4096;
/// Start offsets below this get one position id each.
const EXACT_POSITIONS: u32 = 2048;
/// Above `EXACT_POSITIONS`, one position id covers this many start offsets.
const POSITION_BUCKET: u32 = 16;

/// Which neighbouring tokens a merge may join. Stored in the file: it changes `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeScope {
    /// Words are the contents (`BYTE* STR_END`); structural ids are never merged.
    Strings,
    /// Contents, and separately maximal runs of structural ids (`SEL`, `END`, `ARR_END`, ...).
    StructureRuns,
    /// A word is `structural* BYTE* STR_END`: a content together with the structural ids before
    /// it (so `SEL(uses) END "actions/checkout@v4"` can become one id). Words end after each
    /// `STR_END` or dictionary id.
    Across,
    /// A word is `structural* content+`: structural ids, then every content up to the next
    /// structural id, so merges also join a value with the next one (a map key with its value,
    /// consecutive strings of an array) across `STR_END`.
    Spans,
    /// No cuts: a word is everything between boundary ids (`FALLBACK`), usually the whole
    /// document. Training sees almost no repeated words, so it needs memory for every base id.
    Document,
}

impl MergeScope {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeScope::Strings => "strings",
            MergeScope::StructureRuns => "structure-runs",
            MergeScope::Across => "across",
            MergeScope::Spans => "spans",
            MergeScope::Document => "document",
        }
    }
}

/// How [`Vocab::apply`] turns a word into ids. Stored in the file: it changes the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The dictionary for whole values, then the merges by rank (classic BPE).
    RankedMerges,
    /// The fewest ids whose expansions spell the word ([`shortest`]); ties go to the longest
    /// id first. Dictionary and merge ids are just tokens with fixed expansions.
    Shortest,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::RankedMerges => "ranked-merges",
            Encoding::Shortest => "shortest",
        }
    }
}

/// A vocabulary could not be built or a tokenizer file could not be read. `pointer` is a JSON
/// pointer into the tokenizer file (or into the training configuration), `""` for the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabError {
    pub pointer: String,
    pub message: String,
}

impl VocabError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        VocabError {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for VocabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "tokenizer vocabulary error: {}", self.message)
        } else {
            write!(
                f,
                "tokenizer vocabulary error at {}: {}",
                self.pointer, self.message
            )
        }
    }
}

impl std::error::Error for VocabError {}

impl From<VocabError> for crate::error::SchemaError {
    fn from(e: VocabError) -> Self {
        crate::error::SchemaError::new(e.pointer, format!("tokenizer file: {}", e.message))
    }
}

/// [`Vocab::text_only`]'s table: bits 32.. of an entry, the text's length and two flags.
const TEXT_LEN: u64 = (1 << 30) - 1;
const TEXT_PLAIN: u64 = 1 << 30;
const TEXT_ASCII: u64 = 1 << 31;

/// The text of an id whose whole expansion is string bytes ([`Vocab::text_only`]).
#[derive(Clone, Copy, Debug)]
pub struct IdText<'a> {
    pub bytes: &'a [u8],
    /// All below 0x80.
    pub ascii: bool,
    /// None needs escaping in a JSON string (no `"`, `\\` or control character).
    pub plain: bool,
}

/// The trained vocabulary: id layout, dictionary, merges, expansions. Immutable, `Send + Sync`.
#[derive(Clone)]
pub struct Vocab {
    base_size: u32,
    scope: MergeScope,
    dictionary: Vec<String>,
    dict_lookup: HashMap<Box<[u8]>, u32>,
    /// Longest dictionary entry in bytes: longer contents skip the lookup.
    dict_max_len: usize,
    /// The parts of each merge: two with ranked merges, two or more with the shortest encoding.
    merges: Vec<Vec<u32>>,
    /// Ranks of the pair merges ([`Encoding::RankedMerges`] only).
    table: MergeTable,
    encoding: Encoding,
    /// The trie of [`Encoding::Shortest`] (empty for ranked merges).
    shortest: shortest::ShortestTable,
    /// Expansions of all ids in `[0, pad)`, flattened (a base id expands to itself).
    exp_offsets: Vec<u32>,
    exp_data: Vec<u32>,
    /// `exp_data` as bytes (base ids below 256; 0 elsewhere): the decoder appends a run of
    /// string bytes in one copy instead of stepping base ids.
    exp_bytes: Vec<u8>,
    /// Per id whose whole expansion is string bytes: where they start in `exp_bytes` (low 32
    /// bits), how many (`TEXT_LEN`) and `TEXT_PLAIN`/`TEXT_ASCII`, shifted up by 32; 0 for
    /// other ids.
    // One load per id in the decoder's hot loop: from a table of runs and `exp_offsets` it was
    // three, each a likely cache miss beside the output it writes (Rust decode of the corpus
    // 0.84 -> 0.80 s).
    text: Vec<u64>,
    n_positions: u32,
}

impl fmt::Debug for Vocab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vocab")
            .field("base_size", &self.base_size)
            .field("scope", &self.scope)
            .field("dictionary", &self.dictionary.len())
            .field("merges", &self.merges.len())
            .field("encoding", &self.encoding)
            .field("vocab_size", &self.vocab_size())
            .field("n_positions", &self.n_positions)
            .finish()
    }
}

impl PartialEq for Vocab {
    fn eq(&self, other: &Self) -> bool {
        self.base_size == other.base_size
            && self.scope == other.scope
            && self.dictionary == other.dictionary
            && self.merges == other.merges
            && self.encoding == other.encoding
            && self.n_positions == other.n_positions
    }
}
impl Eq for Vocab {}

/// What a token of the base stream is, for segmentation and validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Byte,
    StrEnd,
    /// A structural base id that merges may join (`END`, `ARR_END`, `ITEM`, `G_*`, `SEL(k)`).
    Struct,
    /// `FALLBACK` or an id outside the base range: never merged.
    Boundary,
}

#[inline]
pub(crate) fn classify(id: u32, base_size: u32) -> Class {
    if id < STR_END {
        Class::Byte
    } else if id == STR_END {
        Class::StrEnd
    } else if id == FALLBACK || id >= base_size {
        Class::Boundary
    } else {
        Class::Struct
    }
}

impl Vocab {
    /// A vocabulary without dictionary or merges: `apply` is the identity.
    pub fn base_only(base_size: u32, n_positions: u32) -> Result<Vocab, VocabError> {
        Vocab::build(
            base_size,
            MergeScope::Strings,
            Encoding::RankedMerges,
            Vec::new(),
            Vec::new(),
            n_positions,
        )
    }

    /// Build and validate a vocabulary with ranked pair merges ([`Encoding::RankedMerges`]).
    /// Merge `r` gets id `base_size + dictionary.len() + r`. See [`Vocab::build`].
    pub fn new(
        base_size: u32,
        scope: MergeScope,
        dictionary: Vec<String>,
        merges: Vec<impl Into<Vec<u32>>>,
        n_positions: u32,
    ) -> Result<Vocab, VocabError> {
        let merges = merges.into_iter().map(Into::into).collect();
        Vocab::build(
            base_size,
            scope,
            Encoding::RankedMerges,
            dictionary,
            merges,
            n_positions,
        )
    }

    /// Build and validate a vocabulary. Merge `r` gets id `base_size + dictionary.len() + r`
    /// and expands to the concatenated expansions of its parts: exactly two parts with
    /// [`Encoding::RankedMerges`] (a BPE merge), two or more with [`Encoding::Shortest`]
    /// (pruning can remove the parts a BPE merge was built from; the token is then spelt
    /// with the ids that remain).
    ///
    /// Checks: `base_size >= 268` (the fixed base ids); every id (positions included) below
    /// 65,536; dictionary entries non-empty and distinct; merge parts defined before the
    /// merge, not special, not `FALLBACK`; no duplicate merge (ranked) or no two trained ids
    /// with the same expansion (shortest: the second could never be produced); and every
    /// merge is a sequence some word of `scope` can contain (otherwise it would be a dead id).
    pub fn build(
        base_size: u32,
        scope: MergeScope,
        encoding: Encoding,
        dictionary: Vec<String>,
        merges: Vec<Vec<u32>>,
        n_positions: u32,
    ) -> Result<Vocab, VocabError> {
        if base_size < FIRST_SEL {
            return Err(VocabError::new(
                "/layout/base_size",
                format!("base_size {base_size} is below the {FIRST_SEL} fixed base ids"),
            ));
        }
        let total = base_size as u64 + dictionary.len() as u64 + merges.len() as u64 + 3;
        if total + n_positions as u64 > MAX_IDS as u64 {
            return Err(VocabError::new(
                "/layout",
                format!(
                    "{total} ids plus {n_positions} position ids do not fit in uint16 ({MAX_IDS})"
                ),
            ));
        }
        let mut dict_lookup = HashMap::with_capacity(dictionary.len());
        let mut dict_max_len = 0;
        for (i, s) in dictionary.iter().enumerate() {
            if s.is_empty() {
                return Err(VocabError::new(
                    format!("/dictionary/{i}"),
                    "empty dictionary entry (an empty string is already one id, STR_END)",
                ));
            }
            let key: Box<[u8]> = s.as_bytes().into();
            if dict_lookup.insert(key, base_size + i as u32).is_some() {
                return Err(VocabError::new(
                    format!("/dictionary/{i}"),
                    format!("duplicate dictionary entry {s:?}"),
                ));
            }
            dict_max_len = dict_max_len.max(s.len());
        }
        let dict_end = base_size + dictionary.len() as u32;
        let n_ids = dict_end as usize + merges.len();
        let mut exp_offsets = Vec::with_capacity(n_ids + 1);
        let mut exp_data: Vec<u32> = (0..base_size).collect();
        exp_offsets.extend(0..=base_size);
        for s in &dictionary {
            exp_data.extend(s.bytes().map(u32::from));
            exp_data.push(STR_END);
            exp_offsets.push(exp_data.len() as u32);
        }
        let ranked = encoding == Encoding::RankedMerges;
        let mut seen = pair_map::PairMap::default();
        for (r, parts) in merges.iter().enumerate() {
            let id = dict_end + r as u32;
            if parts.len() < 2 || (ranked && parts.len() != 2) {
                let want = if ranked {
                    "2 (ranked merges)"
                } else {
                    "at least 2"
                };
                return Err(VocabError::new(
                    format!("/merges/{r}"),
                    format!("a merge has {} parts, not {want}", parts.len()),
                ));
            }
            for (side, &part) in parts.iter().enumerate() {
                if part >= id {
                    return Err(VocabError::new(
                        format!("/merges/{r}/{side}"),
                        format!("merge part {part} is not defined before merge id {id}"),
                    ));
                }
                if part == FALLBACK {
                    return Err(VocabError::new(
                        format!("/merges/{r}/{side}"),
                        "FALLBACK is never merged (the matcher never allows it)",
                    ));
                }
            }
            if ranked
                && seen
                    .insert(pair_map::key(parts[0], parts[1]), r as u32)
                    .is_some()
            {
                return Err(VocabError::new(
                    format!("/merges/{r}"),
                    format!("duplicate merge {parts:?}"),
                ));
            }
            let start = exp_data.len();
            for &part in parts {
                let (s, e) = (exp_offsets[part as usize], exp_offsets[part as usize + 1]);
                exp_data.extend_from_within(s as usize..e as usize);
            }
            if let Err(msg) = check_word_shape(&exp_data[start..], scope, base_size) {
                return Err(VocabError::new(
                    format!("/merges/{r}"),
                    format!(
                        "merge {parts:?} can never occur with merge scope {}: {msg}",
                        scope.as_str()
                    ),
                ));
            }
            // Ranked merges in the `strings` and `structure-runs` scopes: a dictionary id is a
            // word on its own. (The shortest encoding spells words in base ids, so any id
            // with a fitting expansion can be used.)
            let joins_dict = matches!(
                scope,
                MergeScope::Across | MergeScope::Spans | MergeScope::Document
            );
            if ranked && !joins_dict && parts.iter().any(|&p| (base_size..dict_end).contains(&p)) {
                return Err(VocabError::new(
                    format!("/merges/{r}"),
                    format!(
                        "merge {parts:?} joins a dictionary id, which is a whole word in scope {}",
                        scope.as_str()
                    ),
                ));
            }
            exp_offsets.push(exp_data.len() as u32);
        }
        let exp = |id: usize| &exp_data[exp_offsets[id] as usize..exp_offsets[id + 1] as usize];
        let (table, shortest) = match encoding {
            Encoding::RankedMerges => {
                let pairs: Vec<[u32; 2]> = merges.iter().map(|p| [p[0], p[1]]).collect();
                (
                    MergeTable::new(&pairs, dict_end),
                    shortest::ShortestTable::default(),
                )
            }
            Encoding::Shortest => {
                let mut by_exp: HashMap<&[u32], usize> = HashMap::with_capacity(n_ids);
                for id in base_size as usize..n_ids {
                    if let Some(first) = by_exp.insert(exp(id), id) {
                        let (ptr, what) = if id < dict_end as usize {
                            (format!("/dictionary/{}", id - base_size as usize), "entry")
                        } else {
                            (format!("/merges/{}", id - dict_end as usize), "merge")
                        };
                        return Err(VocabError::new(
                            ptr,
                            format!(
                                "{what} (id {id}) spells the same base ids as id {first}, so \
                                 the shortest encoding could never produce it"
                            ),
                        ));
                    }
                }
                let t =
                    shortest::ShortestTable::new(n_ids as u32, base_size, |id| exp(id as usize));
                (MergeTable::default(), t)
            }
        };
        let exp_bytes: Vec<u8> = exp_data
            .iter()
            .map(|&t| u8::try_from(t).unwrap_or(0))
            .collect();
        let text = (0..n_ids)
            .map(|id| {
                let e = exp(id);
                let n = e.len() as u64;
                if n == 0 || n > TEXT_LEN || e.iter().any(|&t| t >= 256) {
                    return 0;
                }
                let ascii = e.iter().all(|&t| t < 0x80);
                let plain = e
                    .iter()
                    .all(|&t| t >= 0x20 && t != u32::from(b'"') && t != u32::from(b'\\'));
                let flags =
                    n | if plain { TEXT_PLAIN } else { 0 } | if ascii { TEXT_ASCII } else { 0 };
                u64::from(exp_offsets[id]) | flags << 32
            })
            .collect();
        Ok(Vocab {
            base_size,
            scope,
            dictionary,
            dict_lookup,
            dict_max_len,
            merges,
            table,
            encoding,
            shortest,
            exp_offsets,
            exp_data,
            exp_bytes,
            text,
            n_positions,
        })
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub fn base_size(&self) -> u32 {
        self.base_size
    }
    /// Number of `SEL(k)` ids of the schema this vocabulary was built for.
    pub fn n_sel(&self) -> u32 {
        self.base_size - FIRST_SEL
    }
    pub fn scope(&self) -> MergeScope {
        self.scope
    }
    pub fn dictionary(&self) -> &[String] {
        &self.dictionary
    }
    pub fn merges(&self) -> &[Vec<u32>] {
        &self.merges
    }
    /// First dictionary id (equal to `base_size`).
    pub fn dict_start(&self) -> u32 {
        self.base_size
    }
    /// First merge id.
    pub fn merge_start(&self) -> u32 {
        self.base_size + self.dictionary.len() as u32
    }
    pub fn pad_id(&self) -> u32 {
        self.merge_start() + self.merges.len() as u32
    }
    pub fn bos_id(&self) -> u32 {
        self.pad_id() + 1
    }
    pub fn eos_id(&self) -> u32 {
        self.pad_id() + 2
    }
    /// Content ids plus the three specials; position ids are above this.
    pub fn vocab_size(&self) -> u32 {
        self.pad_id() + 3
    }
    pub fn n_positions(&self) -> u32 {
        self.n_positions
    }

    /// The dictionary id of a whole value, if it has one.
    pub fn dict_id(&self, bytes: &[u8]) -> Option<u32> {
        if bytes.len() > self.dict_max_len {
            return None;
        }
        self.dict_lookup.get(bytes).copied()
    }

    /// The base ids an id stands for: itself for a base id, its expansion for a dictionary or
    /// merge id, `None` for PAD/BOS/EOS, position ids and anything out of range.
    pub fn expansion(&self, id: u32) -> Option<&[u32]> {
        let i = id as usize;
        if i + 1 >= self.exp_offsets.len() {
            return None;
        }
        Some(&self.exp_data[self.exp_offsets[i] as usize..self.exp_offsets[i + 1] as usize])
    }

    /// [`Vocab::expansion`] as bytes: base ids below 256 as themselves, others as 0.
    #[inline]
    pub fn expansion_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (&start, &end) = (self.exp_offsets.get(i)?, self.exp_offsets.get(i + 1)?);
        self.exp_bytes.get(start as usize..end as usize)
    }

    /// The text of an id whose whole expansion is string bytes (most of a trained
    /// vocabulary's ids); `None` for any other id.
    #[inline]
    pub fn text_only(&self, id: u32) -> Option<IdText<'_>> {
        let t = *self.text.get(id as usize)?;
        let (start, flags) = (t as u32 as usize, t >> 32);
        let n = (flags & TEXT_LEN) as usize;
        if n == 0 {
            return None;
        }
        Some(IdText {
            bytes: self.exp_bytes.get(start..start + n)?,
            ascii: flags & TEXT_ASCII != 0,
            plain: flags & TEXT_PLAIN != 0,
        })
    }

    /// Final ids -> base ids, appended to `out`. An id without expansion (PAD/BOS/EOS, a
    /// position id, anything `>= vocab_size`) is an error `(index into ids, message)`; `out`
    /// then holds the expansions of the ids before it.
    pub fn expand(&self, ids: &[u32], out: &mut Vec<u32>) -> Result<(), (usize, String)> {
        for (i, &id) in ids.iter().enumerate() {
            if id < self.base_size {
                out.push(id);
                continue;
            }
            match self.expansion(id) {
                Some(e) => out.extend_from_slice(e),
                None => return Err((i, self.describe_unexpandable(id))),
            }
        }
        Ok(())
    }

    fn describe_unexpandable(&self, id: u32) -> String {
        if id == self.pad_id() {
            format!("PAD ({id}) has no base expansion")
        } else if id == self.bos_id() {
            format!("BOS ({id}) has no base expansion")
        } else if id == self.eos_id() {
            format!("EOS ({id}) has no base expansion")
        } else if self.is_position_id(id) {
            format!("position id {id} has no base expansion (window format)")
        } else {
            format!("id {id} is out of range (vocab_size {})", self.vocab_size())
        }
    }

    /// Base ids -> final ids: the canonical encoding (see the module docs). Deterministic and
    /// `O(n log n)`. Ids that are not base ids are passed through unchanged.
    pub fn apply(&self, base: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(base.len() / 2 + 8);
        self.apply_into(base, &mut out);
        out
    }

    /// [`Vocab::apply`], appending to `out`.
    pub fn apply_into(&self, base: &[u32], out: &mut Vec<u32>) {
        if self.encoding == Encoding::Shortest {
            return self.apply_shortest(base, out);
        }
        let mut ws = bpe_apply::Workspace::default();
        let mut word = Vec::new();
        let lookup = |bytes: &[u32], scratch: &mut Vec<u8>| -> Option<u32> {
            if bytes.len() > self.dict_max_len {
                return None;
            }
            scratch.clear();
            scratch.extend(bytes.iter().map(|&b| b as u8));
            self.dict_lookup.get(scratch.as_slice()).copied()
        };
        segment::segment(
            base,
            self.scope,
            self.base_size,
            &lookup,
            &mut word,
            &mut |piece| match piece {
                segment::Piece::Single(t) => out.push(t),
                segment::Piece::Word(w) => {
                    let start = out.len();
                    out.extend_from_slice(w);
                    self.table.merge_tail(out, start, &mut ws);
                }
            },
        );
    }

    /// [`Vocab::apply`] of an encoder's output with contents by reference
    /// (`Encoder::with_contents`): `items` holds base ids and `CONTENT_REF + k`
    /// for the bytes of `contents[k]` followed by `STR_END`. The same ids as `apply` of the
    /// spelt-out stream, appended to `out`.
    ///
    /// Why: with the default layout (shortest encoding, words across structure) a word is the
    /// structural ids before a content plus the content, and most words recur, so a word is
    /// looked up by its text in place (`word_cache`). Spelling every byte out as a `u32`, then
    /// scanning, hashing and comparing those, cost more than the rest of `apply` on a hit.
    // Measured on the whole corpus (33,145 documents, 105.6M base ids, `fast` profile, dev
    // box): `encode_json` 1.29 s with words memoized as `u32` keys, 1.16-1.21 s this way.
    pub fn apply_with_contents(&self, items: &[u32], contents: &[&str], out: &mut Vec<u32>) {
        let spelt_out = |out: &mut Vec<u32>| {
            let mut base = Vec::with_capacity(items.len());
            for &x in items {
                match x.checked_sub(CONTENT_REF).map(|k| contents.get(k as usize)) {
                    Some(Some(t)) => {
                        base.extend(t.bytes().map(u32::from));
                        base.push(STR_END);
                    }
                    // Not a reference (or a dangling one: passed through, as any non-base id).
                    _ => base.push(x),
                }
            }
            self.apply_into(&base, out);
        };
        if self.encoding != Encoding::Shortest || self.scope != MergeScope::Across {
            return spelt_out(out);
        }
        let start = out.len();
        let mut sc = shortest::Scratch::default();
        let mut prefix: Vec<u32> = Vec::new();
        let flush = |prefix: &mut Vec<u32>, out: &mut Vec<u32>, sc: &mut shortest::Scratch| {
            match prefix.len() {
                0 => {}
                1 => out.push(prefix[0]),
                _ => self.shortest.encode_word(prefix, out, sc),
            }
            prefix.clear();
        };
        for &x in items {
            if x >= CONTENT_REF {
                let Some(text) = contents.get((x - CONTENT_REF) as usize) else {
                    out.truncate(start);
                    return spelt_out(out);
                };
                self.shortest
                    .encode_text_word(&prefix, text.as_bytes(), out, &mut sc);
                prefix.clear();
                continue;
            }
            match classify(x, self.base_size) {
                Class::Struct => prefix.push(x),
                Class::Boundary => {
                    flush(&mut prefix, out, &mut sc);
                    out.push(x);
                }
                // Contents spelt out byte by byte: not what the encoder gives; do it the long way.
                Class::Byte | Class::StrEnd => {
                    out.truncate(start);
                    return spelt_out(out);
                }
            }
        }
        flush(&mut prefix, out, &mut sc);
    }

    /// [`Encoding::Shortest`]: the same words as ranked merges (cut without dictionary
    /// lookups: a dictionary hit never moves a word boundary), each spelt with the fewest ids.
    fn apply_shortest(&self, base: &[u32], out: &mut Vec<u32>) {
        let mut sc = shortest::Scratch::default();
        let mut word = Vec::new();
        segment::segment(
            base,
            self.scope,
            self.base_size,
            &|_, _| None,
            &mut word,
            &mut |piece| match piece {
                segment::Piece::Single(t) => out.push(t),
                segment::Piece::Word(w) => self.shortest.encode_word(w, out, &mut sc),
            },
        );
    }

    /// Position ids of the window format: `[position_id(start)] + ids[start..end]`.
    pub fn position_range(&self) -> (u32, u32) {
        (self.vocab_size(), self.vocab_size() + self.n_positions)
    }

    pub fn is_position_id(&self, id: u32) -> bool {
        let (lo, hi) = self.position_range();
        (lo..hi).contains(&id)
    }

    /// The position id of a window that starts at token offset `start`.
    ///
    /// Bucketing (with the default `n_positions = 4096`): offsets below 2,048 get one id each;
    /// from 2,048 on, one id covers 16 offsets (2,048 ids cover offsets up to 34,815); later
    /// offsets share the last id. Why: windows of the seed's 512-token context mostly start
    /// early (the median document is well under 2,048 TCT tokens), so exact ids go where the
    /// windows are; long documents still get an increasing, coarse position; and 8,192 +
    /// 4,096 ids stay far below 65,536. For `n_positions <= 2048` all ids are exact and later
    /// offsets share the last id.
    pub fn position_id(&self, start: usize) -> u32 {
        self.vocab_size() + position_bucket(start, self.n_positions)
    }

    /// The range of start offsets `[lo, hi)` a position id stands for (`hi = usize::MAX` for
    /// the last, open bucket), or `None` if `id` is not a position id.
    pub fn position_offsets(&self, id: u32) -> Option<(usize, usize)> {
        if !self.is_position_id(id) || self.n_positions == 0 {
            return None;
        }
        let b = id - self.vocab_size();
        let exact = EXACT_POSITIONS.min(self.n_positions);
        let lo = if b < exact {
            b as usize
        } else {
            (exact + (b - exact) * POSITION_BUCKET) as usize
        };
        let hi = if b + 1 == self.n_positions {
            usize::MAX
        } else if b < exact {
            lo + 1
        } else {
            lo + POSITION_BUCKET as usize
        };
        Some((lo, hi))
    }

    /// `[position_id(start)] + ids[start..end]` (the seed's window format), with `start` and
    /// `end` clamped to the sequence.
    pub fn extract_window(&self, ids: &[u32], start: usize, end: usize) -> Vec<u32> {
        let end = end.min(ids.len());
        let start = start.min(end);
        let mut w = Vec::with_capacity(end - start + 1);
        w.push(self.position_id(start));
        w.extend_from_slice(&ids[start..end]);
        w
    }
}

fn position_bucket(start: usize, n_positions: u32) -> u32 {
    if n_positions == 0 {
        return 0;
    }
    let exact = EXACT_POSITIONS.min(n_positions) as usize;
    let b = if start < exact {
        start as u64
    } else {
        exact as u64 + ((start - exact) / POSITION_BUCKET as usize) as u64
    };
    b.min(n_positions as u64 - 1) as u32
}

/// Checks that a merge expansion is a sequence that some word of `scope` can contain.
fn check_word_shape(exp: &[u32], scope: MergeScope, base_size: u32) -> Result<(), &'static str> {
    let classes: Vec<Class> = exp.iter().map(|&t| classify(t, base_size)).collect();
    if classes.contains(&Class::Boundary) {
        return Err("it contains a boundary id");
    }
    if let Some(p) = classes.iter().position(|&c| c == Class::StrEnd) {
        let inside = matches!(scope, MergeScope::Spans | MergeScope::Document);
        if !inside && p + 1 != classes.len() {
            return Err("STR_END is not its last id (words end after STR_END)");
        }
    }
    if scope == MergeScope::Document {
        return Ok(());
    }
    let has_struct = classes.contains(&Class::Struct);
    let has_content = classes.iter().any(|&c| c != Class::Struct);
    match scope {
        MergeScope::Strings if has_struct => Err("it contains a structural id"),
        MergeScope::StructureRuns if has_struct && has_content => {
            Err("it mixes structural ids and string content")
        }
        _ => {
            // Across and spans: structural ids only before the content.
            let first_content = classes.iter().position(|&c| c != Class::Struct);
            match first_content {
                Some(p) if classes[p..].contains(&Class::Struct) => {
                    Err("a structural id follows string content")
                }
                _ => Ok(()),
            }
        }
    }
}
