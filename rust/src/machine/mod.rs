//! The state machine behind the decoder and the matcher. It walks the codec graph one base
//! token at a time, keeps a stack of open values, optionally writes the compact JSON text, and
//! can say which base tokens may come next.
//!
//! Two modes: `Lenient` (the decoder) accepts `FALLBACK` and skips the look-ahead liveness
//! checks inside strings and numbers; `Strict` (the matcher) never accepts `FALLBACK` and only
//! accepts a token when the value it extends can still be completed validly. Both modes enforce
//! every constraint when a value is closed, so what the decoder produces from an encoder output
//! is exactly what was encoded.
//!
//! One `Machine` type serves every client; its methods are split by client:
//! - `step.rs`: the core step over structural base ids (every client);
//! - `strings.rs`: string steps, byte runs and the string-on-top views (decoder, matcher);
//! - `allowed.rs`: the allowed next base ids and the smallest completion (matcher, prompts);
//! - `walks.rs`: copies of the top frames and their cache keys (the matcher's walks over
//!   trained ids).

mod allowed;
mod step;
mod strings;
mod walks;

pub use strings::{trivial_but_excluded, Excluded, StringTop};
pub use walks::FrameKey;

use crate::base::*;
pub use crate::compile::ir::Bits;
use crate::compile::ir::{Node, NodeId};
use crate::compile::Graph;
use crate::strings::{StrSpec, StrState};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Lenient,
}

/// Used map keys or unique items, shared between copies of a frame until one of them adds
/// to it (the matcher copies frames at every step of its walks). Empty without an allocation:
/// most arrays never use it, and a fresh `Arc` per array or map showed in decoding.
///
/// The values are kept in order (walks and masks iterate them) and in a hash set: every key
/// and every unique item is checked against all before it, and a linear search made decoding
/// quadratic (a map of 100,000 keys: 9.3 s to decode, 0.24 s to encode).
#[derive(Clone, Debug, Default)]
pub struct Used(Option<Arc<UsedSet>>);

/// No used values (for views that leave a kind of exclusion out).
pub static NO_USED: Used = Used(None);

#[derive(Clone, Debug, Default)]
pub struct UsedSet {
    order: Vec<String>,
    index: HashSet<String>,
}

impl Used {
    fn push(&mut self, s: String) {
        let set = Arc::make_mut(self.0.get_or_insert_with(Default::default));
        set.index.insert(s.clone());
        set.order.push(s);
    }

    /// Whether `s` was used (a key, or an item's canonical JSON text).
    pub fn has(&self, s: &str) -> bool {
        self.0.as_ref().is_some_and(|u| u.index.contains(s))
    }

    /// Whether the string with content `s` is a used item (items are kept as JSON text).
    pub fn has_string_item(&self, s: &[u8]) -> bool {
        self.0.is_some()
            && std::str::from_utf8(s).is_ok_and(|s| {
                let mut j = String::with_capacity(s.len() + 2);
                crate::json::write_string(s, &mut j);
                self.has(&j)
            })
    }
}

impl From<Vec<String>> for Used {
    fn from(v: Vec<String>) -> Used {
        Used((!v.is_empty()).then(|| {
            Arc::new(UsedSet {
                index: v.iter().cloned().collect(),
                order: v,
            })
        }))
    }
}

impl std::ops::Deref for Used {
    type Target = [String];
    fn deref(&self) -> &[String] {
        self.0.as_deref().map_or(&[], |u| u.order.as_slice())
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

/// The decoder / matcher state.
#[derive(Clone)]
pub struct Machine {
    g: Arc<Graph>,
    mode: Mode,
    stack: Vec<Frame>,
    /// What only a decoding machine has: its output (`None` for the matcher, its walks and
    /// the prompt encoder).
    out: Option<Output>,
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

/// A decoding machine's output state.
#[derive(Clone, Default)]
struct Output {
    /// The JSON text so far. Bytes: a string's bytes go in as they come, and the whole text is
    /// checked to be UTF-8 once, at the end (it always is: every string byte went through a
    /// UTF-8 automaton).
    text: Vec<u8>,
    /// While the string on top is written straight to `text` (lenient mode, when nothing
    /// needs its bytes at its end: no excluded values, not a unique item; its `buf` stays
    /// empty): where its opening quote is in `text`, and its length in bytes so far.
    // Copying every string into `buf`, then checking and escaping it into the text at its
    // end, made decoding the corpus slower: 0.89 s against 0.81 s (best of 5, A/B in one run;
    // medians 1.03 and 0.86 s).
    direct: Option<(usize, usize)>,
}

// Every writer appends to the text as to a `Vec<u8>` (push, extend, escape into it).
impl std::ops::Deref for Output {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.text
    }
}

impl std::ops::DerefMut for Output {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.text
    }
}

impl Machine {
    pub fn new(g: Arc<Graph>, mode: Mode, with_output: bool) -> Machine {
        let root = g.root;
        let mut m = Machine {
            g,
            mode,
            stack: Vec::with_capacity(16),
            out: with_output.then(Output::default),
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
        let out = match &self.out {
            Some(Output {
                text,
                direct: Some((at, _)),
            }) => text.get(..*at).unwrap_or_default(),
            Some(o) => &o.text,
            None => &[],
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
        let out = self
            .out
            .as_mut()
            .map(|o| std::mem::take(&mut o.text))
            .unwrap_or_default();
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

    /// Whether the string on top is written straight to the output (`Output::direct`).
    fn writing_direct(&self) -> bool {
        matches!(
            self.out,
            Some(Output {
                direct: Some(_),
                ..
            })
        )
    }

    fn node(&self, n: NodeId) -> &Node {
        &self.g.nodes[n as usize]
    }
}
