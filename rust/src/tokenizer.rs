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

/// How many top frames a structural simulation runs on (and its cache is keyed by): trained ids
/// are short, so they rarely reach further down. Measured on the bundled tokenizer: 2 frames
/// left unions uncached (a constant branch closes them and the next property starts).
const CONTEXT_FRAMES: usize = 3;

type StructCache = std::collections::HashMap<(crate::machine::FrameKey, bool), Arc<Vec<u32>>>;

/// (string spec address, automaton state) -> mask over trained ids.
type PatternCache = std::collections::HashMap<(usize, Vec<u32>), Arc<Vec<bool>>>;

/// Per-vocabulary tables that make the matcher's mask over trained ids fast (see
/// `Matcher::fill_allowed`).
struct VocabTables {
    /// First id that is neither base nor... (= base_size) and the end of trained ids (= pad).
    first: u32,
    end: u32,
    /// `bytes_only[u][i]`: id `first + i` expands to bytes only, valid UTF-8 when continuing a
    /// string whose UTF-8 decoder is in state `u`.
    bytes_only: Vec<Vec<bool>>,
    /// `bytes_end[u][i]`: id `first + i` expands to bytes then `STR_END`, valid from state `u`
    /// and ending on a character boundary.
    bytes_end: Vec<Vec<bool>>,
    /// The content of each `bytes... STR_END` id, to forbid exact values (used keys).
    by_content: std::collections::HashMap<Vec<u8>, Vec<u32>>,
    /// Masks over trained ids for constrained strings, by (spec, state): strings with patterns
    /// recur in few states, so each state is simulated once per tokenizer.
    pattern_cache: std::sync::Mutex<PatternCache>,
    /// Structural-context results: (top frames, closing_only) -> allowed trained ids, for
    /// contexts where every candidate was decided within those frames.
    struct_cache: std::sync::Mutex<StructCache>,
    /// Ids the string tables cannot decide: expansions that start with a structural id, plus
    /// (outside string contexts) those starting with a byte.
    simulate_ids: Vec<u32>,
}

impl VocabTables {
    fn new(v: &Vocab) -> VocabTables {
        let first = v.base_size();
        let end = v.pad_id();
        let n = (end - first) as usize;
        let mut bytes_only = vec![vec![false; n]; 8];
        let mut bytes_end = vec![vec![false; n]; 8];
        let mut by_content: std::collections::HashMap<Vec<u8>, Vec<u32>> = Default::default();
        for id in first..end {
            let Some(e) = v.expansion(id) else { continue };
            let (body, ends) = match e.split_last() {
                Some((&last, body)) if last == crate::base::STR_END => (body, true),
                _ => (e, false),
            };
            if !body.iter().all(|&b| b < 256) {
                continue;
            }
            let bytes: Vec<u8> = body.iter().map(|&b| b as u8).collect();
            if ends {
                by_content.entry(bytes.clone()).or_default().push(id);
            }
            for u in 0..8u8 {
                let mut st = Some(u);
                for &b in &bytes {
                    st = st.and_then(|s| crate::strings::utf8_step(s, b));
                }
                let i = (id - first) as usize;
                match st {
                    Some(s) if ends => bytes_end[u as usize][i] = s == 0,
                    Some(_) => bytes_only[u as usize][i] = true,
                    None => {}
                }
            }
        }
        let simulate_ids = (first..end)
            .filter(|&id| v.expansion(id).is_some_and(|e| !e.is_empty()))
            .collect();
        VocabTables {
            first,
            end,
            bytes_only,
            bytes_end,
            by_content,
            pattern_cache: Default::default(),
            struct_cache: Default::default(),
            simulate_ids,
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
        let (base, fallbacks) = Encoder::new(&self.inner.graph).encode_document(doc)?;
        let ids = self.vocab().apply(&base);
        Ok(Encoding { ids, fallbacks })
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
    pub fn decode(&self, ids: &[u32]) -> Result<Decoded, DecodeError> {
        let v = self.vocab();
        let (pad, bos, eos) = (v.pad_id(), v.bos_id(), v.eos_id());
        let mut m = Machine::new(self.inner.graph.clone(), Mode::Lenient, true);
        let mut i = 0;
        while i < ids.len() && (ids[i] == pad || ids[i] == bos) {
            i += 1;
        }
        let mut base = Vec::new();
        while i < ids.len() {
            let id = ids[i];
            if id == pad || id == bos || id == eos {
                return Err(DecodeError::new(
                    i,
                    format!("special id {id} inside a document"),
                ));
            }
            base.clear();
            v.expand(&ids[i..i + 1], &mut base)
                .map_err(|(_, msg)| DecodeError::new(i, msg))?;
            let mut k = 0;
            while k < base.len() {
                if m.is_done() {
                    return Err(DecodeError::new(
                        i,
                        "token runs past the end of the document",
                    ));
                }
                // Bytes of a string in one go (the common case), other ids one at a time.
                match m.step_string_run(&base[k..]) {
                    Ok(0) => {
                        m.step(base[k]).map_err(|msg| DecodeError::new(i, msg))?;
                        k += 1;
                    }
                    Ok(n) => k += n,
                    Err(msg) => return Err(DecodeError::new(i, msg)),
                }
            }
            i += 1;
            if m.is_done() {
                let consumed = if ids.get(i) == Some(&eos) { i + 1 } else { i };
                return Ok(Decoded {
                    json: m.output().to_string(),
                    consumed,
                    total: ids.len(),
                });
            }
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
    /// Base ids come from the machine. A trained id is allowed when its whole expansion is;
    /// testing that by simulation for ~8k ids at every step would be far too slow, so:
    /// - inside (or at the start of) an unconstrained string, which is most steps, the answer
    ///   depends only on the UTF-8 decoder state: precomputed tables;
    /// - inside a constrained string (patterns, lengths), the answer depends on the string's
    ///   automaton state: simulated once per state and cached in the tokenizer;
    /// - elsewhere (object headers, unions, arrays, numbers), only ids whose first base id is
    ///   allowed are simulated on a copy of the machine.
    pub fn fill_allowed(&mut self, out: &mut [bool]) {
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
        // An array or object waiting for its first token is opened on a copy first, so that its
        // first token is seen in its own context (often the start of a string).
        let opened = self.machine.opened();
        let m = opened.as_ref().unwrap_or(&self.machine);
        self.allowed_base.fill(false);
        m.allowed(&mut self.allowed_base);
        let nb = self.allowed_base.len().min(out.len());
        out[..nb].copy_from_slice(&self.allowed_base[..nb]);
        match m.with_new_item() {
            // In an array, the ids that start a new item are decided in the item's context;
            // the array itself contributes only what starts with ARR_END.
            Some(item) => {
                let mut item_base = vec![false; self.allowed_base.len()];
                item.allowed(&mut item_base);
                Self::fill_trained(&self.tok, &item, &item_base, out, false);
                Self::fill_trained(&self.tok, m, &self.allowed_base, out, true);
            }
            None => Self::fill_trained(&self.tok, m, &self.allowed_base, out, false),
        }
    }

    /// OR into `out` the trained ids that machine `m` (whose allowed base ids are `base`)
    /// accepts. With `closing_only`, only ids that start with `ARR_END` are considered.
    fn fill_trained(
        tok: &Tokenizer,
        m: &Machine,
        base: &[bool],
        out: &mut [bool],
        closing_only: bool,
    ) {
        let v = tok.vocab();
        let t = &tok.inner.tables;
        let (first, end) = (t.first as usize, (t.end as usize).min(out.len()));
        if first >= end {
            return;
        }
        let top = if closing_only { None } else { m.string_top() };
        match &top {
            Some(top) if top.spec.trivial => {
                let u = top.st.utf8 as usize;
                let (only, ends) = (&t.bytes_only[u], &t.bytes_end[u]);
                let end_ok = top.context_end_ok;
                for (i, o) in out[first..end].iter_mut().enumerate() {
                    *o |= only[i] || (end_ok && ends[i]);
                }
                // Exact values that may not be produced (used keys, unique items).
                for e in &top.extra {
                    if let Some(rest) = e.as_bytes().strip_prefix(top.buf.as_slice()) {
                        for &id in t.by_content.get(rest).into_iter().flatten() {
                            out[id as usize] = false;
                        }
                    }
                }
            }
            Some(top) => {
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
                        let mask = Arc::new(Self::simulate_string(tok, m, top, first, end));
                        if let Ok(mut c) = t.pattern_cache.lock() {
                            if c.len() < 100_000 {
                                c.insert(key, mask.clone());
                            }
                        }
                        mask
                    }
                };
                for (o, &x) in out[first..end].iter_mut().zip(mask.iter()) {
                    *o |= x;
                }
                for e in top.spec.excluded.iter().chain(top.extra.iter()) {
                    if let Some(rest) = e.as_bytes().strip_prefix(top.buf.as_slice()) {
                        for &id in t.by_content.get(rest).into_iter().flatten() {
                            out[id as usize] = false;
                        }
                    }
                }
            }
            None => {}
        }
        if top.as_ref().is_some_and(|t| t.continuing) {
            // Inside a string only bytes and STR_END can follow: done.
            return;
        }
        // Ids whose expansion starts with a structural id (or with a byte outside a string
        // context, e.g. a number digit): simulate those whose first base id is allowed. The
        // result is cached by the top frames when every candidate was decided within them.
        let key = (m.depth() >= CONTEXT_FRAMES).then(|| (m.top_key(CONTEXT_FRAMES), closing_only));
        if let Some(k) = &key {
            if let Some(ids) = t.struct_cache.lock().ok().and_then(|c| c.get(k).cloned()) {
                for &id in ids.iter() {
                    out[id as usize] = true;
                }
                return;
            }
        }
        let mut found = Vec::new();
        let mut local = true;
        for &id in &t.simulate_ids {
            if id as usize >= end {
                continue;
            }
            let Some(e) = v.expansion(id) else { continue };
            let first_base = e[0];
            if (first_base < 256 && top.is_some())
                || (closing_only && first_base != crate::base::ARR_END)
            {
                continue;
            }
            if !base[first_base as usize] {
                continue;
            }
            let (ok, within) = Self::accepts_base_seq(m, e);
            local &= within;
            if ok {
                out[id as usize] = true;
                found.push(id);
            }
        }
        if let (Some(k), true) = (key, local) {
            if let Ok(mut c) = t.struct_cache.lock() {
                if c.len() < 200_000 {
                    c.insert(k, Arc::new(found));
                }
            }
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

    /// Whether `m` accepts `seq`, and whether that was decided within the top frames.
    /// Tried first on a copy of those frames (cheap); a sequence that runs past them is
    /// replayed on a full copy.
    fn accepts_base_seq(m: &Machine, seq: &[u32]) -> (bool, bool) {
        let mut small = m.top_copy(CONTEXT_FRAMES);
        for &b in seq {
            if small.is_done() {
                return (Self::accepts_base_seq_full(m, seq), false);
            }
            if small.step(b).is_err() {
                if small.depth() >= 2 {
                    return (false, true);
                }
                // A failure after popping out of the copied frames may depend on those below.
                return (Self::accepts_base_seq_full(m, seq), false);
            }
        }
        (true, true)
    }

    fn accepts_base_seq_full(m: &Machine, seq: &[u32]) -> bool {
        let mut m = m.clone();
        for &b in seq {
            if m.is_done() || m.step(b).is_err() {
                return false;
            }
        }
        true
    }

    pub fn is_complete(&self) -> bool {
        self.machine.is_done()
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
        Ok(m.output().to_string())
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
