//! JSON documents for the encoder: a tree that borrows its strings and numbers from the input
//! text, and a strict RFC 8259 parser that builds it.
//!
//! Why not `serde_json::Value`: the encoder only reads the document once, front to back, and
//! `Value` (with the `preserve_order` and `arbitrary_precision` features the rest of the crate
//! needs) allocates a `String` per string and number and an `IndexMap` (a hash table with a
//! SipHash state) per object. Parsing into `Value` took as long as the whole schema walk.
// Measured with `cargo test --profile fast --test codec profile_encode -- --ignored
// --nocapture` (3,014 corpus documents, 11.9 MB, idle 2-core AMD EPYC dev box):
// `serde_json::from_slice::<Value>` 0.076 s (158 MB/s), this parser 0.034 s (347 MB/s) and
// 0.030 s (394 MB/s) with the eight-bytes-at-a-time string scan (`skip_plain`); the
// schema walk after it went from 0.072 s to 0.061 s (fewer cache misses on the smaller tree).
//!
//! Semantics (the same as before, where they matter):
//! - numbers keep their exact text (like `arbitrary_precision`): `1.0` stays `1.0`;
//! - object members keep document order (like `preserve_order`);
//! - a repeated key in one object is an error: JSON leaves its meaning open (parsers keep the
//!   first or the last), and silently dropping a value would lose data. (`serde_json::Value`
//!   kept the last value at the first key's position.)
//! - nesting deeper than [`MAX_NESTING`] is an error, as in serde_json, so that the recursive
//!   encoder never runs out of stack, also on rayon's worker threads.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::{escape_pointer_token, EncodeError};

/// The deepest nesting of arrays and objects accepted (serde_json's default recursion limit).
pub const MAX_NESTING: usize = 128;

/// A JSON value borrowing from the text it was parsed from (or from a `serde_json::Value`).
#[derive(Debug, Clone)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// The number's text, a valid JSON number, exactly as written.
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in document order; keys are unique.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(Cow<'a, str>, Json<'a>)]> {
        match self {
            Json::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The value of member `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// A view of `v` (strings and numbers borrowed). Errors past [`MAX_NESTING`] levels.
    pub fn from_value(v: &'a Value) -> Result<Json<'a>, EncodeError> {
        from_value_at(v, 0).map_err(|path| {
            EncodeError::at(
                pointer_of(path),
                format!("nesting deeper than {MAX_NESTING} levels"),
            )
        })
    }

    /// Compact JSON text (`serde_json`'s spelling of strings).
    pub fn write_compact(&self, out: &mut String) {
        self.write_text(out, false);
    }

    /// Compact JSON text with object members sorted by key: equal values (as `PartialEq`
    /// defines it) have equal text.
    fn write_canonical(&self, out: &mut String) {
        self.write_text(out, true);
    }

    fn write_text(&self, out: &mut String, sorted: bool) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(t) => out.push_str(t),
            Json::String(s) => write_string(s, out),
            Json::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.write_text(out, sorted);
                }
                out.push(']');
            }
            Json::Object(m) => {
                out.push('{');
                let mut member = |i: usize, k: &str, x: &Json| {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(k, out);
                    out.push(':');
                    x.write_text(out, sorted);
                };
                if sorted {
                    // Only for equality keys: document order (no allocation) otherwise.
                    let mut members: Vec<_> = m.iter().collect();
                    members.sort_by(|a, b| a.0.cmp(&b.0));
                    for (i, (k, x)) in members.into_iter().enumerate() {
                        member(i, k, x);
                    }
                } else {
                    for (i, (k, x)) in m.iter().enumerate() {
                        member(i, k, x);
                    }
                }
                out.push('}');
            }
        }
    }
}

/// `true` when two items of `items` are equal (as [`Json`]'s `PartialEq` defines it).
/// Linear: strings go to a set of their own (no copy), other values by their canonical text
/// (objects with members sorted by key, so that member order does not matter). The pairwise
/// search it replaces took 24 s on 100,000 unique strings.
pub fn has_duplicates(items: &[Json<'_>]) -> bool {
    let mut strings = std::collections::HashSet::with_capacity(items.len());
    let mut others = std::collections::HashSet::new();
    for x in items {
        let fresh = match x {
            Json::String(s) => strings.insert(&**s),
            _ => {
                let mut text = String::new();
                x.write_canonical(&mut text);
                others.insert(text)
            }
        };
        if !fresh {
            return true;
        }
    }
    false
}

/// Equality as `serde_json::Value` (with `arbitrary_precision`) defines it: numbers by their
/// text, objects as sets of members.
impl PartialEq for Json<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Json::Null, Json::Null) => true,
            (Json::Bool(a), Json::Bool(b)) => a == b,
            (Json::Number(a), Json::Number(b)) => a == b,
            (Json::String(a), Json::String(b)) => a == b,
            (Json::Array(a), Json::Array(b)) => a == b,
            (Json::Object(a), Json::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, x)| b.iter().any(|(k2, y)| k == k2 && x == y))
            }
            _ => false,
        }
    }
}

/// `s` as a JSON string literal, escaped as `serde_json` does (`"`, `\`, control characters;
/// `\u00XX` for controls without a short escape).
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    escape_runs(s.as_bytes(), |run| match run {
        // Escaped bytes are ASCII, so plain runs lie on character boundaries.
        Run::Plain(from, to) => out.push_str(&s[from..to]),
        Run::Escape(b) => out.push_str(&escape_of(b)),
    });
    out.push('"');
}

/// The inside of a JSON string literal for `bytes` (no quotes), as [`write_string`] writes it,
/// appended to a byte buffer: for writers that validate UTF-8 once, over the whole output.
pub fn escape_bytes_into(bytes: &[u8], out: &mut Vec<u8>) {
    // (The decoder's hot path: the escape is written out of line so that this closure is
    // inlined; with `escape_of` in it, it was not, and decoding got 3% slower.)
    escape_runs(bytes, |run| match run {
        Run::Plain(from, to) => out.extend_from_slice(&bytes[from..to]),
        Run::Escape(b) => push_escape(b, out),
    });
}

#[inline(never)]
fn push_escape(b: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(escape_of(b).as_bytes());
}

/// A piece of a string's content as a JSON literal spells it ([`escape_runs`]).
pub(crate) enum Run {
    /// `bytes[from..to]`, copied as they are.
    Plain(usize, usize),
    /// One byte that is written as [`escape_of`] it.
    Escape(u8),
}

/// Cuts `bytes` into the plain runs and escaped bytes of its JSON string literal, in order:
/// the one scan behind every writer and size count of string literals. Plain bytes are
/// skipped eight at a time ([`skip_plain`]).
#[inline]
pub(crate) fn escape_runs(bytes: &[u8], mut emit: impl FnMut(Run)) {
    let (mut from, mut i) = (0, 0);
    while i < bytes.len() {
        i = skip_plain(bytes, i);
        let Some(&b) = bytes.get(i) else { break };
        if !needs_escape(b) {
            i += 1;
            continue;
        }
        if from < i {
            emit(Run::Plain(from, i));
        }
        emit(Run::Escape(b));
        i += 1;
        from = i;
    }
    if from < bytes.len() {
        emit(Run::Plain(from, bytes.len()));
    }
}

/// How byte `b` (one that [`needs_escape`]) is written inside a JSON string literal.
pub(crate) fn escape_of(b: u8) -> std::borrow::Cow<'static, str> {
    match short_escape(b) {
        Some(esc) => esc.into(),
        None => format!("\\u{b:04x}").into(),
    }
}

/// Whether byte `b` must be escaped inside a JSON string literal.
fn needs_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The two-character escape of `b`, when JSON has one (other control characters: `\u00XX`).
fn short_escape(b: u8) -> Option<&'static str> {
    Some(match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        b'\n' => "\\n",
        b'\r' => "\\r",
        b'\t' => "\\t",
        0x08 => "\\b",
        0x0c => "\\f",
        _ => return None,
    })
}

/// `s` as a JSON string literal.
pub fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_string(s, &mut out);
    out
}

/// Whether `s`, written as a JSON string literal, is exactly `literal` (no allocation when `s`
/// needs no escapes, the common case).
pub fn string_literal_eq(literal: &str, s: &str) -> bool {
    let plain = !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    if plain {
        literal.len() == s.len() + 2
            && literal.starts_with('"')
            && literal.ends_with('"')
            && &literal[1..literal.len() - 1] == s
    } else {
        let mut t = String::with_capacity(s.len() + 8);
        write_string(s, &mut t);
        t == literal
    }
}

/// The path (innermost segment first) to where nesting went too deep.
fn from_value_at(v: &Value, depth: usize) -> Result<Json<'_>, Vec<String>> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => Json::Number(n.as_str()),
        Value::String(s) => Json::String(Cow::Borrowed(s)),
        Value::Array(a) => {
            if depth >= MAX_NESTING {
                return Err(Vec::new());
            }
            let mut out = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                out.push(from_value_at(x, depth + 1).map_err(|mut p| {
                    p.push(i.to_string());
                    p
                })?);
            }
            Json::Array(out)
        }
        Value::Object(m) => {
            if depth >= MAX_NESTING {
                return Err(Vec::new());
            }
            let mut out = Vec::with_capacity(m.len());
            for (k, x) in m {
                let x = from_value_at(x, depth + 1).map_err(|mut p| {
                    p.push(k.clone());
                    p
                })?;
                out.push((Cow::Borrowed(k.as_str()), x));
            }
            Json::Object(out)
        }
    })
}

/// A JSON pointer from segments innermost first.
fn pointer_of(mut path: Vec<String>) -> String {
    path.reverse();
    let mut p = String::new();
    for s in path {
        p.push('/');
        p.push_str(&escape_pointer_token(&s));
    }
    p
}

/// Parse JSON text (UTF-8, no byte-order mark) into a [`Json`] tree that borrows from it.
/// Errors give the byte offset of the problem and the JSON pointer of the value it is in.
pub fn parse(text: &[u8]) -> Result<Json<'_>, EncodeError> {
    let text = std::str::from_utf8(text).map_err(|e| EncodeError {
        pointer: String::new(),
        offset: Some(e.valid_up_to()),
        message: "invalid JSON: the text is not valid UTF-8".into(),
    })?;
    parse_str(text)
}

/// [`parse`] for text already known to be UTF-8 (no second validation pass).
pub fn parse_str(text: &str) -> Result<Json<'_>, EncodeError> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
        items: Vec::new(),
        members: Vec::new(),
    };
    let fail = |e: Box<Fail>| EncodeError {
        pointer: pointer_of(e.path),
        offset: Some(e.offset),
        message: format!("invalid JSON: {}", e.message),
    };
    p.ws();
    let v = p.value(0).map_err(fail)?;
    p.ws();
    if p.i < p.b.len() {
        return Err(fail(p.fail("trailing characters after the document")));
    }
    Ok(v)
}

/// The first index from `i` on whose byte may end a plain run of string content (`"`, `\`
/// or a control character), looking at eight bytes at a time (SWAR); the caller checks that
/// byte. Strings are most of a workflow's bytes: the scan a byte at a time was half the parse.
#[inline]
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let v = u64::from_le_bytes(bytes);
        let quote = v ^ (LO * u64::from(b'"'));
        let slash = v ^ (LO * u64::from(b'\\'));
        // A byte is flagged when it is zero after the xor (equal) or below 0x20; the lowest
        // flagged byte is exact (borrows only flag bytes above it).
        let hits = (quote.wrapping_sub(LO) & !quote)
            | (slash.wrapping_sub(LO) & !slash)
            | (v.wrapping_sub(LO * 0x20) & !v);
        let hits = hits & HI;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

struct Fail {
    offset: usize,
    message: String,
    /// Segments, innermost first.
    path: Vec<String>,
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Items of the arrays and members of the objects being parsed, innermost last: a
    /// container's children gather here and move out in one exact-size allocation when it
    /// closes, instead of each container growing its own vector (realloc after realloc).
    items: Vec<Json<'a>>,
    members: Vec<(Cow<'a, str>, Json<'a>)>,
}

impl<'a> Parser<'a> {
    /// Boxed: a `Result` of a `Json` and an unboxed `Fail` is twice the size, and every value
    /// the parser returns is moved through it.
    // Measured with the shared child stacks of `Parser` (whole corpus, 130 MB, `fast`
    // profile, dev box): 0.298 s -> 0.238 s.
    fn fail(&self, message: impl Into<String>) -> Box<Fail> {
        Box::new(Fail {
            offset: self.i,
            message: message.into(),
            path: Vec::new(),
        })
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, Box<Fail>> {
        match self.peek() {
            None => Err(self.fail("expected a value, found the end of the text")),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.fail("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, v: Json<'a>) -> Result<Json<'a>, Box<Fail>> {
        for &w in word.as_bytes() {
            match self.peek() {
                Some(c) if c == w => self.i += 1,
                Some(_) => return Err(self.fail(format!("expected `{word}`"))),
                None => return Err(self.fail("unexpected end of the text")),
            }
        }
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json<'a>, Box<Fail>> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.fail("expected a digit after the decimal point"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.fail("expected a digit in the exponent"));
            }
        }
        Ok(Json::Number(&self.s[start..self.i]))
    }

    /// A string literal at `self.i` (the opening quote); borrowed unless it has escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, Box<Fail>> {
        self.i += 1;
        let start = self.i;
        // Fast scan to the closing quote, a backslash or a control character.
        loop {
            self.i = skip_plain(self.b, self.i);
            match self.b.get(self.i) {
                None => return Err(self.fail("unterminated string")),
                Some(b'"') => {
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(&c) if c < 0x20 => {
                    return Err(self.fail("control character in a string (must be escaped)"))
                }
                Some(_) => self.i += 1,
            }
        }
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(&self.s[start..self.i]);
        loop {
            let run = self.i;
            self.i = skip_plain(self.b, self.i);
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.s[run..self.i]);
            match self.peek() {
                None => return Err(self.fail("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(_) => return Err(self.fail("control character in a string (must be escaped)")),
            }
        }
    }

    /// One escape sequence at `self.i` (the backslash), appended to `out`.
    fn escape(&mut self, out: &mut String) -> Result<(), Box<Fail>> {
        let at = self.i;
        self.i += 1;
        let c = match self.peek() {
            None => return Err(self.fail("unterminated string")),
            Some(c) => c,
        };
        self.i += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                match hi {
                    0xD800..=0xDBFF => {
                        if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                            self.i = at;
                            return Err(self.fail("lone surrogate in a \\u escape"));
                        }
                        self.i += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            self.i = at;
                            return Err(self.fail("lone surrogate in a \\u escape"));
                        }
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        char::from_u32(cp).unwrap_or('\u{FFFD}')
                    }
                    0xDC00..=0xDFFF => {
                        self.i = at;
                        return Err(self.fail("lone surrogate in a \\u escape"));
                    }
                    // Every other value below 0x10000 is a scalar value.
                    _ => char::from_u32(hi).unwrap_or('\u{FFFD}'),
                }
            }
            _ => {
                self.i -= 1;
                return Err(self.fail("invalid escape"));
            }
        };
        out.push(ch);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Box<Fail>> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                Some(_) => return Err(self.fail("expected a hex digit in a \\u escape")),
                None => return Err(self.fail("unterminated string")),
            };
            v = v * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    fn array(&mut self, depth: usize) -> Result<Json<'a>, Box<Fail>> {
        if depth >= MAX_NESTING {
            return Err(self.fail(format!("nesting deeper than {MAX_NESTING} levels")));
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Json::Array(Vec::new()));
        }
        let base = self.items.len();
        loop {
            let item = self.value(depth + 1).map_err(|mut e| {
                e.path.push((self.items.len() - base).to_string());
                e
            })?;
            self.items.push(item);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        return Err(self.fail("trailing comma in an array"));
                    }
                }
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Array(self.items.split_off(base)));
                }
                None => return Err(self.fail("unterminated array")),
                Some(_) => return Err(self.fail("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json<'a>, Box<Fail>> {
        if depth >= MAX_NESTING {
            return Err(self.fail(format!("nesting deeper than {MAX_NESTING} levels")));
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Object(Vec::new()));
        }
        let base = self.members.len();
        // Keys seen, for objects too large to check by a linear scan.
        let mut seen: Option<std::collections::HashSet<Cow<'a, str>>> = None;
        loop {
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.fail("unterminated object")),
                Some(_) => return Err(self.fail("expected a key (a string)")),
            }
            let key_at = self.i;
            let key = self.string()?;
            let repeated = match &mut seen {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let members = &self.members[base..];
                    let r = members.iter().any(|(k, _)| *k == key);
                    if members.len() >= 16 {
                        seen = Some(members.iter().map(|(k, _)| k.clone()).collect());
                        if let Some(set) = &mut seen {
                            set.insert(key.clone());
                        }
                    }
                    r
                }
            };
            if repeated {
                self.i = key_at;
                return Err(self.fail(format!(
                    "repeated key {:?} in an object (its meaning is ambiguous)",
                    key
                )));
            }
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.fail("expected `:` after a key"));
            }
            self.i += 1;
            self.ws();
            let value = self.value(depth + 1).map_err(|mut e| {
                e.path.push(key.to_string());
                e
            })?;
            self.members.push((key, value));
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        return Err(self.fail("trailing comma in an object"));
                    }
                }
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::Object(self.members.split_off(base)));
                }
                None => return Err(self.fail("unterminated object")),
                Some(_) => return Err(self.fail("expected `,` or `}`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> EncodeError {
        parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn agrees_with_serde_json_on_valid_text() {
        let texts = [
            r#"{"a":[1,-2.5e+3,0,true,false,null],"b":{"c":"d\n\u00e9\ud83d\ude00\"\\\/"},"":""}"#,
            "  [ ]  ",
            "{}",
            "\"x\"",
            "-0.0e-7",
            r#"{"k": "\u0000\u001f"}"#,
        ];
        for t in texts {
            let ours = parse(t.as_bytes()).unwrap();
            let theirs: Value = serde_json::from_str(t).unwrap();
            assert_eq!(ours, Json::from_value(&theirs).unwrap(), "{t}");
            let mut compact = String::new();
            ours.write_compact(&mut compact);
            assert_eq!(compact, serde_json::to_string(&theirs).unwrap(), "{t}");
        }
    }

    #[test]
    fn numbers_keep_their_text_and_members_their_order() {
        // (serde_json spells exponents with a lower-case `e`; the text is kept as written.)
        let v = parse(br#"{"z": 1.0, "a": 1e5, "m": -0, "E": 2E-3}"#).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["z", "a", "m", "E"]);
        assert_eq!(v.get("E"), Some(&Json::Number("2E-3")));
        assert_eq!(v.get("z"), Some(&Json::Number("1.0")));
        assert_eq!(v.get("a"), Some(&Json::Number("1e5")));
        assert_ne!(Json::Number("1.0"), Json::Number("1"));
    }

    #[test]
    fn objects_compare_as_sets() {
        let a = parse(br#"{"x": [1, {"p": 1, "q": 2}], "y": null}"#).unwrap();
        let b = parse(br#"{"y": null, "x": [1, {"q": 2, "p": 1}]}"#).unwrap();
        assert_eq!(a, b);
        let c = parse(br#"{"y": null, "x": [{"q": 2, "p": 1}, 1]}"#).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn errors_say_where() {
        for (text, offset) in [
            ("", 0),
            ("   ", 3),
            (r#"{"a": }"#, 6),
            ("[1, 2", 5),
            (r#"{"a" 1}"#, 5),
            ("nul", 3),
            ("[1,]", 3),
            ("{} x", 3),
            (r#"{"a": 01}"#, 7),
            ("{'a': 1}", 1),
            ("\"\u{1}\"", 1),
            ("\"abc", 4),
            ("{\n  \"a\": ,\n}", 9),
            ("[\"é\", ]", 7),
            (r#"["\ud800"]"#, 2),
            (r#""\udc00x""#, 1),
            (r#""\q""#, 2),
            ("[01]", 2),
            ("1.", 2),
            ("1e+", 3),
            ("-", 1),
            ("+1", 0),
            ("NaN", 0),
        ] {
            let e = err(text);
            assert_eq!(e.offset, Some(offset), "{text:?}: {e}");
            assert!(e.to_string().contains(&offset.to_string()), "{e}");
        }
        let e = err(r#"{"a": [1, {"b/c": [tru]}]}"#);
        assert_eq!(e.pointer, "/a/1/b~1c/0");
        let e = parse(b"[\"\xff\"]").unwrap_err();
        assert_eq!(e.offset, Some(2));
    }

    #[test]
    fn repeated_keys_are_errors() {
        let e = err(r#"{"a": 1, "b": 2, "a": 3}"#);
        assert_eq!(e.offset, Some(17));
        assert!(e.message.contains("repeated key \"a\""), "{e}");
        // Large objects switch to a hash set.
        let mut t = String::from("{");
        for i in 0..40 {
            t.push_str(&format!("\"k{i}\": {i},"));
        }
        t.push_str("\"k7\": 0}");
        assert!(err(&t).message.contains("repeated key \"k7\""));
        t.truncate(t.len() - "\"k7\": 0}".len());
        t.push_str("\"k40\": 0}");
        assert_eq!(parse(t.as_bytes()).unwrap().as_object().unwrap().len(), 41);
        // Escaped spellings of the same key are the same key.
        assert!(parse(br#"{"a": 1, "\u0061": 2}"#).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = "[".repeat(MAX_NESTING) + &"]".repeat(MAX_NESTING);
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let e = err(&deep);
        assert_eq!(e.offset, Some(MAX_NESTING));
        let deep_value: Value =
            (0..MAX_NESTING + 5).fold(Value::Null, |v, _| Value::Array(vec![v]));
        assert!(Json::from_value(&deep_value).is_err());
    }

    #[test]
    fn skip_plain_stops_at_the_first_special_byte() {
        // Every position and byte value that matters, with plain bytes around it (ASCII and
        // UTF-8 continuation bytes, which must not be mistaken for control characters).
        for special in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
            for filler in [b'a', 0x20, 0x7f, 0x80, 0xe9, 0xff] {
                for len in 0..20 {
                    for at in 0..=len {
                        let mut b = vec![filler; len];
                        if at < len {
                            b[at] = special;
                        }
                        let naive = b
                            .iter()
                            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                            .unwrap_or(len);
                        let fast = skip_plain(&b, 0);
                        // The fast scan may stop early only at the end (its tail is left to
                        // the byte loop), never past a special byte.
                        assert!(fast <= naive, "{special} {filler} {len} {at}");
                        assert!(
                            fast == naive || len - fast < 8,
                            "{special} {filler} {len} {at}"
                        );
                    }
                }
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|i| serde_json::json!(i)),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| serde_json::json!(f)),
                "\\PC{0,12}|[\\x00-\\x1f\"\\\\/]{0,4}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec(("[a-z\\-]{0,8}|\\PC{0,4}", inner), 0..6)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        /// Equal as values, numbers by the value they denote: serde_json respells some number
        /// texts (`1E5` as `1e5`, ...), where we keep the text as written.
        fn same(a: &Json, b: &Json) -> bool {
            match (a, b) {
                (Json::Number(x), Json::Number(y)) => {
                    x == y || x.parse::<f64>().ok() == y.parse::<f64>().ok()
                }
                (Json::Array(x), Json::Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
                }
                (Json::Object(x), Json::Object(y)) => {
                    x.len() == y.len()
                        && x.iter().zip(y).all(|((k, p), (l, q))| k == l && same(p, q))
                }
                _ => a == b,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever serde_json writes (compact or pretty), we read back as the same value,
            /// and write back as the same compact text.
            #[test]
            fn reads_what_serde_json_writes(v in value(), pretty in any::<bool>()) {
                let text = if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    serde_json::to_string(&v).unwrap()
                };
                let ours = parse(text.as_bytes()).unwrap();
                prop_assert_eq!(&ours, &Json::from_value(&v).unwrap());
                let mut compact = String::new();
                ours.write_compact(&mut compact);
                prop_assert_eq!(compact, serde_json::to_string(&v).unwrap());
            }

            /// Arbitrary bytes (and mutated JSON): never a panic, and accepted exactly when
            /// serde_json accepts them, save the two rules serde_json does not have (repeated
            /// keys, nesting deeper than 128).
            #[test]
            fn agrees_with_serde_json_on_arbitrary_text(
                v in value(),
                cut in any::<prop::sample::Index>(),
                junk in prop::collection::vec(any::<u8>(), 0..4),
                raw in prop::collection::vec(
                    prop::sample::select(b"{}[],:\"\\ 0123456789.eE+-truefalsnul\xc3\xa9\x01".to_vec()),
                    0..24,
                ),
            ) {
                let text = serde_json::to_vec(&v).unwrap();
                let at = cut.index(text.len() + 1);
                let mut mutated = text[..at].to_vec();
                mutated.extend_from_slice(&junk);
                mutated.extend_from_slice(&text[at..]);
                for input in [mutated, raw] {
                    let ours = parse(&input);
                    let theirs = serde_json::from_slice::<Value>(&input);
                    match (&ours, &theirs) {
                        (Ok(a), Ok(b)) => prop_assert!(
                            same(a, &Json::from_value(b).unwrap()),
                            "{:?}", String::from_utf8_lossy(&input)
                        ),
                        (Err(e), Ok(_)) => prop_assert!(
                            e.message.contains("repeated key"),
                            "{:?}: {}", String::from_utf8_lossy(&input), e
                        ),
                        (Ok(_), Err(e)) => prop_assert!(
                            false, "{:?}: serde_json says {}", String::from_utf8_lossy(&input), e
                        ),
                        (Err(e), Err(_)) => prop_assert!(e.offset.is_some_and(|o| o <= input.len())),
                    }
                }
            }
        }
    }

    #[test]
    fn string_literals_compare_without_allocating_when_plain() {
        assert!(string_literal_eq("\"ubuntu-latest\"", "ubuntu-latest"));
        assert!(!string_literal_eq("\"ubuntu-latest\"", "ubuntu"));
        assert!(string_literal_eq(r#""a\"b\n""#, "a\"b\n"));
        assert!(string_literal_eq(r#""\u0001""#, "\u{1}"));
        assert!(!string_literal_eq("1", "1"));
    }
}
