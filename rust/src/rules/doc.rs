//! The per-document rules state: where the document stands (from its compact JSON text, fed
//! as the machine writes it), the checkers of the string being written, and what references
//! and uniqueness need (declared keys, references between entries, obligations, used values).

use super::expr::{Embedded, Whole};
use super::formats::{self, Glob};
use super::{matches, pointer, Check, Format, Loc, Rules};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The checker state of one rule on the string being written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum St {
    /// Stateless checks, or checks of the whole string at its end.
    Plain,
    Glob(Glob),
    Embedded(Embedded),
    Whole(Whole),
}

/// The string being written: the rules on it, their states, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StrRun {
    pub rules: Vec<u16>,
    pub states: Vec<St>,
    pub len: usize,
    /// Its bytes, kept only when a rule needs them (references, uniqueness, `uses`, shells).
    pub buf: Option<Vec<u8>>,
    pub path: Arc<Vec<Loc>>,
    pub key: bool,
}

impl StrRun {
    /// Whether the run depends only on its own states (then masks can be cached by them).
    pub fn cacheable(&self) -> bool {
        self.buf.is_none()
    }

    /// The cache key of a cacheable run.
    pub fn cache_key(&self) -> (Vec<u16>, Vec<St>, bool, bool) {
        (
            self.rules.clone(),
            self.states.clone(),
            self.len == 0,
            self.key,
        )
    }
}

/// One referenced object instance: its keys, the references between them, what is owed.
#[derive(Clone, Debug, Default)]
struct Graph {
    declared: BTreeSet<String>,
    edges: BTreeMap<String, BTreeSet<String>>,
    pending: BTreeSet<String>,
}

impl Graph {
    /// Whether `to` is reachable from `from` (following references).
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(n) = todo.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n) {
                if let Some(e) = self.edges.get(n) {
                    todo.extend(e.iter().map(String::as_str));
                }
            }
        }
        false
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Lex {
    Normal,
    /// Inside a string of the output text: raw (escaped) bytes, after a `\`.
    Str {
        raw: Vec<u8>,
        esc: bool,
    },
    Scalar,
}

#[derive(Clone, Debug)]
struct Ctx {
    obj: bool,
    /// Object: the key whose value comes next (or is being read).
    key: Option<String>,
    /// Array: items completed.
    items: usize,
}

#[derive(Clone, Debug)]
pub struct Tracker {
    rules: Arc<Rules>,
    lex: Lex,
    stack: Vec<Ctx>,
    /// Locations of the open containers (`path[..i]` is where `stack[i]` sits).
    path: Vec<Loc>,
    graphs: Arc<BTreeMap<String, Graph>>,
    used: Arc<BTreeMap<(u16, String), BTreeSet<String>>>,
    /// Why the last step failed.
    pub why: Option<String>,
    /// False while feeding text the matcher accepted anyway (after a fallback): a broken rule
    /// is noted in `why` and the text is still followed, so the state stays in step.
    pub strict: bool,
}

impl Tracker {
    pub fn new(rules: Arc<Rules>) -> Tracker {
        Tracker {
            rules,
            lex: Lex::Normal,
            stack: Vec::new(),
            path: Vec::new(),
            graphs: Arc::default(),
            used: Arc::default(),
            why: None,
            strict: true,
        }
    }

    fn fail(&mut self, why: String) -> bool {
        self.why = Some(why);
        !self.strict
    }

    /// Where the next value goes.
    fn value_path(&self) -> Vec<Loc> {
        let mut p = self.path.clone();
        match self.stack.last() {
            Some(Ctx { obj: true, key, .. }) => p.push(Loc::Key(key.clone().unwrap_or_default())),
            Some(Ctx {
                obj: false, items, ..
            }) => p.push(Loc::Index(*items)),
            None => {}
        }
        p
    }

    /// The checker run of a string starting now (a key of the object on top, or a value).
    pub fn start_run(&self, key: bool) -> StrRun {
        let path = if key {
            self.path.clone()
        } else {
            self.value_path()
        };
        let mut rules = Vec::new();
        let mut states = Vec::new();
        let mut needs_buf = false;
        for (i, r) in self.rules.rules.iter().enumerate() {
            if r.keys != key || !matches(&r.at, &path) {
                continue;
            }
            rules.push(i as u16);
            states.push(match &r.check {
                Check::Format(Format::RefGlob | Format::PathGlob) => St::Glob(Glob::default()),
                Check::Embedded(_) => St::Embedded(Embedded::default()),
                Check::Whole(_) => St::Whole(Whole::default()),
                Check::Format(_) | Check::Ref(_) | Check::Unique(_) => {
                    needs_buf = true;
                    St::Plain
                }
                Check::Name(_) | Check::NoControl => St::Plain,
            });
        }
        StrRun {
            rules,
            states,
            len: 0,
            buf: needs_buf.then(Vec::new),
            path: Arc::new(path),
            key,
        }
    }

    /// The referenced instance and the entry the string at `path` is in, for a ref rule.
    fn ref_scope(path: &[Loc], depth: usize) -> Option<(String, String)> {
        let inst = pointer(path.get(..depth)?);
        match path.get(depth)? {
            Loc::Key(k) => Some((inst, k.clone())),
            Loc::Index(i) => Some((inst, i.to_string())),
        }
    }

    /// Advance `run` by `bytes`. False when no valid string starts like this.
    pub fn step_run(&self, run: &mut StrRun, bytes: &[u8]) -> bool {
        if let Some(b) = &mut run.buf {
            b.extend_from_slice(bytes);
        }
        for &b in bytes {
            for (ri, st) in run.rules.iter().zip(run.states.iter_mut()) {
                let ok = match (&self.rules.rules[*ri as usize].check, st) {
                    (Check::Name(n), _) => n.step(run.len, b),
                    // Values may hold tabs and line breaks (scripts); keys nothing of the kind.
                    (Check::NoControl, _) => {
                        !formats::is_control(b) || (!run.key && matches!(b, b'\t' | b'\n' | b'\r'))
                    }
                    (Check::Format(Format::RefGlob), St::Glob(g)) => g.step(b, true),
                    (Check::Format(Format::PathGlob), St::Glob(g)) => g.step(b, false),
                    (Check::Format(Format::Shell), _) => !formats::is_control(b),
                    (Check::Embedded(c), St::Embedded(e)) => e.step(b, *c),
                    (Check::Whole(c), St::Whole(w)) => w.step(b, *c),
                    _ => true,
                };
                if !ok {
                    return false;
                }
            }
            run.len += 1;
        }
        // Checks of the whole prefix.
        let Some(buf) = &run.buf else {
            return true;
        };
        for &ri in &run.rules {
            let ok = match &self.rules.rules[ri as usize].check {
                Check::Format(Format::Uses(k)) => formats::uses_ok(buf, *k, false),
                Check::Ref(r) => self.ref_prefix_ok(r, &run.path, buf),
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    fn ref_prefix_ok(&self, r: &super::RefRule, path: &[Loc], buf: &[u8]) -> bool {
        if let Some(n) = &r.name {
            if r.forward && buf.iter().enumerate().all(|(i, &b)| n.step(i, b)) {
                return true;
            }
        } else if r.forward {
            return true;
        }
        let Some((inst, me)) = Self::ref_scope(path, r.keys_of.len()) else {
            return false;
        };
        let Some(g) = self.graphs.get(&inst) else {
            return false;
        };
        g.declared
            .iter()
            .any(|k| k.as_bytes().starts_with(buf) && *k != me && !(r.acyclic && g.reaches(k, &me)))
    }

    /// Whether `run` may end here (every rule accepts the whole string).
    pub fn end_ok(&self, run: &StrRun, text: &str) -> Result<(), String> {
        for (ri, st) in run.rules.iter().zip(&run.states) {
            let rule = &self.rules.rules[*ri as usize];
            let b = text.as_bytes();
            let ok = match (&rule.check, st) {
                // Every byte was checked as it came (`step_run`): only emptiness is left, so
                // the end needs no text (the rules layer judges string ends without it).
                (Check::Name(_), _) => run.len > 0,
                (Check::NoControl, _) => true,
                (Check::Format(Format::RefGlob), St::Glob(g)) => g.accepts_end(true),
                (Check::Format(Format::PathGlob), St::Glob(g)) => g.accepts_end(false),
                (Check::Format(Format::Shell), _) => formats::shell_accepts(b),
                (Check::Format(Format::Uses(k)), _) => formats::uses_ok(b, *k, true),
                (Check::Embedded(_), St::Embedded(e)) => e.accepts_end(),
                (Check::Whole(c), St::Whole(w)) => w.accepts_end(*c),
                (Check::Ref(r), _) => self.ref_end_ok(r, &run.path, text),
                (Check::Unique(w), _) => {
                    let inst = pointer(run.path.get(..w.len()).unwrap_or_default());
                    !self
                        .used
                        .get(&(*ri, inst))
                        .is_some_and(|s| s.contains(text))
                }
                _ => true,
            };
            if !ok {
                return Err(format!(
                    "{text:?} at {} breaks the rule {}",
                    pointer(&run.path),
                    rule.source
                ));
            }
        }
        Ok(())
    }

    fn ref_end_ok(&self, r: &super::RefRule, path: &[Loc], s: &str) -> bool {
        let Some((inst, me)) = Self::ref_scope(path, r.keys_of.len()) else {
            return false;
        };
        if s == me {
            return false;
        }
        let g = self.graphs.get(&inst);
        if g.is_some_and(|g| g.declared.contains(s)) {
            return !(r.acyclic && g.is_some_and(|g| g.reaches(s, &me)));
        }
        r.forward && r.name.as_ref().is_none_or(|n| n.accepts(s.as_bytes()))
    }

    /// Record a completed string (after `end_ok`).
    fn record(&mut self, run: &StrRun, text: &str) {
        for &ri in &run.rules {
            match &self.rules.rules[ri as usize].check {
                Check::Ref(r) => {
                    if let Some((inst, me)) = Self::ref_scope(&run.path, r.keys_of.len()) {
                        let g = Arc::make_mut(&mut self.graphs).entry(inst).or_default();
                        g.edges.entry(me).or_default().insert(text.to_string());
                        if !g.declared.contains(text) {
                            g.pending.insert(text.to_string());
                        }
                    }
                }
                Check::Unique(w) => {
                    let inst = pointer(run.path.get(..w.len()).unwrap_or_default());
                    Arc::make_mut(&mut self.used)
                        .entry((ri, inst))
                        .or_default()
                        .insert(text.to_string());
                }
                _ => {}
            }
        }
        // A key of a referenced object: declared, and no longer owed.
        if run.key && self.rules.targets.iter().any(|t| matches(t, &run.path)) {
            let g = Arc::make_mut(&mut self.graphs)
                .entry(pointer(&run.path))
                .or_default();
            g.declared.insert(text.to_string());
            g.pending.remove(text);
        }
    }

    /// A complete string of the output text (its JSON literal).
    fn string_done(&mut self, raw: &[u8]) -> bool {
        let Ok(text) = serde_json::from_slice::<String>(raw) else {
            return self.fail("internal: the output has a bad string".into());
        };
        let key = matches!(
            self.stack.last(),
            Some(Ctx {
                obj: true,
                key: None,
                ..
            })
        );
        let mut run = self.start_run(key);
        if !run.rules.is_empty() {
            if !self.step_run(&mut run, text.as_bytes()) {
                return self.fail(format!("{text:?} at {} breaks a rule", pointer(&run.path)));
            }
            if let Err(e) = self.end_ok(&run, &text) {
                return self.fail(e);
            }
            self.record(&run, &text);
        } else if key && self.rules.targets.iter().any(|t| matches(t, &run.path)) {
            self.record(&run, &text);
        }
        if key {
            if let Some(c) = self.stack.last_mut() {
                c.key = Some(text);
            }
        } else {
            self.value_done();
        }
        true
    }

    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Ctx { obj: true, key, .. }) => *key = None,
            Some(Ctx { items, .. }) => *items += 1,
            None => {}
        }
    }

    fn open(&mut self, obj: bool) {
        if !self.stack.is_empty() {
            let p = self.value_path();
            self.path = p;
        }
        self.stack.push(Ctx {
            obj,
            key: None,
            items: 0,
        });
    }

    fn close(&mut self) -> bool {
        let Some(c) = self.stack.pop() else {
            return self.fail("internal: a close with nothing open".into());
        };
        if c.obj {
            let here = pointer(&self.path);
            if let Some(g) = self.graphs.get(&here) {
                if let Some(p) = g.pending.iter().next() {
                    let why = format!("{here} closes without {p:?}, which is referred to");
                    return self.fail(why);
                }
            }
        }
        if !self.stack.is_empty() {
            self.path.pop();
        }
        self.value_done();
        true
    }

    /// Feed output text. False (with `why`) when it breaks a rule.
    pub fn feed(&mut self, text: &[u8]) -> bool {
        for &b in text {
            match &mut self.lex {
                Lex::Str { raw, esc } => {
                    raw.push(b);
                    if *esc {
                        *esc = false;
                    } else if b == b'\\' {
                        *esc = true;
                    } else if b == b'"' {
                        let raw = std::mem::take(raw);
                        self.lex = Lex::Normal;
                        if !self.string_done(&raw) {
                            return false;
                        }
                    }
                    continue;
                }
                Lex::Scalar => {
                    if matches!(b, b',' | b'}' | b']' | b':') {
                        self.lex = Lex::Normal;
                        self.value_done();
                    } else {
                        continue;
                    }
                }
                Lex::Normal => {}
            }
            let ok = match b {
                b'"' => {
                    self.lex = Lex::Str {
                        raw: vec![b'"'],
                        esc: false,
                    };
                    true
                }
                b'{' => {
                    self.open(true);
                    true
                }
                b'[' => {
                    self.open(false);
                    true
                }
                b'}' | b']' => self.close(),
                b',' | b':' => true,
                _ => {
                    self.lex = Lex::Scalar;
                    true
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// The checker run of the string the machine starts now. A scalar just before it is
    /// complete (the text that ends it, a `,` with the new key, comes when the key does).
    pub fn next_run(&self) -> StrRun {
        if self.lex == Lex::Scalar {
            let mut t = self.clone();
            t.lex = Lex::Normal;
            t.value_done();
            return t.start_run(t.next_is_key());
        }
        self.start_run(self.next_is_key())
    }

    /// Whether completing `run` records its text for later checks (references, uniqueness).
    pub fn run_records(&self, run: &StrRun) -> bool {
        run.rules.iter().any(|&ri| {
            matches!(
                self.rules.rules[ri as usize].check,
                Check::Ref(_) | Check::Unique(_)
            )
        })
    }

    /// Whether a key string would start now (the object on top waits for a key).
    pub fn next_is_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Ctx {
                obj: true,
                key: None,
                ..
            })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(v: serde_json::Value) -> Arc<Rules> {
        Arc::new(Rules::from_overlay(&v).unwrap())
    }

    fn needs_rules() -> Arc<Rules> {
        rules(serde_json::json!({"x-tct-rules": 1, "at": {
            "/jobs/*/needs/*": {"x-tct-ref": {"keys-of": "/jobs", "forward": true, "acyclic": true,
                "name": {"first": "A-Za-z_", "rest": "A-Za-z0-9_-"}}},
            "/jobs/*/steps/*/id": {"x-tct-unique": {"within": "/jobs/*"}},
            "/env": {"x-tct-key-name": {"first": "A-Za-z_", "rest": "A-Za-z0-9_"}}
        }}))
    }

    fn feed(t: &mut Tracker, s: &str) -> bool {
        t.feed(s.as_bytes())
    }

    #[test]
    fn backward_and_forward_references() {
        let mut t = Tracker::new(needs_rules());
        assert!(feed(
            &mut t,
            r#"{"jobs":{"a":{"needs":[]},"b":{"needs":["a","c"]}"#
        ));
        // `c` is owed: the jobs object may not close yet.
        assert!(!t.clone().feed(b"}"));
        assert!(feed(&mut t, r#","c":{"needs":[]}}}"#), "{:?}", t.why);
    }

    #[test]
    fn cycles_and_self_references_are_refused() {
        let mut t = Tracker::new(needs_rules());
        assert!(feed(
            &mut t,
            r#"{"jobs":{"a":{"needs":["b"]},"b":{"needs":["#
        ));
        assert!(!t.clone().feed(br#""a"]"#));
        assert!(!t.clone().feed(br#""b"]"#));
        assert!(t.clone().feed(br#""c"]"#));
    }

    #[test]
    fn reference_prefixes() {
        let mut t = Tracker::new(needs_rules());
        assert!(feed(&mut t, r#"{"jobs":{"build":{},"x":{"needs":["#));
        let mut run = t.start_run(false);
        assert!(t.step_run(&mut run.clone(), b"bui"));
        // Not a name, and not the start of a declared key.
        assert!(!t.step_run(&mut run, b"b u"));
    }

    #[test]
    fn scoped_uniqueness_and_key_names() {
        let mut t = Tracker::new(needs_rules());
        assert!(feed(&mut t, r#"{"jobs":{"a":{"steps":[{"id":"x"},{"id":"#));
        assert!(!t.clone().feed(br#""x"}"#));
        assert!(feed(&mut t, r#""y"}]},"b":{"steps":[{"id":"x"}]}},"#));
        assert!(!t.clone().feed(br#""env":{"A B":"1"}"#));
        assert!(t.clone().feed(br#""env":{"A_B":"1"}}"#));
    }
}
