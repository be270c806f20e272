//! String steps: bytes and byte runs into the string on top (the decoder's fast paths), its
//! end, and the views of a string on top that the matcher's masks read.

use super::*;

/// Exact values a string must not end as (see [`Machine::trivial_string_top`]), borrowed from
/// the spec and from the frame that records them.
pub struct Excluded<'a> {
    /// The spec's own (`not: {const}`, named keys of an object's map part), sorted.
    pub spec: &'a [String],
    /// Used keys of a map or generic object.
    pub used_keys: &'a Used,
    /// Used items of a unique array, as JSON text (strings among them are JSON strings).
    pub used_items: &'a Used,
}

impl Excluded<'_> {
    /// Call `f` with every excluded string value.
    pub fn for_each(&self, mut f: impl FnMut(&[u8])) {
        self.spec.iter().for_each(|s| f(s.as_bytes()));
        self.used_keys.iter().for_each(|s| f(s.as_bytes()));
        self.used_items
            .iter()
            .filter_map(|j| serde_json::from_str::<String>(j).ok())
            .for_each(|s| f(s.as_bytes()));
    }

    pub fn contains(&self, s: &[u8]) -> bool {
        self.spec.iter().any(|e| e.as_bytes() == s)
            || std::str::from_utf8(s).is_ok_and(|k| self.used_keys.has(k))
            || self.used_items.has_string_item(s)
    }
}

/// A string spec that constrains nothing but UTF-8 validity and finitely many excluded
/// values: every prefix stays live, and whether it may end depends only on those values.
pub fn trivial_but_excluded(spec: &StrSpec) -> bool {
    spec.trivial
        || (spec.min_len == 0
            && spec.max_len.is_none()
            && spec.dfas.is_empty()
            && spec.neg.is_empty()
            && spec.combo_dfas.is_empty()
            && (spec.combo_ok.is_empty() || spec.combo_ok == [true]))
}

/// See [`Machine::trivial_string_top`].
pub struct TrivialString<'a> {
    /// The UTF-8 decoder state.
    pub utf8: u8,
    /// The bytes so far (empty when the next byte starts the string).
    pub buf: &'a [u8],
    /// Whether the context lets a string end (a map key needs a productive entry).
    pub context_end_ok: bool,
    /// False when the next byte would start a new string (a value, key or item).
    pub continuing: bool,
    pub excluded: Excluded<'a>,
}

/// See [`Machine::string_top`].
pub struct StringTop {
    pub spec: Arc<StrSpec>,
    pub st: StrState,
    pub buf: Vec<u8>,
    pub extra: Vec<String>,
    pub context_end_ok: bool,
    /// False when the next byte would start a new string (a value, key or item).
    pub continuing: bool,
    /// The object whose map this string is a key of.
    pub key_node: Option<NodeId>,
}

impl StringTop {
    /// The automaton state as a cache key (UTF-8 state, capped length, DFA states).
    pub fn st_key(&self) -> Vec<u32> {
        let mut k = vec![self.st.utf8 as u32, self.st.chars as u32];
        k.extend_from_slice(&self.st.dfa);
        k
    }
}

/// The spec of a string of this kind in graph `g` (borrowed: `Machine::spec_for` clones it).
#[inline]
fn spec_in<'g>(g: &'g Graph, kind: &StrKind) -> &'g Arc<StrSpec> {
    let node = |n: NodeId| &g.nodes[n as usize];
    match kind {
        StrKind::Value(n) => match node(*n) {
            Node::Str(s) => s,
            _ => trivial_spec(),
        },
        StrKind::Key(n) => match node(*n) {
            Node::Obj(o) => o.map.as_ref().map_or(trivial_spec(), |m| &m.key),
            _ => trivial_spec(),
        },
        StrKind::Generic | StrKind::GenericKey => trivial_spec(),
    }
}

/// `bytes` as a JSON string literal (their UTF-8 is checked with the whole output).
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    crate::json::escape_bytes_into(bytes, out);
    out.push(b'"');
}

impl Machine {
    /// Whether a string opening now (its value frame on top; `value`: a schema string, not a
    /// generic one) can be written straight to the output: see `Output::direct`.
    pub(super) fn can_write_direct(&self, spec: &StrSpec, value: bool) -> bool {
        self.mode == Mode::Lenient
            && self.out.is_some()
            && spec.excluded.is_empty()
            && !(value && self.unique_used().is_some())
    }

    /// Values already used by the enclosing unique array (when the top value is its item).
    pub(super) fn unique_used(&self) -> Option<&Used> {
        let n = self.stack.len();
        if n < 2 {
            return None;
        }
        match &self.stack[n - 2] {
            Frame::Arr { node, used, .. } => match self.node(*node) {
                Node::Arr(a) if a.unique => Some(used),
                _ => None,
            },
            _ => None,
        }
    }

    /// [`Machine::string_top`] for strings without constraints (only UTF-8 validity and the
    /// exact values of `Excluded`), borrowing instead of copying: the matcher's hot path.
    /// `None` when no string continues or starts here, or when it has constraints.
    pub fn trivial_string_top(&self) -> Option<TrivialString<'_>> {
        let n = self.stack.len();
        let below = n.checked_sub(2).map(|i| &self.stack[i]);
        let key_end_ok = |node: NodeId| match self.node(node) {
            Node::Obj(o) => o.map.as_ref().is_some_and(|m| {
                m.key.combo_dfas.is_empty()
                    && m.entry.first().is_some_and(|&e| self.g.productive(e))
            }),
            _ => false,
        };
        let keys = match below {
            Some(Frame::Map { used, .. }) | Some(Frame::GObj { used, .. }) => used,
            _ => &NO_USED,
        };
        let top = self.stack.last()?;
        // (spec, UTF-8 state, bytes, context_end_ok, continuing, used keys, used items)
        let (spec, utf8, buf, context_end_ok, continuing, used_keys, used_items): (
            &StrSpec,
            u8,
            &[u8],
            bool,
            bool,
            &Used,
            &Used,
        ) = match top {
            Frame::Str { kind, st, buf } => {
                let spec = self.spec_ref(kind);
                let (end_ok, uk, ui) = match kind {
                    StrKind::Value(_) => (true, &NO_USED, self.unique_items(below)),
                    StrKind::Key(node) => (key_end_ok(*node), keys, &NO_USED),
                    StrKind::GenericKey => (true, keys, &NO_USED),
                    StrKind::Generic => (true, &NO_USED, &NO_USED),
                };
                (spec, st.utf8, buf, end_ok, true, uk, ui)
            }
            Frame::Value(node) => match self.node(*node) {
                Node::Str(spec) => (
                    spec,
                    0,
                    &[],
                    true,
                    false,
                    &NO_USED,
                    self.unique_items(below),
                ),
                _ => return None,
            },
            Frame::Map {
                node, count, used, ..
            } => {
                let Node::Obj(o) = self.node(*node) else {
                    return None;
                };
                let m = o.map.as_ref()?;
                if o.max_props.is_some_and(|mx| *count >= mx) {
                    return None;
                }
                (&m.key, 0, &[], key_end_ok(*node), false, used, &NO_USED)
            }
            Frame::GObj { used, .. } => (trivial_spec(), 0, &[], true, false, used, &NO_USED),
            Frame::Arr { node, count, .. } => {
                let (_, spec) = self.string_item(*node, *count)?;
                (
                    spec,
                    0,
                    &[],
                    true,
                    false,
                    &NO_USED,
                    self.unique_items(Some(top)),
                )
            }
            _ => return None,
        };
        trivial_but_excluded(spec).then_some(TrivialString {
            utf8,
            buf,
            context_end_ok,
            continuing,
            excluded: Excluded {
                spec: &spec.excluded,
                used_keys,
                used_items,
            },
        })
    }

    /// The used items of `f`, when it is a unique array.
    pub(super) fn unique_items<'a>(&'a self, f: Option<&'a Frame>) -> &'a Used {
        match f {
            Some(Frame::Arr { node, used, .. }) => match self.node(*node) {
                Node::Arr(a) if a.unique => used,
                _ => &NO_USED,
            },
            _ => &NO_USED,
        }
    }

    pub(super) fn spec_ref(&self, kind: &StrKind) -> &StrSpec {
        match kind {
            StrKind::Value(n) => match self.node(*n) {
                Node::Str(s) => s,
                _ => trivial_spec(),
            },
            StrKind::Key(n) => match self.node(*n) {
                Node::Obj(o) => o.map.as_ref().map_or(trivial_spec(), |m| &m.key),
                _ => trivial_spec(),
            },
            StrKind::Generic | StrKind::GenericKey => trivial_spec(),
        }
    }

    /// The item the array `node` (holding `count` items) would start next, with its spec,
    /// when that item is a productive string and items have no marker: a byte there starts it.
    pub(super) fn string_item(&self, node: NodeId, count: u64) -> Option<(NodeId, &Arc<StrSpec>)> {
        let Node::Arr(a) = self.node(node) else {
            return None;
        };
        if a.marker || a.max_items.is_some_and(|mx| count >= mx) {
            return None;
        }
        let item = a.prefix.get(count as usize).copied().or(a.items)?;
        match self.node(item) {
            Node::Str(spec) if self.g.productive(item) => Some((item, spec)),
            _ => None,
        }
    }

    pub(super) fn spec_for(&self, kind: &StrKind) -> Arc<StrSpec> {
        spec_in(&self.g, kind).clone()
    }

    /// Extra excluded strings for the string on top: used keys of its map, used items of its
    /// unique array.
    pub(super) fn extra_excluded(&self, kind: &StrKind) -> Vec<String> {
        let n = self.stack.len();
        match kind {
            StrKind::Key(_) | StrKind::GenericKey if n >= 2 => match &self.stack[n - 2] {
                Frame::Map { used, .. } | Frame::GObj { used, .. } => used.to_vec(),
                _ => Vec::new(),
            },
            StrKind::Value(_) => self
                .unique_used()
                .map(|u| {
                    u.iter()
                        .filter_map(|j| serde_json::from_str::<String>(j).ok())
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Whether `s` is one of the extra excluded strings of the string on top
    /// ([`Machine::extra_excluded`]), without copying them.
    pub(super) fn is_extra_excluded(&self, kind: &StrKind, s: &[u8]) -> bool {
        let n = self.stack.len();
        match kind {
            StrKind::Key(_) | StrKind::GenericKey if n >= 2 => match &self.stack[n - 2] {
                Frame::Map { used, .. } | Frame::GObj { used, .. } => {
                    std::str::from_utf8(s).is_ok_and(|k| used.has(k))
                }
                _ => false,
            },
            StrKind::Value(_) => self.unique_used().is_some_and(|u| u.has_string_item(s)),
            _ => false,
        }
    }

    /// Whether the string on top may end now. (Its bytes are valid UTF-8 when `accepts_end`
    /// holds: every byte went through the spec's UTF-8 automaton.)
    pub(super) fn str_end_ok(&self, kind: &StrKind, st: &StrState, buf: &[u8]) -> bool {
        let spec = spec_in(&self.g, kind);
        if !spec.accepts_end(st) {
            return false;
        }
        // `str` orders by bytes, so the sorted list is searched by bytes.
        if !spec.excluded.is_empty()
            && spec
                .excluded
                .binary_search_by(|e| e.as_bytes().cmp(buf))
                .is_ok()
        {
            return false;
        }
        if self.is_extra_excluded(kind, buf) {
            return false;
        }
        if let StrKind::Key(n) = kind {
            if let Node::Obj(o) = self.node(*n) {
                if let Some(m) = &o.map {
                    let bits = spec.combo_bits(st);
                    return m.entry.get(bits).is_some_and(|&e| self.g.productive(e));
                }
            }
        }
        true
    }

    /// `STR_END` with a string on top (see `step`; the caller settles). When the string may
    /// not end here nothing changes; the errors after that are internal (bytes that stepping
    /// already checked, a map that is not there), as they were in `step`.
    pub(super) fn end_string(&mut self) -> Result<(), String> {
        let Some(Frame::Str { kind, st, buf }) = self.stack.last() else {
            return Err("internal: no string on top".into());
        };
        // A string written straight out has no excluded values and is no unique item (see
        // `can_write_direct`): only its spec's end condition is left to check.
        if self.writing_direct() {
            if !spec_in(&self.g, kind).accepts_end(st) {
                return Err("this string does not satisfy its schema".into());
            }
            if let Some(o) = &mut self.out {
                o.direct = None;
            }
            if let Some(Frame::Str { mut buf, .. }) = self.stack.pop() {
                buf.clear();
                self.spare = buf;
            }
            self.floor = self.floor.min(self.below + self.stack.len());
            if let Some(out) = &mut self.out {
                out.push(b'"');
            }
            return Ok(());
        }
        if !self.str_end_ok(kind, st, buf) {
            return Err("this string does not satisfy its schema".into());
        }
        let in_unique = matches!(kind, StrKind::Value(_)) && self.unique_used().is_some();
        let Some(Frame::Str { kind, st, mut buf }) = self.stack.pop() else {
            return Err("internal: no string on top".into());
        };
        self.floor = self.floor.min(self.below + self.stack.len());
        // Keys are copied out (exactly sized), so every string's buffer is kept for the next.
        let key = || {
            std::str::from_utf8(&buf)
                .map(str::to_owned)
                .map_err(|_| "invalid UTF-8 in a key".to_string())
        };
        match kind {
            StrKind::Value(_) | StrKind::Generic => {
                if let Some(out) = &mut self.out {
                    escape_into(out, &buf);
                }
                // An item of a unique array: remember it (the array is on top now).
                if in_unique {
                    let j = serde_json::to_string(std::str::from_utf8(&buf).unwrap_or(""))
                        .unwrap_or_default();
                    self.after_scalar_item(&j);
                }
            }
            StrKind::Key(n) => {
                let key = key()?;
                let entry = match self.node(n) {
                    Node::Obj(o) => o.map.as_ref().map(|m| m.entry[m.key.combo_bits(&st)]),
                    _ => None,
                };
                let Some(entry) = entry else {
                    return Err("no map here".into());
                };
                if let Some(Frame::Map { used, any, .. }) = self.stack.last_mut() {
                    let comma = *any;
                    *any = true;
                    if let Some(out) = &mut self.out {
                        if comma {
                            out.push(b',');
                        }
                        escape_into(out, key.as_bytes());
                        out.push(b':');
                    }
                    used.push(key);
                }
                self.stack.push(Frame::Value(entry));
            }
            StrKind::GenericKey => {
                if let Some(out) = &mut self.out {
                    escape_into(out, &buf);
                    out.push(b':');
                }
                let key = key()?;
                if let Some(Frame::GObj { used, .. }) = self.stack.last_mut() {
                    used.push(key);
                }
                self.stack.push(Frame::Generic);
            }
        }
        buf.clear();
        self.spare = buf;
        Ok(())
    }

    /// One byte of the string on top. On error nothing changes.
    pub(super) fn step_string_byte(&mut self, b: u8) -> Result<(), String> {
        let strict = self.mode == Mode::Strict;
        if !strict {
            return match self.step_string_bytes(&[b], b < 0x80, false)? {
                true => Ok(()),
                false => Err("internal: no string on top".into()),
            };
        }
        let Some(Frame::Str { kind, .. }) = self.stack.last() else {
            return Err("internal: no string on top".into());
        };
        let kind = kind.clone();
        let spec = self.spec_for(&kind);
        let check_live = strict && !trivial_but_excluded(&spec);
        let extra = if check_live {
            self.extra_excluded(&kind)
        } else {
            Vec::new()
        };
        let Some(Frame::Str { st, buf, .. }) = self.stack.last_mut() else {
            return Err("internal: no string on top".into());
        };
        let mut next = st.clone();
        if !spec.step(&mut next, b) {
            return Err("invalid UTF-8 in a string".into());
        }
        if buf.len() >= crate::MAX_STRING_BYTES {
            return Err("string too long".into());
        }
        buf.push(b);
        if check_live {
            let ex: Vec<&str> = extra.iter().map(String::as_str).collect();
            if !spec.live(&next, buf, &ex) {
                buf.pop();
                return Err("no valid string starts like this".into());
            }
        }
        *st = next;
        Ok(())
    }

    /// A string value waiting on top is opened (as its first byte would open it in `step`), so
    /// that its bytes can be appended as a run.
    #[inline]
    pub(super) fn open_string_value(&mut self) {
        if let Some(Frame::Value(n)) = self.stack.last() {
            if matches!(self.node(*n), Node::Str(_)) {
                self.open_top();
            }
        }
    }

    /// Steps a run of string bytes (`ascii` when all are below 0x80, `plain` when none needs
    /// escaping; both may be `false` when unknown) in lenient mode (decoding): see
    /// [`Machine::step_text_runs`]. `Ok(false)` when no string is on top or in strict mode.
    pub fn step_string_bytes(
        &mut self,
        bytes: &[u8],
        ascii: bool,
        plain: bool,
    ) -> Result<bool, String> {
        let mut run = Some((bytes, ascii, plain));
        match self.step_text_runs(|_| run.take()) {
            Ok(n) => Ok(n > 0),
            Err((_, msg)) => Err(msg),
        }
    }

    /// Steps runs of string bytes `next(0)`, `next(1)`, ... (each `(bytes, ascii, plain)` as
    /// in [`Machine::step_string_bytes`]) into one string, until `next` gives `None`, in
    /// lenient mode (decoding), opening a string value waiting on top first. Returns how many
    /// runs it stepped: 0 when no string is on top or in strict mode (nothing changes). Each
    /// run is one copy (escaped, when the string is written straight to the output), with no
    /// spec lookup for plain ASCII; the decoder steps all the text-only ids in a row in one
    /// call (per id, finding the string on top again cost as much as copying its bytes).
    /// On error `(runs stepped before, message)`, as `step` gives them for the same bytes; the
    /// state is then unspecified: a lenient decode stops at the first error.
    pub fn step_text_runs<'a>(
        &mut self,
        mut next: impl FnMut(usize) -> Option<(&'a [u8], bool, bool)>,
    ) -> Result<usize, (usize, String)> {
        if self.mode == Mode::Strict {
            return Ok(0);
        }
        // A value waiting on top is opened only for bytes (it might be a FALLBACK's).
        let Some(mut run) = next(0) else {
            return Ok(0);
        };
        self.open_string_value();
        let Machine { g, stack, out, .. } = self;
        let Some(Frame::Str { kind, st, buf }) = stack.last_mut() else {
            return Ok(0);
        };
        let mut k = 0;
        loop {
            let (bytes, ascii, plain) = run;
            let len = match out {
                Some(Output {
                    direct: Some((_, n)),
                    ..
                }) => *n,
                _ => buf.len(),
            };
            if len + bytes.len() > crate::MAX_STRING_BYTES {
                return Err((k, "string too long".into()));
            }
            if !(ascii && st.step_ascii_run(bytes.len())) {
                let spec = spec_in(g, kind);
                for &b in bytes {
                    if !spec.step(st, b) {
                        return Err((k, "invalid UTF-8 in a string".into()));
                    }
                }
            }
            match out {
                Some(Output {
                    text,
                    direct: Some((_, n)),
                }) => {
                    *n += bytes.len();
                    if plain {
                        text.extend_from_slice(bytes);
                    } else {
                        crate::json::escape_bytes_into(bytes, text);
                    }
                }
                _ => buf.extend_from_slice(bytes),
            }
            k += 1;
            match next(k) {
                Some(r) => run = r,
                None => return Ok(k),
            }
        }
    }

    /// Where the string on top stands, to undo bytes stepped after it (`restore_string`);
    /// `None` for a string written straight to the output (see `Output::direct`).
    pub fn string_checkpoint(&self) -> Option<(StrState, usize)> {
        if self.writing_direct() {
            return None;
        }
        match self.stack.last() {
            Some(Frame::Str { st, buf, .. }) => Some((st.clone(), buf.len())),
            _ => None,
        }
    }

    pub fn restore_string(&mut self, cp: (StrState, usize)) {
        if let Some(Frame::Str { st, buf, .. }) = self.stack.last_mut() {
            *st = cp.0;
            buf.truncate(cp.1);
        }
    }

    /// Whether the key that is (or would be) written on top leads to the same value schema
    /// whatever its text: a map without key patterns, or a generic object.
    pub fn key_value_is_uniform(&self) -> bool {
        let map_uniform = |node: &NodeId| match self.node(*node) {
            Node::Obj(o) => o.map.as_ref().is_some_and(|m| m.entry.len() <= 1),
            _ => false,
        };
        match self.stack.last() {
            Some(Frame::Str { kind, .. }) => match kind {
                StrKind::Key(node) => map_uniform(node),
                StrKind::GenericKey => true,
                _ => false,
            },
            Some(Frame::Map { node, .. }) => map_uniform(node),
            Some(Frame::GObj { .. }) => true,
            _ => false,
        }
    }

    /// When the next token continues (or starts) a string: its spec, state and bytes so far,
    /// the strings it must not end as (used map keys, used items of a unique array), and
    /// whether ending it is allowed by its context alone (a map key needs a productive entry).
    pub fn string_top(&self) -> Option<StringTop> {
        let (kind, st, buf, continuing) = match self.stack.last()? {
            Frame::Str { kind, st, buf } => (kind.clone(), st.clone(), buf.clone(), true),
            Frame::Value(n) => match self.node(*n) {
                Node::Str(spec) => (StrKind::Value(*n), spec.start(), Vec::new(), false),
                _ => return None,
            },
            // A byte here starts a new map key.
            Frame::Map { node, count, .. } => {
                let Node::Obj(o) = self.node(*node) else {
                    return None;
                };
                let m = o.map.as_ref()?;
                if o.max_props.is_some_and(|mx| *count >= mx) {
                    return None;
                }
                (StrKind::Key(*node), m.key.start(), Vec::new(), false)
            }
            Frame::GObj { .. } => (
                StrKind::GenericKey,
                trivial_spec().start(),
                Vec::new(),
                false,
            ),
            // A byte here starts a new item, when items are strings without markers.
            Frame::Arr { node, count, .. } => {
                let (item, spec) = self.string_item(*node, *count)?;
                (StrKind::Value(item), spec.start(), Vec::new(), false)
            }
            _ => return None,
        };
        let spec = self.spec_for(&kind);
        let extra = match (&kind, continuing, self.stack.last()) {
            // A fresh key or item: its exclusions come from the frame on top itself.
            (StrKind::Key(_), false, Some(Frame::Map { used, .. })) => used.to_vec(),
            (StrKind::GenericKey, false, Some(Frame::GObj { used, .. })) => used.to_vec(),
            (StrKind::Value(_), false, Some(Frame::Arr { node, used, .. })) => {
                match self.node(*node) {
                    Node::Arr(a) if a.unique => used
                        .iter()
                        .filter_map(|j| serde_json::from_str::<String>(j).ok())
                        .collect(),
                    _ => Vec::new(),
                }
            }
            _ => self.extra_excluded(&kind),
        };
        let context_end_ok = match &kind {
            StrKind::Key(n) => match self.node(*n) {
                Node::Obj(o) => o.map.as_ref().is_some_and(|m| {
                    // Only meaningful for key specs without patterns (a single combination).
                    m.key.combo_dfas.is_empty()
                        && m.entry.first().is_some_and(|&e| self.g.productive(e))
                }),
                _ => false,
            },
            _ => true,
        };
        let key_node = match kind {
            StrKind::Key(n) => Some(n),
            _ => None,
        };
        Some(StringTop {
            spec,
            st,
            buf,
            extra,
            context_end_ok,
            continuing,
            key_node,
        })
    }

    /// Whether the string described by `top`, advanced to `st` with bytes `buf`, may end.
    pub fn string_end_ok(&self, top: &StringTop, st: &StrState, buf: &[u8]) -> bool {
        if !top.spec.accepts_end(st) {
            return false;
        }
        let Ok(s) = std::str::from_utf8(buf) else {
            return false;
        };
        if top
            .spec
            .excluded
            .binary_search_by(|e| e.as_str().cmp(s))
            .is_ok()
            || top.extra.iter().any(|e| e == s)
        {
            return false;
        }
        match top.key_node.map(|n| self.node(n)) {
            Some(Node::Obj(o)) => o
                .map
                .as_ref()
                .and_then(|m| m.entry.get(top.spec.combo_bits(st)))
                .is_some_and(|&e| self.g.productive(e)),
            Some(_) => false,
            None => true,
        }
    }
}
