//! The codec graph: what the encoder, the decoder and the matcher walk. See docs/token-format.md
//! for how each node is spelled in tokens.

use crate::strings::StrSpec;
use std::sync::Arc;

pub type NodeId = u32;

/// A small bit set over property indices. The first 128 live inline: the matcher copies
/// frames at every step of its walks, and a heap allocation per copy dominated them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bits {
    low: u128,
    high: Vec<u64>,
}

impl Bits {
    pub fn get(&self, i: usize) -> bool {
        if i < 128 {
            return self.low & (1 << i) != 0;
        }
        let i = i - 128;
        self.high
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub fn set(&mut self, i: usize) {
        if i < 128 {
            self.low |= 1 << i;
            return;
        }
        let i = i - 128;
        if self.high.len() <= i / 64 {
            self.high.resize(i / 64 + 1, 0);
        }
        self.high[i / 64] |= 1 << (i % 64);
    }
    /// The first set index in `from..limit`.
    pub fn next_set(&self, from: usize, limit: usize) -> Option<usize> {
        if from < 128 {
            let rest = if from == 0 {
                self.low
            } else {
                self.low >> from << from
            };
            if rest != 0 {
                let i = rest.trailing_zeros() as usize;
                return (i < limit).then_some(i);
            }
        }
        (from.max(128)..limit).find(|&i| self.get(i))
    }
    pub fn count(&self) -> u64 {
        self.low.count_ones() as u64 + self.high.iter().map(|w| w.count_ones() as u64).sum::<u64>()
    }
}

/// Numeric constraints on a number's value (its text is checked by the number grammar).
#[derive(Debug, Clone, Default)]
pub struct NumSpec {
    pub integer: bool,
    pub min: Option<(f64, bool)>,
    pub max: Option<(f64, bool)>,
    pub multiple_of: Vec<f64>,
    /// Canonical JSON texts of excluded values.
    pub excluded: Vec<String>,
}

impl NumSpec {
    /// The bounds the number grammar's look-ahead reads (`numbers::num_feasible`).
    pub(crate) fn bounds(&self) -> crate::numbers::Bounds {
        crate::numbers::Bounds {
            min: self.min.map(|b| b.0),
            max: self.max.map(|b| b.0),
            integer: self.integer,
        }
    }

    pub fn unbounded(&self) -> bool {
        self.min.is_none()
            && self.max.is_none()
            && self.multiple_of.is_empty()
            && self.excluded.is_empty()
    }

    /// Whether the number with this JSON text satisfies the value constraints.
    pub fn accepts_value(&self, text: &str) -> bool {
        if self.excluded.iter().any(|e| e == text) {
            return false;
        }
        if self.unbounded() && !self.integer {
            return true;
        }
        let Ok(f) = text.parse::<f64>() else {
            return false;
        };
        if !f.is_finite() {
            return false;
        }
        if self.integer && f.fract() != 0.0 {
            return false;
        }
        if let Some((lo, ex)) = self.min {
            if f < lo || (ex && f == lo) {
                return false;
            }
        }
        if let Some((hi, ex)) = self.max {
            if f > hi || (ex && f == hi) {
                return false;
            }
        }
        for &m in &self.multiple_of {
            if m > 0.0 {
                let q = f / m;
                if (q - q.round()).abs() > 1e-9 {
                    return false;
                }
            }
        }
        true
    }
}

#[derive(Debug, Clone)]
pub struct Prop {
    pub name: String,
    /// `name` as a JSON string literal (the decoder writes it for every present key).
    pub name_json: String,
    pub node: NodeId,
    pub required: bool,
}

/// Entries of an object beyond its named properties (`patternProperties`,
/// `additionalProperties`). The key spec's combination DFAs select the entry schema.
pub struct MapSpec {
    pub key: Arc<StrSpec>,
    /// Entry node per combination of matched key patterns (index = bit set).
    pub entry: Vec<NodeId>,
}

/// Property names to their index in `ObjSpec::props`: the encoder looks up every key of every
/// object, often several times (union filters), and a scan of 20-35 names per key was a fifth of
/// encoding time on workflows.
#[derive(Debug, Clone, Default)]
pub struct PropIndex {
    /// Open addressing, power-of-two size, at most half full; `u32::MAX` is an empty slot.
    slots: Vec<u32>,
}

impl PropIndex {
    pub fn new(props: &[Prop]) -> Self {
        let size = (props.len() * 2).next_power_of_two().max(2);
        let mut slots = vec![u32::MAX; size];
        for (i, p) in props.iter().enumerate() {
            let mut at = Self::hash(&p.name) & (size - 1);
            while slots[at] != u32::MAX {
                at = (at + 1) & (size - 1);
            }
            slots[at] = i as u32;
        }
        PropIndex { slots }
    }

    /// FNV-1a over the name's bytes: names are short, and any spread will do at half load.
    #[inline]
    fn hash(name: &str) -> usize {
        let mut h: u32 = 0x811C_9DC5;
        for &b in name.as_bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        h as usize
    }

    /// The index of the property named `name` in `props` (the list this index was built from).
    #[inline]
    pub fn get(&self, props: &[Prop], name: &str) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut at = Self::hash(name) & mask;
        loop {
            let i = *self.slots.get(at)?;
            if i == u32::MAX {
                return None;
            }
            if props[i as usize].name == name {
                return Some(i as usize);
            }
            at = (at + 1) & mask;
        }
    }
}

pub struct ObjSpec {
    /// Named properties in canonical (schema) order.
    pub props: Vec<Prop>,
    /// `props` by name.
    pub index: PropIndex,
    /// How many of `props` are required.
    pub n_required: usize,
    /// The indices of the required `props`.
    pub required_bits: Bits,
    /// Indices into `props` of the optional ones: `SEL(j)` in the key list means `optional[j]`.
    pub optional: Vec<usize>,
    pub map: Option<MapSpec>,
    pub min_props: u64,
    pub max_props: Option<u64>,
    /// Groups of prop indices that must not all be present.
    pub forbid: Vec<Vec<usize>>,
    /// prop index -> prop indices that must be present when it is.
    pub deps: Vec<(usize, Vec<usize>)>,
}

pub struct ArrSpec {
    pub prefix: Vec<NodeId>,
    /// Node of the items after the prefix (`None`: no more items allowed).
    pub items: Option<NodeId>,
    pub min_items: u64,
    pub max_items: Option<u64>,
    pub unique: bool,
    /// Whether each item is preceded by `ITEM` (item encodings that could be empty or begin
    /// with `ARR_END`).
    pub marker: bool,
}

pub enum Node {
    /// Any JSON value, generic encoding.
    Any,
    /// No value (unsatisfiable).
    Never,
    /// One fixed value (canonical JSON text): zero tokens.
    Const(String),
    /// One of several values: `SEL(k)`.
    Enum(Vec<String>),
    Bool,
    Str(Arc<StrSpec>),
    Num(NumSpec),
    Arr(ArrSpec),
    Obj(ObjSpec),
    /// `SEL(k)` then branch k. Branches are mutually exclusive where `oneOf` demands it.
    Union(Vec<NodeId>),
}

/// Fewest tokens of a value with no finite instance (an unproductive node's cost).
pub const INF: u64 = u64::MAX / 4;

/// The compiled schema.
pub struct Graph {
    pub nodes: Vec<Node>,
    pub root: NodeId,
    /// Fewest tokens of a complete value of each node (`INF`: no finite instance).
    pub cost: Vec<u64>,
    /// The JSON types each node can accept, as [`type_bit`]s: the encoder's union filter
    /// rejects most branches with this one test instead of walking them.
    pub types: Vec<u8>,
    /// Number of `SEL` ids the graph needs.
    pub sel_count: u32,
    /// Keywords or combinations that are not enforced exactly, with where they are.
    pub warnings: Vec<String>,
}

impl Graph {
    pub fn productive(&self, n: NodeId) -> bool {
        self.cost[n as usize] < INF
    }

    /// Whether node `n` can accept some value of `v`'s JSON type.
    #[inline]
    pub fn may_accept(&self, n: NodeId, v: &crate::json::Json) -> bool {
        self.types[n as usize] & type_bit(v) != 0
    }
}

/// One bit per JSON type (null, boolean, number, string, array, object).
pub fn type_bit(v: &crate::json::Json) -> u8 {
    use crate::json::Json;
    match v {
        Json::Null => 1,
        Json::Bool(_) => 2,
        Json::Number(_) => 4,
        Json::String(_) => 8,
        Json::Array(_) => 16,
        Json::Object(_) => 32,
    }
}
