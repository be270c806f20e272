//! Schema documents and `$ref` resolution. Nothing is ever fetched: remote references resolve
//! against the documents the caller registers (by `$id` or by URI), or fail with a clear error.

use crate::error::SchemaError;
use serde_json::Value;
use std::collections::HashMap;

/// How `$ref` combines with the keywords beside it.
///
/// The compiled grammar decides what every id means, so a tokenizer file records the reading
/// it was built with ([`crate::vocab::TokenizerFile::ref_siblings`]): files written before the
/// compiler told drafts apart keep `Conjoined`, and their ids keep their meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RefSiblings {
    /// The schema's own draft decides: draft-07 and earlier ignore the siblings, 2019-09 on
    /// (and a schema without `$schema`) apply them. What validators do.
    #[default]
    ByDraft,
    /// Siblings always apply (the 2019-09 reading, whatever the draft).
    Conjoined,
}

impl RefSiblings {
    pub fn as_str(self) -> &'static str {
        match self {
            RefSiblings::ByDraft => "by-draft",
            RefSiblings::Conjoined => "conjoined",
        }
    }

    pub fn parse(s: &str) -> Option<RefSiblings> {
        match s {
            "by-draft" => Some(RefSiblings::ByDraft),
            "conjoined" => Some(RefSiblings::Conjoined),
            _ => None,
        }
    }
}

/// Index of an interned subschema (a document plus a JSON pointer into it).
pub type SchemaId = u32;

pub struct Store {
    docs: Vec<Value>,
    /// Base URI of each document (its `$id`/`id`, or the URI it was registered under).
    bases: Vec<String>,
    /// Per document: whether its `$schema` names draft-07 or earlier, where every keyword beside
    /// `$ref` is ignored (see [`ref_ignores_siblings`]).
    legacy_ref: Vec<bool>,
    /// URI without fragment -> document.
    by_uri: HashMap<String, usize>,
    /// Interned subschemas: (document, pointer).
    locs: Vec<(usize, String)>,
    by_loc: HashMap<(usize, String), SchemaId>,
    ref_siblings: RefSiblings,
}

fn strip_fragment(uri: &str) -> &str {
    match uri.find('#') {
        Some(i) => &uri[..i],
        None => uri,
    }
}

/// The URI forms a document is known under: as given, without a trailing `#`, and with
/// `http`/`https` and `json.`/`www.` SchemaStore host variants folded together.
fn uri_variants(uri: &str) -> Vec<String> {
    let base = strip_fragment(uri).to_string();
    let mut out = vec![base.clone()];
    for (a, b) in [
        (
            "https://json.schemastore.org/",
            "https://www.schemastore.org/",
        ),
        (
            "http://json.schemastore.org/",
            "https://json.schemastore.org/",
        ),
        (
            "http://www.schemastore.org/",
            "https://www.schemastore.org/",
        ),
    ] {
        if let Some(rest) = base.strip_prefix(a) {
            out.push(format!("{b}{rest}"));
        }
        if let Some(rest) = base.strip_prefix(b) {
            out.push(format!("{a}{rest}"));
        }
    }
    out
}

/// Resolve `reference` against `base` (RFC 3986, the subset schemas use).
fn join_uri(base: &str, reference: &str) -> String {
    if reference.contains("://") || base.is_empty() {
        return reference.to_string();
    }
    let base = strip_fragment(base);
    if reference.starts_with('#') {
        return format!("{base}{reference}");
    }
    if let Some(rest) = reference.strip_prefix('/') {
        // Absolute path on the same host.
        if let Some(scheme_end) = base.find("://") {
            let host_end = base[scheme_end + 3..].find('/').map(|i| i + scheme_end + 3);
            let origin = host_end.map(|e| &base[..e]).unwrap_or(base);
            return format!("{origin}/{rest}");
        }
        return reference.to_string();
    }
    match base.rfind('/') {
        Some(i) => format!("{}/{}", &base[..i], reference),
        None => reference.to_string(),
    }
}

/// One reference token of a JSON pointer, unescaped (RFC 6901: `~0` is `~`, `~1` is `/`, and
/// `~` followed by anything else is not a pointer). Percent-escapes (the pointer is a URI
/// fragment) are decoded first.
fn decode_pointer_token(t: &str) -> Result<String, String> {
    let t = percent_decode(t);
    let mut out = String::with_capacity(t.len());
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            Some(x) => {
                return Err(format!(
                    "invalid escape \"~{x}\" in the JSON pointer (only ~0 and ~1 are escapes)"
                ))
            }
            None => {
                return Err(
                    "invalid escape: the JSON pointer token ends with \"~\" (only ~0 and ~1 \
                     are escapes)"
                        .into(),
                )
            }
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Store {
    /// `root` is document 0. Each registry entry is registered under its URI and its `$id`.
    pub fn new(
        root: Value,
        registry: &[(String, Value)],
        ref_siblings: RefSiblings,
    ) -> Result<Store, SchemaError> {
        let mut store = Store {
            ref_siblings,
            docs: Vec::new(),
            bases: Vec::new(),
            legacy_ref: Vec::new(),
            by_uri: HashMap::new(),
            locs: Vec::new(),
            by_loc: HashMap::new(),
        };
        store.add_doc(root, None);
        for (uri, doc) in registry {
            store.add_doc(doc.clone(), Some(uri));
        }
        Ok(store)
    }

    fn add_doc(&mut self, doc: Value, uri: Option<&str>) {
        let idx = self.docs.len();
        let id = doc
            .get("$id")
            .or_else(|| doc.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let base = id
            .clone()
            .or_else(|| uri.map(str::to_string))
            .unwrap_or_default();
        for u in uri.into_iter().map(str::to_string).chain(id) {
            for v in uri_variants(&u) {
                self.by_uri.entry(v).or_insert(idx);
            }
        }
        self.legacy_ref
            .push(self.ref_siblings == RefSiblings::ByDraft && ref_ignores_siblings(&doc));
        self.docs.push(doc);
        self.bases.push(base);
    }

    /// Whether a `$ref` in schema `id` replaces its sibling keywords (draft-07 and earlier)
    /// rather than being conjoined with them (2019-09 on).
    pub fn ref_replaces_siblings(&self, id: SchemaId) -> bool {
        self.legacy_ref[self.locs[id as usize].0]
    }

    pub fn root(&mut self) -> SchemaId {
        self.intern(0, String::new())
    }

    fn intern(&mut self, doc: usize, ptr: String) -> SchemaId {
        if let Some(&id) = self.by_loc.get(&(doc, ptr.clone())) {
            return id;
        }
        let id = self.locs.len() as SchemaId;
        self.locs.push((doc, ptr.clone()));
        self.by_loc.insert((doc, ptr), id);
        id
    }

    pub fn get(&self, id: SchemaId) -> &Value {
        let (doc, ptr) = &self.locs[id as usize];
        // Interned pointers always resolve: they are only created after a successful lookup.
        self.docs[*doc].pointer(ptr).unwrap_or(&Value::Bool(false))
    }

    /// A human-readable location: `pointer` for the root document, `uri#pointer` otherwise.
    pub fn describe(&self, id: SchemaId) -> String {
        let (doc, ptr) = &self.locs[id as usize];
        if *doc == 0 {
            ptr.clone()
        } else {
            format!("{}#{}", self.bases[*doc], ptr)
        }
    }

    /// The subschema at `id` followed by the given path of keys (object keys or array indices).
    pub fn child(&mut self, id: SchemaId, path: &[&str]) -> Option<SchemaId> {
        let (doc, ptr) = self.locs[id as usize].clone();
        let mut p = ptr;
        for k in path {
            p.push('/');
            p.push_str(&crate::error::escape_pointer_token(k));
        }
        self.docs[doc].pointer(&p)?;
        Some(self.intern(doc, p))
    }

    /// Resolve the `$ref` string found in schema `from`.
    pub fn resolve_ref(
        &mut self,
        from: SchemaId,
        reference: &str,
    ) -> Result<SchemaId, SchemaError> {
        let from_doc = self.locs[from as usize].0;
        let err = |m: String| SchemaError::new(self.describe(from) + "/$ref", m);
        let (doc, fragment) = if let Some(frag) = reference.strip_prefix('#') {
            (from_doc, frag.to_string())
        } else {
            let absolute = join_uri(&self.bases[from_doc], reference);
            let (uri, frag) = match absolute.find('#') {
                Some(i) => (absolute[..i].to_string(), absolute[i + 1..].to_string()),
                None => (absolute.clone(), String::new()),
            };
            let doc = uri_variants(&uri)
                .iter()
                .find_map(|u| self.by_uri.get(u).copied())
                .or_else(|| {
                    // A bare file name such as "ava.json" also matches a registered URI ending in it.
                    let name = uri.rsplit('/').next().unwrap_or(&uri);
                    let mut hits = self
                        .by_uri
                        .iter()
                        .filter(|(k, _)| k.rsplit('/').next() == Some(name))
                        .map(|(_, &d)| d);
                    let first = hits.next()?;
                    hits.all(|d| d == first).then_some(first)
                });
            match doc {
                Some(d) => (d, frag),
                None => {
                    return Err(err(format!(
                        "remote reference {reference:?} (resolved to {uri:?}) is not registered; \
                         remote schemas are never fetched, pass them in the registry"
                    )))
                }
            }
        };
        let pointer = if fragment.is_empty() {
            String::new()
        } else if fragment.starts_with('/') {
            // Re-encode each token so the interned pointer is canonical.
            let mut p = String::with_capacity(fragment.len());
            for t in fragment.split('/').skip(1) {
                let token = decode_pointer_token(t)
                    .map_err(|m| err(format!("reference {reference:?}: {m}")))?;
                p.push('/');
                p.push_str(&crate::error::escape_pointer_token(&token));
            }
            p
        } else {
            // A plain-name anchor (`$id: "#name"` / `$anchor`): search the document.
            match find_anchor(&self.docs[doc], &fragment, String::new()) {
                Some(p) => p,
                None => return Err(err(format!("anchor {fragment:?} not found"))),
            }
        };
        if self.docs[doc].pointer(&pointer).is_none() {
            return Err(err(format!("reference {reference:?} points to nothing")));
        }
        Ok(self.intern(doc, pointer))
    }
}

/// Whether the document's `$schema` is draft-07 or earlier, whose `$ref` semantics differ from
/// later drafts: "All other properties in a `$ref` object MUST be ignored" (draft-07, section
/// 8.3; drafts 03 to 06 say the same). From 2019-09 `$ref` is an applicator like `allOf`, and
/// its siblings apply too. A document with no `$schema`, or one naming a draft this does not
/// know, gets the 2019-09 reading: the compiler's behaviour before drafts were told apart, and
/// what python-jsonschema applies to a schema without `$schema` (its latest draft, 2020-12).
fn ref_ignores_siblings(doc: &Value) -> bool {
    let Some(uri) = doc.get("$schema").and_then(Value::as_str) else {
        return false;
    };
    // json-schema.org's meta-schema URIs: `http(s)://json-schema.org/draft-07/schema#`,
    // `.../draft-04/schema`, `.../draft/2019-09/schema`, `.../draft/2020-12/schema`.
    ["draft-03", "draft-04", "draft-05", "draft-06", "draft-07"]
        .iter()
        .any(|d| uri.contains(d))
}

fn find_anchor(v: &Value, name: &str, at: String) -> Option<String> {
    match v {
        Value::Object(m) => {
            let hit = m.get("$anchor").and_then(Value::as_str) == Some(name)
                || m.get("$id").and_then(Value::as_str) == Some(&format!("#{name}"))
                || m.get("id").and_then(Value::as_str) == Some(&format!("#{name}"));
            if hit {
                return Some(at);
            }
            for (k, c) in m {
                if k == "enum" || k == "const" || k == "default" || k == "examples" {
                    continue;
                }
                let p = format!("{at}/{}", crate::error::escape_pointer_token(k));
                if let Some(r) = find_anchor(c, name, p) {
                    return Some(r);
                }
            }
            None
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, c)| find_anchor(c, name, format!("{at}/{i}"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_relative_references() {
        assert_eq!(
            join_uri(
                "https://json.schemastore.org/eslintrc.json",
                "partial-eslint-plugins.json"
            ),
            "https://json.schemastore.org/partial-eslint-plugins.json"
        );
        assert_eq!(
            join_uri("https://a.org/x/y.json", "/z.json"),
            "https://a.org/z.json"
        );
    }

    #[test]
    fn unregistered_remote_ref_is_an_error() {
        let root = serde_json::json!({"$ref": "https://example.com/nope.json"});
        let mut s = Store::new(root, &[], RefSiblings::ByDraft).unwrap();
        let r = s.root();
        let e = s
            .resolve_ref(r, "https://example.com/nope.json")
            .unwrap_err();
        assert!(e.message.contains("not registered"), "{e}");
        assert_eq!(e.pointer, "/$ref");
    }
}
