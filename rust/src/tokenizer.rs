//! The public facade: a compiled schema plus its vocabulary.
//!
//! Encoding is `document -> base ids (encode.rs) -> vocabulary ids (vocab::apply)`; decoding
//! is `ids -> base ids (vocab::expand) -> machine (machine.rs)`. The matcher drives the same
//! machine in strict mode and tests vocabulary ids through their base expansions (matcher/);
//! training is in train.rs, the test helpers in testing.rs.

use crate::compile::{compile, compile_with, Graph, RefSiblings};
use crate::encode::Encoder;
use crate::error::{DecodeError, EncodeError, SchemaError};
use crate::json::Json;
use crate::machine::{Machine, Mode};
use crate::matcher::{MatcherSource, VocabTables};
use crate::vocab::{TokenizerFile, Vocab, DEFAULT_N_POSITIONS};
use serde_json::Value;
use std::sync::Arc;

pub use crate::matcher::Matcher;

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

impl MatcherSource for Inner {
    fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }
    fn vocab(&self) -> &Vocab {
        &self.file.vocab
    }
    fn tables(&self) -> &VocabTables {
        &self.tables
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
            ref_siblings: RefSiblings::ByDraft,
        };
        Ok(Self::assemble(graph, file))
    }

    /// Build from a tokenizer file's contents (a trained vocabulary).
    pub fn from_file(file: TokenizerFile) -> Result<Self, SchemaError> {
        let graph = compile_with(&file.schema, &file.registry, file.ref_siblings)?;
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

    /// Writes [`Tokenizer::to_bytes`] to `path` atomically: the file appears whole (synced to
    /// disk) or not at all, and an existing file is replaced only by a complete one.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        crate::atomic_file::write(path, &self.to_bytes())
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
    // Performance (goal: decode faster than encode).
    //
    // The corpus (33,145 documents, 19.7M trained ids standing for 105.6M base ids, 91% of
    // them string bytes; 73% of the ids are text only), bundled tokenizer, `--profile fast`,
    // 2-core AMD EPYC dev box: 1.47 s -> 0.78-0.84 s (Python `decode` 70-80 -> 124-145 MB/s,
    // beside encode's 104-108 MB/s in the same runs). In order of effect:
    // - the machine lost its per-token overheads: no `Arc<Graph>` clone per `settle` (two
    //   atomic operations after every token), no clone of the top frame per `step` (a copied
    //   view instead), a required-key bit set per object instead of recomputing it, string
    //   ends checked without copying the map's used keys, no `Arc` per empty used-key list,
    //   a string value opened by its first run of bytes, the output reserved (1.47 -> 0.84 s);
    // - plain string values are written straight to the output, escaped per run, with a
    //   per-id "needs no escaping" flag, and the output is checked to be UTF-8 once at the end
    //   instead of per string (`machine::Output::direct`);
    // - text-only ids in a row go into the open string in one call, each from one load of a
    //   packed per-id table (`Vocab::text_only`; 0.84 -> 0.78-0.80 s).
    //
    // Tried and dropped: boxing the large graph nodes (32-byte nodes instead of 240: no
    // change), one table for expansion offsets and runs (no change).
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

    /// `rules` prepared for this tokenizer's matchers (`Matcher::with_rules`).
    pub fn enforce(&self, rules: Arc<crate::rules::Rules>) -> Arc<crate::rules::layer::Enforced> {
        crate::rules::layer::Enforced::new(rules, self.inner.graph.clone(), self.vocab())
    }

    pub fn matcher(&self) -> Matcher {
        Matcher::new(self.inner.clone())
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
        // Capped and fork-safe (see `pool`).
        crate::pool::install(num_threads, run)
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
