//! The state machine behind the decoder and the matcher. It walks the codec graph one base
//! token at a time, keeps a stack of open values, optionally writes the compact JSON text, and
//! can say which base tokens may come next.
//!
//! Two modes: `Lenient` (the decoder) accepts `FALLBACK` and skips the look-ahead liveness
//! checks inside strings and numbers; `Strict` (the matcher) never accepts `FALLBACK` and only
//! accepts a token when the value it extends can still be completed validly. Both modes enforce
//! every constraint when a value is closed, so what the decoder produces from an encoder output
//! is exactly what was encoded.

use crate::base::*;
pub use crate::compile::ir::Bits;
use crate::compile::ir::{Node, NodeId, NumSpec, ObjSpec};
use crate::compile::Graph;
use crate::strings::{utf8_step, StrSpec, StrState};
use std::sync::{Arc, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Lenient,
}

/// Used map keys or unique items, shared between copies of a frame until one of them adds
/// to it (the matcher copies frames at every step of its walks). Empty without an allocation:
/// most arrays never use it, and a fresh `Arc` per array or map showed in decoding.
#[derive(Clone, Debug, Default)]
struct Used(Option<Arc<Vec<String>>>);

impl Used {
    fn push(&mut self, s: String) {
        Arc::make_mut(self.0.get_or_insert_with(Default::default)).push(s);
    }
}

impl From<Vec<String>> for Used {
    fn from(v: Vec<String>) -> Used {
        Used((!v.is_empty()).then(|| Arc::new(v)))
    }
}

impl std::ops::Deref for Used {
    type Target = [String];
    fn deref(&self) -> &[String] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl PartialEq for Used {
    fn eq(&self, other: &Used) -> bool {
        **self == **other
    }
}

impl Eq for Used {}

impl std::hash::Hash for Used {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (**self).hash(h);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum StrKind {
    Value(NodeId),
    /// A key of the map part of this object node.
    Key(NodeId),
    Generic,
    GenericKey,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Frame {
    /// A value of this node starts with the next token.
    Value(NodeId),
    /// A value in the generic encoding starts with the next token.
    Generic,
    Str {
        kind: StrKind,
        st: StrState,
        buf: Vec<u8>,
    },
    Num {
        node: Option<NodeId>,
        text: Vec<u8>,
    },
    /// Reading the optional-key list of an object.
    Header {
        node: NodeId,
        next: usize,
        sel: Bits,
    },
    /// Emitting the values of the present named properties.
    Props {
        node: NodeId,
        idx: usize,
        present: Bits,
        any: bool,
    },
    Map {
        node: NodeId,
        count: u64,
        used: Used,
        any: bool,
    },
    Arr {
        node: NodeId,
        count: u64,
        used: Used,
    },
    GArr {
        count: u64,
    },
    GObj {
        count: u64,
        /// Keys so far: JSON objects have unique keys, and the encoder's input always does.
        used: Used,
    },
}

/// The top frame as `Machine::step` dispatches on it: its kind and the small values the
/// arms read.
enum View {
    Value(NodeId),
    Generic,
    Str,
    Num,
    Header(NodeId, usize),
    Props,
    Map(NodeId, u64),
    Arr(NodeId, u64),
    GArr(u64),
    GObj(u64),
}

fn trivial_spec() -> &'static Arc<StrSpec> {
    static T: OnceLock<Arc<StrSpec>> = OnceLock::new();
    T.get_or_init(|| {
        Arc::new(StrSpec::new(0, None, &[], &[], Vec::new(), None).expect("no patterns"))
    })
}

// ---------------------------------------------------------------------------------------------
// Number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? with bounded digit counts, so
// that generation cannot run away and every accepted text parses to a finite float.

/// Long enough for the 489-digit integers real workflows contain; a fraction or an exponent
/// is only offered after at most `MAX_FLOAT_INT_DIGITS` so floats stay finite.
const MAX_INT_DIGITS: usize = 1000;
const MAX_FLOAT_INT_DIGITS: usize = 200;
const MAX_FRAC_DIGITS: usize = 40;
const MAX_EXP_DIGITS: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum NumPart {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

fn num_part(text: &[u8]) -> Option<(NumPart, usize)> {
    let mut p = NumPart::Start;
    let mut run = 0usize;
    for &b in text {
        let (np, nr) = num_next(p, run, b, false, true, false)?;
        p = np;
        run = nr;
    }
    Some((p, run))
}

/// One character of the number grammar. `run` counts the digits of the current part.
fn num_next(
    p: NumPart,
    run: usize,
    b: u8,
    integer: bool,
    allow_exp: bool,
    capped: bool,
) -> Option<(NumPart, usize)> {
    use NumPart::*;
    let d = b.is_ascii_digit();
    // Digit caps bound what constrained generation can produce; decoding is not capped.
    let (max_int, max_frac, max_exp) = if capped {
        (MAX_INT_DIGITS, MAX_FRAC_DIGITS, MAX_EXP_DIGITS)
    } else {
        (usize::MAX, usize::MAX, usize::MAX)
    };
    Some(match (p, b) {
        (Start, b'-') => (Minus, 0),
        (Start | Minus, b'0') => (Zero, 1),
        (Start | Minus, _) if d => (Int, 1),
        (Int, _) if d && run < max_int => (Int, run + 1),
        (Zero | Int, b'.') if !integer && (!capped || run <= MAX_FLOAT_INT_DIGITS) => (Dot, 0),
        (Dot, _) if d => (Frac, 1),
        (Frac, _) if d && run < max_frac => (Frac, run + 1),
        (Zero | Int, b'e' | b'E')
            if !integer && allow_exp && (!capped || run <= MAX_FLOAT_INT_DIGITS) =>
        {
            (E, 0)
        }
        (Frac, b'e' | b'E') if !integer && allow_exp => (E, 0),
        (E, b'+' | b'-') => (ESign, 0),
        (E | ESign, _) if d => (Exp, 1),
        (Exp, _) if d && run < max_exp => (Exp, run + 1),
        _ => return None,
    })
}

fn num_accepting(p: NumPart) -> bool {
    matches!(
        p,
        NumPart::Zero | NumPart::Int | NumPart::Frac | NumPart::Exp
    )
}

/// Whether `text` is a complete number in the grammar (integers only if `integer`).
pub fn number_grammar_ok(text: &str, integer: bool) -> bool {
    let mut p = NumPart::Start;
    let mut run = 0;
    for &b in text.as_bytes() {
        match num_next(p, run, b, integer, true, true) {
            Some((np, nr)) => {
                p = np;
                run = nr;
            }
            None => return false,
        }
    }
    num_accepting(p)
}

/// Can a number starting with `text` still end inside the bounds? Exact for plain decimals
/// (exponents are not offered when a number has bounds).
fn num_feasible(spec: &NumSpec, text: &[u8]) -> bool {
    if spec.min.is_none() && spec.max.is_none() {
        return true;
    }
    let s = std::str::from_utf8(text).unwrap_or("");
    let neg = s.starts_with('-');
    let body = s.trim_start_matches('-');
    let (lo, hi) = (
        spec.min.map_or(f64::NEG_INFINITY, |b| b.0),
        spec.max.map_or(f64::INFINITY, |b| b.0),
    );
    // Reachable magnitudes as closed intervals.
    let mut ivs: Vec<(f64, f64)> = Vec::new();
    if body.is_empty() {
        ivs.push((0.0, f64::INFINITY));
    } else if let Some((ip, fp)) = body.split_once('.') {
        let base: f64 = format!("{ip}.{}", if fp.is_empty() { "0" } else { fp })
            .parse()
            .unwrap_or(0.0);
        ivs.push((base, base + 10f64.powi(-(fp.len() as i32))));
    } else if body == "0" {
        ivs.push((0.0, if spec.integer { 0.0 } else { 1.0 }));
    } else {
        let m: f64 = body.parse().unwrap_or(0.0);
        let room = MAX_INT_DIGITS.saturating_sub(body.len());
        for k in 0..=room.min(30) {
            let scale = 10f64.powi(k as i32);
            let top = if spec.integer {
                (m + 1.0) * scale - 1.0
            } else {
                (m + 1.0) * scale
            };
            ivs.push((m * scale, top));
        }
    }
    ivs.iter().any(|&(a, b)| {
        let (a, b) = if neg { (-b, -a) } else { (a, b) };
        b >= lo && a <= hi
    })
}

// ---------------------------------------------------------------------------------------------

/// Header constraints of an object's optional-key list. `sel` holds optional indices.
fn header_present(o: &ObjSpec, sel: &Bits) -> Bits {
    let mut p = o.required_bits.clone();
    let mut j = 0;
    while let Some(k) = sel.next_set(j, o.optional.len()) {
        p.set(o.optional[k]);
        j = k + 1;
    }
    p
}

fn opt_index(o: &ObjSpec, prop: usize) -> Option<usize> {
    o.optional.binary_search(&prop).ok()
}

/// Can the list `sel` (next optional index allowed: `next`) still be completed to a key set
/// that satisfies dependencies, exclusions and counts? With `next == usize::MAX` this is the
/// final check.
pub(crate) fn header_feasible(g: &Graph, o: &ObjSpec, sel: &Bits, next: usize) -> bool {
    // Most objects have none of these constraints: any list of optional keys will do.
    if o.deps.is_empty()
        && o.forbid.is_empty()
        && o.max_props.is_none()
        && (o.map.is_some() || o.min_props == 0)
    {
        return true;
    }
    let mut present = header_present(o, sel);
    // Dependencies: add the obligations that can still be added, fail on the others.
    loop {
        let mut added = false;
        for (k, ds) in &o.deps {
            if !present.get(*k) {
                continue;
            }
            for &d in ds {
                if present.get(d) {
                    continue;
                }
                match opt_index(o, d) {
                    Some(j) if next != usize::MAX && j >= next && g.productive(o.props[d].node) => {
                        present.set(d);
                        added = true;
                    }
                    _ => return false,
                }
            }
        }
        if !added {
            break;
        }
    }
    if o.forbid
        .iter()
        .any(|grp| grp.iter().all(|&i| present.get(i)))
    {
        return false;
    }
    let n = present.count();
    if o.max_props.is_some_and(|m| n > m) {
        return false;
    }
    if o.map.is_none() && n < o.min_props {
        if next == usize::MAX {
            return false;
        }
        let more = o
            .optional
            .iter()
            .enumerate()
            .filter(|&(j, &i)| j >= next && !present.get(i) && g.productive(o.props[i].node))
            .count() as u64;
        if n + more < o.min_props {
            return false;
        }
    }
    true
}

/// Top frames of a machine, normalised, as a hashable key: see [`Machine::cache_key`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameKey(Vec<Frame>);

/// Exact values a string must not end as (see [`Machine::trivial_string_top`]), borrowed from
/// the spec and from the frame that records them.
pub struct Excluded<'a> {
    /// The spec's own (`not: {const}`, named keys of an object's map part), sorted.
    pub spec: &'a [String],
    /// Used keys of a map or generic object.
    pub used_keys: &'a [String],
    /// Used items of a unique array, as JSON text (strings among them are JSON strings).
    pub used_items: &'a [String],
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
        let mut hit = false;
        self.for_each(|e| hit |= e == s);
        hit
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

/// The decoder / matcher state.
#[derive(Clone)]
pub struct Machine {
    g: Arc<Graph>,
    mode: Mode,
    stack: Vec<Frame>,
    /// The JSON text so far (decoding). Bytes: a string's bytes go in as they come, and the
    /// whole text is checked to be UTF-8 once, at the end (it always is: every string byte went
    /// through a UTF-8 automaton).
    out: Option<Vec<u8>>,
    /// While the string on top is written straight to `out` (lenient mode with output, when
    /// nothing needs its bytes at its end: no excluded values, not a unique item; its `buf`
    /// stays empty): where its opening quote is in `out`, and its length in bytes so far.
    /// Copying every string into `buf`, then checking and escaping it into `out` at its end,
    /// made decoding the corpus slower: 0.89 s against 0.81 s (best of 5, A/B in one run;
    /// medians 1.03 and 0.86 s).
    direct: Option<(usize, usize)>,
    /// Accept closing arrays and maps below their minimum counts (used only to find where a
    /// prompt's open containers close; never for decoding or generation).
    relax_counts: bool,
    /// Frames of the machine this one was copied from that lie below `stack` (`top_copy`):
    /// they count towards the depth limit, and `deepen` brings them back.
    below: usize,
    /// The deepest nesting a depth check saw since `top_copy` (the matcher's caches hold
    /// results that depended on no check failing).
    high_water: usize,
    /// See `floor()`.
    floor: usize,
    /// The byte buffer of the last string value that ended, emptied, for the next one: a
    /// string no longer allocates and regrows its buffer (decoding is a string after another).
    spare: Vec<u8>,
}

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
    pub fn new(g: Arc<Graph>, mode: Mode, with_output: bool) -> Machine {
        let root = g.root;
        let mut m = Machine {
            g,
            mode,
            stack: Vec::with_capacity(16),
            out: with_output.then(Vec::new),
            direct: None,
            relax_counts: false,
            below: 0,
            high_water: 0,
            floor: 1,
            spare: Vec::new(),
        };
        m.stack.push(Frame::Value(root));
        m.settle();
        m
    }

    /// A lenient machine that also accepts arrays and maps closed below their minimum counts:
    /// for finding where a prompt's open containers close.
    pub fn new_relaxed(g: Arc<Graph>) -> Machine {
        let mut m = Machine::new(g, Mode::Lenient, false);
        m.relax_counts = true;
        m
    }

    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
    }

    /// The JSON text so far, without the string being read (as if it started with the next
    /// token).
    pub fn output(&self) -> Result<&str, String> {
        let out = self.out.as_deref().unwrap_or_default();
        let out = match self.direct {
            Some((at, _)) => out.get(..at).unwrap_or_default(),
            None => out,
        };
        std::str::from_utf8(out).map_err(|_| "internal: the output is not UTF-8".to_string())
    }

    /// Room for `n` more bytes of output (a decoder that knows roughly how long its output
    /// will be saves the string's regrowth).
    pub fn reserve_output(&mut self, n: usize) {
        if let Some(o) = &mut self.out {
            o.reserve(n);
        }
    }

    /// The output text, moved out (the machine keeps an empty one).
    pub fn take_output(&mut self) -> Result<String, String> {
        let out = self.out.as_mut().map(std::mem::take).unwrap_or_default();
        String::from_utf8(out).map_err(|_| "internal: the output is not UTF-8".to_string())
    }

    /// A copy with the value on top opened, when it is an array or an object that waits for its
    /// first token (opening consumes no token, so the copy accepts exactly the same tokens).
    pub fn opened(&self) -> Option<Machine> {
        match self.stack.last()? {
            Frame::Value(n) if matches!(self.node(*n), Node::Arr(_) | Node::Obj(_)) => {
                let mut m = self.clone();
                m.out = None;
                let depth = m.stack.len();
                m.open_top();
                (m.stack.len() >= depth).then_some(m)
            }
            _ => None,
        }
    }

    /// The top `k` frames, normalised to what the matcher's walk over trained ids can depend
    /// on, as a key for caching its result: counts are clipped where no bound can tell them
    /// apart any more (and dropped where they only decide commas, as `any` does: the walk
    /// writes no text), and the used keys of maps whose keys are otherwise unconstrained
    /// (`trivial_but_excluded`) are kept only when `spellable` (a key the walk can spell
    /// whole: any other key can never equal one it finishes). Whether frames lie below is part
    /// of the key (a walk that pops out of the copied frames asks them). With `drop_top_used`,
    /// the used keys of a map (or generic object) on top are left out: only what starts a key
    /// there reads them, and the caller keeps those decisions out of such keys. `None` while a
    /// string is being written (those steps are not cached).
    pub fn cache_key(
        &self,
        k: usize,
        drop_top_used: bool,
        spellable: impl Fn(&str) -> bool,
    ) -> Option<FrameKey> {
        let n = self.stack.len();
        let cut = n.saturating_sub(k);
        if matches!(self.stack.last(), Some(Frame::Str { .. })) {
            return None;
        }
        let mut frames = Vec::with_capacity(k.min(n) + 1);
        frames.push(Frame::GArr {
            count: (self.below + cut > 0) as u64,
        });
        for (i, f) in self.stack[cut..].iter().enumerate() {
            let top = cut + i + 1 == n;
            frames.push(self.normalised(f, &spellable, top && drop_top_used));
        }
        Some(FrameKey(frames))
    }

    /// `cache_key` for what a walk decides without popping the top frame: the top frame, and
    /// of the frame below only what a step reads there without popping (the used items of a
    /// unique array). The used keys of a map on top whose keys are otherwise unconstrained
    /// are left out but for whether "" is one of them (the caller applies them to the ids
    /// that spell them, and keeps the walks that start a key out of this key's decisions).
    pub fn cache_key_top(&self, spellable: impl Fn(&str) -> bool) -> Option<FrameKey> {
        let n = self.stack.len();
        let top = self.stack.last()?;
        if matches!(top, Frame::Str { .. }) {
            return None;
        }
        let below = match n.checked_sub(2).map(|i| &self.stack[i]) {
            Some(Frame::Arr { node, used, .. }) if matches!(self.node(*node), Node::Arr(a) if a.unique) => {
                Frame::Arr {
                    node: *node,
                    count: 0,
                    used: used.clone(),
                }
            }
            _ => Frame::Generic,
        };
        let mut top = self.normalised(top, &spellable, false);
        if self.top_keys_unconstrained() {
            if let Frame::Map { used, .. } | Frame::GObj { used, .. } = &mut top {
                *used = Used::from(
                    used.iter()
                        .filter(|u| u.is_empty())
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
        }
        Some(FrameKey(vec![Frame::GArr { count: 2 }, below, top]))
    }

    /// Whether the top frame is a map (or generic object) whose keys are unconstrained but
    /// for excluded values: its used keys matter only to keys spelled whole.
    pub fn top_keys_unconstrained(&self) -> bool {
        match self.stack.last() {
            Some(Frame::Map { node, .. }) => matches!(
                self.node(*node),
                Node::Obj(o) if o.map.as_ref().is_some_and(|m| trivial_but_excluded(&m.key))
            ),
            Some(Frame::GObj { .. }) => true,
            _ => false,
        }
    }

    /// Whether the top frame is a map or a generic object (a byte or `STR_END` starts a key).
    pub fn top_takes_keys(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map { .. } | Frame::GObj { .. })
        )
    }

    fn normalised(&self, f: &Frame, spellable: &impl Fn(&str) -> bool, drop_used: bool) -> Frame {
        let keep = |used: &Used| {
            if drop_used {
                Used::default()
            } else if used.iter().all(|u| spellable(u)) {
                used.clone()
            } else {
                Used::from(
                    used.iter()
                        .filter(|u| spellable(u))
                        .cloned()
                        .collect::<Vec<_>>(),
                )
            }
        };
        match f {
            Frame::Arr { node, count, used } => {
                let cap = match self.node(*node) {
                    Node::Arr(a) => (a.prefix.len() as u64)
                        .max(a.min_items)
                        .max(a.max_items.unwrap_or(0)),
                    _ => u64::MAX,
                };
                Frame::Arr {
                    node: *node,
                    count: (*count).min(cap),
                    used: used.clone(),
                }
            }
            Frame::Map {
                node, count, used, ..
            } => {
                let (cap, trivial) = match self.node(*node) {
                    Node::Obj(o) => (
                        o.min_props.max(o.max_props.unwrap_or(0)),
                        o.map.as_ref().is_some_and(|m| trivial_but_excluded(&m.key)),
                    ),
                    _ => (u64::MAX, false),
                };
                Frame::Map {
                    node: *node,
                    count: (*count).min(cap),
                    used: if trivial || drop_used {
                        keep(used)
                    } else {
                        used.clone()
                    },
                    any: false,
                }
            }
            Frame::GArr { .. } => Frame::GArr { count: 0 },
            Frame::Props {
                node, idx, present, ..
            } => Frame::Props {
                node: *node,
                idx: *idx,
                present: present.clone(),
                any: false,
            },
            Frame::GObj { used, .. } => Frame::GObj {
                count: 0,
                used: keep(used),
            },
            f => f.clone(),
        }
    }

    /// A copy holding only the top `k` frames. A step reads the top two frames only, so
    /// stepping the copy is exact while it holds at least two frames (see `is_exact`); below
    /// that, `deepen` brings back frames of the original.
    pub fn top_copy(&self, k: usize) -> Machine {
        let n = self.stack.len();
        let cut = n.saturating_sub(k);
        Machine {
            g: self.g.clone(),
            mode: self.mode,
            stack: self.stack[cut..].to_vec(),
            out: None,
            direct: None,
            relax_counts: self.relax_counts,
            below: self.below + cut,
            high_water: 0,
            floor: self.below + n,
            spare: Vec::new(),
        }
    }

    /// Frames of the original machine below this copy (0 for a machine that is no copy).
    pub fn frames_below(&self) -> usize {
        self.below
    }

    /// Whether stepping (or asking `allowed`, `string_top`, ...) gives what the machine this
    /// was copied from would give: the copy holds at least the two frames a step reads, or
    /// everything.
    pub fn is_exact(&self) -> bool {
        self.below == 0 || self.stack.len() >= 2
    }

    /// Bring back up to `k` frames of `full` below the copy (`self` must descend, by
    /// `top_copy` and steps, from `full`; steps never touch the frames below a copy, so those
    /// are still `full`'s). Settles afterwards: a step that emptied the copy stopped settling
    /// where the copy ended. Returns whether any frame came back.
    pub fn deepen(&mut self, full: &Machine, k: usize) -> bool {
        let Some(have) = self.below.checked_sub(full.below) else {
            return false;
        };
        let j = k.min(have);
        if j == 0 {
            return false;
        }
        let mut stack = full.stack[have - j..have].to_vec();
        stack.append(&mut self.stack);
        self.stack = stack;
        self.below -= j;
        self.settle();
        true
    }

    /// Make `self` a copy of `other`, reusing `self`'s allocations where it can.
    pub fn copy_from(&mut self, other: &Machine) {
        if !Arc::ptr_eq(&self.g, &other.g) {
            self.g = other.g.clone();
        }
        self.mode = other.mode;
        self.stack.clone_from(&other.stack);
        self.out.clone_from(&other.out);
        self.direct = other.direct;
        self.relax_counts = other.relax_counts;
        self.below = other.below;
        self.high_water = other.high_water;
        self.floor = other.floor;
    }

    /// See `high_water`.
    pub fn deepest_checked(&self) -> usize {
        self.high_water
    }

    /// The shallowest nesting (frames, counting those below a copy) since the machine was
    /// made or copied by `top_copy`: below `depth()` of the original when a step popped its
    /// top frame.
    pub fn floor(&self) -> usize {
        self.floor
    }

    fn pop(&mut self) {
        self.stack.pop();
        self.floor = self.floor.min(self.below + self.stack.len());
    }

    /// Open the value on top in place when it is an array or an object that waits for its
    /// first token and opening keeps it open (as `opened` does on a copy): it accepts exactly
    /// the same tokens.
    pub fn open_value(&mut self) {
        if let Some(Frame::Value(n)) = self.stack.last() {
            if matches!(self.node(*n), Node::Arr(_) | Node::Obj(_)) {
                let (saved, floor) = (self.stack.clone(), self.floor);
                let depth = self.stack.len();
                self.open_top();
                if self.stack.len() < depth {
                    self.stack = saved;
                    self.floor = floor;
                }
            }
        }
    }

    /// A copy where a fresh item of the array on top has started (its comma written, the item
    /// opened), when items need no marker: the tokens that can start an item, in their own
    /// context. `None` when no item can start here.
    pub fn with_new_item(&self) -> Option<Machine> {
        let Frame::Arr { node, count, .. } = self.stack.last()? else {
            return None;
        };
        let Node::Arr(a) = self.node(*node) else {
            return None;
        };
        if a.marker || a.max_items.is_some_and(|mx| *count >= mx) {
            return None;
        }
        let item = a.prefix.get(*count as usize).copied().or(a.items)?;
        if !self.g.productive(item) {
            return None;
        }
        let mut m = self.clone();
        m.out = None;
        if let Some(Frame::Arr { count, .. }) = m.stack.last_mut() {
            *count += 1;
        }
        m.stack.push(Frame::Value(item));
        m.settle();
        Some(m.opened().unwrap_or(m))
    }

    /// What the top frame is waiting for (for profiling and error messages).
    pub fn top_kind(&self) -> &'static str {
        match self.stack.last() {
            None => "done",
            Some(Frame::Value(n)) => match self.node(*n) {
                Node::Enum(_) => "value:enum",
                Node::Bool => "value:bool",
                Node::Union(_) => "value:union",
                Node::Any => "value:any",
                Node::Str(_) => "value:string",
                Node::Num(_) => "value:number",
                Node::Arr(_) => "value:array",
                Node::Obj(_) => "value:object",
                _ => "value",
            },
            Some(Frame::Generic) => "generic",
            Some(Frame::Str { .. }) => "string",
            Some(Frame::Num { .. }) => "number",
            Some(Frame::Header { .. }) => "header",
            Some(Frame::Props { .. }) => "props",
            Some(Frame::Map { .. }) => "map",
            Some(Frame::Arr { .. }) => "array",
            Some(Frame::GArr { .. }) => "generic-array",
            Some(Frame::GObj { .. }) => "generic-object",
        }
    }

    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    fn replace_top(&mut self, f: Frame) {
        if let Some(top) = self.stack.last_mut() {
            *top = f;
        }
    }

    fn w(&mut self, s: &str) {
        if let Some(o) = &mut self.out {
            o.extend_from_slice(s.as_bytes());
        }
    }

    fn node(&self, n: NodeId) -> &Node {
        &self.g.nodes[n as usize]
    }

    /// Resolve every transition that needs no token (constants, opening brackets, moving on to
    /// the next present property), so the top frame always waits for a token.
    fn settle(&mut self) {
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
    fn open_top(&mut self) {
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
            direct: direct_at,
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
                        *direct_at = Some((o.len(), 0));
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

    /// Whether a string opening now (its value frame on top; `value`: a schema string, not a
    /// generic one) can be written straight to the output: see `Machine::direct`.
    fn can_write_direct(&self, spec: &StrSpec, value: bool) -> bool {
        self.mode == Mode::Lenient
            && self.out.is_some()
            && spec.excluded.is_empty()
            && !(value && self.unique_used().is_some())
    }

    /// Record a completed scalar item (its JSON text) in a `uniqueItems` array (the parent
    /// frame).
    fn after_scalar_item(&mut self, json: &str) {
        note_unique_item(&self.g, &mut self.stack, json);
    }

    /// Values already used by the enclosing unique array (when the top value is its item).
    fn unique_used(&self) -> Option<&[String]> {
        let n = self.stack.len();
        if n < 2 {
            return None;
        }
        match &self.stack[n - 2] {
            Frame::Arr { node, used, .. } => match self.node(*node) {
                Node::Arr(a) if a.unique => Some(&used[..]),
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
            Some(Frame::Map { used, .. }) | Some(Frame::GObj { used, .. }) => &used[..],
            _ => &[],
        };
        let top = self.stack.last()?;
        // (spec, UTF-8 state, bytes, context_end_ok, continuing, used keys, used items)
        let (spec, utf8, buf, context_end_ok, continuing, used_keys, used_items): (
            &StrSpec,
            u8,
            &[u8],
            bool,
            bool,
            &[String],
            &[String],
        ) = match top {
            Frame::Str { kind, st, buf } => {
                let spec = self.spec_ref(kind);
                let (end_ok, uk, ui) = match kind {
                    StrKind::Value(_) => (true, &[][..], self.unique_items(below)),
                    StrKind::Key(node) => (key_end_ok(*node), keys, &[][..]),
                    StrKind::GenericKey => (true, keys, &[][..]),
                    StrKind::Generic => (true, &[][..], &[][..]),
                };
                (spec, st.utf8, buf, end_ok, true, uk, ui)
            }
            Frame::Value(node) => match self.node(*node) {
                Node::Str(spec) => (spec, 0, &[], true, false, &[], self.unique_items(below)),
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
                (&m.key, 0, &[], key_end_ok(*node), false, used, &[])
            }
            Frame::GObj { used, .. } => (trivial_spec(), 0, &[], true, false, used, &[]),
            Frame::Arr { node, count, .. } => {
                let (_, spec) = self.string_item(*node, *count)?;
                (spec, 0, &[], true, false, &[], self.unique_items(Some(top)))
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
    fn unique_items<'a>(&'a self, f: Option<&'a Frame>) -> &'a [String] {
        match f {
            Some(Frame::Arr { node, used, .. }) => match self.node(*node) {
                Node::Arr(a) if a.unique => used,
                _ => &[],
            },
            _ => &[],
        }
    }

    fn spec_ref(&self, kind: &StrKind) -> &StrSpec {
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
    fn string_item(&self, node: NodeId, count: u64) -> Option<(NodeId, &Arc<StrSpec>)> {
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

    fn spec_for(&self, kind: &StrKind) -> Arc<StrSpec> {
        spec_in(&self.g, kind).clone()
    }

    /// Extra excluded strings for the string on top: used keys of its map, used items of its
    /// unique array.
    fn extra_excluded(&self, kind: &StrKind) -> Vec<String> {
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
    fn is_extra_excluded(&self, kind: &StrKind, s: &[u8]) -> bool {
        let n = self.stack.len();
        match kind {
            StrKind::Key(_) | StrKind::GenericKey if n >= 2 => match &self.stack[n - 2] {
                Frame::Map { used, .. } | Frame::GObj { used, .. } => {
                    used.iter().any(|u| u.as_bytes() == s)
                }
                _ => false,
            },
            StrKind::Value(_) => self.unique_used().is_some_and(|u| {
                u.iter()
                    .any(|j| serde_json::from_str::<String>(j).is_ok_and(|j| j.as_bytes() == s))
            }),
            _ => false,
        }
    }

    /// Whether the string on top may end now. (Its bytes are valid UTF-8 when `accepts_end`
    /// holds: every byte went through the spec's UTF-8 automaton.)
    fn str_end_ok(&self, kind: &StrKind, st: &StrState, buf: &[u8]) -> bool {
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
                        if self.unique_used().is_some_and(|u| u.contains(&v)) {
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
                        if self.unique_used().is_some_and(|u| u.iter().any(|x| x == v)) {
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
                            self.direct = Some((o.len(), 0));
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
                            if !num_feasible(s, &text) {
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
                    if node.is_some() && self.unique_used().is_some_and(|u| u.contains(&s)) {
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

    /// `STR_END` with a string on top (see `step`; the caller settles). When the string may
    /// not end here nothing changes; the errors after that are internal (bytes that stepping
    /// already checked, a map that is not there), as they were in `step`.
    fn end_string(&mut self) -> Result<(), String> {
        let Some(Frame::Str { kind, st, buf }) = self.stack.last() else {
            return Err("internal: no string on top".into());
        };
        // A string written straight out has no excluded values and is no unique item (see
        // `can_write_direct`): only its spec's end condition is left to check.
        if self.direct.is_some() {
            if !spec_in(&self.g, kind).accepts_end(st) {
                return Err("this string does not satisfy its schema".into());
            }
            self.direct = None;
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
    fn step_string_byte(&mut self, b: u8) -> Result<(), String> {
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
    fn open_string_value(&mut self) {
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
        let Machine {
            g,
            stack,
            out,
            direct,
            ..
        } = self;
        let Some(Frame::Str { kind, st, buf }) = stack.last_mut() else {
            return Ok(0);
        };
        let mut k = 0;
        loop {
            let (bytes, ascii, plain) = run;
            let len = direct.map_or(buf.len(), |(_, n)| n);
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
            match (&mut *direct, &mut *out) {
                (Some((_, n)), Some(out)) => {
                    *n += bytes.len();
                    if plain {
                        out.extend_from_slice(bytes);
                    } else {
                        crate::json::escape_bytes_into(bytes, out);
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
    /// `None` for a string written straight to the output (see `Machine::direct`).
    pub fn string_checkpoint(&self) -> Option<(StrState, usize)> {
        if self.direct.is_some() {
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

    fn check_depth(&mut self) -> Result<(), String> {
        let depth = self.stack.len() + self.below;
        self.high_water = self.high_water.max(depth);
        if depth > crate::MAX_DEPTH {
            return Err(format!("nesting deeper than {}", crate::MAX_DEPTH));
        }
        Ok(())
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
                        if !used.is_some_and(|u| u.contains(v)) {
                            set(SEL0 + k as u32);
                        }
                    }
                }
                Node::Bool => {
                    let used = self.unique_used();
                    for (k, v) in ["false", "true"].iter().enumerate() {
                        if !used.is_some_and(|u| u.iter().any(|x| x == v)) {
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
                    let mut scratch = Machine {
                        g: self.g.clone(),
                        mode: self.mode,
                        stack,
                        out: None,
                        direct: None,
                        relax_counts: self.relax_counts,
                        below: 0,
                        high_water: 0,
                        floor: 0,
                        spare: Vec::new(),
                    };
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
                let mut pre = buf.clone();
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
                            if spec.is_none_or(|s| num_feasible(s, &t2)) {
                                set(c as u32);
                            }
                            t2.pop();
                        }
                    }
                    if num_accepting(p) {
                        let s = std::str::from_utf8(text).unwrap_or("");
                        let ok = spec.is_none_or(|sp| sp.accepts_value(s))
                            && !(node.is_some()
                                && self.unique_used().is_some_and(|u| u.iter().any(|x| x == s)));
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
                    let mut scratch = Machine {
                        g: self.g.clone(),
                        mode: self.mode,
                        stack: vec![
                            self.stack.last().cloned().unwrap_or(Frame::Generic),
                            Frame::Value(item),
                        ],
                        out: None,
                        direct: None,
                        relax_counts: self.relax_counts,
                        below: 0,
                        high_water: 0,
                        floor: 0,
                        spare: Vec::new(),
                    };
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
                if !used.iter().any(String::is_empty) {
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
        while !m.is_done() {
            if toks.len() > 100_000 {
                let tail: Vec<String> = toks[toks.len() - 20..]
                    .iter()
                    .map(|&t| crate::base::name(t))
                    .collect();
                return Err(format!(
                    "completion too long; top frame {:?}; last tokens {}",
                    m.stack.last(),
                    tail.join(" ")
                ));
            }
            let t = m.next_completion_token(&mut allowed)?;
            m.step(t)?;
            toks.push(t);
        }
        Ok(toks)
    }

    fn next_completion_token(&self, allowed: &mut [bool]) -> Result<u32, String> {
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
                if let Some(bytes) = spec.search(st, &pend) {
                    if let Some(&b) = bytes.first() {
                        if ok(b as u32) {
                            return Ok(b as u32);
                        }
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
        allowed
            .iter()
            .position(|&a| a)
            .map(|p| p as u32)
            .ok_or_else(|| "no token can complete this document".to_string())
    }
}
