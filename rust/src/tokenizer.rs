//! The public facade: a compiled schema plus its vocabulary.
//!
//! Encoding is `document -> base ids (encode.rs) -> vocabulary ids (vocab::apply)`; decoding
//! is `ids -> base ids (vocab::expand) -> machine (machine.rs)`. The matcher drives the same
//! machine in strict mode and tests vocabulary ids through their base expansions.

use crate::compile::{compile, Graph};
use crate::encode::Encoder;
use crate::error::{DecodeError, EncodeError, SchemaError};
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
        Tokenizer {
            inner: Arc::new(Inner {
                graph: Arc::new(graph),
                file,
                hash,
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

    pub fn encode_value(&self, doc: &Value) -> Result<Encoding, EncodeError> {
        let (base, fallbacks) = Encoder::new(&self.inner.graph).encode_document(doc)?;
        let ids = self.vocab().apply(&base);
        Ok(Encoding { ids, fallbacks })
    }

    /// Base ids only (no dictionary or merges).
    pub fn encode_base(&self, doc: &Value) -> Result<Encoding, EncodeError> {
        let (ids, fallbacks) = Encoder::new(&self.inner.graph).encode_document(doc)?;
        Ok(Encoding { ids, fallbacks })
    }

    /// Parse JSON text and encode it.
    pub fn encode_json(&self, text: &[u8]) -> Result<Encoding, EncodeError> {
        let v = parse_json(text)?;
        self.encode_value(&v)
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
            for &b in &base {
                if m.is_done() {
                    return Err(DecodeError::new(
                        i,
                        "token runs past the end of the document",
                    ));
                }
                m.step(b).map_err(|msg| DecodeError::new(i, msg))?;
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

/// Parse JSON text, with the byte offset of a syntax error.
pub fn parse_json(text: &[u8]) -> Result<Value, EncodeError> {
    serde_json::from_slice(text).map_err(|e| {
        let offset = line_col_to_offset(text, e.line(), e.column());
        EncodeError {
            pointer: String::new(),
            offset: Some(offset),
            message: format!("invalid JSON: {e}"),
        }
    })
}

fn line_col_to_offset(text: &[u8], line: usize, col: usize) -> usize {
    let mut l = 1;
    for (i, &b) in text.iter().enumerate() {
        if l == line {
            return (i + col.saturating_sub(1)).min(text.len());
        }
        if b == b'\n' {
            l += 1;
        }
    }
    text.len()
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
            ended: false,
            allowed_base: vec![false; nb],
        }
    }

    /// Accept one id. A disallowed id is an error and leaves the state unchanged. BOS is
    /// accepted (and ignored) before the document; EOS only once it is complete.
    pub fn advance(&mut self, id: u32) -> Result<(), DecodeError> {
        let pos = self.base.len();
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
        Ok(())
    }

    /// Write the allowed-next-id mask into `out` (length `vocab_size`).
    pub fn fill_allowed(&mut self, out: &mut [bool]) {
        out.fill(false);
        let v = self.tok.vocab().clone();
        if self.ended {
            return;
        }
        if self.machine.is_done() {
            if let Some(x) = out.get_mut(v.eos_id() as usize) {
                *x = true;
            }
            return;
        }
        self.allowed_base.fill(false);
        self.machine.allowed(&mut self.allowed_base);
        let nb = self.allowed_base.len();
        let n = nb.min(out.len());
        out[..n].copy_from_slice(&self.allowed_base[..n]);
        // Vocabulary ids: allowed when their whole expansion is.
        let mut exp = Vec::new();
        for id in nb as u32..v.pad_id() {
            let Some(e) = v.expansion(id) else { continue };
            if !self.allowed_base[e[0] as usize] {
                continue;
            }
            exp.clear();
            exp.extend_from_slice(e);
            if self.accepts_base_seq(&exp) {
                out[id as usize] = true;
            }
        }
    }

    fn accepts_base_seq(&self, seq: &[u32]) -> bool {
        let mut m = self.machine.clone();
        let mut buf = vec![false; self.allowed_base.len()];
        for (k, &b) in seq.iter().enumerate() {
            if m.is_done() {
                return false;
            }
            if k > 0 {
                buf.fill(false);
                m.allowed(&mut buf);
                if !buf[b as usize] {
                    return false;
                }
            }
            if m.step(b).is_err() {
                return false;
            }
        }
        true
    }

    pub fn is_complete(&self) -> bool {
        self.machine.is_done()
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
