//! Which base ids may come next (`allowed`) and the smallest valid completion of the
//! document so far.

use super::*;
use crate::compile::header::header_feasible;
use crate::numbers::{num_accepting, num_feasible, num_next, num_part};
use crate::strings::{utf8_step, READABLE};

impl Machine {
    /// A scratch machine over `stack` alone (no output, no frames below), for asking what a
    /// value that has not opened yet would allow first.
    fn scratch_on(&self, stack: Vec<Frame>) -> Machine {
        Machine {
            g: self.g.clone(),
            mode: self.mode,
            stack,
            out: None,
            relax_counts: self.relax_counts,
            below: 0,
            high_water: 0,
            floor: 0,
            spare: Vec::new(),
        }
    }

    /// Mark in `out` (indexed by base id) every base token that `step` would accept and after
    /// which the document can still be completed (strict mode).
    pub fn allowed(&self, out: &mut [bool]) {
        let Some(top) = self.stack.last() else { return };
        let mut set = |t: u32| {
            if let Some(x) = out.get_mut(t as usize) {
                *x = true;
            }
        };
        match top {
            Frame::Value(n) => match self.node(*n) {
                Node::Enum(vals) => {
                    let used = self.unique_used();
                    for (k, v) in vals.iter().enumerate() {
                        if !used.is_some_and(|u| u.has(v)) {
                            set(SEL0 + k as u32);
                        }
                    }
                }
                Node::Bool => {
                    let used = self.unique_used();
                    for (k, v) in ["false", "true"].iter().enumerate() {
                        if !used.is_some_and(|u| u.has(v)) {
                            set(SEL0 + k as u32);
                        }
                    }
                }
                Node::Union(bs) => {
                    for (k, &b) in bs.iter().enumerate() {
                        if self.g.productive(b) {
                            set(SEL0 + k as u32);
                        }
                    }
                }
                Node::Any => (G_NULL..=G_OBJ).for_each(&mut set),
                Node::Str(_) | Node::Num(_) | Node::Arr(_) | Node::Obj(_) => {
                    let n0 = self.stack.len();
                    let mut stack = Vec::with_capacity(2);
                    if n0 >= 2 {
                        stack.push(self.stack[n0 - 2].clone());
                    }
                    stack.push(Frame::Value(*n));
                    let mut scratch = self.scratch_on(stack);
                    let depth = scratch.stack.len();
                    scratch.open_top();
                    if scratch.stack.len() >= depth {
                        scratch.allowed(out);
                    }
                }
                _ => {}
            },
            Frame::Generic => (G_NULL..=G_OBJ).for_each(&mut set),
            Frame::Str { kind, st, buf } => {
                let spec = self.spec_for(kind);
                let room = buf.len() < crate::MAX_STRING_BYTES;
                if trivial_but_excluded(&spec) {
                    // Unconstrained but for finitely many excluded values, which never make a
                    // prefix dead: only UTF-8 matters (the common case, kept allocation-free).
                    for b in 0..=255u8 {
                        if room && utf8_step(st.utf8, b).is_some() {
                            set(b as u32);
                        }
                    }
                    if self.str_end_ok(kind, st, buf) {
                        set(STR_END);
                    }
                    return;
                }
                let extra = self.extra_excluded(kind);
                let ex: Vec<&str> = extra.iter().map(String::as_str).collect();
                // The prefix matters only to excluded values that extend it: without any, the
                // string's bytes are not copied (they were, for each mask, which made the
                // completion of a string of minLength n cost O(n^2)).
                let mut pre = if spec.excluded.is_empty() && ex.is_empty() {
                    Vec::new()
                } else {
                    buf.clone()
                };
                for b in 0..=255u8 {
                    let mut s2 = st.clone();
                    if !room || !spec.step(&mut s2, b) {
                        continue;
                    }
                    if spec.trivial && ex.is_empty() {
                        if buf.len() < crate::MAX_STRING_BYTES {
                            set(b as u32);
                        }
                        continue;
                    }
                    pre.push(b);
                    if spec.live(&s2, &pre, &ex) {
                        set(b as u32);
                    }
                    pre.pop();
                }
                if self.str_end_ok(kind, st, buf) {
                    set(STR_END);
                }
            }
            Frame::Num { node, text } => {
                let spec = node.and_then(|n| match self.node(n) {
                    Node::Num(s) => Some(s),
                    _ => None,
                });
                let integer = spec.is_some_and(|s| s.integer);
                let bounded = spec.is_some_and(|s| s.min.is_some() || s.max.is_some());
                if let Some((p, run)) = num_part(text) {
                    let mut t2 = text.clone();
                    for &c in b"0123456789-+.eE" {
                        if num_next(p, run, c, integer, !bounded, true).is_some() {
                            t2.push(c);
                            if spec.is_none_or(|s| num_feasible(s.bounds(), &t2)) {
                                set(c as u32);
                            }
                            t2.pop();
                        }
                    }
                    if num_accepting(p) {
                        let s = std::str::from_utf8(text).unwrap_or("");
                        let ok = spec.is_none_or(|sp| sp.accepts_value(s))
                            && !(node.is_some() && self.unique_used().is_some_and(|u| u.has(s)));
                        if ok {
                            set(STR_END);
                        }
                    }
                }
            }
            Frame::Header { node, next, sel } => {
                let Node::Obj(o) = self.node(*node) else {
                    return;
                };
                for j in *next..o.optional.len() {
                    if !self.g.productive(o.props[o.optional[j]].node) {
                        continue;
                    }
                    let mut s2 = sel.clone();
                    s2.set(j);
                    if header_feasible(&self.g, o, &s2, j + 1) {
                        set(SEL0 + j as u32);
                    }
                }
                if header_feasible(&self.g, o, sel, usize::MAX) {
                    set(END);
                }
            }
            Frame::Map {
                node, count, used, ..
            } => {
                let Node::Obj(o) = self.node(*node) else {
                    return;
                };
                if *count >= o.min_props {
                    set(END);
                }
                if o.max_props.is_none_or(|m| *count < m) {
                    if let Some(m) = &o.map {
                        let ex: Vec<&str> = used.iter().map(String::as_str).collect();
                        let st = m.key.start();
                        // Keys unconstrained but for excluded values: every UTF-8 start lives.
                        let any_key = trivial_but_excluded(&m.key);
                        for b in 0..=255u8 {
                            let mut s2 = st.clone();
                            if m.key.step(&mut s2, b) && (any_key || m.key.live(&s2, &[b], &ex)) {
                                set(b as u32);
                            }
                        }
                        let empty_ok = m.key.accepts_end(&st)
                            && !ex.contains(&"")
                            && m.key
                                .excluded
                                .binary_search_by(|e| e.as_str().cmp(""))
                                .is_err()
                            && m.entry
                                .get(m.key.combo_bits(&st))
                                .is_some_and(|&e| self.g.productive(e));
                        if empty_ok {
                            set(STR_END);
                        }
                    }
                }
            }
            Frame::Arr { node, count, .. } => {
                let Node::Arr(a) = self.node(*node) else {
                    return;
                };
                if *count >= a.min_items {
                    set(ARR_END);
                }
                if a.max_items.is_some_and(|m| *count >= m) {
                    return;
                }
                let Some(item) = a.prefix.get(*count as usize).copied().or(a.items) else {
                    return;
                };
                if !self.g.productive(item) {
                    return;
                }
                if a.marker {
                    set(ITEM);
                } else {
                    // The first tokens of a fresh item: settle a scratch copy and ask it.
                    let mut scratch = self.scratch_on(vec![
                        self.stack.last().cloned().unwrap_or(Frame::Generic),
                        Frame::Value(item),
                    ]);
                    scratch.settle();
                    if scratch.stack.len() >= 2 {
                        scratch.allowed(out);
                    }
                }
            }
            Frame::GArr { .. } => {
                set(ARR_END);
                (G_NULL..=G_OBJ).for_each(&mut set);
            }
            Frame::GObj { used, .. } => {
                set(END);
                if !used.has("") {
                    set(STR_END);
                }
                for b in 0..=255u8 {
                    if utf8_step(0, b).is_some() {
                        set(b as u32);
                    }
                }
            }
            Frame::Props { .. } => {}
        }
    }

    /// The base tokens of the smallest valid completion of the current state.
    pub fn completion(&self) -> Result<Vec<u32>, String> {
        let mut m = self.clone();
        m.out = None;
        let mut toks = Vec::new();
        let nb = crate::base::base_size(self.g.sel_count) as usize;
        let mut allowed = vec![false; nb];
        // A guard against a completion that never ends (a bug): every real one is far shorter
        // (the longest string is `MAX_STRING_BYTES`; a schema's `minLength` of a million
        // completes in a million tokens).
        const MAX_COMPLETION: usize = 1 << 24;
        while !m.is_done() {
            if toks.len() > MAX_COMPLETION {
                let tail: Vec<String> = toks[toks.len() - 8..]
                    .iter()
                    .map(|&t| crate::base::name(t))
                    .collect();
                return Err(format!(
                    "the smallest completion is longer than {MAX_COMPLETION} tokens (waiting \
                     in {}; last tokens {})",
                    m.top_kind(),
                    tail.join(" ")
                ));
            }
            let t = m.next_completion_token(&mut allowed)?;
            m.step(t)?;
            toks.push(t);
        }
        Ok(toks)
    }

    pub(super) fn next_completion_token(&self, allowed: &mut [bool]) -> Result<u32, String> {
        allowed.fill(false);
        self.allowed(allowed);
        let ok = |t: u32| allowed.get(t as usize).copied().unwrap_or(false);
        let top = self.stack.last().ok_or("complete")?;
        // Prefer closing what is open, then the cheapest choice.
        let close = match top {
            Frame::Str { .. } | Frame::Num { .. } => STR_END,
            Frame::Arr { .. } | Frame::GArr { .. } => ARR_END,
            Frame::Header { .. } | Frame::Map { .. } | Frame::GObj { .. } => END,
            _ => G_NULL,
        };
        if ok(close) {
            return Ok(close);
        }
        match top {
            Frame::Str { kind, st, buf } => {
                let spec = self.spec_for(kind);
                let extra = self.extra_excluded(kind);
                let pend: Vec<&[u8]> = spec
                    .excluded
                    .iter()
                    .chain(extra.iter())
                    .map(|s| s.as_bytes())
                    .filter(|e| e.starts_with(buf))
                    .map(|e| &e[buf.len()..])
                    .collect();
                if let Some(b) = spec.first_completion_byte(st, &pend) {
                    if ok(b as u32) {
                        return Ok(b as u32);
                    }
                }
            }
            Frame::Num { .. } => {
                for &c in b"0123456789.-" {
                    if ok(c as u32) {
                        return Ok(c as u32);
                    }
                }
            }
            Frame::Value(n) if matches!(self.node(*n), Node::Str(_) | Node::Num(_)) => {
                // The first token opens the value: choose it as the opened frame would (an
                // empty string or "0" rather than the lowest byte id, which is NUL).
                let mut opened = self.clone();
                opened.out = None;
                let depth = opened.stack.len();
                opened.open_top();
                if opened.stack.len() >= depth
                    && !matches!(opened.stack.last(), Some(Frame::Value(_)))
                {
                    if let Ok(t) = opened.next_completion_token(allowed) {
                        allowed.fill(false);
                        self.allowed(allowed);
                        if ok_after(allowed, t) {
                            return Ok(t);
                        }
                    }
                    allowed.fill(false);
                    self.allowed(allowed);
                }
            }
            Frame::Value(n) => {
                if let Node::Union(bs) = self.node(*n) {
                    let best = bs
                        .iter()
                        .enumerate()
                        .filter(|&(k, _)| ok(SEL0 + k as u32))
                        .min_by_key(|&(_, &b)| self.g.cost[b as usize]);
                    if let Some((k, _)) = best {
                        return Ok(SEL0 + k as u32);
                    }
                }
            }
            Frame::Header { node, .. } => {
                if let Node::Obj(o) = self.node(*node) {
                    let best = (0..o.optional.len())
                        .filter(|&j| ok(SEL0 + j as u32))
                        .min_by_key(|&j| self.g.cost[o.props[o.optional[j]].node as usize]);
                    if let Some(j) = best {
                        return Ok(SEL0 + j as u32);
                    }
                }
            }
            _ => {}
        }
        // Otherwise the first allowed id, readable bytes first (a map key or string content
        // of "a" rather than NUL).
        READABLE
            .iter()
            .map(|&b| b as u32)
            .find(|&b| ok_after(allowed, b))
            .or_else(|| allowed.iter().position(|&a| a).map(|p| p as u32))
            .ok_or_else(|| "no token can complete this document".to_string())
    }
}

fn ok_after(allowed: &[bool], t: u32) -> bool {
    allowed.get(t as usize).copied().unwrap_or(false)
}
