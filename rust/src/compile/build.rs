//! Build the codec graph from normalised atoms, then analyse it: the cheapest complete value of
//! every node (which also finds the nodes with no finite instance), and where arrays need item
//! markers.

use super::atoms::{Atom, Normalizer, Term};
use super::ir::{
    ArrSpec, Bits, Graph, MapSpec, Node, NodeId, NumSpec, ObjSpec, Prop, PropIndex, INF,
};
use super::store::{RefSiblings, SchemaId, Store};
use crate::error::SchemaError;
use crate::strings::StrSpec;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// [`Graph::types`]: unions take the union of their branches (to a fixpoint: unions may nest).
fn node_types(nodes: &[Node]) -> Vec<u8> {
    // A constant's type is the first byte of its canonical JSON text.
    let const_type = |c: &str| match c.as_bytes().first() {
        Some(b'n') => 1,
        Some(b't' | b'f') => 2,
        Some(b'"') => 8,
        Some(b'[') => 16,
        Some(b'{') => 32,
        _ => 4,
    };
    let mut types: Vec<u8> = nodes
        .iter()
        .map(|n| match n {
            Node::Any => 63,
            Node::Never | Node::Union(_) => 0,
            Node::Const(c) => const_type(c),
            Node::Enum(vals) => vals.iter().fold(0, |t, c| t | const_type(c)),
            Node::Bool => 2,
            Node::Num(_) => 4,
            Node::Str(_) => 8,
            Node::Arr(_) => 16,
            Node::Obj(_) => 32,
        })
        .collect();
    loop {
        let mut changed = false;
        for (i, n) in nodes.iter().enumerate() {
            if let Node::Union(bs) = n {
                let t = bs.iter().fold(types[i], |t, &b| t | types[b as usize]);
                changed |= t != types[i];
                types[i] = t;
            }
        }
        if !changed {
            return types;
        }
    }
}

struct Builder<'a> {
    norm: Normalizer<'a>,
    nodes: Vec<Node>,
    by_conj: HashMap<Vec<Term>, NodeId>,
    by_atom: HashMap<Atom, NodeId>,
}

const MAX_MAP_PATTERNS: usize = 10;

pub fn compile(schema: &Value, registry: &[(String, Value)]) -> Result<Graph, SchemaError> {
    compile_with(schema, registry, RefSiblings::ByDraft)
}

/// [`compile`], reading `$ref` siblings as `ref_siblings` says (a tokenizer file's choice).
pub fn compile_with(
    schema: &Value,
    registry: &[(String, Value)],
    ref_siblings: RefSiblings,
) -> Result<Graph, SchemaError> {
    let mut store = Store::new(schema.clone(), registry, ref_siblings)?;
    let root_schema = store.root();
    let mut b = Builder {
        norm: Normalizer::new(&mut store),
        nodes: Vec::new(),
        by_conj: HashMap::new(),
        by_atom: HashMap::new(),
    };
    let root = b.node_for(vec![(root_schema, false)])?;
    let warnings: Vec<String> = b.norm.warnings.iter().cloned().collect();
    let mut g = Graph {
        nodes: b.nodes,
        root,
        cost: Vec::new(),
        types: Vec::new(),
        sel_count: 2,
        warnings,
    };
    analyse(&mut g);
    g.types = node_types(&g.nodes);
    if !g.productive(g.root) {
        return Err(SchemaError::new("", "the schema admits no finite document"));
    }
    Ok(g)
}

impl Builder<'_> {
    fn reserve(&mut self) -> NodeId {
        self.nodes.push(Node::Never);
        (self.nodes.len() - 1) as NodeId
    }

    fn node_for(&mut self, conj: Vec<Term>) -> Result<NodeId, SchemaError> {
        let mut key = conj;
        key.sort();
        key.dedup();
        if let Some(&id) = self.by_conj.get(&key) {
            return Ok(id);
        }
        let atoms = self.norm.atoms_of(&key)?;
        if atoms.len() == 1 {
            // Share the node with every conjunction that normalises to the same atom.
            let id = self.node_for_atom(&atoms[0])?;
            self.by_conj.insert(key, id);
            return Ok(id);
        }
        let id = self.reserve();
        self.by_conj.insert(key, id);
        let node = self.build_atoms(&atoms)?;
        self.nodes[id as usize] = node;
        Ok(id)
    }

    fn node_for_atom(&mut self, a: &Atom) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.by_atom.get(a) {
            return Ok(id);
        }
        let id = self.reserve();
        self.by_atom.insert(a.clone(), id);
        let node = self.build_atom(a)?;
        self.nodes[id as usize] = node;
        Ok(id)
    }

    fn build_atoms(&mut self, atoms: &[Atom]) -> Result<Node, SchemaError> {
        if atoms.is_empty() {
            return Ok(Node::Never);
        }
        if atoms.len() == 6 && atoms.iter().all(Atom::is_top) {
            return Ok(Node::Any);
        }
        let mut branches = Vec::new();
        for a in atoms {
            branches.push(self.node_for_atom(a)?);
        }
        // A union of fixed values is one enum: one token instead of two.
        let mut vals = Vec::new();
        let all_fixed = branches.iter().all(|&b| match &self.nodes[b as usize] {
            Node::Const(v) => {
                vals.push(v.clone());
                true
            }
            Node::Enum(vs) => {
                vals.extend(vs.iter().cloned());
                true
            }
            _ => false,
        });
        if all_fixed {
            let mut seen = BTreeSet::new();
            vals.retain(|v| seen.insert(v.clone()));
            return Ok(if vals.len() == 1 {
                Node::Const(vals.remove(0))
            } else {
                Node::Enum(vals)
            });
        }
        Ok(Node::Union(branches))
    }

    fn build_atom(&mut self, a: &Atom) -> Result<Node, SchemaError> {
        Ok(match a {
            Atom::Null => Node::Const("null".into()),
            Atom::Bool(3) => Node::Bool,
            Atom::Bool(1) => Node::Const("false".into()),
            Atom::Bool(2) => Node::Const("true".into()),
            Atom::Bool(_) => Node::Never,
            Atom::Num(n) => {
                let spec = NumSpec {
                    integer: n.integer,
                    min: n.min.as_ref().map(|b| (b.as_f64(), b.exclusive)),
                    max: n.max.as_ref().map(|b| (b.as_f64(), b.exclusive)),
                    multiple_of: n
                        .multiple_of
                        .iter()
                        .filter_map(|m| m.parse().ok())
                        .collect(),
                    excluded: n.excluded.iter().cloned().collect(),
                };
                match &n.enum_vals {
                    Some(vals) => fixed(
                        vals.iter()
                            .filter(|v| spec.accepts_value(v))
                            .cloned()
                            .collect(),
                    ),
                    None => Node::Num(spec),
                }
            }
            Atom::Str(s) => match &s.enum_vals {
                Some(vals) => fixed(
                    vals.iter()
                        .filter(|v| s.matches(v))
                        .map(|v| serde_json::to_string(v).unwrap_or_default())
                        .collect(),
                ),
                None => {
                    let must: Vec<String> = s.core.patterns.iter().cloned().collect();
                    let neg: Vec<(u64, Option<u64>, Vec<String>)> = s
                        .excluded_specs
                        .iter()
                        .map(|c| (c.min_len, c.max_len, c.patterns.iter().cloned().collect()))
                        .collect();
                    let spec = StrSpec::new(
                        s.core.min_len,
                        s.core.max_len,
                        &must,
                        &neg,
                        s.excluded_values.iter().cloned().collect(),
                        None,
                    )
                    .map_err(|m| SchemaError::new("", m))?;
                    Node::Str(Arc::new(spec))
                }
            },
            Atom::Arr(x) => {
                if let Some(vals) = &x.enum_vals {
                    return Ok(fixed(vals.clone()));
                }
                self.build_array(x)?
            }
            Atom::Obj(o) => {
                if let Some(vals) = &o.enum_vals {
                    return Ok(fixed(vals.clone()));
                }
                self.build_object(o)?
            }
        })
    }

    fn build_array(&mut self, x: &super::atoms::ArrA) -> Result<Node, SchemaError> {
        // Per part: the tuple positions and the schema of the items after them.
        let mut tuples: Vec<(Vec<SchemaId>, Option<SchemaId>)> = Vec::new();
        for &p in &x.parts {
            let v = self.norm.store.get(p).clone();
            let store = &mut *self.norm.store;
            if let Some(Value::Array(pi)) = v.get("prefixItems") {
                let t = (0..pi.len())
                    .filter_map(|i| store.child(p, &["prefixItems", &i.to_string()]))
                    .collect();
                let rest = v.get("items").and_then(|_| store.child(p, &["items"]));
                tuples.push((t, rest));
            } else if let Some(Value::Array(items)) = v.get("items") {
                let t = (0..items.len())
                    .filter_map(|i| store.child(p, &["items", &i.to_string()]))
                    .collect();
                let rest = v
                    .get("additionalItems")
                    .and_then(|_| store.child(p, &["additionalItems"]));
                tuples.push((t, rest));
            } else {
                let rest = v.get("items").and_then(|_| store.child(p, &["items"]));
                tuples.push((Vec::new(), rest));
            }
        }
        let prefix_len = tuples.iter().map(|t| t.0.len()).max().unwrap_or(0);
        let mut prefix = Vec::new();
        for i in 0..prefix_len {
            let conj: Vec<Term> = tuples
                .iter()
                .filter_map(|(t, rest)| t.get(i).copied().or(*rest))
                .map(|s| (s, false))
                .collect();
            prefix.push(self.node_for(conj)?);
        }
        let rest: Vec<Term> = tuples
            .iter()
            .filter_map(|(_, r)| *r)
            .map(|s| (s, false))
            .collect();
        let items = if self.norm.satisfiable(&rest)? {
            Some(self.node_for(rest)?)
        } else {
            None
        };
        let mut max_items = x.max_items;
        if items.is_none() {
            max_items = Some(max_items.map_or(prefix_len as u64, |m| m.min(prefix_len as u64)));
        }
        Ok(Node::Arr(ArrSpec {
            prefix,
            items,
            min_items: x.min_items,
            max_items,
            unique: x.unique,
            marker: false,
        }))
    }

    fn build_object(&mut self, o: &super::atoms::ObjA) -> Result<Node, SchemaError> {
        // propertyNames: every key, named or not, must satisfy it.
        let names_atoms = if o.names.is_empty() {
            None
        } else {
            let conj: Vec<Term> = o.names.iter().map(|&s| (s, false)).collect();
            let atoms = self.norm.atoms_of(&conj)?;
            Some(
                atoms
                    .into_iter()
                    .find_map(|a| if let Atom::Str(s) = a { Some(s) } else { None }),
            )
        };
        let name_ok = |k: &str| match &names_atoms {
            None => true,
            Some(None) => false,
            Some(Some(s)) => s.matches(k),
        };
        // Named keys, in canonical order: schema order of `properties` across the parts, then
        // keys that only appear in `required`/conditions.
        let mut names: Vec<String> = Vec::new();
        for &p in &o.parts {
            if let Some(props) = self
                .norm
                .store
                .get(p)
                .get("properties")
                .and_then(Value::as_object)
            {
                for k in props.keys() {
                    if !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
        }
        let extra_keys = o
            .required
            .iter()
            .chain(o.extra.keys())
            .chain(o.deps.keys())
            .chain(o.deps.values().flatten())
            .chain(o.forbid.iter().flatten());
        for k in extra_keys {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
        let mut absent: BTreeSet<String> = o.absent.clone();
        let mut props: Vec<Prop> = Vec::new();
        for k in &names {
            if absent.contains(k) {
                continue;
            }
            let conj = self.norm.key_conj(o, k);
            let required = o.required.contains(k);
            let ok = name_ok(k) && self.norm.satisfiable(&conj)?;
            if !ok {
                if required {
                    return Ok(Node::Never);
                }
                absent.insert(k.clone());
                continue;
            }
            let node = self.node_for(conj)?;
            props.push(Prop {
                name_json: crate::json::string_literal(k),
                name: k.clone(),
                node,
                required,
            });
        }
        // A key whose dependency can never be present can never be present itself.
        loop {
            let mut changed = false;
            for (k, ds) in &o.deps {
                if ds.iter().any(|d| absent.contains(d)) && !absent.contains(k) {
                    if o.required.contains(k) {
                        return Ok(Node::Never);
                    }
                    absent.insert(k.clone());
                    props.retain(|p| &p.name != k);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let index = |k: &str, props: &[Prop]| props.iter().position(|p| p.name == k);
        let forbid: Vec<Vec<usize>> = o
            .forbid
            .iter()
            .filter_map(|g| {
                g.iter()
                    .map(|k| index(k, &props))
                    .collect::<Option<Vec<usize>>>()
            })
            .collect();
        let deps: Vec<(usize, Vec<usize>)> = o
            .deps
            .iter()
            .filter_map(|(k, ds)| {
                let ki = index(k, &props)?;
                let di: Vec<usize> = ds.iter().filter_map(|d| index(d, &props)).collect();
                Some((ki, di))
            })
            .collect();
        let optional: Vec<usize> = (0..props.len()).filter(|&i| !props[i].required).collect();
        let map = self.build_map(o, &names, &names_atoms)?;
        Ok(Node::Obj(ObjSpec {
            index: PropIndex::new(&props),
            n_required: props.iter().filter(|p| p.required).count(),
            required_bits: {
                let mut b = Bits::default();
                (0..props.len())
                    .filter(|&i| props[i].required)
                    .for_each(|i| b.set(i));
                b
            },
            props,
            optional,
            map,
            min_props: o.min_props,
            max_props: o.max_props,
            forbid,
            deps,
        }))
    }

    fn build_map(
        &mut self,
        o: &super::atoms::ObjA,
        named: &[String],
        names_atoms: &Option<Option<super::atoms::StrA>>,
    ) -> Result<Option<MapSpec>, SchemaError> {
        if matches!(names_atoms, Some(None)) {
            return Ok(None);
        }
        // Distinct key patterns across the parts.
        let mut pats: Vec<String> = Vec::new();
        for &p in &o.parts {
            if let Some(pp) = self
                .norm
                .store
                .get(p)
                .get("patternProperties")
                .and_then(Value::as_object)
            {
                for k in pp.keys() {
                    if !pats.contains(k) {
                        pats.push(k.clone());
                    }
                }
            }
        }
        if pats.len() > MAX_MAP_PATTERNS {
            return Err(SchemaError::new(
                self.norm.store.describe(o.parts[0]),
                format!("more than {MAX_MAP_PATTERNS} patternProperties on one object"),
            ));
        }
        let mut entry = Vec::new();
        let mut ok = Vec::new();
        for bits in 0..(1usize << pats.len()) {
            let mut conj: Vec<Term> = Vec::new();
            for &p in &o.parts {
                let v = self.norm.store.get(p).clone();
                let mut matched = false;
                if let Some(pp) = v.get("patternProperties").and_then(Value::as_object) {
                    for k in pp.keys() {
                        let i = pats.iter().position(|x| x == k).unwrap_or(0);
                        if bits & (1 << i) != 0 {
                            matched = true;
                            if let Some(c) = self.norm.store.child(p, &["patternProperties", k]) {
                                conj.push((c, false));
                            }
                        }
                    }
                }
                if !matched && v.get("additionalProperties").is_some() {
                    if let Some(c) = self.norm.store.child(p, &["additionalProperties"]) {
                        conj.push((c, false));
                    }
                }
            }
            let sat = self.norm.satisfiable(&conj)?;
            ok.push(sat);
            entry.push(if sat {
                self.node_for(conj)?
            } else {
                self.reserve()
            });
        }
        if !ok.iter().any(|&b| b) {
            return Ok(None);
        }
        let (min_len, max_len, must, excl_names) = match names_atoms {
            Some(Some(s)) => (
                s.core.min_len,
                s.core.max_len,
                s.core.patterns.iter().cloned().collect::<Vec<_>>(),
                s.excluded_values.iter().cloned().collect::<Vec<_>>(),
            ),
            _ => (0, None, Vec::new(), Vec::new()),
        };
        let mut excluded: Vec<String> = named.to_vec();
        excluded.extend(o.absent.iter().cloned());
        excluded.extend(excl_names);
        let key = StrSpec::new(min_len, max_len, &must, &[], excluded, Some((pats, ok)))
            .map_err(|m| SchemaError::new("", m))?;
        Ok(Some(MapSpec {
            key: Arc::new(key),
            entry,
        }))
    }
}

fn fixed(mut vals: Vec<String>) -> Node {
    match vals.len() {
        0 => Node::Never,
        1 => Node::Const(vals.remove(0)),
        _ => Node::Enum(vals),
    }
}

/// The shortest number text satisfying `spec`, if a simple candidate does.
pub fn shortest_number(spec: &NumSpec) -> Option<String> {
    let mut cands: Vec<String> = ["0", "1", "-1", "2", "10", "0.5", "-0.5"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for b in [spec.min, spec.max].into_iter().flatten() {
        let v = b.0;
        for c in [v.ceil(), v.floor(), v.ceil() + 1.0, v.floor() - 1.0] {
            if c.is_finite() && c.abs() < 1e15 {
                cands.push(format!("{}", c as i64));
            }
        }
        if !spec.integer {
            cands.push(format!("{v:?}"));
        }
    }
    if let (Some(lo), Some(hi)) = (spec.min, spec.max) {
        cands.push(format!("{:?}", (lo.0 + hi.0) / 2.0));
    }
    for &m in &spec.multiple_of {
        cands.push(format!("{}", m as i64));
        cands.push(format!("{m:?}"));
    }
    cands.sort_by_key(|c| c.len());
    cands
        .into_iter()
        .find(|c| crate::numbers::number_grammar_ok(c, spec.integer) && spec.accepts_value(c))
}

fn analyse(g: &mut Graph) {
    let n = g.nodes.len();
    let mut cost = vec![INF; n];
    // Costs that do not depend on other nodes first.
    let mut static_cost = vec![None; n];
    for (i, node) in g.nodes.iter().enumerate() {
        static_cost[i] = match node {
            Node::Any => Some(1),
            Node::Never => Some(INF),
            Node::Const(_) => Some(0),
            Node::Enum(_) | Node::Bool => Some(1),
            Node::Str(s) => Some(
                s.search(&s.start(), &[])
                    .map_or(INF, |b| b.len() as u64 + 1),
            ),
            Node::Num(spec) => Some(shortest_number(spec).map_or(INF, |t| t.len() as u64 + 1)),
            _ => None,
        };
    }
    let add = |a: u64, b: u64| {
        if a >= INF || b >= INF {
            INF
        } else {
            (a + b).min(INF)
        }
    };
    let mul = |k: u64, each: u64| {
        if k == 0 {
            0
        } else if each >= INF {
            INF
        } else {
            k.saturating_mul(each).min(INF)
        }
    };
    loop {
        let mut changed = false;
        for i in 0..n {
            let c = match (&static_cost[i], &g.nodes[i]) {
                (Some(c), _) => *c,
                (None, Node::Union(bs)) => {
                    add(1, bs.iter().map(|&b| cost[b as usize]).min().unwrap_or(INF))
                }
                (None, Node::Arr(a)) => {
                    // Arithmetic, not a loop over `min_items` (a loop never ended for 1e18):
                    // the prefix items one by one, then the rest at the items' cost each.
                    let mut c = 1;
                    let in_prefix = a.min_items.min(a.prefix.len() as u64);
                    for &it in &a.prefix[..in_prefix as usize] {
                        c = add(c, cost[it as usize]);
                    }
                    let rest = a.min_items - in_prefix;
                    if rest > 0 {
                        let each = a.items.map_or(INF, |it| cost[it as usize]);
                        c = add(c, mul(rest, each));
                    }
                    c
                }
                (None, Node::Obj(o)) => {
                    let mut c = if o.optional.is_empty() { 0 } else { 1 };
                    if o.map.is_some() {
                        c = add(c, 1);
                    }
                    let mut count = 0u64;
                    for p in o.props.iter().filter(|p| p.required) {
                        c = add(c, cost[p.node as usize]);
                        count += 1;
                    }
                    if count < o.min_props {
                        // Cheapest extra members: optional properties, else map entries.
                        let mut extras: Vec<u64> = o
                            .optional
                            .iter()
                            .map(|&j| add(1, cost[o.props[j].node as usize]))
                            .collect();
                        extras.sort();
                        let entry = o
                            .map
                            .as_ref()
                            .and_then(|m| m.entry.iter().map(|&e| cost[e as usize]).min())
                            .map_or(INF, |e| add(2, e));
                        // The cheapest extras in order (sorted), then map entries for the rest:
                        // arithmetic again, as `min_props` may be large.
                        let need = o.min_props - count;
                        let mut taken = 0u64;
                        for &x in extras.iter().take_while(|&&x| x <= entry) {
                            if taken == need {
                                break;
                            }
                            c = add(c, x);
                            taken += 1;
                        }
                        c = add(c, mul(need - taken, entry));
                    }
                    c
                }
                _ => INF,
            };
            if c < cost[i] {
                cost[i] = c;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    g.cost = cost;
    // Item markers, and the number of SEL ids.
    let mut sel = 2u32;
    for i in 0..n {
        let m = match &g.nodes[i] {
            Node::Enum(v) => v.len(),
            Node::Union(b) => b.len(),
            Node::Obj(o) => o.optional.len(),
            _ => 0,
        };
        sel = sel.max(m as u32);
        if let Node::Arr(a) = &g.nodes[i] {
            let risky = a
                .prefix
                .iter()
                .chain(a.items.iter())
                .any(|&it| may_be_empty_or_arr_end(g, it, &mut Vec::new()));
            if let Node::Arr(a) = &mut g.nodes[i] {
                a.marker = risky;
            }
        }
    }
    g.sel_count = sel;
}

/// Whether a value of `n` could be spelled with no tokens or begin with `ARR_END`.
fn may_be_empty_or_arr_end(g: &Graph, n: NodeId, stack: &mut Vec<NodeId>) -> bool {
    if stack.contains(&n) {
        return true;
    }
    match &g.nodes[n as usize] {
        Node::Const(_) | Node::Arr(_) => true,
        Node::Obj(o) => {
            if !o.optional.is_empty() {
                return false;
            }
            match o.props.first() {
                Some(p) => {
                    stack.push(n);
                    let r = may_be_empty_or_arr_end(g, p.node, stack);
                    stack.pop();
                    r
                }
                None => o.map.is_none(),
            }
        }
        _ => false,
    }
}
