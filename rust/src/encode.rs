//! The encoder: a JSON value and the codec graph in, base token ids out.
//!
//! A subtree that does not conform to its schema node is spelled in the generic encoding after
//! a `FALLBACK` token, as deep in the tree as the enclosing structure allows, and its JSON
//! pointer is reported. Union branches are chosen by a cheap filter first (type, required and
//! forbidden keys), so nested unions do not make encoding exponential: a full trial encode only
//! runs when more than one branch passes the filter.

use std::borrow::Cow;

use crate::base::*;
use crate::compile::header::header_feasible;
use crate::compile::ir::Bits;
use crate::compile::ir::{Node, NodeId, ObjSpec};
use crate::compile::Graph;
use crate::error::{escape_pointer_token, EncodeError};
use crate::json::{string_literal_eq, Json};
use crate::numbers::number_grammar_ok;

enum Seg<'v> {
    Key(&'v str),
    Idx(usize),
}

pub struct Encoder<'g, 'v> {
    g: &'g Graph,
    pub out: Vec<u32>,
    pub fallbacks: Vec<String>,
    path: Vec<Seg<'v>>,
    /// Scratch stack of [`Self::enc_obj`].
    slots: Vec<u32>,
    error: Option<EncodeError>,
    /// Accept arrays and maps below their minimum counts (a prompt's open containers).
    pub relax_min: bool,
    /// With [`Self::with_contents`]: the texts that `out` refers to.
    contents: Option<Vec<&'v str>>,
}

/// A document's base ids, with contents by reference where the encoder was made so.
pub struct Encoded<'v> {
    /// Base ids, and `CONTENT_REF + k` for `contents[k]` (its bytes, then `STR_END`).
    pub items: Vec<u32>,
    pub contents: Vec<&'v str>,
    /// JSON pointers of the subtrees spelt in the generic encoding.
    pub fallbacks: Vec<String>,
}

/// Whether `v` is the constant whose compact JSON text is `c` (numbers compare by text).
fn const_eq(c: &str, v: &Json) -> bool {
    match v {
        Json::String(s) => string_literal_eq(c, s),
        Json::Null => c == "null",
        Json::Bool(b) => c == if *b { "true" } else { "false" },
        Json::Number(n) => *n == c,
        _ => crate::json::parse(c.as_bytes()).is_ok_and(|x| &x == v),
    }
}

impl<'g, 'v> Encoder<'g, 'v> {
    pub fn new(g: &'g Graph) -> Self {
        Encoder {
            g,
            out: Vec::new(),
            fallbacks: Vec::new(),
            path: Vec::new(),
            slots: Vec::new(),
            error: None,
            relax_min: false,
            contents: None,
        }
    }

    /// An encoder whose output spells each text (string, key, number) as one `CONTENT_REF + k`
    /// and lists the texts: [`crate::vocab::Vocab::apply_with_contents`] then reads each
    /// text's bytes where they are, instead of one `u32` per byte written here and read back.
    pub fn with_contents(g: &'g Graph) -> Self {
        Encoder {
            contents: Some(Vec::new()),
            ..Encoder::new(g)
        }
    }

    fn pointer(&self) -> String {
        let mut p = String::new();
        for s in &self.path {
            p.push('/');
            match s {
                Seg::Key(k) => p.push_str(&escape_pointer_token(k)),
                Seg::Idx(i) => p.push_str(&i.to_string()),
            }
        }
        p
    }

    /// Encode a whole document.
    pub fn encode_document(self, v: &'v Json<'v>) -> Result<(Vec<u32>, Vec<String>), EncodeError> {
        self.encode_with_contents(v).map(|e| (e.items, e.fallbacks))
    }

    /// [`Self::encode_document`], also returning the texts the output refers to (none unless
    /// the encoder was made by [`Self::with_contents`]).
    pub fn encode_with_contents(mut self, v: &'v Json<'v>) -> Result<Encoded<'v>, EncodeError> {
        let root = self.g.root;
        if !self.enc(root, v, false) {
            self.out.clear();
            self.fallbacks.clear();
            self.fallback(v);
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(Encoded {
                items: self.out,
                contents: self.contents.unwrap_or_default(),
                fallbacks: self.fallbacks,
            }),
        }
    }

    fn push_bytes(&mut self, s: &'v str) {
        if s.len() > crate::MAX_STRING_BYTES && self.error.is_none() {
            self.error = Some(EncodeError::at(
                self.pointer(),
                format!(
                    "string of {} bytes is longer than the limit of {} bytes",
                    s.len(),
                    crate::MAX_STRING_BYTES
                ),
            ));
        }
        self.push_text(s);
    }

    /// A string's, key's or number's text: its bytes and `STR_END`, or one reference to it
    /// (see [`Self::with_contents`]).
    #[inline]
    fn push_text(&mut self, s: &'v str) {
        match &mut self.contents {
            Some(c) => {
                self.out.push(CONTENT_REF + c.len() as u32);
                c.push(s);
            }
            None => {
                self.out.extend(s.bytes().map(u32::from));
                self.out.push(STR_END);
            }
        }
    }

    fn fallback(&mut self, v: &'v Json<'v>) {
        self.fallbacks.push(self.pointer());
        self.out.push(FALLBACK);
        self.generic(v);
    }

    fn generic(&mut self, v: &'v Json<'v>) {
        match v {
            Json::Null => self.out.push(G_NULL),
            Json::Bool(false) => self.out.push(G_FALSE),
            Json::Bool(true) => self.out.push(G_TRUE),
            Json::Number(t) => {
                self.out.push(G_NUM);
                if !number_grammar_ok(t, false) && !generic_number_ok(t) && self.error.is_none() {
                    {
                        self.error = Some(EncodeError::at(
                            self.pointer(),
                            format!("unsupported number {t}"),
                        ));
                    }
                }
                self.push_bytes(t);
            }
            Json::String(s) => {
                self.out.push(G_STR);
                self.push_bytes(s);
            }
            Json::Array(a) => {
                self.out.push(G_ARR);
                for (i, x) in a.iter().enumerate() {
                    self.path.push(Seg::Idx(i));
                    self.generic(x);
                    self.path.pop();
                }
                self.out.push(ARR_END);
            }
            Json::Object(m) => {
                self.out.push(G_OBJ);
                for (k, x) in m.iter() {
                    self.push_text(k);
                    self.path.push(Seg::Key(k));
                    self.generic(x);
                    self.path.pop();
                }
                self.out.push(END);
            }
        }
    }

    /// Encode `v` as a child value: typed when it fits, else through the fallback. A misfit
    /// fails the whole attempt instead when `strict`, when the child is a constant (it has no
    /// token to replace), or when the child starts at the same position as its parent (`shared`:
    /// the decoder binds a FALLBACK there to the parent).
    fn child(&mut self, n: NodeId, v: &'v Json<'v>, strict: bool, shared: bool) -> bool {
        let mark = (self.out.len(), self.fallbacks.len());
        if self.enc(n, v, strict) {
            return true;
        }
        self.out.truncate(mark.0);
        self.fallbacks.truncate(mark.1);
        if strict || shared || matches!(self.g.nodes[n as usize], Node::Const(_)) {
            return false;
        }
        self.fallback(v);
        true
    }

    /// Cheap necessary conditions for `v` to be encodable as node `n`.
    fn quick_ok(&self, n: NodeId, v: &Json) -> bool {
        match &self.g.nodes[n as usize] {
            Node::Any => true,
            Node::Never => false,
            Node::Const(c) => const_eq(c, v),
            Node::Enum(vals) => vals.iter().any(|c| const_eq(c, v)),
            Node::Bool => matches!(v, Json::Bool(_)),
            Node::Str(_) => matches!(v, Json::String(_)),
            Node::Num(s) => match v {
                Json::Number(x) => !s.integer || number_grammar_ok(x, true),
                _ => false,
            },
            Node::Arr(_) => matches!(v, Json::Array(_)),
            Node::Obj(o) => {
                let Some(m) = v.as_object() else { return false };
                // Keys are unique (the parser rejects repeats), so counting the required keys
                // that are present tells whether all of them are.
                let mut required = 0;
                for (k, _) in m {
                    match o.index.get(&o.props, k) {
                        Some(i) => required += usize::from(o.props[i].required),
                        None if o.map.is_none() => return false,
                        None => {}
                    }
                }
                required == o.n_required
            }
            Node::Union(bs) => bs
                .iter()
                .any(|&b| self.g.may_accept(b, v) && self.quick_ok(b, v)),
        }
    }

    fn enc(&mut self, n: NodeId, v: &'v Json<'v>, strict: bool) -> bool {
        let g = self.g;
        match &g.nodes[n as usize] {
            Node::Any => {
                // Typed `{}` values must be what the matcher can produce: numbers within its
                // bounded grammar (others still round-trip, through the fallback).
                if !numbers_generable(v) {
                    return false;
                }
                self.generic(v);
                true
            }
            Node::Never => false,
            Node::Const(c) => const_eq(c, v),
            Node::Enum(vals) => match vals.iter().position(|c| const_eq(c, v)) {
                Some(k) => {
                    self.out.push(SEL0 + k as u32);
                    true
                }
                None => false,
            },
            Node::Bool => match v {
                Json::Bool(b) => {
                    self.out.push(SEL0 + *b as u32);
                    true
                }
                _ => false,
            },
            Node::Str(spec) => match v {
                Json::String(s) if spec.accepts(s, &[]) => {
                    self.push_bytes(s);
                    true
                }
                _ => false,
            },
            Node::Num(spec) => match v {
                Json::Number(t) => {
                    // Bounded numbers are generated without exponents (see machine.rs).
                    let bounded = spec.min.is_some() || spec.max.is_some();
                    let exp_ok = !bounded || !t.contains(['e', 'E']);
                    if exp_ok && number_grammar_ok(t, spec.integer) && spec.accepts_value(t) {
                        self.push_bytes(t);
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            },
            Node::Arr(a) => {
                let Some(items) = v.as_array() else {
                    return false;
                };
                let len = items.len() as u64;
                if (len < a.min_items && !self.relax_min) || a.max_items.is_some_and(|m| len > m) {
                    return false;
                }
                if a.items.is_none() && items.len() > a.prefix.len() {
                    return false;
                }
                if a.unique && crate::json::has_duplicates(items) {
                    return false;
                }
                let start = self.out.len();
                for (i, x) in items.iter().enumerate() {
                    let node = a.prefix.get(i).copied().or(a.items).unwrap_or(n);
                    if a.marker {
                        self.out.push(ITEM);
                    }
                    self.path.push(Seg::Idx(i));
                    let shared = self.out.len() == start;
                    let ok = self.child(node, x, strict, shared);
                    self.path.pop();
                    if !ok {
                        return false;
                    }
                }
                self.out.push(ARR_END);
                true
            }
            Node::Obj(o) => self.enc_obj(o, v, strict),
            Node::Union(bs) => {
                let passes = |me: &Self, k: usize| {
                    g.may_accept(bs[k], v) && g.productive(bs[k]) && me.quick_ok(bs[k], v)
                };
                // Almost always one branch passes the filter: find it without allocating.
                let Some(first) = (0..bs.len()).find(|&k| passes(self, k)) else {
                    return false;
                };
                let mark = (self.out.len(), self.fallbacks.len());
                let attempt = |me: &mut Self, k: usize, strict: bool| -> bool {
                    me.out.push(SEL0 + k as u32);
                    if me.enc(bs[k], v, strict) {
                        return true;
                    }
                    me.out.truncate(mark.0);
                    me.fallbacks.truncate(mark.1);
                    false
                };
                if !(first + 1..bs.len()).any(|k| passes(self, k)) {
                    return attempt(self, first, strict);
                }
                let cands: Vec<usize> = (first..bs.len()).filter(|&k| passes(self, k)).collect();
                for &k in &cands {
                    if attempt(self, k, true) {
                        return true;
                    }
                }
                if !strict {
                    for &k in &cands {
                        if attempt(self, k, false) {
                            return true;
                        }
                    }
                }
                false
            }
        }
    }

    fn enc_obj(&mut self, o: &ObjSpec, v: &'v Json<'v>, strict: bool) -> bool {
        let Some(m) = v.as_object() else { return false };
        let base = self.slots.len();
        let ok = self.enc_obj_at(o, m, strict, base);
        self.slots.truncate(base);
        ok
    }

    /// [`Self::enc_obj`] with its scratch on the shared stack `slots` from `base`: the member
    /// index of each named property (`ABSENT` if absent), then the member index of each map
    /// entry, then each entry's node. Nested objects push above it and pop before returning, so
    /// an object costs no allocation.
    fn enc_obj_at(
        &mut self,
        o: &ObjSpec,
        m: &'v [(Cow<'v, str>, Json<'v>)],
        strict: bool,
        base: usize,
    ) -> bool {
        const ABSENT: u32 = u32::MAX;
        let n_props = o.props.len();
        self.slots.resize(base + n_props, ABSENT);
        let mut present = Bits::default();
        let mut required = 0;
        for (j, (k, _)) in m.iter().enumerate() {
            match o.index.get(&o.props, k) {
                Some(i) => {
                    present.set(i);
                    required += usize::from(o.props[i].required);
                    self.slots[base + i] = j as u32;
                }
                None => self.slots.push(j as u32),
            }
        }
        if required != o.n_required {
            return false;
        }
        let n_entries = self.slots.len() - base - n_props;
        let mut sel = Bits::default();
        for (j, &i) in o.optional.iter().enumerate() {
            if present.get(i) {
                if !self.g.productive(o.props[i].node) {
                    return false;
                }
                sel.set(j);
            }
        }
        if !header_feasible(self.g, o, &sel, usize::MAX) {
            return false;
        }
        let count = present.count() + n_entries as u64;
        if (count < o.min_props && !(self.relax_min && o.map.is_some()))
            || o.max_props.is_some_and(|mx| count > mx)
        {
            return false;
        }
        // Map entries: each key must be accepted, with an entry schema that admits a value.
        if n_entries > 0 {
            let Some(map) = &o.map else { return false };
            for t in 0..n_entries {
                let k: &str = &m[self.slots[base + n_props + t] as usize].0;
                if !map.key.accepts(k, &[]) {
                    return false;
                }
                let mut st = map.key.start();
                for &b in k.as_bytes() {
                    map.key.step(&mut st, b);
                }
                let e = map.entry[map.key.combo_bits(&st)];
                if !self.g.productive(e) {
                    return false;
                }
                self.slots.push(e);
            }
        }
        if !o.optional.is_empty() {
            for j in 0..o.optional.len() {
                if sel.get(j) {
                    self.out.push(SEL0 + j as u32);
                }
            }
            self.out.push(END);
        }
        let start = self.out.len();
        for (i, p) in o.props.iter().enumerate() {
            let j = self.slots[base + i];
            if j != ABSENT {
                let (k, x) = &m[j as usize];
                self.path.push(Seg::Key(k));
                let shared = self.out.len() == start && o.optional.is_empty();
                let ok = self.child(p.node, x, strict, shared);
                self.path.pop();
                if !ok {
                    return false;
                }
            }
        }
        if o.map.is_some() {
            for t in 0..n_entries {
                let (k, x) = &m[self.slots[base + n_props + t] as usize];
                let e = self.slots[base + n_props + n_entries + t];
                self.push_text(k);
                self.path.push(Seg::Key(k));
                let ok = self.child(e, x, strict, false);
                self.path.pop();
                if !ok {
                    return false;
                }
            }
            self.out.push(END);
        }
        true
    }
}

/// Numbers outside the bounded grammar (huge exponents, very long digit runs) still round-trip
/// through the generic path: any JSON number text is accepted there.
fn generic_number_ok(t: &str) -> bool {
    serde_json::from_str::<serde_json::Number>(t).is_ok()
}

/// Whether every number in `v` is within the matcher's bounded number grammar.
fn numbers_generable(v: &Json) -> bool {
    match v {
        Json::Number(n) => number_grammar_ok(n, false),
        Json::Array(a) => a.iter().all(numbers_generable),
        Json::Object(m) => m.iter().all(|(_, x)| numbers_generable(x)),
        _ => true,
    }
}
