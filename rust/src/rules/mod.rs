//! Rules: what a document must satisfy beyond its JSON Schema, enforced by the matcher.
//!
//! JSON Schema cannot say that `needs` names a job of this workflow, that `${{ ... }}` holds a
//! well-formed expression, or that a branch filter is a valid glob. The matcher sees the whole
//! prefix, so it can: a rules layer narrows its mask further.
//!
//! # The overlay
//! Rules come in an overlay document, separate from the schema and merged onto it by document
//! location:
//!
//! ```json
//! {"x-tct-rules": 1,
//!  "at": {
//!    "/jobs":          {"x-tct-key-name": {"first": "A-Za-z_", "rest": "A-Za-z0-9_-"}},
//!    "/jobs/*/needs/*": {"x-tct-ref": {"keys-of": "/jobs", "forward": true, "acyclic": true}},
//!    "/**":            {"x-tct-expression": "embedded", "x-tct-no-control": true}}}
//! ```
//!
//! A location is a JSON pointer over the *document* whose segments may be `*` (any one key or
//! index) or `**` (any number of segments). Document locations rather than schema pointers,
//! because a schema reaches one location through `$ref`s, `oneOf` branches and
//! `patternProperties`, while a rule is about the place in the document; and because an
//! overlay then works for any schema that gives the document that shape. Every rule matching
//! a string's location applies (they intersect).
//!
//! Keywords (each applies to the string values at the location, or with `key` in the name to
//! the keys of the object at the location):
//! - `x-tct-format` / `x-tct-key-format`: `ref-glob` (GitHub's branch and tag filter
//!   patterns), `path-glob` (path filters), `shell`, `uses-step`, `uses-job`.
//! - `x-tct-name` / `x-tct-key-name`: `{"first": CLASS, "rest": CLASS}`, a name of one byte of
//!   the first class then bytes of the second (classes as in a regex: `A-Za-z0-9_-`).
//! - `x-tct-no-control`: `true`: no control characters (in values tabs and line breaks are
//!   allowed).
//! - `x-tct-expression`: `embedded` (every `${{ ... }}` holds a well-formed expression) or
//!   `whole` (the string is one expression, bare or in one `${{ }}`); `x-tct-contexts`: the
//!   context names allowed in them there.
//! - `x-tct-ref`: `{"keys-of": LOCATION, "forward": bool, "acyclic": bool, "name": NAME}`: the
//!   string is a key of the object at `LOCATION`, which must be an ancestor of the string (its
//!   `*` take the string's own segments), other than the entry the string is in. With
//!   `forward`, a name not declared yet is allowed (it must be a `name`) as an obligation: the
//!   object may not close until it has that key. With `acyclic`, the references between its
//!   entries form no cycle: a reference that would close one is refused.
//! - `x-tct-unique`: `{"within": LOCATION}`: no two strings at the location under one
//!   instance of the ancestor `LOCATION` are equal.
//!
//! # How a rule narrows the mask
//! Each rule on strings is a small state advanced byte by byte whose step fails as soon as no
//! valid string starts like this; a token inside a string is allowed iff every rule still
//! holds after its bytes, and a token that ends a string iff every rule accepts the whole
//! string. References and uniqueness keep a per-document state (declared keys, references,
//! obligations, used values) beside the machine; closing an object with pending obligations
//! is refused. Rules run only in the matcher (see `layer`).
//!
//! # The invariant
//! Rules never change how a document is spelled in ids: encoding and decoding ignore them, so
//! shards, vocabularies and checkpoints are the same with and without. A rule only removes
//! ids from the schema's mask. Where its language meets a schema string that is itself
//! constrained (a pattern, an enum) the two could leave nothing: the matcher then keeps the
//! schema's mask rather than dead-end, and counts it (`Matcher::rules_fallbacks`); what a
//! rules set does not enforce exactly is listed by `Rules::report`.

pub mod doc;
pub mod expr;
pub mod formats;
pub mod layer;

use crate::error::SchemaError;
use formats::{ByteClass, NameSpec, UsesKind};
use serde_json::Value;

/// One segment of a location pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Lit(String),
    Any,
    Deep,
}

/// One segment of a document location.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loc {
    Key(String),
    Index(usize),
}

impl Loc {
    fn text(&self) -> String {
        match self {
            Loc::Key(k) => k.replace('~', "~0").replace('/', "~1"),
            Loc::Index(i) => i.to_string(),
        }
    }
}

/// A document location as a JSON pointer.
pub fn pointer(path: &[Loc]) -> String {
    path.iter().map(|l| format!("/{}", l.text())).collect()
}

fn parse_location(p: &str, at: &str) -> Result<Vec<Seg>, SchemaError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(SchemaError::new(
            at,
            format!("location {p:?} must start with '/'"),
        ));
    };
    Ok(rest
        .split('/')
        .map(|s| match s {
            "*" => Seg::Any,
            "**" => Seg::Deep,
            s => Seg::Lit(s.replace("~1", "/").replace("~0", "~")),
        })
        .collect())
}

/// Whether `path` matches `pat` exactly.
pub fn matches(pat: &[Seg], path: &[Loc]) -> bool {
    match (pat.first(), path.first()) {
        (None, None) => true,
        (Some(Seg::Deep), _) => {
            matches(&pat[1..], path) || (!path.is_empty() && matches(pat, &path[1..]))
        }
        (None, _) | (_, None) => false,
        (Some(Seg::Any), _) => matches(&pat[1..], &path[1..]),
        (Some(Seg::Lit(s)), Some(l)) => {
            let ok = match l {
                Loc::Key(k) => k == s,
                Loc::Index(i) => s.parse::<usize>().ok() == Some(*i),
            };
            ok && matches(&pat[1..], &path[1..])
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    RefGlob,
    PathGlob,
    Shell,
    Uses(UsesKind),
}

#[derive(Clone, Debug)]
pub struct RefRule {
    /// The object whose keys are referred to: an ancestor location (no `**`).
    pub keys_of: Vec<Seg>,
    pub forward: bool,
    pub acyclic: bool,
    pub name: Option<NameSpec>,
}

#[derive(Clone, Debug)]
pub enum Check {
    Format(Format),
    Name(NameSpec),
    NoControl,
    Embedded(u16),
    Whole(u16),
    Ref(RefRule),
    /// Unique within the instance of this ancestor location.
    Unique(Vec<Seg>),
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub at: Vec<Seg>,
    /// Applies to the keys of the object at `at` (else to string values at `at`).
    pub keys: bool,
    pub check: Check,
    /// How the overlay wrote it (for `report`).
    pub source: String,
}

/// A compiled overlay.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
    /// Locations of `x-tct-ref` targets (objects whose keys are tracked).
    pub targets: Vec<Vec<Seg>>,
}

fn name_spec(v: &Value, at: &str) -> Result<NameSpec, SchemaError> {
    let class = |k: &str| -> Result<ByteClass, SchemaError> {
        let s = v
            .get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| SchemaError::new(at, format!("a name needs a string {k:?}")))?;
        ByteClass::parse(s).map_err(|e| SchemaError::new(at, e))
    };
    Ok(NameSpec {
        first: class("first")?,
        rest: class("rest")?,
    })
}

fn format(v: &Value, at: &str) -> Result<Format, SchemaError> {
    Ok(match v.as_str() {
        Some("ref-glob") => Format::RefGlob,
        Some("path-glob") => Format::PathGlob,
        Some("shell") => Format::Shell,
        Some("uses-step") => Format::Uses(UsesKind::Step),
        Some("uses-job") => Format::Uses(UsesKind::Job),
        _ => {
            return Err(SchemaError::new(
                at,
                format!("unknown format {v}: ref-glob, path-glob, shell, uses-step, uses-job"),
            ))
        }
    })
}

fn contexts(v: Option<&Value>, at: &str) -> Result<u16, SchemaError> {
    let Some(v) = v else {
        return Ok(expr::ALL_CONTEXTS);
    };
    let list = v
        .as_array()
        .ok_or_else(|| SchemaError::new(at, "x-tct-contexts must be an array of names"))?;
    let mut mask = 0u16;
    for c in list {
        let i = c
            .as_str()
            .and_then(|s| expr::CONTEXTS.iter().position(|k| *k == s))
            .ok_or_else(|| {
                SchemaError::new(at, format!("unknown context {c}: {:?}", expr::CONTEXTS))
            })?;
        mask |= 1 << i;
    }
    Ok(mask)
}

fn is_ancestor_pattern(anc: &[Seg], at: &[Seg]) -> bool {
    anc.len() < at.len()
        && anc
            .iter()
            .zip(at)
            .all(|(a, b)| a == b || (*a == Seg::Any && matches!(b, Seg::Lit(_))))
        && !anc.contains(&Seg::Deep)
        && !at[..anc.len()].contains(&Seg::Deep)
}

impl Rules {
    /// Compile an overlay. Errors say where in the overlay (a JSON pointer into it).
    pub fn from_overlay(v: &Value) -> Result<Rules, SchemaError> {
        if v.get("x-tct-rules").and_then(Value::as_u64) != Some(1) {
            return Err(SchemaError::new(
                "/x-tct-rules",
                "a rules overlay starts with \"x-tct-rules\": 1",
            ));
        }
        let at = v
            .get("at")
            .and_then(Value::as_object)
            .ok_or_else(|| SchemaError::new("/at", "a rules overlay has an object \"at\""))?;
        let mut rules = Rules::default();
        for (loc, kws) in at {
            let here = format!("/at/{}", loc.replace('~', "~0").replace('/', "~1"));
            let pat = parse_location(loc, &here)?;
            let kws = kws
                .as_object()
                .ok_or_else(|| SchemaError::new(&here, "rules at a location are an object"))?;
            let ctx = contexts(kws.get("x-tct-contexts"), &format!("{here}/x-tct-contexts"))?;
            for (k, val) in kws {
                let kat = format!("{here}/{k}");
                let mut push = |keys: bool, check: Check| {
                    rules.rules.push(Rule {
                        at: pat.clone(),
                        keys,
                        check,
                        source: format!("{k} {val} at {loc}"),
                    })
                };
                match k.as_str() {
                    "x-tct-format" => push(false, Check::Format(format(val, &kat)?)),
                    "x-tct-key-format" => push(true, Check::Format(format(val, &kat)?)),
                    "x-tct-name" => push(false, Check::Name(name_spec(val, &kat)?)),
                    "x-tct-key-name" => push(true, Check::Name(name_spec(val, &kat)?)),
                    "x-tct-no-control" => {
                        if val != &Value::Bool(true) {
                            return Err(SchemaError::new(&kat, "x-tct-no-control takes true"));
                        }
                        push(false, Check::NoControl);
                        push(true, Check::NoControl);
                    }
                    "x-tct-expression" => match val.as_str() {
                        Some("embedded") => push(false, Check::Embedded(ctx)),
                        Some("whole") => push(false, Check::Whole(ctx)),
                        _ => {
                            return Err(SchemaError::new(
                                &kat,
                                "x-tct-expression is \"embedded\" or \"whole\"",
                            ))
                        }
                    },
                    "x-tct-contexts" => {}
                    "x-tct-ref" => {
                        let target = val
                            .get("keys-of")
                            .and_then(Value::as_str)
                            .ok_or_else(|| SchemaError::new(&kat, "x-tct-ref needs \"keys-of\""))?;
                        let keys_of = parse_location(target, &kat)?;
                        if !is_ancestor_pattern(&keys_of, &pat) {
                            return Err(SchemaError::new(
                                &kat,
                                format!("keys-of {target:?} is not an ancestor of {loc:?}"),
                            ));
                        }
                        let flag = |f: &str| val.get(f).and_then(Value::as_bool).unwrap_or(false);
                        let name = match val.get("name") {
                            Some(n) => Some(name_spec(n, &format!("{kat}/name"))?),
                            None => None,
                        };
                        if !rules.targets.contains(&keys_of) {
                            rules.targets.push(keys_of.clone());
                        }
                        push(
                            false,
                            Check::Ref(RefRule {
                                keys_of,
                                forward: flag("forward"),
                                acyclic: flag("acyclic"),
                                name,
                            }),
                        );
                    }
                    "x-tct-unique" => {
                        let within =
                            val.get("within").and_then(Value::as_str).ok_or_else(|| {
                                SchemaError::new(&kat, "x-tct-unique needs \"within\"")
                            })?;
                        let w = parse_location(within, &kat)?;
                        if !is_ancestor_pattern(&w, &pat) {
                            return Err(SchemaError::new(
                                &kat,
                                format!("within {within:?} is not an ancestor of {loc:?}"),
                            ));
                        }
                        push(false, Check::Unique(w));
                    }
                    _ => {
                        return Err(SchemaError::new(
                            &kat,
                            format!("unknown rules keyword {k:?}"),
                        ))
                    }
                }
            }
        }
        Ok(rules)
    }

    /// What is enforced, one line per rule, then what is not enforced exactly.
    pub fn report(&self) -> Vec<String> {
        let mut out: Vec<String> = self.rules.iter().map(|r| r.source.clone()).collect();
        if self
            .rules
            .iter()
            .any(|r| matches!(r.check, Check::Embedded(_) | Check::Whole(_)))
        {
            out.push(
                "not enforced: property names after a context (steps.<id>, needs.<job>, \
                 matrix.<key>) are any identifier, not only the names the prefix declares"
                    .into(),
            );
        }
        out.push(
            "not enforced where the schema constrains the same string (pattern, enum, length) \
             and the two leave no token: the schema's mask is kept (Matcher::rules_fallbacks)"
                .into(),
        );
        out.push(
            "not enforced by the minimal completion (Matcher::completion closes what is open \
             by the schema alone)"
                .into(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &[&str]) -> Vec<Loc> {
        s.iter()
            .map(|x| match x.parse() {
                Ok(i) => Loc::Index(i),
                Err(_) => Loc::Key(x.to_string()),
            })
            .collect()
    }

    #[test]
    fn location_patterns() {
        let p = parse_location("/jobs/*/needs/*", "").unwrap();
        assert!(matches(&p, &path(&["jobs", "build", "needs", "0"])));
        assert!(!matches(&p, &path(&["jobs", "build", "needs"])));
        let d = parse_location("/**", "").unwrap();
        assert!(matches(&d, &[]));
        assert!(matches(&d, &path(&["a", "1", "b"])));
        let e = parse_location("/**/if", "").unwrap();
        assert!(matches(&e, &path(&["jobs", "x", "steps", "2", "if"])));
        assert!(!matches(&e, &path(&["jobs", "x", "if", "y"])));
    }

    #[test]
    fn overlay_errors_say_where() {
        let bad = serde_json::json!({"x-tct-rules": 1, "at": {"/a": {"x-tct-format": "nope"}}});
        let e = Rules::from_overlay(&bad).unwrap_err();
        assert!(e.to_string().contains("/at/~1a/x-tct-format"), "{e}");
        let bad =
            serde_json::json!({"x-tct-rules": 1, "at": {"/a/*": {"x-tct-ref": {"keys-of": "/b"}}}});
        assert!(Rules::from_overlay(&bad).is_err());
        let bad = serde_json::json!({"at": {}});
        assert!(Rules::from_overlay(&bad).is_err());
        let bad = serde_json::json!({"x-tct-rules": 1, "at": {"/a": {"x-tct-colour": 1}}});
        assert!(Rules::from_overlay(&bad).is_err());
    }
}
