//! The rules layer of the matcher: a second machine (strict, writing the compact JSON text)
//! stepped with the same base ids as the matcher's, a `Tracker` fed that text, and the
//! narrowing of the schema's mask.
//!
//! A candidate id is judged one of two ways:
//! - inside a string (or where a byte would start one), an id that expands to bytes only just
//!   extends that string: its bytes are stepped through the rules' checkers of the string.
//!   When those checkers depend only on their own small states (expressions, globs, names),
//!   the ids they refuse are cached by those states;
//! - any other id is stepped on a copy of the machine, and the text it writes is fed to a
//!   copy of the tracker: every string it completes must satisfy its rules, every object it
//!   closes must have met its obligations, and a string it leaves open must still be live.

use super::doc::{St, StrRun, Tracker};
use super::Rules;
use crate::compile::Graph;
use crate::machine::{Machine, Mode};
use crate::vocab::Vocab;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type RunKey = (Vec<u16>, Vec<St>, bool);

/// Per tokenizer and rules: each id's base expansion, and the refused-id cache.
pub struct Tables {
    exp: Vec<Vec<u32>>,
    /// Ids that expand to bytes only, with their bytes.
    bytes_only: Vec<(u32, Vec<u8>)>,
    is_bytes: Vec<bool>,
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
            exp.push(e);
        }
        Arc::new(Enforced {
            rules,
            tables: Tables {
                exp,
                bytes_only,
                is_bytes,
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
}

impl Layer {
    pub fn new(e: Arc<Enforced>) -> Layer {
        let mut machine = Machine::new(e.graph.clone(), Mode::Strict, true);
        let mut tracker = Tracker::new(e.rules.clone());
        // Constants at the root are written before any token.
        if let Ok(t) = machine.take_output() {
            tracker.feed(t.as_bytes());
        }
        Layer {
            e,
            machine,
            tracker,
            run: None,
            fallbacks: 0,
            fell_back: false,
        }
    }

    /// The run of the string that bytes would extend now (open, or starting), if any.
    fn current_run(&self) -> Option<StrRun> {
        let top = self.machine.string_top()?;
        if top.continuing {
            return self.run.clone();
        }
        Some(self.tracker.start_run(self.tracker.next_is_key()))
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
        for &b in base {
            if m.is_done() || m.step(b).is_err() {
                return None;
            }
        }
        let mut t = self.tracker.clone();
        let out = m.take_output().ok()?;
        if !t.feed(out.as_bytes()) {
            return Some(t.why.unwrap_or_else(|| "refused by the rules".into()));
        }
        if m.string_checkpoint().is_some() {
            if let Some(top) = m.string_top() {
                let mut run = t.start_run(t.next_is_key());
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
        if !base.is_empty() && base.iter().all(|&b| b < 256) {
            if let Some(mut run) = self.current_run() {
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
        self.run = None;
        if self.machine.string_checkpoint().is_some() {
            if let Some(top) = self.machine.string_top() {
                let mut run = self.tracker.start_run(self.tracker.next_is_key());
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
                let refused = if run.cacheable() {
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
        let mut scratch = self.machine.clone();
        for &id in &before {
            let i = id as usize;
            if t.is_bytes[i] && run.is_some() {
                continue;
            }
            if out[i] {
                scratch.copy_from(&self.machine);
                if self.refusal_on(&t.exp[i], &mut scratch).is_some() {
                    out[i] = false;
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

    /// The bytes-only ids whose bytes the rules of `run` refuse.
    fn refused_bytes(&self, run: &StrRun) -> Vec<u32> {
        let mut r = Vec::new();
        for (id, bytes) in &self.e.tables.bytes_only {
            let mut x = run.clone();
            if !self.tracker.step_run(&mut x, bytes) {
                r.push(*id);
            }
        }
        r
    }
}
