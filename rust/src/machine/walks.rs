//! What the matcher's walks over trained ids need from the machine: cheap copies of the top
//! frames, bringing back deeper frames on demand, and normalised cache keys of the top frames.

use super::*;

/// Top frames of a machine, normalised, as a hashable key: see [`Machine::cache_key`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameKey(Vec<Frame>);

impl Machine {
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

    pub(super) fn normalised(
        &self,
        f: &Frame,
        spellable: &impl Fn(&str) -> bool,
        drop_used: bool,
    ) -> Frame {
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
}
