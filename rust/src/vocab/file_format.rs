//! The tokenizer file: one JSON document holding everything needed to rebuild a tokenizer.
//!
//! ```json
//! {
//!   "format": "tct-tokenizer",
//!   "version": 1,
//!   "name": "github-workflow",
//!   "hash": "sha256:…",                       // identity: see below
//!   "token_layout_version": 1,                // docs/token-format.md
//!   "schema": { … },                          // the root schema, key order kept
//!   "registry": [ { "uri": "…", "schema": { … } } ],
//!   "layout": { "base_size": 300, "n_sel": 32, "dict_start": 300, "merge_start": 556,
//!               "pad": 8189, "bos": 8190, "eos": 8191, "vocab_size": 8192,
//!               "position_start": 8192, "n_positions": 4096 },
//!   "merge_scope": "across",
//!   "encoding": "shortest",                   // absent = "ranked-merges"
//!   "ref_siblings": "by-draft",               // absent = "conjoined" (see RefSiblings)
//!   "dictionary": [ "ubuntu-latest", … ],      // dictionary id base_size + i
//!   "merges": [ [97, 98], [301, 99, 104], … ], // merge id merge_start + r: its parts
//!   "training": { … }                          // what training saw (informational)
//! }
//! ```
//!
//! The `hash` is SHA-256 over the compact JSON of the fields that decide encodings, in this
//! order: `token_layout_version`, `schema`, `registry`, `layout`, `merge_scope`, `encoding`
//! (only when it is not `ranked-merges`, so files written before the field existed keep their
//! hash), `ref_siblings` (only when it is not `conjoined`, for the same reason), `dictionary`,
//! `merges`. Name and training metadata are not part of the identity:
//! retraining the same corpus gives the same hash, renaming the file does not change it. Reading checks the format,
//! the version, the layout against the dictionary and merges, and the hash, and says where a
//! problem is (a JSON pointer into the file).
//!
//! Merges are pairs with `"encoding": "ranked-merges"` (absent) and two or more parts with
//! `"encoding": "shortest"` (pruning may remove the parts a BPE merge was built from; the kept
//! merge is then spelt with the ids that remain before it). Files of the first layout (pairs,
//! no `encoding`) read as before and keep their hash.
//!
//! Writing is atomic ([`TokenizerFile::write`]): a temporary file in the same directory, then a
//! rename, so a crash never leaves a half-written file that looks whole.

use std::path::Path;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{Encoding, MergeScope, Vocab, VocabError, TOKEN_LAYOUT_VERSION};
use crate::compile::RefSiblings;

pub const FORMAT_NAME: &str = "tct-tokenizer";
pub const FORMAT_VERSION: u64 = 1;

/// Everything a tokenizer file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerFile {
    pub name: String,
    pub schema: Value,
    /// `(uri, schema)` pairs that remote `$ref`s resolve against.
    pub registry: Vec<(String, Value)>,
    pub vocab: Vocab,
    /// Training metadata (a [`super::TrainReport`] as JSON, or `null`).
    pub training: Value,
    /// How the schema's `$ref`s read their sibling keywords: part of what ids mean. New files
    /// say `"by-draft"`; files without the field were written before drafts were told apart
    /// and read `Conjoined`, as they were built.
    pub ref_siblings: RefSiblings,
}

impl TokenizerFile {
    fn layout_json(&self) -> Value {
        let v = &self.vocab;
        let (ps, _) = v.position_range();
        json!({
            "base_size": v.base_size(),
            "n_sel": v.n_sel(),
            "dict_start": v.dict_start(),
            "merge_start": v.merge_start(),
            "pad": v.pad_id(),
            "bos": v.bos_id(),
            "eos": v.eos_id(),
            "vocab_size": v.vocab_size(),
            "position_start": ps,
            "n_positions": v.n_positions(),
        })
    }

    fn registry_json(&self) -> Value {
        Value::Array(
            self.registry
                .iter()
                .map(|(u, s)| json!({"uri": u, "schema": s}))
                .collect(),
        )
    }

    fn identity_fields(&self) -> Vec<(&'static str, Value)> {
        let mut f = vec![
            ("token_layout_version", json!(TOKEN_LAYOUT_VERSION)),
            ("schema", self.schema.clone()),
            ("registry", self.registry_json()),
            ("layout", self.layout_json()),
            ("merge_scope", json!(self.vocab.scope().as_str())),
        ];
        if self.vocab.encoding() != Encoding::RankedMerges {
            f.push(("encoding", json!(self.vocab.encoding().as_str())));
        }
        if self.ref_siblings != RefSiblings::Conjoined {
            f.push(("ref_siblings", json!(self.ref_siblings.as_str())));
        }
        f.push(("dictionary", json!(self.vocab.dictionary())));
        f.push(("merges", json!(self.vocab.merges())));
        f
    }

    /// `sha256:<hex>`: the tokenizer's identity (see the module docs).
    pub fn content_hash(&self) -> String {
        hash_fields(&self.identity_fields())
    }

    /// The file's bytes (compact JSON but one line per top-level field, so diffs stay readable).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut fields: Vec<(&str, Value)> = vec![
            ("format", json!(FORMAT_NAME)),
            ("version", json!(FORMAT_VERSION)),
            ("name", json!(self.name)),
            ("hash", json!(self.content_hash())),
        ];
        fields.extend(self.identity_fields());
        fields.push(("training", self.training.clone()));
        let mut out = b"{\n".to_vec();
        for (i, (k, v)) in fields.iter().enumerate() {
            out.extend_from_slice(
                serde_json::to_string(k)
                    .expect("a string serializes")
                    .as_bytes(),
            );
            out.extend_from_slice(b": ");
            out.extend_from_slice(&serde_json::to_vec(v).expect("a Value serializes"));
            out.extend_from_slice(if i + 1 < fields.len() { b",\n" } else { b"\n" });
        }
        out.extend_from_slice(b"}\n");
        out
    }

    /// Parses and checks a tokenizer file.
    pub fn from_bytes(bytes: &[u8]) -> Result<TokenizerFile, VocabError> {
        let root: Value = serde_json::from_slice(bytes).map_err(|e| {
            VocabError::new(
                "",
                format!("not JSON (line {}, column {}): {e}", e.line(), e.column()),
            )
        })?;
        let Value::Object(obj) = root else {
            return Err(VocabError::new("", "the file is not a JSON object"));
        };
        let format = get_str(&obj, "format")?;
        if format != FORMAT_NAME {
            return Err(VocabError::new(
                "/format",
                format!("format {format:?} is not {FORMAT_NAME:?}"),
            ));
        }
        let version = get_u64(&obj, "version", "/version")?;
        if version != FORMAT_VERSION {
            return Err(VocabError::new(
                "/version",
                format!("file format version {version} is not supported (this build reads {FORMAT_VERSION})"),
            ));
        }
        let tlv = get_u64(&obj, "token_layout_version", "/token_layout_version")?;
        if tlv != TOKEN_LAYOUT_VERSION as u64 {
            return Err(VocabError::new(
                "/token_layout_version",
                format!("base token layout version {tlv} is not supported (this build has {TOKEN_LAYOUT_VERSION})"),
            ));
        }
        // Sizes first, then (after the cheap field checks) the content hash on the raw fields,
        // before any table is built: building a tampered file can cost far more than reading
        // it (a 1 MB dictionary entry took 13.4 s and 2.2 GB before the hash check that came
        // after building refused it; now 0.03 s).
        check_sizes(&obj)?;
        let stored = get_str(&obj, "hash")?;
        let name = get_str(&obj, "name")?.to_string();
        let schema = obj
            .get("schema")
            .cloned()
            .ok_or_else(|| missing("schema"))?;
        let registry = match obj.get("registry").ok_or_else(|| missing("registry"))? {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| {
                    let uri = it.get("uri").and_then(Value::as_str).ok_or_else(|| {
                        VocabError::new(format!("/registry/{i}/uri"), "missing or not a string")
                    })?;
                    let s = it.get("schema").cloned().ok_or_else(|| {
                        VocabError::new(format!("/registry/{i}/schema"), "missing")
                    })?;
                    Ok((uri.to_string(), s))
                })
                .collect::<Result<Vec<_>, VocabError>>()?,
            _ => return Err(VocabError::new("/registry", "not an array")),
        };
        let layout = match obj.get("layout") {
            Some(Value::Object(m)) => m,
            _ => return Err(VocabError::new("/layout", "missing or not an object")),
        };
        let base_size = u32_field(layout, "base_size", "/layout/base_size")?;
        let n_positions = u32_field(layout, "n_positions", "/layout/n_positions")?;
        let scope: MergeScope = serde_json::from_value(
            obj.get("merge_scope")
                .cloned()
                .ok_or_else(|| missing("merge_scope"))?,
        )
        .map_err(|e| VocabError::new("/merge_scope", e.to_string()))?;
        let dictionary = match obj.get("dictionary").ok_or_else(|| missing("dictionary"))? {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| {
                    it.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| VocabError::new(format!("/dictionary/{i}"), "not a string"))
                })
                .collect::<Result<Vec<_>, VocabError>>()?,
            _ => return Err(VocabError::new("/dictionary", "not an array")),
        };
        let merges = match obj.get("merges").ok_or_else(|| missing("merges"))? {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| {
                    // `[left, right]` (ranked merges) or `[part, part, ...]` (shortest
                    // encoding); the arity is checked against the encoding by `Vocab::build`.
                    let parts = it.as_array().ok_or_else(|| {
                        VocabError::new(format!("/merges/{i}"), "not an array of ids")
                    })?;
                    parts
                        .iter()
                        .enumerate()
                        .map(|(j, p)| {
                            p.as_u64()
                                .filter(|&x| x < u32::MAX as u64)
                                .map(|x| x as u32)
                                .ok_or_else(|| {
                                    VocabError::new(format!("/merges/{i}/{j}"), "not an id")
                                })
                        })
                        .collect::<Result<Vec<u32>, VocabError>>()
                })
                .collect::<Result<Vec<_>, VocabError>>()?,
            _ => return Err(VocabError::new("/merges", "not an array")),
        };
        let encoding: Encoding = match obj.get("encoding") {
            None => Encoding::RankedMerges,
            Some(e) => serde_json::from_value(e.clone())
                .map_err(|e| VocabError::new("/encoding", e.to_string()))?,
        };
        let ref_siblings = match obj.get("ref_siblings") {
            None => RefSiblings::Conjoined,
            Some(r) => r.as_str().and_then(RefSiblings::parse).ok_or_else(|| {
                VocabError::new(
                    "/ref_siblings",
                    format!("{r} is not \"by-draft\" or \"conjoined\""),
                )
            })?,
        };
        if let Some(raw) = raw_identity_hash(&obj) {
            if raw != stored {
                return Err(hash_mismatch(stored, &raw));
            }
        }
        let vocab = Vocab::build(base_size, scope, encoding, dictionary, merges, n_positions)?;
        let file = TokenizerFile {
            name,
            schema,
            registry,
            vocab,
            training: obj.get("training").cloned().unwrap_or(Value::Null),
            ref_siblings,
        };
        // Every derived layout field must agree with what the dictionary and merges imply.
        let expected = file.layout_json();
        for (k, v) in expected.as_object().expect("layout is an object") {
            match layout.get(k) {
                Some(x) if json_u64(x) == json_u64(v) => {}
                Some(x) => {
                    return Err(VocabError::new(
                        format!("/layout/{k}"),
                        format!("{x} disagrees with the dictionary and merges, which imply {v}"),
                    ))
                }
                None => return Err(VocabError::new(format!("/layout/{k}"), "missing")),
            }
        }
        // The fields as rebuilt must hash the same as the fields as read (they differ only if a
        // field was written in a form that parses to something else).
        let actual = file.content_hash();
        if stored != actual {
            return Err(hash_mismatch(stored, &actual));
        }
        Ok(file)
    }

    /// Reads a tokenizer file; errors name the file.
    pub fn read(path: &Path) -> Result<TokenizerFile, VocabError> {
        let bytes = std::fs::read(path)
            .map_err(|e| VocabError::new("", format!("{}: {e}", path.display())))?;
        TokenizerFile::from_bytes(&bytes)
            .map_err(|e| VocabError::new(e.pointer, format!("{}: {}", path.display(), e.message)))
    }

    /// Writes atomically: `path` holds either its old contents or the whole new file, and no
    /// temporary file is left behind on error.
    pub fn write(&self, path: &Path) -> Result<(), VocabError> {
        crate::atomic_file::write(path, &self.to_bytes())
            .map_err(|e| VocabError::new("", format!("{}: {e}", path.display())))
    }
}

/// Longest dictionary entry a tokenizer file may hold, in UTF-8 bytes. Trained entries are whole
/// values seen in a corpus (the bundled tokenizer's longest: 5,761 bytes); building the tables
/// grows faster than linearly with an entry's length, so the bound keeps loading fast.
pub const MAX_DICTIONARY_ENTRY_BYTES: usize = 64 << 10;
/// Most ids a tokenizer may have: token shards store ids as uint16.
pub const MAX_VOCAB_IDS: usize = 1 << 16;
/// Most parts one entry of `merges` may list (shortest-encoding expansions).
pub const MAX_MERGE_PARTS: usize = 4096;

/// Counts and lengths of the raw file, before anything is built from it.
fn check_sizes(obj: &Map<String, Value>) -> Result<(), VocabError> {
    let dictionary = obj.get("dictionary").and_then(Value::as_array);
    let merges = obj.get("merges").and_then(Value::as_array);
    let n_dict = dictionary.map_or(0, Vec::len);
    let n_merges = merges.map_or(0, Vec::len);
    if n_dict.saturating_add(n_merges) > MAX_VOCAB_IDS {
        return Err(VocabError::new(
            "/dictionary",
            format!(
                "{n_dict} dictionary entries and {n_merges} merges do not fit {MAX_VOCAB_IDS} ids"
            ),
        ));
    }
    for (i, entry) in dictionary.into_iter().flatten().enumerate() {
        if let Some(text) = entry.as_str() {
            if text.len() > MAX_DICTIONARY_ENTRY_BYTES {
                return Err(VocabError::new(
                    format!("/dictionary/{i}"),
                    format!(
                        "a dictionary entry of {} bytes is longer than the limit of \
                         {MAX_DICTIONARY_ENTRY_BYTES}",
                        text.len()
                    ),
                ));
            }
        }
    }
    for (i, merge) in merges.into_iter().flatten().enumerate() {
        if let Some(parts) = merge.as_array() {
            if parts.len() > MAX_MERGE_PARTS {
                return Err(VocabError::new(
                    format!("/merges/{i}"),
                    format!(
                        "{} parts is more than the limit of {MAX_MERGE_PARTS}",
                        parts.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The content hash over the identity fields exactly as the file spells them (what `to_bytes`
/// hashed when it wrote them), or `None` if one is missing (the field checks report that).
pub(crate) fn raw_identity_hash(obj: &Map<String, Value>) -> Option<String> {
    let mut fields: Vec<(&str, &Value)> = Vec::with_capacity(8);
    for name in [
        "token_layout_version",
        "schema",
        "registry",
        "layout",
        "merge_scope",
    ] {
        fields.push((name, obj.get(name)?));
    }
    if let Some(e) = obj.get("encoding") {
        fields.push(("encoding", e));
    }
    if let Some(r) = obj.get("ref_siblings") {
        fields.push(("ref_siblings", r));
    }
    for name in ["dictionary", "merges"] {
        fields.push((name, obj.get(name)?));
    }
    Some(hash_field_refs(&fields))
}

fn hash_mismatch(stored: &str, actual: &str) -> VocabError {
    VocabError::new(
        "/hash",
        format!(
            "content hash mismatch: the file says {stored}, its content is {actual} (edited or \
             corrupted)"
        ),
    )
}

fn hash_fields(fields: &[(&str, Value)]) -> String {
    let refs: Vec<(&str, &Value)> = fields.iter().map(|(k, v)| (*k, v)).collect();
    hash_field_refs(&refs)
}

fn hash_field_refs(fields: &[(&str, &Value)]) -> String {
    let mut h = Sha256::new();
    for (k, v) in fields {
        h.update(serde_json::to_vec(k).expect("a string serializes"));
        h.update(b":");
        h.update(serde_json::to_vec(v).expect("a Value serializes"));
        h.update(b"\n");
    }
    let digest = h.finalize();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn missing(field: &str) -> VocabError {
    VocabError::new(format!("/{field}"), "missing")
}

fn get_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, VocabError> {
    obj.get(field)
        .ok_or_else(|| missing(field))?
        .as_str()
        .ok_or_else(|| VocabError::new(format!("/{field}"), "not a string"))
}

fn json_u64(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn get_u64(obj: &Map<String, Value>, field: &str, ptr: &str) -> Result<u64, VocabError> {
    obj.get(field)
        .ok_or_else(|| missing(field))?
        .as_u64()
        .ok_or_else(|| VocabError::new(ptr, "not a non-negative integer"))
}

fn u32_field(obj: &Map<String, Value>, field: &str, ptr: &str) -> Result<u32, VocabError> {
    let v = obj
        .get(field)
        .ok_or_else(|| VocabError::new(ptr, "missing"))?
        .as_u64()
        .ok_or_else(|| VocabError::new(ptr, "not a non-negative integer"))?;
    u32::try_from(v).map_err(|_| VocabError::new(ptr, format!("{v} is too large")))
}

#[cfg(test)]
mod integrity_tests {
    use super::*;
    use std::time::Instant;

    fn bundled() -> Map<String, Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/tct/data/github-workflow.tct.json"
        );
        let bytes = std::fs::read(path).expect("the bundled tokenizer file");
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => m,
            _ => panic!("the bundled tokenizer file is not a JSON object"),
        }
    }

    fn load(obj: &Map<String, Value>) -> (Result<TokenizerFile, VocabError>, f64) {
        let bytes = serde_json::to_vec(&Value::Object(obj.clone())).expect("serializes");
        let t = Instant::now();
        let r = TokenizerFile::from_bytes(&bytes);
        (r, t.elapsed().as_secs_f64())
    }

    #[test]
    fn the_bundled_file_still_loads() {
        let (r, _) = load(&bundled());
        assert!(r.is_ok(), "{:?}", r.err());
    }

    #[test]
    fn a_tampered_entry_is_refused_by_the_hash_before_building() {
        // 64 KB: inside the size limit, so only the hash can refuse it.
        let mut obj = bundled();
        obj["dictionary"][0] = json!("x".repeat(MAX_DICTIONARY_ENTRY_BYTES));
        let (r, secs) = load(&obj);
        let e = r.expect_err("a tampered file loads");
        assert_eq!(e.pointer, "/hash", "{e:?}");
        assert!(secs < 2.0, "{secs} s before the hash mismatch");
        // 1 MB (built before refused: 13 s, 2.2 GB): refused by its size, at once.
        let mut obj = bundled();
        obj["dictionary"][0] = json!("x".repeat(1 << 20));
        let (r, secs) = load(&obj);
        assert!(r.is_err());
        assert!(secs < 2.0, "{secs} s before the refusal");
    }

    #[test]
    fn oversized_entries_are_refused_even_with_a_matching_hash() {
        let mut obj = bundled();
        obj["dictionary"][3] = json!("y".repeat(1 << 20));
        let hash = raw_identity_hash(&obj).expect("all fields present");
        obj["hash"] = json!(hash);
        let (r, secs) = load(&obj);
        let e = r.expect_err("a 1 MB dictionary entry loads");
        assert_eq!(e.pointer, "/dictionary/3", "{e:?}");
        assert!(secs < 2.0, "{secs} s");

        let mut obj = bundled();
        let merges = obj["merges"].as_array().cloned().unwrap_or_default();
        let mut many = merges.clone();
        while many.len() <= MAX_VOCAB_IDS {
            many.extend(merges.iter().cloned());
        }
        obj["merges"] = Value::Array(many);
        let (r, _) = load(&obj);
        assert_eq!(r.expect_err("too many ids").pointer, "/dictionary");
    }
}
