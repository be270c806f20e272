//! YAML 1.2 text -> `serde_json::Value`, with the exact rules the development corpus was converted
//! with (ruamel.yaml 0.19 `typ='safe'`, YAML 1.2 core schema, see `shared/data/README.md`):
//!
//! * only `true/True/TRUE/false/False/FALSE` are booleans: `on`, `yes`, `no`, `off`, `y` stay strings;
//! * `null/Null/NULL/~` and the empty plain scalar are null;
//! * ints: `[-+]?(0b[01_]+ | 0o?[0-7_]+ | [0-9_]+ | 0x[0-9a-fA-F_]+)`, underscores ignored, `0o17`
//!   is octal 15 but `017` is decimal 17; any size, exact;
//! * floats: ruamel's 1.2 regex (`3.10` is the float 3.1, `1e5` and `.5` are floats), written as
//!   Python's `repr` so they read back as the same float; `.inf`/`.nan` become the strings
//!   `"inf"`, `"-inf"`, `"nan"` (JSON has no spelling for them);
//! * timestamps stay the original string; explicit `!!str !!int !!float !!bool !!null` are honoured;
//! * anchors and aliases are expanded, merge keys (`<<`) follow ruamel's order rules;
//! * keys that are not strings are stringified (`1` -> `"1"`, `true` -> `"true"`, `null` ->
//!   `"null"`, a float as its repr); a duplicate key is an error, as in ruamel;
//! * a `%YAML 1.1` directive is ignored (1.2 rules always), a stream with several documents is
//!   an error, and so is an empty stream.
//!
//! The parser is saphyr-parser's event API (a YAML 1.2 parser); the scalar resolution and the
//! composer are here because no crate applies exactly these rules.

use super::pyjson::python_float_repr;
use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Nesting limit, the same as serde_json's default recursion limit for JSON inputs, so that a
/// pathological document cannot overflow a worker's stack later (drop, encoder).
const MAX_DEPTH: usize = 128;
/// Limit on the number of nodes after alias expansion ("billion laughs" protection). The largest
/// corpus document has about 10^4 nodes.
const MAX_NODES: u64 = 2_000_000;

/// A YAML document that cannot be turned into JSON. `line` is 1-based, `column` 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "YAML error at line {} column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for YamlError {}

impl YamlError {
    fn at(span: Span, message: impl Into<String>) -> Self {
        YamlError {
            line: span.start.line(),
            column: span.start.col() + 1,
            message: message.into(),
        }
    }
    fn scan(e: ScanError) -> Self {
        YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        }
    }
}

/// What a scalar means beyond its value when it is used as a mapping key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    /// The plain scalar `<<` (tag:yaml.org,2002:merge).
    Merge,
    /// The plain scalar `=` (tag:yaml.org,2002:value): a string as a key, an error as a value.
    ValueTag,
}

#[derive(Debug, Clone)]
struct Node {
    value: Value,
    special: Special,
    /// Number of nodes in `value` (for the alias-expansion limit).
    count: u64,
    span: Span,
}

// Frames live on a stack at most MAX_DEPTH deep: boxing the larger variant would only add
// allocations.
#[allow(clippy::large_enum_variant)]
enum Frame {
    Seq {
        anchor: usize,
        items: Vec<Value>,
        count: u64,
        span: Span,
    },
    Map {
        anchor: usize,
        own: Map<String, Value>,
        merge: Option<Vec<(String, Value)>>,
        key: Option<Node>,
        count: u64,
        span: Span,
    },
}

/// How many lenient re-parses one document may need (each fixes one spot).
const MAX_FIXES: usize = 256;

/// Parse one YAML document into JSON.
///
/// saphyr-parser follows the YAML 1.2 spec strictly where libyaml (and so PyYAML, ruamel and,
/// in practice, GitHub) are lenient. Two such spots occur in real workflows (about 0.5% of the
/// corpus) and are fixed up by re-parsing with a value-preserving edit of the text:
/// * a line inside a flow collection indented less than the enclosing block (`paths: [` ...
///   `]` at the key's column): leading white space inside flow collections is insignificant, so
///   the line is indented further;
/// * a comment glued to a flow collection end (`['3.10']#, '3.11'`): libyaml reads `#` after
///   `]`/`}` as a comment, so a space is inserted before it.
pub fn parse_yaml(text: &str) -> Result<Value, YamlError> {
    // A last line of only blanks, without a line break, is no content at all; saphyr would make
    // it an extra empty line of a block scalar that runs to the end of the file.
    let last_line_start = text.rfind(['\n', '\r']).map_or(0, |i| i + 1);
    let text = if text[last_line_start..]
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
    {
        &text[..last_line_start]
    } else {
        text
    };
    let mut patched: Option<String> = None;
    let mut previous_line: Option<(usize, usize)> = None;
    for _ in 0..MAX_FIXES {
        let current = patched.as_deref().unwrap_or(text);
        match compose(current) {
            Err(Failure::Scan(e)) => match lenient_fix(current, &e, &mut previous_line) {
                Some(fixed) => patched = Some(fixed),
                None => return Err(YamlError::scan(e)),
            },
            Err(Failure::Yaml(e)) => return Err(e),
            Ok(v) => return Ok(v),
        }
    }
    Err(YamlError {
        line: 1,
        column: 1,
        message: format!("more than {MAX_FIXES} lenient fix-ups needed"),
    })
}

enum Failure {
    Scan(ScanError),
    Yaml(YamlError),
}

impl Failure {
    fn at(span: Span, message: impl Into<String>) -> Self {
        Failure::Yaml(YamlError::at(span, message))
    }
}

impl From<YamlError> for Failure {
    fn from(e: YamlError) -> Self {
        Failure::Yaml(e)
    }
}

/// The edited text for a strict-only error, or `None` when the error is a real one.
/// `previous` remembers the last re-indented line and how far it was pushed, so that a line that
/// still fails is pushed one column further each round.
fn lenient_fix(text: &str, e: &ScanError, previous: &mut Option<(usize, usize)>) -> Option<String> {
    let mark = e.marker();
    let byte = text.char_indices().nth(mark.index()).map(|(b, _)| b)?;
    match e.info() {
        "comments must be separated from other tokens by whitespace"
            if text[byte..].starts_with('#') =>
        {
            let mut out = String::with_capacity(text.len() + 1);
            out.push_str(&text[..byte]);
            out.push(' ');
            out.push_str(&text[byte..]);
            Some(out)
        }
        "invalid indentation in quoted scalar" => {
            // The mark is the opening quote; continuation lines of a quoted scalar lose their
            // leading white space when folded, so indenting them past the block is harmless.
            let quote = text[byte..].chars().next()?;
            if quote != '"' && quote != '\'' {
                return None;
            }
            let body = &text[byte + 1..];
            let mut end = None;
            let mut chars = body.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if quote == '"' && c == '\\' {
                    chars.next();
                } else if c == quote {
                    if quote == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') {
                        chars.next();
                    } else {
                        end = Some(byte + 1 + i);
                        break;
                    }
                }
            }
            let end = end?;
            let line_start = text[..byte].rfind('\n').map_or(0, |i| i + 1);
            let pad = " ".repeat(
                text[line_start..]
                    .bytes()
                    .take_while(|&b| b == b' ')
                    .count()
                    + 1,
            );
            let mut out = String::with_capacity(text.len() + 64);
            out.push_str(&text[..byte]);
            for (i, piece) in text[byte..end].split('\n').enumerate() {
                if i > 0 {
                    out.push('\n');
                    out.push_str(&pad);
                }
                out.push_str(piece);
            }
            out.push_str(&text[end..]);
            Some(out)
        }
        "invalid indentation" => {
            // saphyr only reports this inside flow collections (block context unrolls).
            let line_start = text[..byte].rfind('\n').map_or(0, |i| i + 1);
            let indent = text[line_start..]
                .bytes()
                .take_while(|&b| b == b' ')
                .count();
            if line_start + indent != byte {
                return None;
            }
            let prev_indent = text[..line_start.saturating_sub(1)]
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or(0, |l| l.bytes().take_while(|&b| b == b' ').count());
            let extra = match *previous {
                Some((line, pushed)) if line == mark.line() => pushed + 1,
                _ => prev_indent.saturating_sub(indent).max(1),
            };
            *previous = Some((mark.line(), extra));
            let mut out = String::with_capacity(text.len() + extra);
            out.push_str(&text[..line_start]);
            out.extend(std::iter::repeat_n(' ', extra));
            out.push_str(&text[line_start..]);
            Some(out)
        }
        _ => None,
    }
}

fn compose(text: &str) -> Result<Value, Failure> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut expanded: u64 = 0;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(Failure::Scan)?;
        let done: Node = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Failure::at(
                        span,
                        "several YAML documents in one file (one document per file is expected)",
                    ));
                }
                continue;
            }
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .ok_or_else(|| YamlError::at(span, "alias to an unknown anchor"))?;
                expanded += node.count;
                if expanded > MAX_NODES {
                    return Err(Failure::at(
                        span,
                        format!("alias expansion exceeds {MAX_NODES} nodes"),
                    ));
                }
                Node {
                    span,
                    ..node.clone()
                }
            }
            Event::Scalar(value_text, style, anchor, tag) => {
                let mut value_text = value_text;
                // saphyr gives a block scalar that runs to the end of a file without a final
                // line break a '\n' anyway; the spec (and ruamel) only keep a break that exists.
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                    && value_text.ends_with('\n')
                    && ends_inside_last_line(text)
                    && span.end.index() == text.chars().count()
                {
                    value_text.to_mut().pop();
                }
                let (value, special) = resolve_scalar(&value_text, style, tag.as_deref())
                    .map_err(|m| YamlError::at(span, m))?;
                let node = Node {
                    value,
                    special,
                    count: 1,
                    span,
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "tag:yaml.org,2002:seq")
                    .map_err(|m| YamlError::at(span, m))?;
                if stack.len() >= MAX_DEPTH {
                    return Err(Failure::at(
                        span,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(Frame::Seq {
                    anchor,
                    items: Vec::new(),
                    count: 1,
                    span,
                });
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "tag:yaml.org,2002:map")
                    .map_err(|m| YamlError::at(span, m))?;
                if stack.len() >= MAX_DEPTH {
                    return Err(Failure::at(
                        span,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(Frame::Map {
                    anchor,
                    own: Map::new(),
                    merge: None,
                    key: None,
                    count: 1,
                    span,
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    anchor,
                    items,
                    count,
                    span,
                }) => {
                    let node = Node {
                        value: Value::Array(items),
                        special: Special::None,
                        count,
                        span,
                    };
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                _ => return Err(Failure::at(span, "unbalanced sequence end")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    anchor,
                    own,
                    merge,
                    count,
                    span,
                    ..
                }) => {
                    // ruamel: the merged pairs first (later ones overwrite values but keep the
                    // first position), then the mapping's own pairs update that.
                    let value = match merge {
                        None => Value::Object(own),
                        Some(pairs) => {
                            let mut total = Map::new();
                            for (k, v) in pairs {
                                total.insert(k, v);
                            }
                            for (k, v) in own {
                                total.insert(k, v);
                            }
                            Value::Object(total)
                        }
                    };
                    let node = Node {
                        value,
                        special: Special::None,
                        count,
                        span,
                    };
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                _ => return Err(Failure::at(span, "unbalanced mapping end")),
            },
        };
        match stack.last_mut() {
            None => {
                root = Some(done);
            }
            Some(Frame::Seq { items, count, .. }) => {
                if done.special == Special::ValueTag {
                    return Err(Failure::at(
                        done.span,
                        "the plain scalar '=' (YAML value key) is not a valid value",
                    ));
                }
                if done.special == Special::Merge {
                    return Err(Failure::at(
                        done.span,
                        "the merge key '<<' is not a valid value",
                    ));
                }
                *count += done.count;
                items.push(done.value);
            }
            Some(Frame::Map {
                own,
                merge,
                key,
                count,
                ..
            }) => {
                *count += done.count;
                match key.take() {
                    None => *key = Some(done),
                    Some(k) => {
                        if done.special != Special::None {
                            return Err(Failure::at(
                                done.span,
                                "the plain scalars '<<' and '=' are not valid values",
                            ));
                        }
                        if k.special == Special::Merge {
                            if merge.is_some() {
                                return Err(Failure::at(k.span, "duplicate merge key '<<'"));
                            }
                            *merge = Some(merge_pairs(done).map_err(|m| YamlError::at(k.span, m))?);
                        } else {
                            let name =
                                key_string(&k.value).map_err(|m| YamlError::at(k.span, m))?;
                            if own.contains_key(&name) {
                                return Err(Failure::at(
                                    k.span,
                                    format!("duplicate key {:?}", name),
                                ));
                            }
                            own.insert(name, done.value);
                        }
                    }
                }
            }
        }
    }
    match root {
        None => Err(YamlError {
            line: 1,
            column: 1,
            message: "empty document".into(),
        }
        .into()),
        Some(node) if node.value.is_null() && node.count == 1 && is_blank_document(text) => {
            Err(YamlError {
                line: 1,
                column: 1,
                message: "empty document".into(),
            }
            .into())
        }
        Some(node) => {
            if node.special != Special::None {
                return Err(Failure::at(
                    node.span,
                    "the plain scalars '<<' and '=' are not valid documents",
                ));
            }
            Ok(node.value)
        }
    }
}

/// The text ends without a line break, on a line with content: a block scalar running to the
/// end has no final line break to keep. (A last line of only spaces means the break before it
/// was the scalar's last one.)
fn ends_inside_last_line(text: &str) -> bool {
    if text.ends_with(['\n', '\r']) {
        return false;
    }
    let last = text.rsplit(['\n', '\r']).next().unwrap_or(text);
    !last.trim().is_empty()
}

/// A document whose only content is markers and comments (`---`, `...`, `# ...`): YAML reads it
/// as null, but as a corpus entry it is empty.
fn is_blank_document(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..." || t.starts_with("%")
    })
}

/// The pairs a `<<` value contributes, in ruamel's order: a mapping's own pairs, or for a list
/// of mappings the pairs of the mappings from the last to the first (so that earlier mappings
/// win when the pairs are inserted in order).
fn merge_pairs(node: Node) -> Result<Vec<(String, Value)>, String> {
    match node.value {
        Value::Object(m) => Ok(m.into_iter().collect()),
        Value::Array(items) => {
            let mut maps = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Object(m) => maps.push(m),
                    other => {
                        return Err(format!(
                            "expected a mapping for merging, but found {}",
                            kind_name(&other)
                        ))
                    }
                }
            }
            Ok(maps.into_iter().rev().flat_map(|m| m.into_iter()).collect())
        }
        other => Err(format!(
            "expected a mapping or list of mappings for merging, but found {}",
            kind_name(&other)
        )),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// JSON object keys are strings: scalars are stringified like JSON spells them.
fn key_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".to_string()),
        Value::Array(_) | Value::Object(_) => {
            Err(format!("{} cannot be a mapping key in JSON", kind_name(v)))
        }
    }
}

fn tag_name(tag: &Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

fn check_collection_tag(tag: Option<&Tag>, allowed: &str) -> Result<(), String> {
    match tag {
        None => Ok(()),
        Some(t) => {
            let name = tag_name(t);
            if name == allowed || name == "!" {
                Ok(())
            } else {
                Err(format!(
                    "unsupported tag {name} (only YAML core schema tags become JSON)"
                ))
            }
        }
    }
}

fn tag_is_bang(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|t| tag_name(t) == "!")
}

fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag_orig: Option<&Tag>,
) -> Result<(Value, Special), String> {
    let tag = tag_orig;
    // ruamel treats the non-specific tag `!` like no tag at all, even on quoted scalars
    // (implicit resolution applies: `! 12` is 12, `key: !` is null).
    let tag = tag.filter(|t| tag_name(t) != "!");
    let style = if tag.is_none() && style != ScalarStyle::Plain && tag_is_bang(tag_orig) {
        ScalarStyle::Plain
    } else {
        style
    };
    if let Some(tag) = tag {
        let name = tag_name(tag);
        let v = match name.as_str() {
            "tag:yaml.org,2002:str" | "tag:yaml.org,2002:timestamp" => {
                Value::String(text.to_string())
            }
            "tag:yaml.org,2002:null" => Value::Null,
            "tag:yaml.org,2002:bool" => Value::Bool(construct_bool(text)?),
            "tag:yaml.org,2002:int" => construct_int(text)?,
            "tag:yaml.org,2002:float" => construct_float(text)?,
            _ => {
                return Err(format!(
                    "unsupported tag {name} (only YAML core schema tags become JSON)"
                ))
            }
        };
        return Ok((v, Special::None));
    }
    if style != ScalarStyle::Plain {
        return Ok((Value::String(text.to_string()), Special::None));
    }
    let b = text.as_bytes();
    let v = match b.first() {
        None => Value::Null,
        Some(b't' | b'T' | b'f' | b'F') => match text {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        Some(b'-' | b'+' | b'0'..=b'9' | b'.') => {
            if is_float_12(b) {
                construct_float(text)?
            } else if is_int_12(b) {
                construct_int(text)?
            } else {
                Value::String(text.to_string())
            }
        }
        Some(b'~' | b'n' | b'N') => match text {
            "~" | "null" | "Null" | "NULL" => Value::Null,
            _ => Value::String(text.to_string()),
        },
        Some(b'<') if text == "<<" => return Ok((Value::String(text.to_string()), Special::Merge)),
        Some(b'=') if text == "=" => {
            return Ok((Value::String(text.to_string()), Special::ValueTag))
        }
        _ => Value::String(text.to_string()),
    };
    Ok((v, Special::None))
}

fn strip_sign(b: &[u8]) -> &[u8] {
    match b.first() {
        Some(b'-' | b'+') => &b[1..],
        _ => b,
    }
}

fn all_of(b: &[u8], ok: impl Fn(u8) -> bool) -> bool {
    !b.is_empty() && b.iter().all(|&c| ok(c))
}

fn digit_or_us(c: u8) -> bool {
    c.is_ascii_digit() || c == b'_'
}

/// `[eE][-+]?[0-9]+` (sign optional or required), the whole of `b`.
fn is_exponent(b: &[u8], sign_required: bool) -> bool {
    match b.first() {
        Some(b'e' | b'E') => {}
        _ => return false,
    }
    let rest = &b[1..];
    let digits = match rest.first() {
        Some(b'-' | b'+') => &rest[1..],
        _ if sign_required => return false,
        _ => rest,
    };
    all_of(digits, |c| c.is_ascii_digit())
}

/// ruamel's YAML 1.2 float regex.
fn is_float_12(b: &[u8]) -> bool {
    if matches!(b, b".nan" | b".NaN" | b".NAN") {
        return true;
    }
    let body = strip_sign(b);
    if matches!(body, b".inf" | b".Inf" | b".INF") {
        return true;
    }
    match body.first() {
        Some(c) if c.is_ascii_digit() => {
            let mut i = 1;
            while i < body.len() && digit_or_us(body[i]) {
                i += 1;
            }
            if i < body.len() && body[i] == b'.' {
                i += 1;
                while i < body.len() && digit_or_us(body[i]) {
                    i += 1;
                }
                i == body.len() || is_exponent(&body[i..], false)
            } else {
                is_exponent(&body[i..], false)
            }
        }
        Some(b'.') => {
            let mut i = 1;
            while i < body.len() && digit_or_us(body[i]) {
                i += 1;
            }
            i > 1 && (i == body.len() || is_exponent(&body[i..], true))
        }
        _ => false,
    }
}

/// ruamel's YAML 1.2 int regex.
fn is_int_12(b: &[u8]) -> bool {
    let body = strip_sign(b);
    if let Some(r) = body.strip_prefix(b"0b") {
        if all_of(r, |c| c == b'0' || c == b'1' || c == b'_') {
            return true;
        }
    }
    if let Some(r) = body.strip_prefix(b"0x") {
        if all_of(r, |c| c.is_ascii_hexdigit() || c == b'_') {
            return true;
        }
    }
    if let Some(r) = body.strip_prefix(b"0") {
        let r = r.strip_prefix(b"o").unwrap_or(r);
        if all_of(r, |c| (b'0'..=b'7').contains(&c) || c == b'_') {
            return true;
        }
    }
    all_of(body, digit_or_us)
}

/// ruamel's `bool_values[value.lower()]` (explicit `!!bool` accepts the 1.1 words too).
fn construct_bool(text: &str) -> Result<bool, String> {
    match text.to_lowercase().as_str() {
        "yes" | "y" | "true" | "on" => Ok(true),
        "no" | "n" | "false" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean")),
    }
}

/// ruamel's `construct_yaml_int` under 1.2 rules, to exact decimal text.
fn construct_int(text: &str) -> Result<Value, String> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, &cleaned[..]),
    };
    let (radix, digits) = if let Some(r) = body.strip_prefix("0b") {
        (2, r)
    } else if let Some(r) = body.strip_prefix("0x") {
        (16, r)
    } else if let Some(r) = body.strip_prefix("0o") {
        (8, r)
    } else {
        (10, body)
    };
    let decimal = to_decimal(digits, radix).ok_or_else(|| format!("{text:?} is not an integer"))?;
    let textual = if neg && decimal != "0" {
        format!("-{decimal}")
    } else {
        decimal
    };
    Number::from_str(&textual)
        .map(Value::Number)
        .map_err(|e| format!("integer {text:?}: {e}"))
}

/// Digits in `radix` (2, 8, 10, 16) to decimal text without leading zeros; `None` if invalid.
fn to_decimal(digits: &str, radix: u32) -> Option<String> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix == 10 {
        let t = digits.trim_start_matches('0');
        return Some(if t.is_empty() {
            "0".to_string()
        } else {
            t.to_string()
        });
    }
    // Little-endian limbs in base 10^9: value = value * radix + digit, any size.
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = vec![0];
    for c in digits.chars() {
        let mut carry = c.to_digit(radix)? as u64;
        for limb in limbs.iter_mut() {
            let x = *limb * radix as u64 + carry;
            *limb = x % BASE;
            carry = x / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    let mut out = limbs.last().copied().unwrap_or(0).to_string();
    for limb in limbs.iter().rev().skip(1) {
        out.push_str(&format!("{limb:09}"));
    }
    Some(out)
}

/// ruamel's `construct_yaml_float`: `sign * float(text)`; non-finite values become the strings
/// Python's `str()` gives (`inf`, `-inf`, `nan`).
fn construct_float(text: &str) -> Result<Value, String> {
    let cleaned: String = text
        .chars()
        .filter(|&c| c != '_')
        .collect::<String>()
        .to_lowercase();
    let (sign, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (-1.0f64, &cleaned[1..]),
        Some(b'+') => (1.0, &cleaned[1..]),
        _ => (1.0, &cleaned[..]),
    };
    let x = match body {
        ".inf" => f64::INFINITY,
        ".nan" => f64::NAN,
        _ => {
            // Python's float() rejects what Rust would also reject here ("", ".", "e5", "1e"),
            // and both accept "1.", ".5", "1.e5", "inf", "nan".
            if body.is_empty() || body == "." || body.starts_with('e') {
                return Err(format!("{text:?} is not a float"));
            }
            body.parse::<f64>()
                .map_err(|_| format!("{text:?} is not a float"))?
        }
    };
    let x = sign * x;
    if x.is_nan() {
        Ok(Value::String("nan".into()))
    } else if x.is_infinite() {
        Ok(Value::String(if x > 0.0 { "inf" } else { "-inf" }.into()))
    } else {
        Number::from_str(&python_float_repr(x))
            .map(Value::Number)
            .map_err(|e| format!("float {text:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn y(text: &str) -> Value {
        parse_yaml(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse_yaml(text) {
            Ok(v) => panic!("{text:?} parsed as {v}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn yaml_12_booleans_and_norway() {
        assert_eq!(
            y("on: push\nyes: no\noff: y\nn: Y\nt: true\nT: True\nU: TRUE\nf: false\nF: FALSE\nx: tRUE"),
            json!({"on": "push", "yes": "no", "off": "y", "n": "Y", "t": true, "T": true, "U": true, "f": false, "F": false, "x": "tRUE"})
        );
    }

    #[test]
    fn numbers() {
        let v = y("a: 3.10\nb: 017\nc: 0o17\nd: 0x1F\ne: 0b101\nf: 1_000\ng: 1e5\nh: .5\ni: -0.0\nj: 123456789012345678901234567890\nk: 1.\nl: +12\nm: -0\nn: 0x_1\no: 1.2e+2\np: 0xFFFFFFFFFFFFFFFFFFFF");
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"a":3.1,"b":17,"c":15,"d":31,"e":5,"f":1000,"g":100000.0,"h":0.5,"i":-0.0,"j":123456789012345678901234567890,"k":1.0,"l":12,"m":0,"n":1,"o":120.0,"p":1208925819614629174706175}"#
        );
    }

    #[test]
    fn not_numbers() {
        let v = y("a: 1.2.3\nb: 12:30\nc: 1e\nd: .e5\ne: 0x\nf: 2020-01-02\ng: 2001-12-14t21:59:43.10-05:00\nh: v1.0\ni: '3.10'\nj: .\nk: 1_000.5x");
        assert_eq!(
            v,
            json!({"a": "1.2.3", "b": "12:30", "c": "1e", "d": ".e5", "e": "0x", "f": "2020-01-02", "g": "2001-12-14t21:59:43.10-05:00", "h": "v1.0", "i": "3.10", "j": ".", "k": "1_000.5x"})
        );
    }

    #[test]
    fn special_floats_are_strings() {
        assert_eq!(
            y("[.inf, -.Inf, +.INF, .nan, .NaN, !!float .nan]"),
            json!(["inf", "-inf", "inf", "nan", "nan", "nan"])
        );
    }

    #[test]
    fn explicit_tags() {
        let v = y("a: !!str 123\nb: !!int '0x10'\nc: !!float 1\nd: !!float -0\ne: !!bool yes\nf: !!null\ng: ! 12\nh: !<tag:yaml.org,2002:float> 2\ni: !!str true\nj: !\nk: ! 'true'");
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"a":"123","b":16,"c":1.0,"d":-0.0,"e":true,"f":null,"g":12,"h":2.0,"i":"true","j":null,"k":true}"#
        );
        assert!(err("a: !Ref x").contains("unsupported tag !Ref"));
        assert!(err("a: !!binary aGVsbG8=").contains("unsupported tag"));
        assert!(err("a: !!int abc").contains("not an integer"));
    }

    #[test]
    fn nulls_and_keys() {
        assert_eq!(
            y("a:\nb: ~\nc: null\nd: Null\ne: NULL\nf: nil"),
            json!({"a": null, "b": null, "c": null, "d": null, "e": null, "f": "nil"})
        );
        assert_eq!(
            y("1: a\ntrue: b\n~: c\n3.10: d\n'x': e"),
            json!({"1": "a", "true": "b", "null": "c", "3.1": "d", "x": "e"})
        );
        assert!(err("a: 1\nb: 2\na: 3").contains("duplicate key \"a\""));
        assert!(err("[1]: a").contains("cannot be a mapping key"));
    }

    #[test]
    fn anchors_aliases_and_merge() {
        assert_eq!(
            y("a: &x {p: 1, q: [2]}\nb: *x\nc: &s hi\nd: *s"),
            json!({"a": {"p": 1, "q": [2]}, "b": {"p": 1, "q": [2]}, "c": "hi", "d": "hi"})
        );
        // The mapping's own keys win over merged ones; merged keys come first.
        let v = y("base: &b {x: 1, y: 2}\nm:\n  z: 0\n  <<: *b\n  y: 5");
        assert_eq!(
            serde_json::to_string(&v["m"]).unwrap(),
            r#"{"x":1,"y":5,"z":0}"#
        );
        // A list of merges: earlier mappings win, positions come from the later mappings first
        // (ruamel reverses the list before inserting).
        let v = y("a: &a {k: a, p: 1}\nb: &b {k: b, q: 2}\nm:\n  <<: [*a, *b]\n  own: 3");
        assert_eq!(
            serde_json::to_string(&v["m"]).unwrap(),
            r#"{"k":"a","q":2,"p":1,"own":3}"#
        );
        assert!(err("m:\n  <<: 3").contains("for merging"));
        assert!(err("a: *nope").contains("line 1"));
    }

    #[test]
    fn documents() {
        assert_eq!(y("%YAML 1.1\n---\non: push\n"), json!({"on": "push"}));
        assert_eq!(y("---\na: 1\n...\n"), json!({"a": 1}));
        assert!(err("a: 1\n---\nb: 2\n").contains("several YAML documents"));
        assert!(err("").contains("empty document"));
        assert!(err("# only a comment\n").contains("empty document"));
        assert!(err("---\n...\n").contains("empty document"));
        assert_eq!(y("~"), Value::Null);
        assert_eq!(y("\u{feff}a: 1\r\nb: 'x'\r\n"), json!({"a": 1, "b": "x"}));
    }

    #[test]
    fn block_scalar_at_end_of_file() {
        assert_eq!(y("a: |\n  x\n  y"), json!({"a": "x\ny"}));
        assert_eq!(y("a: |\n  x\n  y\n"), json!({"a": "x\ny\n"}));
        assert_eq!(y("a: |\n  x\n  "), json!({"a": "x\n"}));
        assert_eq!(y("a: >\n  x\n  y"), json!({"a": "x y"}));
        assert_eq!(y("a: |-\n  x\n"), json!({"a": "x"}));
        assert_eq!(y("- |\n  x\n- y"), json!(["x\n", "y"]));
    }

    #[test]
    fn libyaml_leniencies() {
        // Flow collection closed at the key's column, and lines inside it under-indented.
        assert_eq!(
            y("on:\n  push:\n    paths: [\n      'a',\n    'b',\n    ]\n"),
            json!({"on": {"push": {"paths": ["a", "b"]}}})
        );
        // A comment glued to the end of a flow collection.
        assert_eq!(
            y("v: ['3.10']#, '3.11'\nw: {a: 1}# c\n"),
            json!({"v": ["3.10"], "w": {"a": 1}})
        );
        // Continuation lines of a quoted scalar at column 0.
        assert_eq!(
            y("a:\n  b: \"x\n\ny \\\"z\\\"\n\"\n  c: 'p\nq''r'\n"),
            json!({"a": {"b": "x\ny \"z\" ", "c": "p q'r"}})
        );
        // A '#' inside a scalar is not a comment and is left alone.
        assert_eq!(y("v: a#b\n"), json!({"v": "a#b"}));
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = parse_yaml("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        let e = parse_yaml("a:\n\t- b\n").unwrap_err();
        assert!(e.to_string().starts_with("YAML error at line"), "{e}");
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(err(&text).contains("alias expansion"));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(err(&text).contains("nesting deeper"));
    }
    /// Numbers compared as Python compares them after `json.loads` (type-exact: `1` != `1.0`).
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Number(n) => Value::String(format!(
                "#num:{}",
                crate::corpus::pyjson::python_number_text(&n.to_string())
            )),
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
            }
            other => other.clone(),
        }
    }

    /// Convert the corpus' original YAML and compare with its recorded JSON, key order included.
    /// Returns (records, agreeing, mismatch descriptions).
    fn corpus_agreement(limit: usize) -> Option<(usize, usize, Vec<String>)> {
        use std::io::BufRead;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/workflows/workflows.jsonl.gz");
        let file = std::fs::File::open(&path).ok()?;
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
        let (mut n, mut ok, mut bad) = (0usize, 0usize, Vec::new());
        for line in reader.lines().take(limit) {
            let rec: Value = serde_json::from_str(&line.unwrap()).unwrap();
            n += 1;
            let text = rec["yaml"].as_str().unwrap();
            let want = &rec["json"];
            match parse_yaml(text) {
                Ok(got) => {
                    let size = crate::corpus::pyjson::compact_json_size(
                        &crate::json::Json::from_value(&got).unwrap(),
                    );
                    let (g, w) = (canonical(&got), canonical(want));
                    if g != w {
                        if let Ok(dump) = std::env::var("TCT_YAML_MISMATCH_DUMP") {
                            use std::io::Write;
                            let mut f = std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(dump)
                                .unwrap();
                            writeln!(f, "{}", serde_json::json!({"line": n, "got": got})).unwrap();
                        }
                        bad.push(format!("{} {}: value differs", rec["repo"], rec["path"]));
                    } else if serde_json::to_string(&g).unwrap()
                        != serde_json::to_string(&w).unwrap()
                    {
                        bad.push(format!(
                            "{} {}: key order differs",
                            rec["repo"], rec["path"]
                        ));
                    } else if Some(size) != rec["json_bytes"].as_u64() {
                        bad.push(format!(
                            "{} {}: json_bytes {size} vs recorded {}",
                            rec["repo"], rec["path"], rec["json_bytes"]
                        ));
                    } else {
                        ok += 1;
                    }
                }
                Err(e) => bad.push(format!("{} {}: {e}", rec["repo"], rec["path"])),
            }
        }
        Some((n, ok, bad))
    }

    #[test]
    #[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]
    fn corpus_sample_agrees_with_recorded_json() {
        let (n, ok, bad) = corpus_agreement(2000).expect("../shared/data not present");
        assert_eq!(n, 2000);
        assert!(
            bad.is_empty(),
            "{ok}/{n} agree; mismatches:\n{}",
            bad.join("\n")
        );
    }

    /// Whole development corpus (about a minute in debug builds):
    /// `cargo test --release --lib corpus_all -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn corpus_all_agrees_with_recorded_json() {
        let (n, ok, bad) = corpus_agreement(usize::MAX).expect("../shared/data not present");
        eprintln!("YAML agreement: {ok}/{n}");
        for b in bad.iter() {
            eprintln!("  mismatch: {b}");
        }
        assert!(bad.is_empty());
    }
}
