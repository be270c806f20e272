//! The token-bitmask interface of llguidance and XGrammar, over [`Matcher`]: what inference
//! engines (vLLM, SGLang, TGI, transformers) call for structured decoding.
//!
//! - The mask is an `i32` row of `ceil(vocab / 32)` words: id `i` is allowed when bit `i % 32`
//!   of word `i / 32` is set (the libraries' layout, so an engine's integration code fits).
//! - [`GuidedMatcher`] adds to the matcher what those engines use: `accept_token` (false and state
//!   unchanged on a forbidden id), `rollback(n)` for speculative decoding, `reset`, `fork`,
//!   `forced_ids` for jump-forward, and a token budget.
//! - [`fill_bitmask_batch`] fills many rows in parallel (rayon); the bindings release the GIL.
//!
//! Rollback replays the accepted ids from the start instead of keeping a snapshot per id: a
//! matcher snapshot copies the base ids so far, so one per id would cost O(n^2) memory and time
//! over a sample, while a replay costs O(n) once per rollback (engines roll back a few times per
//! verification step, not per id).
//!
//! Packing. The matcher writes a `bool` per id and the row is packed from it, 32 ids per word:
//! for an 8,192-id vocabulary that is 256 words (a few microseconds), beside a fill that costs
//! tens of microseconds inside strings and more elsewhere, so writing bits straight from the
//! matcher's tables would save little and would duplicate its fast paths.
//!
//! The budget. With `set_budget(n)`, at most `n` more ids (EOS included) may be accepted, and an
//! id is forbidden when the smallest completion after it (in base ids: `Machine::completion`,
//! which the matcher can always follow since base ids are ids) plus EOS no longer fits. By
//! induction a matcher whose budget admitted a completion when it was set keeps one: the first id
//! of the current completion always fits. The check is exact for every id that is not plain
//! string content; content ids (most of the vocabulary inside a string) cannot lengthen the
//! completion by more than `CONTENT_SLACK` ids in an unconstrained string, so they are allowed
//! while that worst case fits. Closer to the end, single-byte content ids are checked exactly and
//! merged content ids are forbidden: the completion is made of base ids, so its first id is always
//! checked exactly and always fits, which keeps the induction. Far from the end (more than
//! `HORIZON` ids beyond the current completion) nothing is checked: one id does not lengthen the
//! completion by that much in practice, and checking every step would cost a copy of the machine
//! per candidate id.

use rayon::prelude::*;

use crate::error::DecodeError;
use crate::machine::Machine;
use crate::tokenizer::{Matcher, Tokenizer};

/// Words per mask row for a vocabulary of `vocab_size` ids.
pub fn bitmask_width(vocab_size: usize) -> usize {
    vocab_size.div_ceil(32)
}

/// How many ids one id of string content may add to the completion: up to three UTF-8
/// continuation bytes, and one byte more when the text so far is an excluded value.
const CONTENT_SLACK: usize = 4;
/// Budget checks start when the ids left are within this many of the current completion.
pub const HORIZON: usize = 8;

/// Pack `allowed` (one bool per id) into `row` (bit `i % 32` of word `i / 32`); words and bits
/// past `allowed` are cleared.
pub fn pack_bits(allowed: &[bool], row: &mut [i32]) {
    let mut chunks = allowed.chunks(32);
    for w in row.iter_mut() {
        let mut word = 0u32;
        if let Some(c) = chunks.next() {
            for (j, &a) in c.iter().enumerate() {
                word |= (a as u32) << j;
            }
        }
        *w = word as i32;
    }
}

/// A [`Matcher`] with the engines' interface (see the module docs).
#[derive(Clone)]
pub struct GuidedMatcher {
    tok: Tokenizer,
    /// The matcher at the start (with its rules, if any): rollback and reset replay from it.
    start: Matcher,
    m: Matcher,
    /// Ids accepted since the start (BOS included), for rollback.
    ids: Vec<u32>,
    /// Ids left, EOS included (None: unbounded).
    budget: Option<usize>,
    /// The budget before each accepted id (for rollback and reset).
    budget_before: Vec<Option<usize>>,
    ended: bool,
    /// Scratch mask, one bool per id.
    scratch: Vec<bool>,
    /// Steps whose budget check cleared ids the schema allowed (reported by generators).
    pub budget_cuts: usize,
}

impl GuidedMatcher {
    pub fn new(tok: &Tokenizer) -> GuidedMatcher {
        GuidedMatcher::from_matcher(tok, tok.matcher())
    }

    /// Over `start`, a fresh matcher of `tok` (for instance one enforcing rules).
    pub fn from_matcher(tok: &Tokenizer, start: Matcher) -> GuidedMatcher {
        GuidedMatcher {
            tok: tok.clone(),
            m: start.clone(),
            start,
            ids: Vec::new(),
            budget: None,
            budget_before: Vec::new(),
            ended: false,
            scratch: vec![false; tok.vocab_size() as usize],
            budget_cuts: 0,
        }
    }

    pub fn matcher(&self) -> &Matcher {
        &self.m
    }

    pub fn vocab_size(&self) -> usize {
        self.scratch.len()
    }

    /// Ids accepted so far (BOS included).
    pub fn accepted(&self) -> &[u32] {
        &self.ids
    }

    pub fn budget(&self) -> Option<usize> {
        self.budget
    }

    /// At most `n` more ids, EOS included (None: no bound). Refused when even the smallest
    /// completion plus EOS does not fit, since then no id could be allowed.
    pub fn set_budget(&mut self, n: Option<usize>) -> Result<(), DecodeError> {
        if let Some(n) = n {
            let need = self.completion_len()? + usize::from(!self.ended);
            if n < need {
                return Err(DecodeError::new(
                    self.ids.len(),
                    format!(
                        "budget {n}: the smallest valid completion needs {need} ids (EOS included)"
                    ),
                ));
            }
        }
        self.budget = n;
        Ok(())
    }

    pub fn is_terminated(&self) -> bool {
        self.ended
    }

    pub fn is_complete(&self) -> bool {
        self.m.is_complete()
    }

    /// Ids of the smallest completion from here, EOS excluded (0 once complete).
    fn completion_len(&self) -> Result<usize, DecodeError> {
        if self.ended || self.m.is_complete() {
            return Ok(0);
        }
        self.m
            .machine()
            .completion()
            .map(|c| c.len())
            .map_err(|msg| DecodeError::new(self.ids.len(), msg))
    }

    fn is_bos(&self, id: u32) -> bool {
        id == self.tok.bos_id() && self.m.at_start()
    }

    /// Whether `id` (allowed by the schema) fits the budget: see the module docs.
    fn fits_budget(&self, id: u32, left: usize, c0: usize, in_string: bool) -> bool {
        if id == self.tok.eos_id() {
            return left >= 1;
        }
        if left < 2 {
            return false;
        }
        if in_string && self.is_content(id) && c0 + CONTENT_SLACK + 2 <= left {
            return true;
        }
        if in_string && self.is_content(id) && id >= 256 {
            // Near the end, a merged content id is not simulated: base bytes still reach the end.
            return false;
        }
        match self.completion_after(id) {
            Some(c) => c + 2 <= left,
            None => false,
        }
    }

    fn is_content(&self, id: u32) -> bool {
        let v = self.tok.vocab();
        if id < 256 {
            return true;
        }
        if id < v.base_size() {
            return false;
        }
        v.expansion(id).is_some_and(|e| e.iter().all(|&b| b < 256))
    }

    /// Length of the smallest completion after `id`, None when `id` does not step.
    fn completion_after(&self, id: u32) -> Option<usize> {
        let mut base = Vec::new();
        self.tok.vocab().expand(&[id], &mut base).ok()?;
        let mut m: Machine = self.m.machine().clone();
        for &b in &base {
            if m.is_done() {
                return None;
            }
            m.step(b).ok()?;
        }
        if m.is_done() {
            return Some(0);
        }
        m.completion().ok().map(|c| c.len())
    }

    /// Whether the budget (if any) is close enough that ids must be checked; with
    /// `(ids left, current completion length, inside a string)`.
    fn budget_zone(&self) -> Option<(usize, usize, bool)> {
        let left = self.budget?;
        if self.ended {
            return None;
        }
        let c0 = self.completion_len().ok()?;
        if left > c0 + 2 + HORIZON {
            return None;
        }
        let m = self.m.machine();
        let in_string = m.string_checkpoint().is_some() || m.top_kind() == "value:string";
        Some((left, c0, in_string))
    }

    /// The allowed-next-id mask (schema and budget), one bool per id.
    pub fn fill_allowed(&mut self, out: &mut [bool]) {
        self.m.fill_allowed(out);
        if let Some((left, c0, in_string)) = self.budget_zone() {
            let mut cut = false;
            for (id, a) in out.iter_mut().enumerate() {
                if *a && !self.fits_budget(id as u32, left, c0, in_string) {
                    *a = false;
                    cut = true;
                }
            }
            self.budget_cuts += cut as usize;
        }
    }

    /// Fill one bitmask row (`ceil(vocab / 32)` words or more; extra bits are cleared).
    pub fn fill_bitmask(&mut self, row: &mut [i32]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.fill_allowed(&mut scratch);
        pack_bits(&scratch, row);
        self.scratch = scratch;
    }

    /// Accept one id, or explain why not (state unchanged).
    pub fn advance(&mut self, id: u32) -> Result<(), DecodeError> {
        let pos = self.ids.len();
        if self.is_bos(id) {
            self.m.advance(id)?;
            self.budget_before.push(self.budget);
            self.ids.push(id);
            return Ok(());
        }
        if let Some((left, c0, in_string)) = self.budget_zone() {
            if id < self.vocab_size() as u32 && !self.fits_budget(id, left, c0, in_string) {
                return Err(DecodeError::new(
                    pos,
                    format!("id {id}: the document could not be completed within the {left} ids left in the budget"),
                ));
            }
        }
        if self.budget == Some(0) {
            return Err(DecodeError::new(pos, "the token budget is spent"));
        }
        self.m.advance(id)?;
        if id == self.tok.eos_id() {
            self.ended = true;
        }
        self.budget_before.push(self.budget);
        self.ids.push(id);
        if let Some(b) = self.budget.as_mut() {
            *b -= 1;
        }
        Ok(())
    }

    /// `advance` as the engines call it: false (state unchanged) on a forbidden id.
    pub fn accept_token(&mut self, id: u32) -> bool {
        self.advance(id).is_ok()
    }

    /// Undo the last `n` accepted ids (budget included).
    pub fn rollback(&mut self, n: usize) -> Result<(), DecodeError> {
        if n > self.ids.len() {
            return Err(DecodeError::new(
                self.ids.len(),
                format!("cannot roll back {n} ids: only {} accepted", self.ids.len()),
            ));
        }
        if n == 0 {
            return Ok(());
        }
        let keep = self.ids.len() - n;
        let mut m = self.start.clone();
        // Every id was accepted before: the replay cannot fail, but stays checked.
        for &id in &self.ids[..keep] {
            m.advance(id)?;
        }
        self.m = m;
        self.budget = self.budget_before[keep];
        self.ids.truncate(keep);
        self.budget_before.truncate(keep);
        self.ended = self.ids.last() == Some(&self.tok.eos_id());
        Ok(())
    }

    /// Back to the start state: no ids, the budget as set at the start (if it was).
    pub fn reset(&mut self) {
        self.m = self.start.clone();
        self.budget = self.budget_before.first().copied().unwrap_or(self.budget);
        self.ids.clear();
        self.budget_before.clear();
        self.ended = false;
    }

    /// The document so far, open strings and containers closed, unfinished keys and values
    /// left out (`crate::partial`): each snapshot extends the previous one.
    pub fn partial_document(&self) -> Result<String, DecodeError> {
        let text = self.m.document(false)?;
        if self.m.is_complete() {
            return Ok(text);
        }
        Ok(crate::partial::close_partial_json(&text))
    }

    /// The ids that are the only choice from here, in order (for jump-forward decoding): stops at
    /// the first state with more than one allowed id, or after `limit` ids.
    pub fn forced_ids(&self, limit: usize) -> Vec<u32> {
        let mut g = self.clone();
        let mut out = Vec::new();
        let mut mask = vec![false; self.vocab_size()];
        while out.len() < limit && !g.ended {
            g.fill_allowed(&mut mask);
            let mut only = None;
            for (i, &a) in mask.iter().enumerate() {
                if a {
                    if only.is_some() {
                        return out;
                    }
                    only = Some(i as u32);
                }
            }
            let Some(id) = only else { return out };
            if g.advance(id).is_err() {
                return out;
            }
            out.push(id);
        }
        out
    }
}

/// Fill row `i` of `bitmask` (rows of `width` words) for matcher `i`, in parallel.
pub fn fill_bitmask_batch(
    matchers: &mut [&mut GuidedMatcher],
    bitmask: &mut [i32],
    width: usize,
    num_threads: Option<usize>,
) {
    let run = |ms: &mut [&mut GuidedMatcher], bm: &mut [i32]| {
        ms.par_iter_mut()
            .zip(bm.par_chunks_mut(width))
            .for_each(|(m, row)| m.fill_bitmask(row));
    };
    match num_threads {
        Some(n) if n > 0 => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(|| run(matchers, bitmask)),
            Err(_) => run(matchers, bitmask),
        },
        _ => run(matchers, bitmask),
    }
}
