//! The reference mask: every id stepped on a full copy of the machine. Slow, obviously right;
//! the fast paths of `fill_allowed` are tested against it.

use super::*;

impl Matcher {
    /// Reference mask: every id's expansion stepped on a full copy of the machine, no tables,
    /// no walk. For tests of `fill_allowed` (about 1,000 times slower).
    pub fn fill_allowed_by_simulation(&self, out: &mut [bool]) {
        out.fill(false);
        let v = self.src.vocab();
        if self.ended {
            return;
        }
        if self.machine.is_done() {
            if let Some(x) = out.get_mut(v.eos_id() as usize) {
                *x = true;
            }
            return;
        }
        for id in 0..v.pad_id().min(out.len() as u32) {
            let one = [id];
            let e = if id < v.base_size() {
                &one[..]
            } else {
                let Some(e) = v.expansion(id) else { continue };
                e
            };
            let mut m = self.machine.clone();
            out[id as usize] = !e.is_empty()
                && e.iter()
                    .all(|&b| b != crate::base::FALLBACK && !m.is_done() && m.step(b).is_ok());
        }
    }

    /// Mask over trained ids `[first, end)` for a constrained string on top: an id is allowed
    /// when its bytes keep the string completable and, if it ends the string, the string may end.
    /// Exclusions are ignored here (the caller applies them to exact values).
    pub(super) fn simulate_string(
        v: &Vocab,
        m: &Machine,
        top: &crate::machine::StringTop,
        first: usize,
        end: usize,
    ) -> Vec<bool> {
        let spec = &top.spec;
        let no_excl = crate::machine::StringTop {
            spec: top.spec.clone(),
            st: top.st.clone(),
            buf: top.buf.clone(),
            extra: Vec::new(),
            context_end_ok: top.context_end_ok,
            continuing: top.continuing,
            key_node: top.key_node,
        };
        let mut mask = vec![false; end - first];
        let mut buf = top.buf.clone();
        for id in first as u32..end as u32 {
            let Some(e) = v.expansion(id) else { continue };
            let (body, ends) = match e.split_last() {
                Some((&last, body)) if last == crate::base::STR_END => (body, true),
                _ => (e, false),
            };
            if body.is_empty() || !body.iter().all(|&b| b < 256) {
                continue;
            }
            let mut st = top.st.clone();
            buf.truncate(top.buf.len());
            let mut ok = true;
            for &b in body {
                if !spec.step(&mut st, b as u8) {
                    ok = false;
                    break;
                }
                buf.push(b as u8);
            }
            if !ok {
                continue;
            }
            let allowed = if ends {
                m.string_end_ok(&no_excl, &st, &buf)
            } else {
                spec.live_ignoring_exclusions(&st)
            };
            mask[id as usize - first] = allowed;
        }
        mask
    }
}
