//! The checks on an object's presence header (its list of optional keys): which named
//! properties a list makes present, and whether a partial list can still be completed to a
//! key set that satisfies the object's dependencies, exclusions and property counts. The
//! encoder checks whole lists, the machine every prefix.

use super::ir::{Bits, ObjSpec};
use super::Graph;

/// Header constraints of an object's optional-key list. `sel` holds optional indices.
pub(crate) fn header_present(o: &ObjSpec, sel: &Bits) -> Bits {
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
