//! Normalisation of JSON Schema into a disjunction of typed *atoms*.
//!
//! An atom is the conjunction of every constraint that applies to one JSON type. `allOf` and
//! `$ref` conjoin, `anyOf`/`oneOf`/`if-then-else`/type arrays disjoin (distributing over the
//! conjunction), `not` subtracts. `oneOf` branches are made mutually exclusive by subtracting the
//! other branches, so that a union of atoms can be generated without ever producing a document
//! that matches two `oneOf` branches. Property, item and entry schemas are *not* expanded here:
//! they stay as lists of [`Term`]s and become child nodes when the codec graph is built, which is
//! what lets recursive schemas compile.
//!
//! Where a subtraction (`not`, `oneOf` exclusivity) has no exact finite form here, the atom is
//! kept as is and a warning names the place: the README lists such keywords.

use super::store::{SchemaId, Store};
use crate::error::SchemaError;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A subschema, possibly negated.
pub type Term = (SchemaId, bool);

/// A numeric bound: the number's JSON text and whether it is exclusive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bound {
    pub value: String,
    pub exclusive: bool,
}

impl Bound {
    pub fn as_f64(&self) -> f64 {
        self.value.parse().unwrap_or(f64::NAN)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NumA {
    pub integer: bool,
    pub min: Option<Bound>,
    pub max: Option<Bound>,
    pub multiple_of: BTreeSet<String>,
    /// Allowed values (canonical JSON text), when an `enum`/`const` applies.
    pub enum_vals: Option<Vec<String>>,
    pub excluded: BTreeSet<String>,
}

/// The positive part of a string constraint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StrCore {
    pub min_len: u64,
    pub max_len: Option<u64>,
    pub patterns: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StrA {
    pub core: StrCore,
    /// Allowed values (the strings themselves), when an `enum`/`const` applies.
    pub enum_vals: Option<Vec<String>>,
    pub excluded_values: BTreeSet<String>,
    /// The string must not satisfy any of these (from `not` and `oneOf` exclusivity).
    pub excluded_specs: BTreeSet<StrCore>,
}

impl StrCore {
    /// Whether `s` satisfies the lengths (in characters) and every pattern.
    pub fn matches(&self, s: &str) -> bool {
        let n = crate::strings::char_len(s);
        n >= self.min_len
            && self.max_len.is_none_or(|m| n <= m)
            && self
                .patterns
                .iter()
                .all(|p| crate::strings::pattern_matches(p, s))
    }
}

impl StrA {
    /// Whether the string value `s` satisfies this constraint.
    pub fn matches(&self, s: &str) -> bool {
        self.core.matches(s)
            && !self.excluded_values.contains(s)
            && !self.excluded_specs.iter().any(|e| e.matches(s))
            && self
                .enum_vals
                .as_ref()
                .is_none_or(|e| e.iter().any(|v| v == s))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ArrA {
    /// Schemas whose `items`/`additionalItems`/`prefixItems` apply, in order of appearance.
    pub parts: Vec<SchemaId>,
    pub min_items: u64,
    pub max_items: Option<u64>,
    pub unique: bool,
    pub enum_vals: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjA {
    /// Schemas whose `properties`/`patternProperties`/`additionalProperties` apply, in order of
    /// appearance (that order is the canonical key order).
    pub parts: Vec<SchemaId>,
    pub required: BTreeSet<String>,
    /// Keys that must not be present.
    pub absent: BTreeSet<String>,
    /// Groups of keys that must not all be present (`not: {required: [a, b]}`).
    pub forbid: BTreeSet<Vec<String>>,
    /// Key -> keys that must be present when it is (`dependencies` array form).
    pub deps: BTreeMap<String, BTreeSet<String>>,
    /// Extra schemas conjoined on one property's value (from subtractions and conditions).
    pub extra: BTreeMap<String, Vec<Term>>,
    pub min_props: u64,
    pub max_props: Option<u64>,
    /// `propertyNames` schemas.
    pub names: Vec<SchemaId>,
    pub enum_vals: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Atom {
    Null,
    /// Bit 0: `false` allowed, bit 1: `true` allowed.
    Bool(u8),
    Num(NumA),
    Str(StrA),
    Arr(ArrA),
    Obj(ObjA),
}

impl Atom {
    fn kind(&self) -> u8 {
        match self {
            Atom::Null => 0,
            Atom::Bool(_) => 1,
            Atom::Num(_) => 2,
            Atom::Str(_) => 3,
            Atom::Arr(_) => 4,
            Atom::Obj(_) => 5,
        }
    }

    /// True for the unconstrained atom of a type.
    pub fn is_top(&self) -> bool {
        match self {
            Atom::Null => true,
            Atom::Bool(b) => *b == 3,
            Atom::Num(n) => *n == NumA::default(),
            Atom::Str(s) => *s == StrA::default(),
            Atom::Arr(a) => *a == ArrA::default(),
            Atom::Obj(o) => *o == ObjA::default(),
        }
    }
}

/// The unconstrained atoms of every type: the schema `{}`.
pub fn top() -> Vec<Atom> {
    vec![
        Atom::Null,
        Atom::Bool(3),
        Atom::Num(NumA::default()),
        Atom::Str(StrA::default()),
        Atom::Arr(ArrA::default()),
        Atom::Obj(ObjA::default()),
    ]
}

const MAX_ATOMS: usize = 1024;
/// Most values one `enum` may list: each needs a choice id below 65,536, beside the other ids.
pub const MAX_ENUM_VALUES: usize = 60_000;
/// Largest `minItems` / `minProperties` accepted: the matcher must be able to complete a
/// document, and the shortest one holds this many members. Past it the schema is refused at
/// compile time, naming the keyword (`minItems: 1e18` used to loop forever in the cost
/// analysis).
pub const MAX_MIN_COUNT: u64 = 1 << 16;
/// Budget of atom operations for one schema (see `Normalizer::spend`).
pub const MAX_WORK: u64 = 20_000_000;

fn canonical(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn tighter_lower(a: &Option<Bound>, b: &Option<Bound>) -> Option<Bound> {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(x), Some(y)) => {
            let (fx, fy) = (x.as_f64(), y.as_f64());
            if fx > fy || (fx == fy && x.exclusive) {
                Some(x.clone())
            } else {
                Some(y.clone())
            }
        }
    }
}

fn tighter_upper(a: &Option<Bound>, b: &Option<Bound>) -> Option<Bound> {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(x), Some(y)) => {
            let (fx, fy) = (x.as_f64(), y.as_f64());
            if fx < fy || (fx == fy && x.exclusive) {
                Some(x.clone())
            } else {
                Some(y.clone())
            }
        }
    }
}

fn intersect_enum(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(x), Some(y)) => Some(x.iter().filter(|v| y.contains(v)).cloned().collect()),
    }
}

fn push_unique<T: PartialEq + Clone>(dst: &mut Vec<T>, src: &[T]) {
    for s in src {
        if !dst.contains(s) {
            dst.push(s.clone());
        }
    }
}

/// Conjunction of two atoms of the same type (`None` when the types differ).
fn conjoin(a: &Atom, b: &Atom) -> Option<Atom> {
    Some(match (a, b) {
        (Atom::Null, Atom::Null) => Atom::Null,
        (Atom::Bool(x), Atom::Bool(y)) => Atom::Bool(x & y),
        (Atom::Num(x), Atom::Num(y)) => Atom::Num(NumA {
            integer: x.integer || y.integer,
            min: tighter_lower(&x.min, &y.min),
            max: tighter_upper(&x.max, &y.max),
            multiple_of: x.multiple_of.union(&y.multiple_of).cloned().collect(),
            enum_vals: intersect_enum(&x.enum_vals, &y.enum_vals),
            excluded: x.excluded.union(&y.excluded).cloned().collect(),
        }),
        (Atom::Str(x), Atom::Str(y)) => Atom::Str(StrA {
            core: StrCore {
                min_len: x.core.min_len.max(y.core.min_len),
                max_len: match (x.core.max_len, y.core.max_len) {
                    (Some(p), Some(q)) => Some(p.min(q)),
                    (p, q) => p.or(q),
                },
                patterns: x.core.patterns.union(&y.core.patterns).cloned().collect(),
            },
            enum_vals: intersect_enum(&x.enum_vals, &y.enum_vals),
            excluded_values: x
                .excluded_values
                .union(&y.excluded_values)
                .cloned()
                .collect(),
            excluded_specs: x.excluded_specs.union(&y.excluded_specs).cloned().collect(),
        }),
        (Atom::Arr(x), Atom::Arr(y)) => {
            let mut parts = x.parts.clone();
            push_unique(&mut parts, &y.parts);
            Atom::Arr(ArrA {
                parts,
                min_items: x.min_items.max(y.min_items),
                max_items: match (x.max_items, y.max_items) {
                    (Some(p), Some(q)) => Some(p.min(q)),
                    (p, q) => p.or(q),
                },
                unique: x.unique || y.unique,
                enum_vals: intersect_enum(&x.enum_vals, &y.enum_vals),
            })
        }
        (Atom::Obj(x), Atom::Obj(y)) => {
            let mut parts = x.parts.clone();
            push_unique(&mut parts, &y.parts);
            let mut deps = x.deps.clone();
            for (k, v) in &y.deps {
                deps.entry(k.clone()).or_default().extend(v.iter().cloned());
            }
            let mut extra = x.extra.clone();
            for (k, v) in &y.extra {
                let e = extra.entry(k.clone()).or_default();
                push_unique(e, v);
                e.sort();
            }
            let mut names = x.names.clone();
            push_unique(&mut names, &y.names);
            Atom::Obj(ObjA {
                parts,
                required: x.required.union(&y.required).cloned().collect(),
                absent: x.absent.union(&y.absent).cloned().collect(),
                forbid: x.forbid.union(&y.forbid).cloned().collect(),
                deps,
                extra,
                min_props: x.min_props.max(y.min_props),
                max_props: match (x.max_props, y.max_props) {
                    (Some(p), Some(q)) => Some(p.min(q)),
                    (p, q) => p.or(q),
                },
                names,
                enum_vals: intersect_enum(&x.enum_vals, &y.enum_vals),
            })
        }
        _ => return None,
    })
}

/// Normaliser state: the schema store, memoised atom sets and the warnings collected.
pub struct Normalizer<'s> {
    pub store: &'s mut Store,
    cache: HashMap<SchemaId, Vec<Atom>>,
    conj_cache: HashMap<Vec<Term>, Vec<Atom>>,
    in_progress: HashSet<Vec<Term>>,
    /// The schemas being expanded, outermost first. Only `expanding[frame..]` apply to the
    /// value in hand: entering [`Normalizer::atoms_of`] (a property, item or entry value)
    /// starts a new frame, so a schema met again there is recursion through the document,
    /// while one met again inside its own frame is a `$ref` cycle that never descends.
    expanding: Vec<SchemaId>,
    frame: usize,
    pub warnings: BTreeSet<String>,
    /// Atom operations spent so far (pairs conjoined or subtracted, duplicate checks), against
    /// [`MAX_WORK`]. The schemas in the shared data set spend at most 26,012 (eslintrc.json;
    /// github-workflow.json 3,100), so the budget leaves them a margin of 750x.
    work: u64,
}

impl<'s> Normalizer<'s> {
    pub fn new(store: &'s mut Store) -> Self {
        Normalizer {
            store,
            cache: HashMap::new(),
            conj_cache: HashMap::new(),
            in_progress: HashSet::new(),
            expanding: Vec::new(),
            frame: 0,
            warnings: BTreeSet::new(),
            work: 0,
        }
    }

    /// Charge `n` atom operations at `at`; past [`MAX_WORK`] the schema is refused here, so a
    /// combination that would expand past [`MAX_ATOMS`] fails in well under a second instead
    /// of after every subtraction was done.
    // allOf of five 6-way oneOfs took 14.7 s before this bound.
    fn spend(&mut self, n: usize, at: SchemaId) -> Result<(), SchemaError> {
        self.work = self.work.saturating_add(n as u64);
        if self.work > MAX_WORK {
            return Err(SchemaError::new(
                self.store.describe(at),
                format!(
                    "the combination of allOf/anyOf/oneOf/not/if here takes more than {MAX_WORK} \
                     steps to expand (too many alternatives)"
                ),
            ));
        }
        Ok(())
    }

    fn warn(&mut self, id: SchemaId, what: &str) {
        let at = self.store.describe(id);
        self.warnings.insert(format!("{at}: {what}"));
    }

    /// The atoms of a conjunction of (possibly negated) subschemas.
    pub fn atoms_of(&mut self, conj: &[Term]) -> Result<Vec<Atom>, SchemaError> {
        let mut key: Vec<Term> = conj.to_vec();
        key.sort();
        key.dedup();
        if let Some(a) = self.conj_cache.get(&key) {
            return Ok(a.clone());
        }
        if self.in_progress.contains(&key) {
            // A recursive reference through a property: assume satisfiable here; the productive
            // analysis of the codec graph removes what has no finite instance.
            return Ok(top());
        }
        self.in_progress.insert(key.clone());
        let outer_frame = std::mem::replace(&mut self.frame, self.expanding.len());
        let r = self.conjunction(&key);
        self.frame = outer_frame;
        self.in_progress.remove(&key);
        let acc = r?;
        self.conj_cache.insert(key, acc.clone());
        Ok(acc)
    }

    /// [`Normalizer::atoms_of`] once the cache and recursion checks have passed.
    fn conjunction(&mut self, key: &[Term]) -> Result<Vec<Atom>, SchemaError> {
        let mut acc = top();
        for &(id, _) in key.iter().filter(|t| !t.1) {
            let e = self.expand(id)?;
            acc = self.conjoin_sets(&acc, &e, id)?;
        }
        for &(id, _) in key.iter().filter(|t| t.1) {
            let e = self.expand(id)?;
            acc = self.subtract_all(acc, &e, id)?;
        }
        Ok(acc)
    }

    /// Whether a conjunction has any instance (optimistic inside recursion).
    pub fn satisfiable(&mut self, conj: &[Term]) -> Result<bool, SchemaError> {
        Ok(!self.atoms_of(conj)?.is_empty())
    }

    fn conjoin_sets(
        &mut self,
        a: &[Atom],
        b: &[Atom],
        at: SchemaId,
    ) -> Result<Vec<Atom>, SchemaError> {
        let mut out: Vec<Atom> = Vec::new();
        for x in a {
            for y in b {
                if x.kind() != y.kind() {
                    continue;
                }
                self.spend(1 + out.len(), at)?;
                if let Some(c) = conjoin(x, y) {
                    if self.viable(&c)? && !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
        self.check_size(out.len(), at)?;
        Ok(out)
    }

    fn check_size(&self, n: usize, at: SchemaId) -> Result<(), SchemaError> {
        if n > MAX_ATOMS {
            return Err(SchemaError::new(
                self.store.describe(at),
                format!("the combination of allOf/anyOf/oneOf/if here expands to more than {MAX_ATOMS} alternatives"),
            ));
        }
        Ok(())
    }

    fn union(&mut self, sets: Vec<Vec<Atom>>, at: SchemaId) -> Result<Vec<Atom>, SchemaError> {
        let mut out: Vec<Atom> = Vec::new();
        for s in sets {
            for a in s {
                self.spend(1 + out.len(), at)?;
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        self.check_size(out.len(), at)?;
        Ok(out)
    }

    /// Cheap contradiction checks, so that impossible combinations are pruned early.
    fn viable(&mut self, a: &Atom) -> Result<bool, SchemaError> {
        Ok(match a {
            Atom::Null => true,
            Atom::Bool(b) => *b != 0,
            Atom::Num(n) => {
                if let Some(e) = &n.enum_vals {
                    !e.is_empty()
                } else {
                    match (&n.min, &n.max) {
                        (Some(lo), Some(hi)) => {
                            let (l, h) = (lo.as_f64(), hi.as_f64());
                            l < h || (l == h && !lo.exclusive && !hi.exclusive)
                        }
                        _ => true,
                    }
                }
            }
            Atom::Str(s) => {
                let len_ok = s.core.max_len.is_none_or(|m| m >= s.core.min_len);
                len_ok && s.enum_vals.as_ref().is_none_or(|e| !e.is_empty())
            }
            Atom::Arr(x) => {
                x.max_items.is_none_or(|m| m >= x.min_items)
                    && x.enum_vals.as_ref().is_none_or(|e| !e.is_empty())
            }
            Atom::Obj(o) => {
                if o.required.iter().any(|r| o.absent.contains(r))
                    || o.forbid
                        .iter()
                        .any(|g| g.iter().all(|k| o.required.contains(k)))
                    || o.max_props
                        .is_some_and(|m| m < o.min_props || (o.required.len() as u64) > m)
                    || o.enum_vals.as_ref().is_some_and(|e| e.is_empty())
                {
                    return Ok(false);
                }
                // Required (or constrained-when-present) keys must admit a value.
                for r in &o.required {
                    let conj = self.key_conj(o, r);
                    if !self.satisfiable(&conj)? {
                        return Ok(false);
                    }
                }
                true
            }
        })
    }

    /// The terms that constrain the value of the named key `k` in an object atom.
    pub fn key_conj(&mut self, o: &ObjA, k: &str) -> Vec<Term> {
        let mut conj = Vec::new();
        for &p in &o.parts {
            conj.extend(self.part_terms_for_key(p, k));
        }
        if let Some(e) = o.extra.get(k) {
            conj.extend(e.iter().copied());
        }
        conj
    }

    /// What one schema's `properties`/`patternProperties`/`additionalProperties` say about key `k`.
    pub fn part_terms_for_key(&mut self, part: SchemaId, k: &str) -> Vec<Term> {
        let v = self.store.get(part).clone();
        if v.get("properties").and_then(|p| p.get(k)).is_some() {
            return self
                .store
                .child(part, &["properties", k])
                .map(|c| vec![(c, false)])
                .unwrap_or_default();
        }
        let mut out = Vec::new();
        let mut matched = false;
        if let Some(pp) = v.get("patternProperties").and_then(Value::as_object) {
            for pat in pp.keys() {
                if crate::strings::pattern_matches(pat, k) {
                    matched = true;
                    if let Some(c) = self.store.child(part, &["patternProperties", pat]) {
                        out.push((c, false));
                    }
                }
            }
        }
        if !matched {
            if let Some(c) = v
                .get("additionalProperties")
                .and_then(|_| self.store.child(part, &["additionalProperties"]))
            {
                out.push((c, false));
            }
        }
        out
    }

    /// Expand one subschema (positive) into atoms.
    pub fn expand(&mut self, id: SchemaId) -> Result<Vec<Atom>, SchemaError> {
        if let Some(a) = self.cache.get(&id) {
            return Ok(a.clone());
        }
        if let Some(at) = self.expanding[self.frame..].iter().position(|&s| s == id) {
            // `{"$ref": "#"}`, `a -> b -> a`, `{"allOf": [{"$ref": "#"}]}`: the schema applies
            // itself to the same value. A validator recurses forever on it; assuming "anything"
            // here (as this once did) silently accepted every document.
            return Err(self.cycle_error(self.frame + at, id));
        }
        self.expanding.push(id);
        let r = self.expand_uncached(id);
        self.expanding.pop();
        let r = r?;
        self.cache.insert(id, r.clone());
        Ok(r)
    }

    /// The error for a cycle that re-enters `id`, first expanded at `expanding[start]`: it
    /// names the first `$ref` on the cycle (every cycle has one: the other applicators only lead
    /// to subschemas nested deeper) and lists the schemas on it.
    fn cycle_error(&mut self, start: usize, id: SchemaId) -> SchemaError {
        let chain: Vec<SchemaId> = self.expanding[start..].to_vec();
        let mut at = None;
        for (i, &s) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(id);
            let r = self.store.get(s).get("$ref").and_then(Value::as_str);
            let r = r.map(str::to_string);
            let target = r.and_then(|r| self.store.resolve_ref(s, &r).ok());
            if target == Some(next) {
                at = Some(s);
                break;
            }
        }
        let pointer = match at {
            Some(s) => self.store.describe(s) + "/$ref",
            None => self.store.describe(id),
        };
        let mut path: Vec<String> = chain.iter().map(|&s| self.store.describe(s)).collect();
        path.push(self.store.describe(id));
        let path: Vec<String> = path
            .into_iter()
            .map(|p| if p.is_empty() { "#".into() } else { p })
            .collect();
        SchemaError::new(
            pointer,
            format!(
                "$ref cycle with no base case: {} applies itself to the same value without \
                 descending into a property or item",
                path.join(" -> ")
            ),
        )
    }

    fn expand_uncached(&mut self, id: SchemaId) -> Result<Vec<Atom>, SchemaError> {
        let v = self.store.get(id).clone();
        let m = match &v {
            Value::Bool(true) => return Ok(top()),
            Value::Bool(false) => return Ok(Vec::new()),
            Value::Object(m) => m,
            _ => {
                return Err(SchemaError::new(
                    self.store.describe(id),
                    "a schema must be an object or a boolean",
                ))
            }
        };
        let ref_target = match m.get("$ref") {
            Some(r) => {
                let r = r.as_str().ok_or_else(|| {
                    SchemaError::new(self.store.describe(id) + "/$ref", "$ref must be a string")
                })?;
                Some(self.store.resolve_ref(id, r)?)
            }
            None => None,
        };
        if let Some(target) = ref_target.filter(|_| self.store.ref_replaces_siblings(id)) {
            // Draft-07 and earlier: the reference alone is the schema.
            return self.expand(target);
        }
        let mut acc = self.local_atoms(id, &v)?;
        if let Some(target) = ref_target {
            let t = self.expand(target)?;
            acc = self.conjoin_sets(&acc, &t, id)?;
        }
        if let Some(all) = m.get("allOf") {
            for i in 0..self.array_len(id, all, "allOf")? {
                let c = self.child(id, &["allOf", &i.to_string()])?;
                let t = self.expand(c)?;
                acc = self.conjoin_sets(&acc, &t, c)?;
            }
        }
        if let Some(any) = m.get("anyOf") {
            let mut sets = Vec::new();
            for i in 0..self.array_len(id, any, "anyOf")? {
                let c = self.child(id, &["anyOf", &i.to_string()])?;
                sets.push(self.expand(c)?);
            }
            let u = self.union(sets, id)?;
            acc = self.conjoin_sets(&acc, &u, id)?;
        }
        if let Some(one) = m.get("oneOf") {
            let n = self.array_len(id, one, "oneOf")?;
            let mut branches = Vec::new();
            for i in 0..n {
                let c = self.child(id, &["oneOf", &i.to_string()])?;
                let raw = self.expand(c)?;
                // Conjoin with what is known so far first: it keeps the subtraction small.
                let known = self.conjoin_sets(&acc, &raw, c)?;
                branches.push((c, raw, known));
            }
            // (acc ∧ b_i) ∧ ¬b_j == (acc ∧ b_i) ∧ ¬(acc ∧ b_j): subtract the raw branch, whose
            // shape is simpler (no inherited additionalProperties and the like).
            let mut exclusive = Vec::new();
            for i in 0..n {
                let mut bi = branches[i].2.clone();
                for (j, (cj, raw_j, _)) in branches.iter().enumerate() {
                    if i != j && !bi.is_empty() {
                        let raw_j = raw_j.clone();
                        bi = self.subtract_all(bi, &raw_j, *cj)?;
                    }
                }
                exclusive.push(bi);
            }
            acc = self.union(exclusive, id)?;
        }
        if let Some(_n) = m.get("not") {
            let c = self.child(id, &["not"])?;
            let t = self.expand(c)?;
            acc = self.subtract_all(acc, &t, c)?;
        }
        if m.contains_key("if") && (m.contains_key("then") || m.contains_key("else")) {
            let ci = self.child(id, &["if"])?;
            let i = self.expand(ci)?;
            let t = match m.get("then") {
                Some(_) => {
                    let c = self.child(id, &["then"])?;
                    self.expand(c)?
                }
                None => top(),
            };
            let e = match m.get("else") {
                Some(_) => {
                    let c = self.child(id, &["else"])?;
                    self.expand(c)?
                }
                None => top(),
            };
            let yes = self.conjoin_sets(&i, &t, ci)?;
            let no = self.subtract_all(e, &i, ci)?;
            let u = self.union(vec![yes, no], id)?;
            acc = self.conjoin_sets(&acc, &u, id)?;
        }
        // `dependencies` / `dependentSchemas` with a schema: (key absent) or (key present and schema).
        for kw in ["dependencies", "dependentSchemas"] {
            if let Some(Value::Object(d)) = m.get(kw) {
                for (k, dep) in d {
                    if !(dep.is_object() || dep.is_boolean()) {
                        continue;
                    }
                    let c = self.child(id, &[kw, k])?;
                    let s = self.expand(c)?;
                    let mut without = top();
                    let mut with = top();
                    for a in without.iter_mut() {
                        if let Atom::Obj(o) = a {
                            o.absent.insert(k.clone());
                        }
                    }
                    for a in with.iter_mut() {
                        if let Atom::Obj(o) = a {
                            o.required.insert(k.clone());
                        }
                    }
                    // Non-objects satisfy the dependency trivially: keep them only once.
                    with.retain(|a| matches!(a, Atom::Obj(_)));
                    let with = self.conjoin_sets(&with, &s, c)?;
                    let u = self.union(vec![without, with], c)?;
                    acc = self.conjoin_sets(&acc, &u, c)?;
                }
            }
        }
        for kw in [
            "contains",
            "unevaluatedProperties",
            "unevaluatedItems",
            "dependentSchemas",
        ] {
            if m.contains_key(kw) && kw != "dependentSchemas" {
                self.warn(id, &format!("`{kw}` is not enforced"));
            }
        }
        Ok(acc)
    }

    fn child(&mut self, id: SchemaId, path: &[&str]) -> Result<SchemaId, SchemaError> {
        self.store.child(id, path).ok_or_else(|| {
            SchemaError::new(
                self.store.describe(id),
                format!("missing {}", path.join("/")),
            )
        })
    }

    fn array_len(&self, id: SchemaId, v: &Value, kw: &str) -> Result<usize, SchemaError> {
        v.as_array().map(Vec::len).ok_or_else(|| {
            SchemaError::new(
                format!("{}/{kw}", self.store.describe(id)),
                format!("{kw} must be an array"),
            )
        })
    }

    /// Atoms from the keywords of this schema object itself (type, enum, const and the
    /// per-type assertions), before `$ref`/combinators are conjoined.
    fn local_atoms(&mut self, id: SchemaId, v: &Value) -> Result<Vec<Atom>, SchemaError> {
        let at = self.store.describe(id);
        let num = |k: &str| -> Result<Option<u64>, SchemaError> {
            match v.get(k) {
                None => Ok(None),
                Some(x) => x
                    .as_f64()
                    .filter(|f| *f >= 0.0)
                    .map(|f| Some(f.ceil() as u64))
                    .ok_or_else(|| {
                        SchemaError::new(
                            format!("{at}/{k}"),
                            format!("{k} must be a non-negative number"),
                        )
                    }),
            }
        };
        let min_count = |k: &str| -> Result<u64, SchemaError> {
            let n = num(k)?.unwrap_or(0);
            if n > MAX_MIN_COUNT {
                return Err(SchemaError::new(
                    format!("{at}/{k}"),
                    format!("{k} {n} is more than the limit of {MAX_MIN_COUNT}"),
                ));
            }
            Ok(n)
        };
        let mut types: Vec<&str> = match v.get("type") {
            None => vec!["null", "boolean", "number", "string", "array", "object"],
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(SchemaError::new(
                    format!("{at}/type"),
                    "type must be a string or an array",
                ))
            }
        };
        for t in &types {
            if !matches!(
                *t,
                "null" | "boolean" | "number" | "integer" | "string" | "array" | "object"
            ) {
                return Err(SchemaError::new(
                    format!("{at}/type"),
                    format!("unknown type {t:?}"),
                ));
            }
        }
        // "integer" alone narrows "number"; both listed means number.
        if types.contains(&"number") {
            types.retain(|t| *t != "integer");
        }
        let enum_vals: Option<Vec<Value>> = match (v.get("enum"), v.get("const")) {
            (_, Some(c)) => Some(vec![c.clone()]),
            // Each value is one choice id, and ids are uint16: refuse before any work.
            (Some(Value::Array(a)), None) if a.len() > MAX_ENUM_VALUES => {
                return Err(SchemaError::new(
                    format!("{at}/enum"),
                    format!(
                        "enum has {} values, more than the limit of {MAX_ENUM_VALUES}",
                        a.len()
                    ),
                ))
            }
            (Some(Value::Array(a)), None) => Some(a.clone()),
            (Some(_), None) => {
                return Err(SchemaError::new(
                    format!("{at}/enum"),
                    "enum must be an array",
                ))
            }
            (None, None) => None,
        };
        let vals_of = |pred: &dyn Fn(&Value) -> bool| -> Option<Vec<String>> {
            enum_vals.as_ref().map(|e| {
                // A hash set for the duplicates: with `Vec::contains` 140,000 values took
                // minutes before the size limit refused them.
                let mut seen: HashSet<String> = HashSet::with_capacity(e.len());
                let mut out: Vec<String> = Vec::new();
                for x in e.iter().filter(|x| pred(x)) {
                    let c = canonical(x);
                    if seen.insert(c.clone()) {
                        out.push(c);
                    }
                }
                out
            })
        };
        let mut out = Vec::new();
        for t in types {
            match t {
                "null" if vals_of(&Value::is_null).is_none_or(|e| !e.is_empty()) => {
                    out.push(Atom::Null)
                }
                "null" => {}
                "boolean" => {
                    let mut b = 3u8;
                    if let Some(e) = vals_of(&Value::is_boolean) {
                        b = 0;
                        for x in e {
                            b |= if x == "true" { 2 } else { 1 };
                        }
                    }
                    out.push(Atom::Bool(b));
                }
                "number" | "integer" => {
                    let mut n = NumA {
                        integer: t == "integer",
                        ..Default::default()
                    };
                    n.enum_vals = vals_of(&Value::is_number);
                    let bound = |k: &str| v.get(k).filter(|x| x.is_number()).map(canonical);
                    if let Some(x) = bound("minimum") {
                        let excl = v.get("exclusiveMinimum") == Some(&Value::Bool(true));
                        n.min = Some(Bound {
                            value: x,
                            exclusive: excl,
                        });
                    }
                    if let Some(x) = bound("maximum") {
                        let excl = v.get("exclusiveMaximum") == Some(&Value::Bool(true));
                        n.max = Some(Bound {
                            value: x,
                            exclusive: excl,
                        });
                    }
                    if let Some(x) = bound("exclusiveMinimum") {
                        n.min = tighter_lower(
                            &n.min,
                            &Some(Bound {
                                value: x,
                                exclusive: true,
                            }),
                        );
                    }
                    if let Some(x) = bound("exclusiveMaximum") {
                        n.max = tighter_upper(
                            &n.max,
                            &Some(Bound {
                                value: x,
                                exclusive: true,
                            }),
                        );
                    }
                    if let Some(x) = bound("multipleOf") {
                        // The specification requires a number strictly greater than 0; 0 would
                        // make every number (or none) a multiple.
                        if !x.parse::<f64>().is_ok_and(|f| f > 0.0) {
                            return Err(SchemaError::new(
                                format!("{at}/multipleOf"),
                                "multipleOf must be greater than 0",
                            ));
                        }
                        n.multiple_of.insert(x);
                    }
                    out.push(Atom::Num(n));
                }
                "string" => {
                    let mut s = StrA {
                        enum_vals: vals_of(&Value::is_string).map(|e| {
                            e.iter()
                                .filter_map(|c| serde_json::from_str::<String>(c).ok())
                                .collect()
                        }),
                        ..Default::default()
                    };
                    s.core.min_len = num("minLength")?.unwrap_or(0);
                    s.core.max_len = num("maxLength")?;
                    if let Some(p) = v.get("pattern") {
                        let p = p.as_str().ok_or_else(|| {
                            SchemaError::new(format!("{at}/pattern"), "pattern must be a string")
                        })?;
                        crate::strings::check_pattern(p)
                            .map_err(|m| SchemaError::new(format!("{at}/pattern"), m))?;
                        s.core.patterns.insert(p.to_string());
                    }
                    out.push(Atom::Str(s));
                }
                "array" => {
                    let mut a = ArrA::default();
                    if ["items", "additionalItems", "prefixItems"]
                        .iter()
                        .any(|k| v.get(*k).is_some())
                    {
                        a.parts.push(id);
                    }
                    a.min_items = min_count("minItems")?;
                    a.max_items = num("maxItems")?;
                    a.unique = v.get("uniqueItems") == Some(&Value::Bool(true));
                    a.enum_vals = vals_of(&Value::is_array);
                    out.push(Atom::Arr(a));
                }
                "object" => {
                    let mut o = ObjA::default();
                    if ["properties", "patternProperties", "additionalProperties"]
                        .iter()
                        .any(|k| v.get(*k).is_some())
                    {
                        if let Some(pp) = v.get("patternProperties").and_then(Value::as_object) {
                            for p in pp.keys() {
                                crate::strings::check_pattern(p).map_err(|m| {
                                    SchemaError::new(format!("{at}/patternProperties"), m)
                                })?;
                            }
                        }
                        o.parts.push(id);
                    }
                    if let Some(Value::Array(r)) = v.get("required") {
                        o.required
                            .extend(r.iter().filter_map(Value::as_str).map(str::to_string));
                    }
                    o.min_props = min_count("minProperties")?;
                    o.max_props = num("maxProperties")?;
                    for kw in ["dependencies", "dependentRequired"] {
                        if let Some(Value::Object(d)) = v.get(kw) {
                            for (k, dep) in d {
                                if let Value::Array(list) = dep {
                                    o.deps.entry(k.clone()).or_default().extend(
                                        list.iter().filter_map(Value::as_str).map(str::to_string),
                                    );
                                }
                            }
                        }
                    }
                    if v.get("propertyNames").is_some() {
                        if let Some(c) = self.store.child(id, &["propertyNames"]) {
                            o.names.push(c);
                        }
                    }
                    o.enum_vals = vals_of(&Value::is_object);
                    out.push(Atom::Obj(o));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// `a ∧ ¬(b1 ∨ b2 ∨ ...)` for every atom of `a`.
    fn subtract_all(
        &mut self,
        a: Vec<Atom>,
        b: &[Atom],
        at: SchemaId,
    ) -> Result<Vec<Atom>, SchemaError> {
        let mut cur = a;
        for bj in b {
            let mut next = Vec::new();
            for ai in &cur {
                if ai.kind() != bj.kind() {
                    next.push(ai.clone());
                    continue;
                }
                for r in self.subtract(ai, bj, at)? {
                    self.spend(1 + next.len(), at)?;
                    if self.viable(&r)? && !next.contains(&r) {
                        next.push(r);
                    }
                }
            }
            self.check_size(next.len(), at)?;
            cur = next;
        }
        Ok(cur)
    }

    /// `a ∧ ¬b` for two atoms of the same type, as a disjunction of atoms.
    fn subtract(&mut self, a: &Atom, b: &Atom, at: SchemaId) -> Result<Vec<Atom>, SchemaError> {
        // Disjoint already: nothing to remove.
        if let Some(c) = conjoin(a, b) {
            if !self.viable(&c)? {
                return Ok(vec![a.clone()]);
            }
        }
        Ok(match (a, b) {
            (Atom::Null, Atom::Null) => vec![],
            (Atom::Bool(x), Atom::Bool(y)) => vec![Atom::Bool(x & !y)],
            (Atom::Num(x), Atom::Num(y)) => {
                if let Some(vals) = &y.enum_vals {
                    let mut r = x.clone();
                    r.excluded.extend(vals.iter().cloned());
                    if let Some(e) = &mut r.enum_vals {
                        e.retain(|v| !vals.contains(v));
                    }
                    vec![Atom::Num(r)]
                } else if y.min.is_none()
                    && y.max.is_none()
                    && y.multiple_of.is_empty()
                    && (!y.integer || x.integer)
                {
                    vec![]
                } else if let Some(e) = &x.enum_vals {
                    // A finite set minus a range: filter the values.
                    let keep: Vec<String> = e.iter().filter(|v| !num_in(y, v)).cloned().collect();
                    let mut r = x.clone();
                    r.enum_vals = Some(keep);
                    vec![Atom::Num(r)]
                } else {
                    self.warn(
                        at,
                        "`not`/`oneOf` exclusion of a numeric range is not enforced",
                    );
                    vec![a.clone()]
                }
            }
            (Atom::Str(x), Atom::Str(y)) => {
                if let Some(vals) = &y.enum_vals {
                    let vals: Vec<String> = vals
                        .iter()
                        .filter(|v| y.core.matches(v) && !y.excluded_values.contains(*v))
                        .cloned()
                        .collect();
                    let mut r = x.clone();
                    if let Some(e) = &mut r.enum_vals {
                        e.retain(|v| !vals.contains(v));
                    } else {
                        r.excluded_values.extend(vals);
                    }
                    vec![Atom::Str(r)]
                } else if let Some(e) = &x.enum_vals {
                    let keep: Vec<String> = e.iter().filter(|v| !y.matches(v)).cloned().collect();
                    let mut r = x.clone();
                    r.enum_vals = Some(keep);
                    vec![Atom::Str(r)]
                } else if y.core == StrCore::default()
                    && y.excluded_specs.is_empty()
                    && y.excluded_values.is_empty()
                {
                    vec![]
                } else {
                    // ¬(C ∧ ¬E) ⊇ ¬C: excluding the positive core alone is stricter, hence sound.
                    let mut r = x.clone();
                    r.excluded_specs.insert(y.core.clone());
                    vec![Atom::Str(r)]
                }
            }
            (Atom::Arr(_), Atom::Arr(y)) => {
                if y.parts.is_empty()
                    && y.min_items == 0
                    && y.max_items.is_none()
                    && !y.unique
                    && y.enum_vals.is_none()
                {
                    vec![]
                } else {
                    self.warn(
                        at,
                        "`not`/`oneOf` exclusion between array shapes is not enforced",
                    );
                    vec![a.clone()]
                }
            }
            (Atom::Obj(x), Atom::Obj(y)) => self.subtract_obj(x, y, at)?,
            _ => vec![a.clone()],
        })
    }

    fn subtract_obj(&mut self, x: &ObjA, y: &ObjA, at: SchemaId) -> Result<Vec<Atom>, SchemaError> {
        // Supported form of y: `required` plus `properties` (no additional/pattern properties,
        // counts, dependencies or exclusions). Then ¬y = (some required key absent) or
        // (some constrained key present with a value that violates its constraint).
        let mut constrained: Vec<(String, Vec<Term>)> = Vec::new();
        for &p in &y.parts {
            let v = self.store.get(p).clone();
            if v.get("patternProperties").is_some() || v.get("additionalProperties").is_some() {
                self.warn(at, "`not`/`oneOf` exclusion of an object with additional/pattern properties is not enforced");
                return Ok(vec![Atom::Obj(x.clone())]);
            }
            if let Some(props) = v.get("properties").and_then(Value::as_object) {
                for k in props.keys() {
                    if let Some(c) = self.store.child(p, &["properties", k]) {
                        match constrained.iter_mut().find(|(n, _)| n == k) {
                            Some((_, t)) => t.push((c, false)),
                            None => constrained.push((k.clone(), vec![(c, false)])),
                        }
                    }
                }
            }
        }
        for (k, terms) in &y.extra {
            match constrained.iter_mut().find(|(n, _)| n == k) {
                Some((_, t)) => t.extend(terms.iter().copied()),
                None => constrained.push((k.clone(), terms.clone())),
            }
        }
        if !y.absent.is_empty()
            || !y.forbid.is_empty()
            || !y.deps.is_empty()
            || y.min_props > 0
            || y.max_props.is_some()
            || !y.names.is_empty()
            || y.enum_vals.is_some()
        {
            self.warn(
                at,
                "`not`/`oneOf` exclusion of this object shape is not enforced",
            );
            return Ok(vec![Atom::Obj(x.clone())]);
        }
        let mut out = Vec::new();
        // Keys whose constraint is trivially true cannot be violated.
        let mut violable = Vec::new();
        for (k, terms) in constrained {
            let always = terms
                .iter()
                .all(|&(t, neg)| !neg && self.store.get(t) == &Value::Bool(true))
                || terms.iter().all(|&(t, neg)| {
                    !neg && self.store.get(t).as_object().is_some_and(|m| m.is_empty())
                });
            if !always {
                violable.push((k, terms));
            }
        }
        if y.required.len() > 1 && violable.is_empty() {
            let mut r = x.clone();
            r.forbid.insert(y.required.iter().cloned().collect());
            out.push(Atom::Obj(r));
            return Ok(out);
        }
        for k in &y.required {
            let mut r = x.clone();
            r.absent.insert(k.clone());
            out.push(Atom::Obj(r));
        }
        for (k, terms) in violable {
            for (t, neg) in terms {
                let mut r = x.clone();
                r.required.insert(k.clone());
                let e = r.extra.entry(k.clone()).or_default();
                e.push((t, !neg));
                e.sort();
                e.dedup();
                out.push(Atom::Obj(r));
            }
        }
        Ok(out)
    }
}

/// Whether the number with JSON text `v` lies in the numeric atom's range (ignoring enum).
fn num_in(n: &NumA, v: &str) -> bool {
    let Ok(f) = v.parse::<f64>() else {
        return false;
    };
    if n.integer && f.fract() != 0.0 {
        return false;
    }
    if let Some(lo) = &n.min {
        let l = lo.as_f64();
        if f < l || (lo.exclusive && f == l) {
            return false;
        }
    }
    if let Some(hi) = &n.max {
        let h = hi.as_f64();
        if f > h || (hi.exclusive && f == h) {
            return false;
        }
    }
    true
}
