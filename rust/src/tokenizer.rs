//! The public facade: a compiled schema plus its vocabulary.
//!
//! Encoding is `document -> base ids (encode.rs) -> vocabulary ids (vocab::apply)`; decoding
//! is `ids -> base ids (vocab::expand) -> machine (machine.rs)`. The matcher drives the same
//! machine in strict mode and tests vocabulary ids through their base expansions.

use crate::compile::{compile, Graph};
use crate::encode::Encoder;
use crate::error::{DecodeError, EncodeError, SchemaError};
use crate::json::Json;
use crate::machine::{Machine, Mode};
use crate::vocab::{TokenizerFile, Vocab, DEFAULT_N_POSITIONS};
use serde_json::Value;
use std::sync::Arc;

/// The result of encoding one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids, without BOS/EOS.
    pub ids: Vec<u32>,
    /// JSON pointers of the subtrees that did not conform to the schema and were encoded
    /// through the generic fallback path (document order).
    pub fallbacks: Vec<String>,
}

/// The result of decoding: compact JSON of the first complete document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub json: String,
    /// Ids consumed (a leading BOS and a trailing EOS count as consumed).
    pub consumed: usize,
    /// Length of the input.
    pub total: usize,
}

struct Inner {
    graph: Arc<Graph>,
    file: TokenizerFile,
    hash: String,
    tables: VocabTables,
}

/// How many top frames the walk over trained ids starts from (`Machine::top_copy`), and its
/// cache is keyed by (`Machine::cache_key`); a walk that pops below them brings back frames
/// of the full machine (`Machine::deepen`), and what it decides there is not cached.
const CONTEXT_FRAMES: usize = 2;

/// (string spec address, automaton state) -> mask over trained ids.
type PatternCache = std::collections::HashMap<(usize, Vec<u32>), Arc<Vec<bool>>>;

/// The levels of the structural cache: how many of the machine's top frames a cached
/// decision may depend on. Level 1 is the top frame alone (`Machine::cache_key_top`), where
/// most decisions fall (an id that does not close the value on top); an id that closes it
/// depends on the frame below too (level 2), rarely on more (level 4); beyond that, ids are
/// walked at every step.
const LEVELS: [usize; 5] = [1, 2, 4, 8, usize::MAX];

/// Structural contexts by their normalised top frame: the mask.
type TopCache = std::collections::HashMap<crate::machine::FrameKey, Arc<CachedMask>>;
/// By normalised top frames (levels 2 and 4): the decisions deferred by the level before.
type DeepCache = std::collections::HashMap<crate::machine::FrameKey, Arc<CachedDeep>>;

/// At most this many entries per cache level (a few hundred bytes each, typically).
const STRUCT_CACHE_ENTRIES: usize = 100_000;

/// A range of walk entries: (list: 0 = strings, 1 = structural; first entry; end).
type EntryRange = (u8, u32, u32);

/// Where a cached mask's string-like ids come from.
enum StringPart {
    None,
    /// `VocabTables::string_masks[i]` over the trained ids.
    Table(usize),
    /// A constrained string's mask over the trained ids (`PatternCache`).
    Pattern(Arc<Vec<bool>>),
}

/// A structural context's mask at level 1: its string part, the ids set besides (base ids,
/// walked ids) and cleared (excluded values), and the walk entries deferred to level 2.
struct CachedMask {
    /// How much deeper than the context its walks nested (a hit needs room for that below
    /// `MAX_DEPTH`: the results assumed that no depth check fails).
    reach: usize,
    strings: StringPart,
    set: Vec<u32>,
    clear: Vec<u32>,
    redo: Vec<EntryRange>,
}

/// Decisions deferred to a level: the ids accepted there, and the ranges deferred further.
struct CachedDeep {
    reach: usize,
    ids: Vec<u32>,
    redo: Vec<EntryRange>,
}

/// A walk decision that needed more than the top frame.
struct Decision {
    range: EntryRange,
    level: usize,
    accepted: Option<u32>,
}

impl CachedMask {
    /// Write the string part into `out` (trained ids `first..end`; everything else false).
    fn fill_strings(strings: &StringPart, t: &VocabTables, out: &mut [bool]) {
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

    fn write(&self, t: &VocabTables, out: &mut [bool]) {
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
fn push_range(ranges: &mut Vec<EntryRange>, r: EntryRange) {
    match ranges.last_mut() {
        Some((t, _, h)) if *t == r.0 && *h == r.1 => *h = r.2,
        _ => ranges.push(r),
    }
}

/// Trained ids sorted by the base ids a walk steps through, so that the walk visits them
/// like a trie: consecutive entries share the machine states of their common prefix, and a
/// prefix the machine refuses rules out every entry that shares it at once.
#[derive(Default)]
struct WalkList {
    entries: Vec<WalkEntry>,
    /// The walked sequences, back to back.
    seqs: Vec<u32>,
    /// `first[b]`: the range of `entries` whose sequence starts with base id `b`.
    first: Vec<(u32, u32)>,
}

struct WalkEntry {
    id: u32,
    start: u32,
    len: u16,
    /// Length of the prefix shared with the previous entry.
    lcp: u16,
    /// The rest of the expansion after the walked part: a string's bytes, maybe `STR_END`.
    tail: Vec<u8>,
    tail_ends: bool,
    /// The tail is valid UTF-8 as the start of a string (ending on a character boundary when
    /// it ends the string).
    tail_utf8_ok: bool,
}

impl WalkList {
    /// `items`: (id, walked sequence, tail bytes, tail ends the string).
    fn new(mut items: Vec<(u32, Vec<u32>, Vec<u8>, bool)>, n_base: usize) -> WalkList {
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

    fn seq(&self, e: &WalkEntry) -> &[u32] {
        &self.seqs[e.start as usize..e.start as usize + e.len as usize]
    }
}

/// Per-vocabulary tables that make the matcher's mask fast (see `Matcher::fill_allowed`).
struct VocabTables {
    /// First trained id (= base_size) and the end of trained ids (= pad).
    first: u32,
    end: u32,
    vocab_size: usize,
    /// `string_masks[2 * u + end_ok]`: the whole mask inside an unconstrained string whose
    /// UTF-8 decoder is in state `u`: the bytes that continue it, the trained ids that expand
    /// to bytes only, and with `end_ok` those that expand to bytes then `STR_END` (ending on a
    /// character boundary). `STR_END` itself and exclusions are the caller's.
    string_masks: Vec<Vec<bool>>,
    /// The content of each `bytes... STR_END` id, to forbid exact values (used keys).
    by_content: std::collections::HashMap<Vec<u8>, Vec<u32>>,
    /// Masks over trained ids for constrained strings, by (spec, state): strings with patterns
    /// recur in few states, so each state is simulated once per tokenizer.
    pattern_cache: std::sync::Mutex<PatternCache>,
    /// Masks of structural contexts (see `LEVELS` and `Matcher::fill_allowed`).
    top_cache: std::sync::Mutex<TopCache>,
    deep_cache: [std::sync::Mutex<DeepCache>; LEVELS.len() - 1],
    /// Trained ids whose expansion holds an id other than a string byte or a final `STR_END`
    /// ("structural" ids, 987 of the bundled tokenizer's 7,886), walked up to where their
    /// expansion turns into a string's bytes (the tail, decided by UTF-8 tables).
    structural: WalkList,
    /// The other trained ids (`bytes...` or `bytes... STR_END`), walked whole where the string
    /// tables do not apply (numbers).
    strings: WalkList,
    /// Some structural id starts with a byte or `STR_END` (none in the bundled tokenizer): the
    /// precomputed string masks alone are then not the whole answer inside a string.
    structural_from_string: bool,
    /// Every string a trained id spells whole (bytes then `STR_END`, starting at the start of
    /// the expansion or after a structural id): the only used keys a walk can run into.
    spellable: std::collections::HashSet<Vec<u8>>,
    /// The longest expansion (base ids): strings this close to `MAX_STRING_BYTES` take the
    /// exact walk.
    max_len: usize,
}

impl VocabTables {
    fn new(v: &Vocab) -> VocabTables {
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

/// A compiled schema plus its vocabulary. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tokenizer({:?}, vocab_size={})",
            self.inner.file.name,
            self.vocab_size()
        )
    }
}

impl Tokenizer {
    /// Compile `schema` with a base-only vocabulary. `registry` maps URIs (`$id`s or URLs) to
    /// schemas that remote `$ref`s may resolve against; nothing is ever fetched.
    pub fn from_schema(schema: &Value, registry: &[(String, Value)]) -> Result<Self, SchemaError> {
        let graph = compile(schema, registry)?;
        let vocab = Vocab::base_only(crate::base::base_size(graph.sel_count), DEFAULT_N_POSITIONS)?;
        let name = schema
            .get("$id")
            .and_then(Value::as_str)
            .unwrap_or("schema")
            .to_string();
        let file = TokenizerFile {
            name,
            schema: schema.clone(),
            registry: registry.to_vec(),
            vocab,
            training: Value::Null,
        };
        Ok(Self::assemble(graph, file))
    }

    /// Build from a tokenizer file's contents (a trained vocabulary).
    pub fn from_file(file: TokenizerFile) -> Result<Self, SchemaError> {
        let graph = compile(&file.schema, &file.registry)?;
        let need = crate::base::base_size(graph.sel_count);
        if file.vocab.base_size() < need {
            return Err(SchemaError::new(
                "/layout/base_size",
                format!(
                    "the schema needs {need} base ids but the vocabulary has {}",
                    file.vocab.base_size()
                ),
            ));
        }
        Ok(Self::assemble(graph, file))
    }

    fn assemble(graph: Graph, file: TokenizerFile) -> Self {
        let hash = file.content_hash();
        let tables = VocabTables::new(&file.vocab);
        Tokenizer {
            inner: Arc::new(Inner {
                graph: Arc::new(graph),
                file,
                hash,
                tables,
            }),
        }
    }

    /// Serialise (the tokenizer file's bytes). `from_bytes` rebuilds an identical tokenizer.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.file.to_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SchemaError> {
        Self::from_file(TokenizerFile::from_bytes(bytes)?)
    }

    pub fn file(&self) -> &TokenizerFile {
        &self.inner.file
    }

    pub fn vocab(&self) -> &Vocab {
        &self.inner.file.vocab
    }

    pub fn graph(&self) -> &Graph {
        &self.inner.graph
    }

    /// `(name, hash)`: what shards and checkpoints record to identify the tokenizer.
    pub fn identity(&self) -> (String, String) {
        (self.inner.file.name.clone(), self.inner.hash.clone())
    }

    /// Keywords or combinations in the schema that the matcher does not enforce exactly.
    pub fn warnings(&self) -> &[String] {
        &self.inner.graph.warnings
    }

    /// Encode a `serde_json::Value` (viewed as a [`Json`] tree without copying its strings).
    pub fn encode_value(&self, doc: &Value) -> Result<Encoding, EncodeError> {
        self.encode_tree(&Json::from_value(doc)?)
    }

    pub fn encode_tree(&self, doc: &Json) -> Result<Encoding, EncodeError> {
        let e = Encoder::with_contents(&self.inner.graph).encode_with_contents(doc)?;
        let mut ids = Vec::new();
        self.vocab()
            .apply_with_contents(&e.items, &e.contents, &mut ids);
        Ok(Encoding {
            ids,
            fallbacks: e.fallbacks,
        })
    }

    /// Base ids only (no dictionary or merges).
    pub fn encode_base(&self, doc: &Value) -> Result<Encoding, EncodeError> {
        self.encode_base_tree(&Json::from_value(doc)?)
    }

    pub fn encode_base_tree(&self, doc: &Json) -> Result<Encoding, EncodeError> {
        let (ids, fallbacks) = Encoder::new(&self.inner.graph).encode_document(doc)?;
        Ok(Encoding { ids, fallbacks })
    }

    /// Parse JSON text (errors carry the byte offset) and encode it.
    pub fn encode_json(&self, text: &[u8]) -> Result<Encoding, EncodeError> {
        self.encode_tree(&crate::json::parse(text)?)
    }

    /// Decode the first complete document of `ids`. A leading BOS (and PADs before it) is
    /// skipped; an EOS right after the document counts as consumed.
    ///
    /// # Performance (issue 3 item 8: decode faster than encode)
    ///
    /// The corpus (33,145 documents, 19.7M trained ids standing for 105.6M base ids, 91% of
    /// them string bytes; 73% of the ids are text only), bundled tokenizer, `--profile fast`,
    /// 2-core AMD EPYC dev box: 1.47 s -> 0.78-0.84 s (Python `decode` 70-80 -> 124-145 MB/s,
    /// beside encode's 104-108 MB/s in the same runs). In order of effect:
    /// - the machine lost its per-token overheads: no `Arc<Graph>` clone per `settle` (two
    ///   atomic operations after every token), no clone of the top frame per `step` (a copied
    ///   view instead), a required-key bit set per object instead of recomputing it, string
    ///   ends checked without copying the map's used keys, no `Arc` per empty used-key list,
    ///   a string value opened by its first run of bytes, the output reserved (1.47 -> 0.84 s);
    /// - plain string values are written straight to the output, escaped per run, with a
    ///   per-id "needs no escaping" flag, and the output is checked to be UTF-8 once at the end
    ///   instead of per string (`Machine::direct`);
    /// - text-only ids in a row go into the open string in one call, each from one load of a
    ///   packed per-id table (`Vocab::text_only`; 0.84 -> 0.78-0.80 s).
    ///
    /// Tried and dropped: boxing the large graph nodes (32-byte nodes instead of 240: no
    /// change), one table for expansion offsets and runs (no change).
    pub fn decode(&self, ids: &[u32]) -> Result<Decoded, DecodeError> {
        let v = self.vocab();
        let (pad, bos, eos) = (v.pad_id(), v.bos_id(), v.eos_id());
        let mut m = Machine::new(self.inner.graph.clone(), Mode::Lenient, true);
        // About 6.6 bytes of JSON per id on the corpus; capped, since `ids` may hold many
        // documents after the first.
        m.reserve_output(ids.len().saturating_mul(7).min(1 << 20));
        let mut i = 0;
        while i < ids.len() && (ids[i] == pad || ids[i] == bos) {
            i += 1;
        }
        while i < ids.len() {
            // Text-only ids in a row (73% of the bundled tokenizer's ids on the corpus) go into
            // the open string in one call.
            let text = |k: usize| {
                let t = v.text_only(*ids.get(i + k)?)?;
                Some((t.bytes, t.ascii, t.plain))
            };
            match m.step_text_runs(text) {
                Ok(0) => {}
                Ok(n) => {
                    i += n;
                    continue;
                }
                Err((k, msg)) => return Err(DecodeError::new(i + k, msg)),
            }
            let id = ids[i];
            // PAD, BOS, EOS, position ids and ids out of range have no expansion.
            let Some(exp) = v.expansion(id) else {
                if id == pad || id == bos || id == eos {
                    return Err(DecodeError::new(
                        i,
                        format!("special id {id} inside a document"),
                    ));
                }
                let mut unused = Vec::new();
                let msg = v.expand(&[id], &mut unused).err().map(|(_, m)| m);
                return Err(DecodeError::new(i, msg.unwrap_or_default()));
            };
            // Runs of string bytes go into the open string in one copy; the other base ids are
            // stepped one by one.
            let mut k = 0;
            while k < exp.len() {
                if exp[k] < 256 {
                    let run = exp[k..].iter().take_while(|&&t| t < 256).count();
                    let bytes = v
                        .expansion_bytes(id)
                        .and_then(|b| b.get(k..k + run))
                        .unwrap_or_default();
                    if m.step_string_bytes(bytes, bytes.is_ascii(), false)
                        .map_err(|msg| DecodeError::new(i, msg))?
                    {
                        k += run;
                        continue;
                    }
                }
                m.step(exp[k]).map_err(|msg| DecodeError::new(i, msg))?;
                k += 1;
                if m.is_done() {
                    if k != exp.len() {
                        return Err(DecodeError::new(
                            i,
                            "token runs past the end of the document",
                        ));
                    }
                    let consumed = if ids.get(i + 1) == Some(&eos) {
                        i + 2
                    } else {
                        i + 1
                    };
                    return Ok(Decoded {
                        json: m.take_output().map_err(|msg| DecodeError::new(i, msg))?,
                        consumed,
                        total: ids.len(),
                    });
                }
            }
            i += 1;
        }
        Err(DecodeError::new(
            ids.len(),
            "the ids end before the document is complete",
        ))
    }

    pub fn matcher(&self) -> Matcher {
        Matcher::new(self.clone())
    }

    pub fn vocab_size(&self) -> u32 {
        self.vocab().vocab_size()
    }
    pub fn pad_id(&self) -> u32 {
        self.vocab().pad_id()
    }
    pub fn bos_id(&self) -> u32 {
        self.vocab().bos_id()
    }
    pub fn eos_id(&self) -> u32 {
        self.vocab().eos_id()
    }

    /// Encode many JSON texts in parallel (rayon); results in input order.
    pub fn encode_batch_json(
        &self,
        docs: &[&[u8]],
        num_threads: Option<usize>,
    ) -> Vec<Result<Encoding, EncodeError>> {
        use rayon::prelude::*;
        let run = || {
            docs.par_iter()
                .map(|d| self.encode_json(d))
                .collect::<Vec<_>>()
        };
        match num_threads {
            Some(n) if n > 0 => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(pool) => pool.install(run),
                Err(_) => run(),
            },
            _ => run(),
        }
    }
}

/// Constrained-generation state. `fill_allowed` is exact: every allowed id keeps the sequence
/// completable to a document that validates against the schema (see the README for the
/// keywords that are not yet enforced).
///
/// # Performance (issue 3 item 5: p50 <= 5 us, p99 <= 50 us per step)
///
/// Measured with `benches/matcher_latency.py` (300 corpus workflows, bundled 8,192-id
/// tokenizer, `allowed()` + `advance()` from Python, 2-core AMD EPYC dev box, load ~1.5-2.4).
/// Before: p50 7.5 us, p99 300 us. Strings (77% of steps) cost 7.4 us, mostly writing the
/// 8,192-entry mask three times over (fill, copy, fresh Vec); unions, maps and arrays cost
/// 60-220 us: every trained id whose expansion starts with an allowed base id was simulated
/// on a copy of the top 3 frames, and the cache keyed by those frames rarely hit (they hold
/// used keys, item counts, header choices that differ between documents). After: p50 0.9 us,
/// p99 25 us (strings 0.9 us, unions p50 3 us). What did it, in order of effect:
/// - Inside an unconstrained string the whole mask is one `copy_from_slice` of a mask
///   precomputed per UTF-8 state (`VocabTables::string_masks`), exclusions patched after;
///   Python's `allowed()` fills the numpy array in place (`allowed_into` reuses one).
/// - Trained ids are walked like a trie (`WalkList`): sorted by expansion so a shared
///   prefix is stepped once and a refused prefix drops all ids under it; a structural id's
///   trailing string bytes are decided by UTF-8 tables, not stepped. 987 structural ids
///   share 561 prefixes; a miss steps ~200 of them. Frames got cheap to copy for this: bit
///   sets inline (`Bits`), used-key lists shared (`Arc`), no allocation per state.
/// - Walk results are cached per context at levels of 1, 2, 4, 8 and all top frames
///   (`LEVELS`): each decision is stored at the smallest level it read (the walk runs on a
///   copy of 2 frames and brings back deeper ones on demand, `Machine::deepen`, so it knows).
///   Level 1 (the top frame alone) holds most decisions: over 330 workflows it hit 98% of
///   the structural steps (50.5k of 51.6k), the deeper levels 93%, 88% and 72% of the
///   lookups the level before passed on. Keys drop what the walk cannot read
///   (`Machine::cache_key`): counts past their bounds, used keys no trained id spells, the
///   used keys of the map on top (applied to the ids that spell them at each hit). Uncached
///   (first visit) steps still cost 20-80 us; they make the p99.
/// - Tried and dropped: keying on the top 3 frames exactly (28% hits over 100 documents; 76%
///   with the normalisation above, 2 frames); caching whole masks as `Vec<bool>` (8 KB each).
///
/// Exactness is tested against `fill_allowed_by_simulation` (every id stepped on a full copy
/// of the machine) on corpus documents, twice over so the second pass hits the caches, and on
/// random walks (`matcher_tests`).
#[derive(Clone)]
pub struct Matcher {
    tok: Tokenizer,
    machine: Machine,
    /// Base ids accepted so far (to rebuild the document text on demand).
    base: Vec<u32>,
    /// Ids accepted so far (positions in errors count these).
    steps: usize,
    ended: bool,
    allowed_base: Vec<bool>,
    states: WalkStates,
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
    fn new(tok: Tokenizer) -> Matcher {
        let machine = Machine::new(tok.inner.graph.clone(), Mode::Strict, false);
        let nb = tok.vocab().base_size() as usize;
        Matcher {
            tok,
            machine,
            base: Vec::new(),
            steps: 0,
            ended: false,
            allowed_base: vec![false; nb],
            states: WalkStates::default(),
        }
    }

    /// Accept one id. A disallowed id is an error and leaves the state unchanged. BOS is
    /// accepted (and ignored) before the document; EOS only once it is complete.
    pub fn advance(&mut self, id: u32) -> Result<(), DecodeError> {
        let pos = self.steps;
        let v = self.tok.vocab();
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
        self.base.extend_from_slice(&base);
        self.steps += 1;
        Ok(())
    }

    /// Write the allowed-next-id mask into `out` (length `vocab_size`).
    ///
    /// Base ids come from the machine. A trained id is allowed when the machine accepts its
    /// whole expansion; testing that by simulation for ~8k ids at every step would be far too
    /// slow, so (see "Performance" at `Matcher` for the numbers):
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
        let v = self.tok.vocab();
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
            tok,
            machine,
            allowed_base,
            states,
            ..
        } = self;
        let t = &tok.inner.tables;
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
                        used_items: &[],
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
                        used_keys: &[],
                        used_items: ts.excluded.used_items,
                    },
                    crate::machine::Excluded {
                        spec: &[],
                        used_keys: ts.excluded.used_keys,
                        used_items: &[],
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
                    let mask = Arc::new(Self::simulate_string(tok, at, &top, first, end));
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

    /// The decisions a cache level deferred (`ranges`), at level `LEVELS[i]`: from its cache,
    /// or walked and stored.
    fn fill_level(
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
    fn store_deferred(
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

    /// The hot path: inside an unconstrained string, copy the precomputed mask. False when it
    /// does not apply (then `fill_allowed` takes the general path).
    fn fill_in_string(&mut self, out: &mut [bool]) -> bool {
        let t = &self.tok.inner.tables;
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

    /// Walk the entries of `list` (`tag`: 0 strings, 1 structural) whose first base id is
    /// allowed (`base`), from `root` (a copy of the top frames of `full`), marking in `out`
    /// the ids the machine accepts.
    fn walk_all(
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
    fn walk(
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
    fn level(m: &Machine, full: &Machine) -> usize {
        if m.floor() >= full.depth() {
            1
        } else {
            full.depth().saturating_sub(m.frames_below()).max(2)
        }
    }

    /// A walk's copy holds only the top frames: bring back frames of `full` when it holds
    /// fewer than a step reads.
    fn make_exact(m: &mut Machine, full: &Machine) {
        while !m.is_exact() {
            if !m.deepen(full, 2) {
                break;
            }
        }
    }

    /// Whether the machine `m`, having accepted the walked part of `e`, accepts its tail (a
    /// string's bytes, maybe `STR_END`); and the level of that decision (see `level`).
    fn tail_ok(
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

    /// Reference mask: every id's expansion stepped on a full copy of the machine, no tables,
    /// no walk. For tests of `fill_allowed` (about 1,000 times slower).
    pub fn fill_allowed_by_simulation(&self, out: &mut [bool]) {
        out.fill(false);
        let v = self.tok.vocab();
        if self.ended {
            return;
        }
        if self.machine.is_done() {
            if let Some(x) = out.get_mut(v.eos_id() as usize) {
                *x = true;
            }
            return;
        }
        for id in 0..v.pad_id().min(out.len() as u32) {
            let one = [id];
            let e = if id < v.base_size() {
                &one[..]
            } else {
                let Some(e) = v.expansion(id) else { continue };
                e
            };
            let mut m = self.machine.clone();
            out[id as usize] = !e.is_empty()
                && e.iter()
                    .all(|&b| b != crate::base::FALLBACK && !m.is_done() && m.step(b).is_ok());
        }
    }

    /// Mask over trained ids `[first, end)` for a constrained string on top: an id is allowed
    /// when its bytes keep the string completable and, if it ends the string, the string may end.
    /// Exclusions are ignored here (the caller applies them to exact values).
    fn simulate_string(
        tok: &Tokenizer,
        m: &Machine,
        top: &crate::machine::StringTop,
        first: usize,
        end: usize,
    ) -> Vec<bool> {
        let v = tok.vocab();
        let spec = &top.spec;
        let no_excl = crate::machine::StringTop {
            spec: top.spec.clone(),
            st: top.st.clone(),
            buf: top.buf.clone(),
            extra: Vec::new(),
            context_end_ok: top.context_end_ok,
            continuing: top.continuing,
            key_node: top.key_node,
        };
        let mut mask = vec![false; end - first];
        let mut buf = top.buf.clone();
        for id in first as u32..end as u32 {
            let Some(e) = v.expansion(id) else { continue };
            let (body, ends) = match e.split_last() {
                Some((&last, body)) if last == crate::base::STR_END => (body, true),
                _ => (e, false),
            };
            if body.is_empty() || !body.iter().all(|&b| b < 256) {
                continue;
            }
            let mut st = top.st.clone();
            buf.truncate(top.buf.len());
            let mut ok = true;
            for &b in body {
                if !spec.step(&mut st, b as u8) {
                    ok = false;
                    break;
                }
                buf.push(b as u8);
            }
            if !ok {
                continue;
            }
            let allowed = if ends {
                m.string_end_ok(&no_excl, &st, &buf)
            } else {
                spec.live_ignoring_exclusions(&st)
            };
            mask[id as usize - first] = allowed;
        }
        mask
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
        let mut m = Machine::new(self.tok.inner.graph.clone(), Mode::Lenient, true);
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

/// A small, seedable generator (SplitMix64) for random walks: no dependency, same stream on
/// every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

impl Tokenizer {
    /// A random document drawn under the matcher's mask: at each step a uniformly random
    /// allowed id (a closing id with probability 1/4 when one is allowed, so documents stay
    /// small); after `max_tokens` ids the smallest valid completion closes it. Used to fuzz the
    /// matcher: every result must validate against the schema. An empty mask before the
    /// document is complete is reported as an error (it would be a matcher bug).
    pub fn random_document(
        &self,
        seed: u64,
        max_tokens: usize,
    ) -> Result<(Vec<u32>, String), DecodeError> {
        let mut rng = SplitMix64(seed);
        let mut m = self.matcher();
        let mut allowed = vec![false; self.vocab_size() as usize];
        let mut ids = Vec::new();
        let closing = [crate::base::STR_END, crate::base::ARR_END, crate::base::END];
        while !m.is_complete() && ids.len() < max_tokens {
            m.fill_allowed(&mut allowed);
            let choices: Vec<u32> = (0..allowed.len() as u32)
                .filter(|&i| allowed[i as usize])
                .collect();
            if choices.is_empty() {
                return Err(DecodeError::new(
                    ids.len(),
                    "the mask is empty before the document is complete",
                ));
            }
            let closers: Vec<u32> = closing
                .iter()
                .copied()
                .filter(|&c| allowed[c as usize])
                .collect();
            let t = if !closers.is_empty() && rng.below(4) == 0 {
                closers[rng.below(closers.len())]
            } else {
                choices[rng.below(choices.len())]
            };
            m.advance(t)?;
            ids.push(t);
        }
        let doc = m.document(true)?;
        Ok((ids, doc))
    }

    /// Check that the matcher accepts `ids` id by id and ends complete; every `check_every`
    /// steps it also checks that the id was in the allowed mask (0: never).
    pub fn matcher_accepts(&self, ids: &[u32], check_every: usize) -> Result<(), DecodeError> {
        let mut m = self.matcher();
        let mut allowed = vec![false; self.vocab_size() as usize];
        for (i, &id) in ids.iter().enumerate() {
            if check_every > 0 && i % check_every == 0 {
                m.fill_allowed(&mut allowed);
                if !allowed.get(id as usize).copied().unwrap_or(false) {
                    return Err(DecodeError::new(
                        i,
                        format!("id {id} is not in the allowed mask"),
                    ));
                }
            }
            m.advance(id)?;
        }
        if !m.is_complete() {
            return Err(DecodeError::new(
                ids.len(),
                "the matcher is not complete at the end",
            ));
        }
        Ok(())
    }
}

/// Options of [`Tokenizer::train`] beyond the vocabulary size (defaults: see `vocab::decisions`).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub vocab_size: u32,
    pub dictionary_size: Option<u32>,
    pub scope: Option<crate::vocab::MergeScope>,
    pub name: String,
    pub progress: bool,
    pub num_threads: Option<usize>,
    /// A group id (e.g. the repository) per document: training weighs repetition inside a
    /// group down (`vocab::weighting`). `None`: every occurrence counts 1.
    pub groups: Option<Vec<u32>>,
}

impl Tokenizer {
    /// Train a vocabulary (dictionary + merges) for `schema` on documents given as JSON texts.
    /// Documents are encoded to base ids in parallel; a document that is not JSON is an error
    /// naming its index. Deterministic: the same inputs give the same tokenizer file.
    pub fn train(
        schema: &Value,
        registry: &[(String, Value)],
        docs: &[&[u8]],
        opts: &TrainOptions,
    ) -> Result<Tokenizer, crate::error::TctTrainError> {
        use crate::error::TctTrainError;
        use rayon::prelude::*;
        let base = Tokenizer::from_schema(schema, registry).map_err(TctTrainError::Schema)?;
        let encode_all = || {
            docs.par_iter()
                .enumerate()
                .map(|(i, d)| {
                    let v = crate::json::parse(d).map_err(|e| (i, e))?;
                    base.encode_base_tree(&v).map(|e| e.ids).map_err(|e| (i, e))
                })
                .collect::<Result<Vec<Vec<u32>>, (usize, EncodeError)>>()
        };
        let streams = match opts.num_threads {
            Some(n) if n > 0 => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(pool) => pool.install(encode_all),
                Err(_) => encode_all(),
            },
            _ => encode_all(),
        }
        .map_err(|(i, e)| TctTrainError::Document(i, e))?;
        let n_sel = base.vocab().n_sel();
        let mut cfg = crate::vocab::TrainConfig::new(n_sel, opts.vocab_size);
        if let Some(d) = opts.dictionary_size {
            cfg.dictionary_size = d;
        }
        if let Some(s) = opts.scope {
            cfg.scope = s;
        }
        cfg.progress = opts.progress;
        let (vocab, mut report) =
            crate::vocab::train_grouped(&streams, opts.groups.as_deref(), &cfg)
                .map_err(|e| TctTrainError::Schema(e.into()))?;
        // Wall-clock times would make the file differ between identical runs: keep them out.
        report.seconds.clear();
        let file = TokenizerFile {
            name: opts.name.clone(),
            schema: schema.clone(),
            registry: registry.to_vec(),
            vocab,
            training: serde_json::to_value(&report).unwrap_or(Value::Null),
        };
        Tokenizer::from_file(file).map_err(TctTrainError::Schema)
    }

    /// `[position_id(start)] + ids[start:end]` (the seed's window format).
    pub fn extract_window(&self, ids: &[u32], start: usize, end: usize) -> Vec<u32> {
        self.vocab().extract_window(ids, start, end)
    }

    /// `(first, end)` of the position-id range, above the content vocabulary.
    pub fn position_range(&self) -> (u32, u32) {
        self.vocab().position_range()
    }
}

impl Tokenizer {
    /// Encode a *partial document* as a generation prompt.
    ///
    /// The rule: the prompt is encoded in full, then the containers on its *last path* (the
    /// root, its last value, that value's last value, ...) that are arrays or maps are left
    /// open: their closing ids are dropped, so generation continues by adding items or entries
    /// to the innermost of them, then closes them in order. Everything the prompt gives is kept
    /// as given. Example: `{"name": "CI", "on": "push", "jobs": {}}` leaves `jobs` open, so the
    /// model writes the jobs. Objects' named keys are decided up front (their key list), so a
    /// prompt cannot leave room for more named keys of an object it already spells.
    ///
    /// The prompt must conform to the schema (the matcher never accepts the fallback path):
    /// otherwise an `EncodeError` names where it does not.
    pub fn encode_prefix(&self, doc: &Json) -> Result<Vec<u32>, EncodeError> {
        // Open containers may still be below their minimum counts: the model fills them.
        let mut enc = Encoder::new(&self.inner.graph);
        enc.relax_min = true;
        let (mut base, fallbacks) = enc.encode_document(doc)?;
        if let Some(p) = fallbacks.first() {
            return Err(EncodeError::at(
                p.clone(),
                "the prompt does not conform to the schema here",
            ));
        }
        // Replay, remembering which ids close an array or a map.
        let mut m = Machine::new_relaxed(self.inner.graph.clone());
        let mut closes_container = vec![false; base.len()];
        for (i, &t) in base.iter().enumerate() {
            // A value that opens lazily is looked at opened (an empty `[]` or `{}` closes at once).
            let kind = m.opened().map_or(m.top_kind(), |o| o.top_kind());
            m.step(t).map_err(|e| {
                EncodeError::at("", format!("internal: prompt does not replay: {e}"))
            })?;
            closes_container[i] = matches!(
                (kind, t),
                ("array" | "generic-array", crate::base::ARR_END)
                    | ("map" | "generic-object", crate::base::END)
            );
        }
        // Drop the trailing run of container closings (the open tail of the last path).
        while !base.is_empty() && closes_container[base.len() - 1] {
            base.pop();
        }
        // What remains must be exactly what the matcher accepts (every closed container
        // complete, nothing outside the schema).
        let mut strict = Machine::new(self.inner.graph.clone(), Mode::Strict, false);
        for &t in &base {
            strict.step(t).map_err(|e| {
                EncodeError::at(
                    "",
                    format!("the prompt cannot be continued under the schema: {e}"),
                )
            })?;
        }
        Ok(self.vocab().apply(&base))
    }
}

#[cfg(test)]
mod matcher_tests {
    //! The matcher's fast paths (string masks, walks over copies of the top frames, caches)
    //! against `fill_allowed_by_simulation`, which steps every id on a full copy: any
    //! difference is a soundness or completeness bug of the fast path.
    use super::*;
    use std::io::BufRead;

    fn bundled() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/tct/data/github-workflow.tct.json"
        );
        Tokenizer::from_bytes(&std::fs::read(path).expect("bundled tokenizer")).unwrap()
    }

    /// Every `every`-th schema-valid workflow of the corpus (`../shared/data`).
    fn corpus_sample(every: usize) -> Vec<Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/workflows/workflows.jsonl.gz"
        );
        let f = std::fs::File::open(path).expect("the workflow corpus in ../shared/data");
        std::io::BufReader::new(flate2::read::GzDecoder::new(f))
            .lines()
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .filter(|r| r["schema_valid"] == Value::Bool(true))
            .step_by(every)
            .map(|r| r["json"].clone())
            .collect()
    }

    /// Compare the two masks; on a difference, name the ids and their expansions.
    fn check(t: &Tokenizer, m: &mut Matcher, fast: &mut [bool], slow: &mut [bool], at: &str) {
        m.fill_allowed(fast);
        m.fill_allowed_by_simulation(slow);
        if fast != slow {
            let diff: Vec<String> = (0..fast.len())
                .filter(|&i| fast[i] != slow[i])
                .take(8)
                .map(|i| {
                    let e = t.vocab().expansion(i as u32).unwrap_or(&[]);
                    let names: Vec<String> = e.iter().map(|&b| crate::base::name(b)).collect();
                    format!(
                        "id {i} fast={} exact={} [{}]",
                        fast[i],
                        slow[i],
                        names.join(" ")
                    )
                })
                .collect();
            panic!(
                "{at} (waiting in {}): the fast mask differs from the simulation:\n{}",
                m.top_kind(),
                diff.join("\n")
            );
        }
    }

    #[test]
    fn fast_mask_equals_simulation_on_corpus_workflows() {
        let t = bundled();
        let n = t.vocab_size() as usize;
        let (mut fast, mut slow) = (vec![false; n], vec![false; n]);
        let mut checked = 0;
        let docs = corpus_sample(499);
        // The first documents come again at the end: every context then hits the caches
        // (the first time, most are filled).
        let order = (0..12).chain(0..3);
        for d in order {
            let enc = t.encode_value(&docs[d]).unwrap();
            if !enc.fallbacks.is_empty() {
                continue;
            }
            let mut m = t.matcher();
            for (i, &id) in enc.ids.iter().enumerate() {
                // Every structural step, and every 16th step inside strings.
                if m.top_kind() != "string" || i % 16 == 0 {
                    check(
                        &t,
                        &mut m,
                        &mut fast,
                        &mut slow,
                        &format!("doc {d} step {i}"),
                    );
                    checked += 1;
                }
                m.advance(id).unwrap();
            }
            check(&t, &mut m, &mut fast, &mut slow, &format!("doc {d} end"));
        }
        assert!(checked > 500, "only {checked} steps checked");
    }

    #[test]
    fn fast_mask_equals_simulation_on_random_walks() {
        // Documents drawn under the mask reach states the corpus rarely does (deep generic
        // values, unusual key sets, long numbers).
        let t = bundled();
        let n = t.vocab_size() as usize;
        let (mut fast, mut slow) = (vec![false; n], vec![false; n]);
        for seed in 0..24u64 {
            let mut rng = SplitMix64(seed);
            let mut m = t.matcher();
            let mut step = 0;
            while !m.is_complete() && step < 150 {
                check(
                    &t,
                    &mut m,
                    &mut fast,
                    &mut slow,
                    &format!("seed {seed} step {step}"),
                );
                let choices: Vec<u32> = (0..n as u32).filter(|&i| fast[i as usize]).collect();
                // Favour trained structural ids (the walk's subject) half of the time.
                let structural: Vec<u32> = choices
                    .iter()
                    .copied()
                    .filter(|&i| {
                        i >= t.vocab().base_size()
                            && t.vocab()
                                .expansion(i)
                                .is_some_and(|e| e.iter().any(|&b| b > crate::base::STR_END))
                    })
                    .collect();
                let pick = if !structural.is_empty() && rng.below(2) == 0 {
                    structural[rng.below(structural.len())]
                } else {
                    choices[rng.below(choices.len())]
                };
                m.advance(pick).unwrap();
                step += 1;
            }
        }
    }
}
