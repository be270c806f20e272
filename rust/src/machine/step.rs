//! The core step: one base id against the frame on top of the stack, and the settling of
//! finished values that follows it.

use super::*;
use crate::compile::header::{header_feasible, header_present};
use crate::numbers::{num_accepting, num_feasible, num_next, num_part, number_grammar_ok};

/// Record a completed scalar item (its JSON text) in the `uniqueItems` array on top of
/// `stack`, if that is what is there.
fn note_unique_item(g: &Graph, stack: &mut [Frame], json: &str) {
    if let Some(Frame::Arr { node, used, .. }) = stack.last_mut() {
        if let Node::Arr(a) = &g.nodes[*node as usize] {
            if a.unique {
                used.push(json.to_string());
            }
        }
    }
}

impl Machine {
    /// Resolve every transition that needs no token (constants, opening brackets, moving on to
    /// the next present property), so the top frame always waits for a token.
    pub(super) fn settle(&mut self) {
        // The fields are borrowed apart so the graph needs no `Arc` clone (two atomic
        // operations per call, and this runs after every token).
        let Machine {
            g,
            stack,
            out,
            floor,
            below,
            ..
        } = self;
        let g: &Graph = g;
        loop {
            let Some(top) = stack.last_mut() else {
                return;
            };
            match top {
                Frame::Value(n) => {
                    // Only constants resolve without a token. Every other value waits for its
                    // first token, which may be FALLBACK (the decoder binds a FALLBACK to the
                    // outermost value that starts at this position; the encoder never emits one
                    // for an inner value that shares it).
                    match &g.nodes[*n as usize] {
                        Node::Const(c) => {
                            stack.pop();
                            *floor = (*floor).min(*below + stack.len());
                            if let Some(o) = out {
                                o.extend_from_slice(c.as_bytes());
                            }
                            note_unique_item(g, stack, c);
                        }
                        _ => return,
                    }
                }
                Frame::Props {
                    node,
                    idx,
                    present,
                    any,
                } => {
                    let Node::Obj(o) = &g.nodes[*node as usize] else {
                        return;
                    };
                    let next = present.next_set(*idx, o.props.len());
                    match next {
                        Some(i) => {
                            let comma = *any;
                            *idx = i + 1;
                            *any = true;
                            let prop = &o.props[i];
                            if let Some(out) = out {
                                if comma {
                                    out.push(b',');
                                }
                                out.extend_from_slice(prop.name_json.as_bytes());
                                out.push(b':');
                            }
                            stack.push(Frame::Value(prop.node));
                        }
                        None => {
                            if o.map.is_some() {
                                let count = present.count();
                                let any = *any;
                                *top = Frame::Map {
                                    node: *node,
                                    count,
                                    used: Used::default(),
                                    any,
                                };
                                return;
                            }
                            stack.pop();
                            *floor = (*floor).min(*below + stack.len());
                            if let Some(o) = out {
                                o.push(b'}');
                            }
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// Open the value waiting on top (a string, number, array or object) now that a token for
    /// it has arrived, then settle.
    pub(super) fn open_top(&mut self) {
        let Some(Frame::Value(n)) = self.stack.last() else {
            return;
        };
        let n = *n;
        let direct = match self.node(n) {
            Node::Str(spec) => self.can_write_direct(spec, true),
            _ => false,
        };
        let Machine {
            g,
            stack,
            out,
            spare,
            ..
        } = self;
        let mut w = |s: &str| {
            if let Some(o) = out {
                o.extend_from_slice(s.as_bytes());
            }
        };
        let frame = match &g.nodes[n as usize] {
            Node::Str(spec) => {
                if direct {
                    if let Some(o) = out {
                        o.direct = Some((o.len(), 0));
                        o.push(b'"');
                    }
                }
                Frame::Str {
                    kind: StrKind::Value(n),
                    st: spec.start(),
                    buf: std::mem::take(spare),
                }
            }
            Node::Num(_) => Frame::Num {
                node: Some(n),
                text: Vec::new(),
            },
            Node::Arr(_) => {
                w("[");
                Frame::Arr {
                    node: n,
                    count: 0,
                    used: Used::default(),
                }
            }
            Node::Obj(o) => {
                w("{");
                if o.optional.is_empty() {
                    Frame::Props {
                        node: n,
                        idx: 0,
                        present: o.required_bits.clone(),
                        any: false,
                    }
                } else {
                    Frame::Header {
                        node: n,
                        next: 0,
                        sel: Bits::default(),
                    }
                }
            }
            _ => return,
        };
        if let Some(top) = stack.last_mut() {
            *top = frame;
        }
        self.settle();
    }

    /// Record a completed scalar item (its JSON text) in a `uniqueItems` array (the parent
    /// frame).
    pub(super) fn after_scalar_item(&mut self, json: &str) {
        note_unique_item(&self.g, &mut self.stack, json);
    }

    /// Advance by one base token.
    pub fn step(&mut self, t: u32) -> Result<(), String> {
        let strict = self.mode == Mode::Strict;
        let Some(top) = self.stack.last() else {
            return Err("the document is already complete".into());
        };
        // The hot path: one more byte of a string, updated in place (cloning the frame would
        // copy the string so far at every byte: quadratic in long `run` scripts).
        if t < 256 && matches!(top, Frame::Str { .. }) {
            return self.step_string_byte(t as u8);
        }
        // The end of a string: its frame is taken, not cloned (the clone copied every string's
        // bytes once more).
        if t == STR_END && matches!(top, Frame::Str { .. }) {
            self.end_string()?;
            self.check_depth()?;
            self.settle();
            return Ok(());
        }
        // What the arms need from the top frame, copied out (cloning the frame cost two atomic
        // operations for every map and array token, and a copy of every number's digits).
        let view = match top {
            Frame::Value(n) => View::Value(*n),
            Frame::Generic => View::Generic,
            Frame::Str { .. } => View::Str,
            Frame::Num { .. } => View::Num,
            Frame::Header { node, next, .. } => View::Header(*node, *next),
            Frame::Props { .. } => View::Props,
            Frame::Map { node, count, .. } => View::Map(*node, *count),
            Frame::Arr { node, count, .. } => View::Arr(*node, *count),
            Frame::GArr { count } => View::GArr(*count),
            Frame::GObj { count, .. } => View::GObj(*count),
        };
        match view {
            View::Value(n) => {
                if t == FALLBACK {
                    if strict {
                        return Err(
                            "the generic fallback is not allowed in constrained generation".into(),
                        );
                    }
                    self.replace_top(Frame::Generic);
                    return Ok(());
                }
                match self.node(n) {
                    Node::Enum(vals) => {
                        let k = t
                            .checked_sub(SEL0)
                            .map(|k| k as usize)
                            .filter(|&k| k < vals.len());
                        let Some(k) = k else {
                            return Err(format!("expected one of {} enum choices", vals.len()));
                        };
                        let v = vals[k].clone();
                        if self.unique_used().is_some_and(|u| u.has(&v)) {
                            return Err("duplicate item in a uniqueItems array".into());
                        }
                        self.pop();
                        self.w(&v);
                        self.after_scalar_item(&v);
                    }
                    Node::Bool => {
                        let v = match t {
                            x if x == SEL0 => "false",
                            x if x == SEL0 + 1 => "true",
                            _ => return Err("expected a boolean choice".into()),
                        };
                        if self.unique_used().is_some_and(|u| u.has(v)) {
                            return Err("duplicate item in a uniqueItems array".into());
                        }
                        self.pop();
                        self.w(v);
                        self.after_scalar_item(v);
                    }
                    Node::Union(bs) => {
                        let k = t
                            .checked_sub(SEL0)
                            .map(|k| k as usize)
                            .filter(|&k| k < bs.len());
                        let Some(k) = k else {
                            return Err(format!("expected one of {} union branches", bs.len()));
                        };
                        let b = bs[k];
                        if !self.g.productive(b) {
                            return Err("this union branch has no valid value".into());
                        }
                        self.replace_top(Frame::Value(b));
                    }
                    Node::Any => {
                        self.replace_top(Frame::Generic);
                        return self.step(t);
                    }
                    Node::Str(_) | Node::Num(_) | Node::Arr(_) | Node::Obj(_) => {
                        let depth = self.stack.len();
                        self.open_top();
                        if self.stack.len() < depth {
                            return Err("internal: value closed without a token".into());
                        }
                        return self.step(t);
                    }
                    _ => return Err("unexpected token for this value".into()),
                }
            }
            View::Generic => match t {
                G_NULL | G_FALSE | G_TRUE => {
                    self.pop();
                    self.w(match t {
                        G_NULL => "null",
                        G_FALSE => "false",
                        _ => "true",
                    });
                }
                G_NUM => self.replace_top(Frame::Num {
                    node: None,
                    text: Vec::new(),
                }),
                G_STR => {
                    if self.can_write_direct(trivial_spec(), false) {
                        if let Some(o) = &mut self.out {
                            o.direct = Some((o.len(), 0));
                            o.push(b'"');
                        }
                    }
                    let buf = std::mem::take(&mut self.spare);
                    self.replace_top(Frame::Str {
                        kind: StrKind::Generic,
                        st: trivial_spec().start(),
                        buf,
                    })
                }
                G_ARR => {
                    self.replace_top(Frame::GArr { count: 0 });
                    self.w("[");
                }
                G_OBJ => {
                    self.replace_top(Frame::GObj {
                        count: 0,
                        used: Used::default(),
                    });
                    self.w("{");
                }
                _ => return Err("expected a generic JSON value".into()),
            },
            View::Str => return Err("expected a string byte or STR_END".into()),
            View::Num => {
                let Some(Frame::Num { node, text }) = self.stack.last() else {
                    return Err("internal: no number on top".into());
                };
                let (node, mut text) = (*node, text.clone());
                let spec = node.and_then(|n| match self.node(n) {
                    Node::Num(s) => Some(s),
                    _ => None,
                });
                let integer = spec.is_some_and(|s| s.integer);
                let bounded = spec.is_some_and(|s| s.min.is_some() || s.max.is_some());
                if t < 256 {
                    let (p, run) = num_part(&text).ok_or("bad number")?;
                    num_next(p, run, t as u8, integer, !(strict && bounded), strict)
                        .ok_or("not a valid number character here")?;
                    text.push(t as u8);
                    if strict {
                        if let Some(s) = spec {
                            if !num_feasible(s.bounds(), &text) {
                                return Err("no number in range starts like this".into());
                            }
                        }
                    }
                    if let Some(Frame::Num { text: t0, .. }) = self.stack.last_mut() {
                        *t0 = text;
                    }
                } else if t == STR_END {
                    let (p, _) = num_part(&text).ok_or("bad number")?;
                    let s = std::str::from_utf8(&text).map_err(|_| "bad number")?;
                    if !num_accepting(p) || (integer && !number_grammar_ok(s, true)) {
                        return Err("incomplete number".into());
                    }
                    if let Some(spec) = spec {
                        if !spec.accepts_value(s) {
                            return Err("number outside the schema's constraints".into());
                        }
                    }
                    let s = s.to_string();
                    if node.is_some() && self.unique_used().is_some_and(|u| u.has(&s)) {
                        return Err("duplicate item in a uniqueItems array".into());
                    }
                    self.pop();
                    self.w(&s);
                    if node.is_some() {
                        self.after_scalar_item(&s);
                    }
                } else {
                    return Err("expected a number character or STR_END".into());
                }
            }
            View::Header(node, next) => {
                let Some(Frame::Header { sel, .. }) = self.stack.last() else {
                    return Err("internal: no key list on top".into());
                };
                let mut sel = sel.clone();
                let Node::Obj(o) = self.node(node) else {
                    return Err("bad object".into());
                };
                if t == END {
                    if !header_feasible(&self.g, o, &sel, usize::MAX) {
                        return Err("this set of keys does not satisfy the schema".into());
                    }
                    let present = header_present(o, &sel);
                    self.replace_top(Frame::Props {
                        node,
                        idx: 0,
                        present,
                        any: false,
                    });
                } else {
                    let j = t
                        .checked_sub(SEL0)
                        .map(|j| j as usize)
                        .filter(|&j| j >= next && j < o.optional.len());
                    let Some(j) = j else {
                        return Err("expected an optional key (in schema order) or END".into());
                    };
                    if !self.g.productive(o.props[o.optional[j]].node) {
                        return Err("this property has no valid value".into());
                    }
                    sel.set(j);
                    if !header_feasible(&self.g, o, &sel, j + 1) {
                        return Err("this key cannot be present together with the others".into());
                    }
                    if let Some(Frame::Header {
                        next: n0, sel: s0, ..
                    }) = self.stack.last_mut()
                    {
                        *n0 = j + 1;
                        *s0 = sel;
                    }
                }
            }
            View::Map(node, count) => {
                let Node::Obj(o) = self.node(node) else {
                    return Err("bad object".into());
                };
                if t == END {
                    if count < o.min_props && !self.relax_counts {
                        return Err(format!("at least {} properties are required", o.min_props));
                    }
                    self.pop();
                    self.w("}");
                } else if t <= STR_END {
                    if o.max_props.is_some_and(|m| count >= m) {
                        return Err(format!(
                            "at most {} properties are allowed",
                            o.max_props.unwrap_or(0)
                        ));
                    }
                    let st = o.map.as_ref().map(|m| m.key.start()).ok_or("no map")?;
                    if let Some(Frame::Map { count, .. }) = self.stack.last_mut() {
                        *count += 1;
                    }
                    let buf = std::mem::take(&mut self.spare);
                    self.stack.push(Frame::Str {
                        kind: StrKind::Key(node),
                        st,
                        buf,
                    });
                    return self.step(t);
                } else {
                    return Err("expected a key or END".into());
                }
            }
            View::Arr(node, count) => {
                let Node::Arr(a) = self.node(node) else {
                    return Err("bad array".into());
                };
                if t == ARR_END {
                    if count < a.min_items && !self.relax_counts {
                        return Err(format!("at least {} items are required", a.min_items));
                    }
                    self.pop();
                    self.w("]");
                } else {
                    if a.max_items.is_some_and(|m| count >= m) {
                        return Err("no more items are allowed".into());
                    }
                    let item = a
                        .prefix
                        .get(count as usize)
                        .copied()
                        .or(a.items)
                        .ok_or("no more items are allowed")?;
                    if !self.g.productive(item) {
                        return Err("this item has no valid value".into());
                    }
                    let marker = a.marker;
                    if marker && t != ITEM {
                        return Err("expected ITEM or ARR_END".into());
                    }
                    if let Some(Frame::Arr { count, .. }) = self.stack.last_mut() {
                        *count += 1;
                    }
                    if count > 0 {
                        self.w(",");
                    }
                    self.stack.push(Frame::Value(item));
                    self.check_depth()?;
                    self.settle();
                    if !marker {
                        return self.step(t);
                    }
                    return Ok(());
                }
            }
            View::GArr(count) => {
                if t == ARR_END {
                    self.pop();
                    self.w("]");
                } else {
                    if let Some(Frame::GArr { count }) = self.stack.last_mut() {
                        *count += 1;
                    }
                    if count > 0 {
                        self.w(",");
                    }
                    self.stack.push(Frame::Generic);
                    self.check_depth()?;
                    return self.step(t);
                }
            }
            View::GObj(count) => {
                if t == END {
                    self.pop();
                    self.w("}");
                } else if t <= STR_END {
                    if let Some(Frame::GObj { count, .. }) = self.stack.last_mut() {
                        *count += 1;
                    }
                    if count > 0 {
                        self.w(",");
                    }
                    let buf = std::mem::take(&mut self.spare);
                    self.stack.push(Frame::Str {
                        kind: StrKind::GenericKey,
                        st: trivial_spec().start(),
                        buf,
                    });
                    self.check_depth()?;
                    return self.step(t);
                } else {
                    return Err("expected a key or END".into());
                }
            }
            View::Props => return Err("internal: unsettled object".into()),
        }
        self.check_depth()?;
        self.settle();
        Ok(())
    }

    pub(super) fn check_depth(&mut self) -> Result<(), String> {
        let depth = self.stack.len() + self.below;
        self.high_water = self.high_water.max(depth);
        if depth > crate::MAX_DEPTH {
            return Err(format!("nesting deeper than {}", crate::MAX_DEPTH));
        }
        Ok(())
    }
}
