//! The rules layer of the matcher: a second machine (strict, writing the compact JSON text)
//! stepped with the same base ids as the matcher's, a `Tracker` fed that text, and the
//! narrowing of the schema's mask.
//!
//! A candidate id is judged one of three ways:
//! - inside a string (or where a byte would start one), an id that expands to bytes only just
//!   extends that string: its bytes are stepped through the rules' checkers of the string.
//!   When those checkers depend only on their own small states (expressions, globs, names),
//!   the ids they refuse are cached by those states;
//! - an id that expands to bytes then `STR_END` ends the string. The rules' verdict on the
//!   string itself comes from its checkers (cached with the bytes-only ids when they are
//!   state-only). What ending it does next (the objects it closes and their obligations, ...)
//!   does not depend on a value's text when no rule records that text (references,
//!   uniqueness), or when the text written after it holds no string and no closing bracket:
//!   then it is stepped once per mask and holds for every such id. A key is stepped on the
//!   machine alone (once per mask when the value schema is the same for every key): when that
//!   writes only the key and its `:`, nothing but the key is judged;
//! - any other id is stepped on a copy of the machine, and the text it writes is fed to a
//!   copy of the tracker: every string it completes must satisfy its rules, every object it
//!   closes must have met its obligations, and a string it leaves open must still be live.
//!
//! Why the string-end path: the machine keeps a string's bytes until it ends, so stepping an
//! id that ends it re-reads the whole string (output text, tracker, every checker). In a long
//! `run:` script each of the ~1,000 string-ending ids allowed at a step cost ~20 us that way,
//! and a masked step ~22 ms on average (8 corpus workflows, 2,894 steps, 2-core dev VM); 99.6%
//! of the ids stepped were of the shape [bytes.., STR_END]. With the string-end path (and
//! containers opened as soon as they wait for a token, so the first key or item is judged by
//! its run too): mean 0.97 ms, p50 50 us, p99 14 ms on the same steps, measured while another
//! job loaded both cores. `matcher::tests` holds the masks equal to stepping every id.

use super::doc::{St, StrRun, Tracker};
use super::Rules;
use crate::compile::Graph;
use crate::machine::{Machine, Mode};
use crate::vocab::Vocab;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type RunKey = (Vec<u16>, Vec<St>, bool, bool);

/// Per tokenizer and rules: each id's base expansion, and the refused-id cache.
pub struct Tables {
    exp: Vec<Vec<u32>>,
    /// Ids that expand to bytes only, with their bytes.
    bytes_only: Vec<(u32, Vec<u8>)>,
    is_bytes: Vec<bool>,
    /// Ids that expand to bytes (maybe none) then `STR_END`, with their bytes.
    bytes_end: Vec<(u32, Vec<u8>)>,
    /// By id: its place in `bytes_end`.
    ends_string: Vec<Option<u32>>,
    /// By run state: the bytes-only ids the run refuses, and (for a value run judged by its
    /// states) the string-ending ids whose bytes or end it refuses.
    refused: Mutex<HashMap<RunKey, Arc<Vec<u32>>>>,
}

/// The rules compiled for one tokenizer: what the matcher takes.
pub struct Enforced {
    pub rules: Arc<Rules>,
    tables: Tables,
    graph: Arc<Graph>,
}

impl Enforced {
    pub fn new(rules: Arc<Rules>, graph: Arc<Graph>, v: &Vocab) -> Arc<Enforced> {
        let n = v.vocab_size() as usize;
        let mut exp = Vec::with_capacity(n);
        let mut bytes_only = Vec::new();
        let mut is_bytes = vec![false; n];
        let mut bytes_end = Vec::new();
        let mut ends_string = vec![None; n];
        let specials = [v.pad_id(), v.bos_id(), v.eos_id()];
        for id in 0..n as u32 {
            let mut e = Vec::new();
            if specials.contains(&id) || v.expand(&[id], &mut e).is_err() {
                e.clear();
            }
            if !e.is_empty() && e.iter().all(|&b| b < 256) {
                is_bytes[id as usize] = true;
                bytes_only.push((id, e.iter().map(|&b| b as u8).collect()));
            }
            if let Some((&crate::base::STR_END, head)) = e.split_last() {
                if head.iter().all(|&b| b < 256) {
                    ends_string[id as usize] = Some(bytes_end.len() as u32);
                    bytes_end.push((id, head.iter().map(|&b| b as u8).collect()));
                }
            }
            exp.push(e);
        }
        Arc::new(Enforced {
            rules,
            tables: Tables {
                exp,
                bytes_only,
                is_bytes,
                bytes_end,
                ends_string,
                refused: Mutex::new(HashMap::new()),
            },
            graph,
        })
    }
}

#[derive(Clone)]
pub struct Layer {
    e: Arc<Enforced>,
    machine: Machine,
    tracker: Tracker,
    /// The checkers of the string the machine has open, if any.
    run: Option<StrRun>,
    /// Masks where narrowing left nothing and the schema's mask was kept.
    pub fallbacks: usize,
    /// The last mask was such a fallback: the next id is accepted whatever the rules say.
    fell_back: bool,
    /// The string-end shortcut of `narrow` (off only to test it against stepping every id).
    pub(crate) end_shortcut: bool,
}

impl Layer {
    pub fn new(e: Arc<Enforced>) -> Layer {
        let mut machine = Machine::new(e.graph.clone(), Mode::Strict, true);
        let mut tracker = Tracker::new(e.rules.clone());
        // Constants at the root are written before any token.
        if let Ok(t) = machine.take_output() {
            tracker.feed(t.as_bytes());
        }
        let mut layer = Layer {
            e,
            machine,
            tracker,
            run: None,
            fallbacks: 0,
            fell_back: false,
            end_shortcut: true,
        };
        layer.open_value();
        layer
    }

    /// Open an array or object that waits for its first token (the machine accepts the same
    /// tokens either way), and feed the tracker its opening text: then a key or item that
    /// starts with the next token is judged with the run of a key or item at the right path,
    /// like any later one, instead of stepping every candidate id on a copy.
    fn open_value(&mut self) {
        self.machine.open_value();
        if let Ok(out) = self.machine.take_output() {
            if !out.is_empty() {
                self.tracker.feed(out.as_bytes());
            }
        }
    }

    /// The run of the string that bytes would extend now (open, or starting), if any.
    fn current_run(&self) -> Option<StrRun> {
        let top = self.machine.string_top()?;
        if top.continuing {
            return self.run.clone();
        }
        Some(self.tracker.next_run())
    }

    /// Why the rules refuse these base ids, if they do. `None` also when the schema refuses
    /// them (the matcher reports that).
    pub fn refusal(&self, base: &[u32]) -> Option<String> {
        if self.fell_back {
            return None;
        }
        if !base.is_empty() && base.iter().all(|&b| b < 256) {
            if let Some(mut run) = self.current_run() {
                let bytes: Vec<u8> = base.iter().map(|&b| b as u8).collect();
                if !self.tracker.step_run(&mut run, &bytes) {
                    return Some(format!(
                        "no string at {} that the rules allow starts like this",
                        super::pointer(&run.path)
                    ));
                }
                return None;
            }
        }
        let mut m = self.machine.clone();
        self.refusal_on(base, &mut m)
    }

    /// `refusal` of ids that do not just extend a string, stepped on `m` (a copy of the
    /// machine: `Machine::copy_from` reuses its allocations across candidates).
    fn refusal_on(&self, base: &[u32], m: &mut Machine) -> Option<String> {
        self.judge(base, m).0
    }

    /// `refusal_on`, and whether the text written after its first string holds no string and
    /// no closing bracket.
    fn judge(&self, base: &[u32], m: &mut Machine) -> (Option<String>, bool) {
        for &b in base {
            if m.is_done() || m.step(b).is_err() {
                return (None, false);
            }
        }
        let Ok(out) = m.take_output() else {
            return (None, false);
        };
        let plain_after = after_first_string(out.as_bytes())
            .is_some_and(|rest| !rest.iter().any(|b| matches!(b, b'"' | b'}' | b']')));
        (self.refusal_of_output(&out, m), plain_after)
    }

    fn refusal_of_output(&self, out: &str, m: &Machine) -> Option<String> {
        let mut t = self.tracker.clone();
        if !t.feed(out.as_bytes()) {
            return Some(t.why.unwrap_or_else(|| "refused by the rules".into()));
        }
        if m.string_checkpoint().is_some() {
            if let Some(top) = m.string_top() {
                let mut run = t.next_run();
                if !run.rules.is_empty() && !t.step_run(&mut run, &top.buf) {
                    return Some(format!(
                        "no string at {} that the rules allow starts like this",
                        super::pointer(&run.path)
                    ));
                }
            }
        }
        None
    }

    /// Accept base ids the matcher has accepted (after `refusal` said none).
    pub fn commit(&mut self, base: &[u32]) {
        self.fell_back = false;
        self.tracker.strict = false;
        self.commit_inner(base);
        self.tracker.strict = true;
    }

    fn commit_inner(&mut self, base: &[u32]) {
        // Bytes that continue the open string: step its run (nothing else is written). Bytes
        // that start a string may first close a scalar or open a container, so they take the
        // general path, which feeds the tracker that text before the run starts.
        let continuing = self.machine.string_top().is_some_and(|t| t.continuing);
        if continuing && !base.is_empty() && base.iter().all(|&b| b < 256) {
            if let Some(mut run) = self.run.take() {
                let bytes: Vec<u8> = base.iter().map(|&b| b as u8).collect();
                self.tracker.step_run(&mut run, &bytes);
                for &b in base {
                    let _ = self.machine.step(b);
                }
                self.run = Some(run);
                return;
            }
        }
        for &b in base {
            let _ = self.machine.step(b);
        }
        if let Ok(out) = self.machine.take_output() {
            self.tracker.feed(out.as_bytes());
        }
        self.open_value();
        self.run = None;
        if self.machine.string_checkpoint().is_some() {
            if let Some(top) = self.machine.string_top() {
                let mut run = self.tracker.next_run();
                self.tracker.step_run(&mut run, &top.buf);
                self.run = Some(run);
            }
        }
    }

    /// Remove from `out` (the schema's mask) the ids the rules refuse.
    pub fn narrow(&mut self, out: &mut [bool]) {
        let t = &self.e.tables;
        self.fell_back = false;
        let n = out.len().min(t.exp.len());
        let before: Vec<u32> = (0..n as u32).filter(|&i| out[i as usize]).collect();
        if before.is_empty() {
            return;
        }
        let run = self.current_run();
        if let Some(run) = &run {
            if !run.rules.is_empty() {
                let refused = if run.cacheable() && self.end_shortcut {
                    let key = run.cache_key();
                    let hit = t.refused.lock().ok().and_then(|c| c.get(&key).cloned());
                    match hit {
                        Some(r) => r,
                        None => {
                            let r = Arc::new(self.refused_bytes(run));
                            if let Ok(mut c) = t.refused.lock() {
                                if c.len() < 100_000 {
                                    c.insert(key, r.clone());
                                }
                            }
                            r
                        }
                    }
                } else {
                    Arc::new(self.refused_bytes(run))
                };
                for &id in refused.iter() {
                    if let Some(x) = out.get_mut(id as usize) {
                        *x = false;
                    }
                }
            }
        }
        // Ids that end the open string ([bytes.., STR_END]), see the module doc: their verdict
        // on the string itself comes from the run (with `refused` for a cacheable one), and
        // what ending it does next is judged once for a value (`end_effect`) and by the
        // machine alone for a key.
        let ends = run
            .as_ref()
            .filter(|r| self.end_shortcut && !r.rules.is_empty());
        let mut end_effect: Option<bool> = None;
        // A key's `key_end_is_plain`, once for all keys when the value is the same for any.
        let uniform_key = ends.is_some_and(|r| r.key) && self.machine.key_value_is_uniform();
        let mut key_plain: Option<bool> = None;
        let mut scratch = self.machine.clone();
        for &id in &before {
            let i = id as usize;
            if t.is_bytes[i] && run.is_some() {
                continue;
            }
            if !out[i] {
                continue;
            }
            let end_bytes = t.ends_string[i]
                .and_then(|k| t.bytes_end.get(k as usize))
                .map(|(_, bytes)| bytes.as_slice());
            let ending = ends.filter(|_| end_bytes.is_some());
            if let (Some(r), Some(bytes)) = (ending, end_bytes) {
                if !r.cacheable() && !self.run_ends_ok(r, bytes) {
                    out[i] = false;
                    continue;
                }
                if r.key {
                    let plain = match key_plain {
                        Some(p) => p,
                        None => {
                            scratch.copy_from(&self.machine);
                            let p = key_end_is_plain(&t.exp[i], &mut scratch);
                            if uniform_key {
                                key_plain = Some(p);
                            }
                            p
                        }
                    };
                    if plain {
                        continue;
                    }
                } else if let Some(ok) = end_effect {
                    out[i] = ok;
                    continue;
                }
            }
            scratch.copy_from(&self.machine);
            let (refused, plain_after) = self.judge(&t.exp[i], &mut scratch);
            out[i] = refused.is_none();
            if let Some(r) = ending.filter(|r| !r.key) {
                // This id passed the run's own verdict, so the verdict is that of the end's
                // consequences alone. They do not depend on the string's text when no rule
                // records it (references, uniqueness), or when nothing after the string could
                // look at what was recorded (no string, no closing bracket in the text after).
                if !self.tracker.run_records(r) || plain_after {
                    end_effect = Some(refused.is_none());
                }
            }
        }
        if !out[..n].iter().any(|&x| x) {
            self.fallbacks += 1;
            self.fell_back = true;
            for &id in &before {
                out[id as usize] = true;
            }
        }
    }

    /// Whether `run` accepts `bytes` and the string's end after them (with its text, for
    /// rules that read it; a cacheable run is judged by its states alone).
    fn run_ends_ok(&self, run: &StrRun, bytes: &[u8]) -> bool {
        let mut x = run.clone();
        if !self.tracker.step_run(&mut x, bytes) {
            return false;
        }
        let text = x.buf.as_deref().map(std::str::from_utf8);
        match text {
            Some(Ok(text)) => self.tracker.end_ok(&x, text).is_ok(),
            Some(Err(_)) => false,
            None => self.tracker.end_ok(&x, "").is_ok(),
        }
    }

    /// The bytes-only ids whose bytes the rules of `run` refuse; for a run judged by its
    /// states, also the string-ending ids whose bytes or end it refuses.
    fn refused_bytes(&self, run: &StrRun) -> Vec<u32> {
        let mut r = Vec::new();
        for (id, bytes) in &self.e.tables.bytes_only {
            let mut x = run.clone();
            if !self.tracker.step_run(&mut x, bytes) {
                r.push(*id);
            }
        }
        if self.end_shortcut && run.cacheable() {
            for (id, bytes) in &self.e.tables.bytes_end {
                if !self.run_ends_ok(run, bytes) {
                    r.push(*id);
                }
            }
        }
        r
    }
}

/// Whether the ids `base` that end a key write that key and its `:` only (`m`: a copy of the
/// machine to step): then nothing but the key itself is judged, and the run judged it.
fn key_end_is_plain(base: &[u32], m: &mut Machine) -> bool {
    for &b in base {
        if m.is_done() || m.step(b).is_err() {
            return false;
        }
    }
    let Ok(out) = m.take_output() else {
        return false;
    };
    let text = out.as_bytes();
    let text = text.strip_prefix(b",").unwrap_or(text);
    text.first() == Some(&b'"') && after_first_string(text) == Some(b":".as_slice())
}

/// The text after the first JSON string literal of `text` (`None` without one).
fn after_first_string(text: &[u8]) -> Option<&[u8]> {
    let start = text.iter().position(|&b| b == b'"')?;
    let mut esc = false;
    for (i, &b) in text.iter().enumerate().skip(start + 1) {
        if esc {
            esc = false;
        } else if b == b'\\' {
            esc = true;
        } else if b == b'"' {
            return text.get(i + 1..);
        }
    }
    None
}
