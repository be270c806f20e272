//! String constraints as automata: ECMA-262 `pattern`s compiled to byte-level DFAs, lengths in
//! code points, excluded values and excluded specs (from `not` / `oneOf` exclusivity), all
//! checked byte by byte. The same code validates whole strings (the encoder) and decides which
//! next byte keeps a partial string completable (the decoder and the matcher), so the two can
//! never disagree.

use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

/// A compiled `pattern`: an unanchored-search DFA (JSON Schema patterns match anywhere).
pub struct Pattern {
    pub source: String,
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl Pattern {
    /// Step one byte. Returns the next state.
    #[inline]
    fn next(&self, s: StateID, b: u8) -> StateID {
        self.dfa.next_state(s, b)
    }
    #[inline]
    fn is_match(&self, s: StateID) -> bool {
        self.dfa.is_match_state(s)
    }
    #[inline]
    fn matches_at_end(&self, s: StateID) -> bool {
        self.dfa.is_match_state(self.dfa.next_eoi_state(s))
    }
    #[inline]
    fn is_dead(&self, s: StateID) -> bool {
        self.dfa.is_dead_state(s)
    }

    /// Whether the pattern matches somewhere in `s`.
    pub fn search(&self, s: &[u8]) -> bool {
        let mut st = self.start;
        for &b in s {
            st = self.next(st, b);
            if self.is_match(st) {
                return true;
            }
            if self.is_dead(st) {
                return false;
            }
        }
        self.matches_at_end(st)
    }
}

/// Translate an ECMA-262 regular expression into the syntax of `regex-syntax`, keeping ECMA
/// meanings where the two differ (`\d`, `\w` are ASCII; `.` excludes line terminators).
pub fn translate_ecma(p: &str) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    return Err("pattern ends with a lone backslash".into());
                };
                i += 2;
                match n {
                    'd' => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                    'D' => out.push_str(if in_class {
                        r"\x00-/:-\x{10FFFF}"
                    } else {
                        "[^0-9]"
                    }),
                    'w' => out.push_str(if in_class {
                        "0-9A-Za-z_"
                    } else {
                        "[0-9A-Za-z_]"
                    }),
                    'W' => out.push_str(if in_class {
                        r"\x00-/:-@\[-\^`\{-\x{10FFFF}"
                    } else {
                        "[^0-9A-Za-z_]"
                    }),
                    's' | 'S' | 'n' | 'r' | 't' | 'f' | 'v' => {
                        out.push('\\');
                        out.push(n);
                    }
                    'b' | 'B' => {
                        if in_class {
                            out.push_str(r"\x08");
                        } else {
                            return Err(
                                "word boundaries (\\b) are not supported in patterns".into()
                            );
                        }
                    }
                    'u' => {
                        let hex: String = chars.iter().skip(i).take(4).collect();
                        if hex.len() == 4 && hex.chars().all(|h| h.is_ascii_hexdigit()) {
                            out.push_str(&format!("\\x{{{hex}}}"));
                            i += 4;
                        } else if chars.get(i) == Some(&'{') {
                            out.push_str("\\x");
                        } else {
                            out.push('u');
                        }
                    }
                    'x' => out.push_str("\\x"),
                    'c' => return Err("control escapes (\\c) are not supported in patterns".into()),
                    '0' => out.push_str(r"\x00"),
                    '1'..='9' => return Err("back-references are not supported in patterns".into()),
                    'k' => return Err("named back-references are not supported in patterns".into()),
                    'p' | 'P' => {
                        out.push('\\');
                        out.push(n);
                    }
                    c if c.is_ascii_alphanumeric() => {
                        // ECMA (non-unicode mode) treats an unknown escape as the literal letter.
                        out.push(c);
                    }
                    c => {
                        // Escaped punctuation: escape it the way regex-syntax accepts.
                        if c.is_ascii() && !c.is_ascii_alphanumeric() {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                }
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // `[^]` is "any character" and `[]` "nothing" in ECMA.
                if chars.get(i + 1) == Some(&'^') && chars.get(i + 2) == Some(&']') {
                    out.truncate(out.len() - 1);
                    out.push_str(r"[\x00-\x{10FFFF}]");
                    in_class = false;
                    i += 3;
                    continue;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.truncate(out.len() - 1);
                    out.push_str(r"[^\x00-\x{10FFFF}]");
                    in_class = false;
                    i += 2;
                    continue;
                }
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            '[' => out.push_str(r"\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '.' if !in_class => out.push_str(r"[^\n\r\x{2028}\x{2029}]"),
            '{' if !in_class => {
                // A brace that does not start a valid quantifier is a literal in ECMA.
                let rest: String = chars[i + 1..].iter().collect();
                let is_quant = rest
                    .find('}')
                    .map(|e| {
                        let body = &rest[..e];
                        !body.is_empty()
                            && body.split(',').count() <= 2
                            && body.split(',').next().is_some_and(|a| {
                                !a.is_empty() && a.chars().all(|d| d.is_ascii_digit())
                            })
                            && body
                                .split(',')
                                .nth(1)
                                .is_none_or(|b| b.chars().all(|d| d.is_ascii_digit()))
                    })
                    .unwrap_or(false);
                if is_quant {
                    out.push('{');
                } else {
                    out.push_str(r"\{");
                }
            }
            '}' if !in_class => {
                // Closing a quantifier we passed through, or a literal.
                let open = out.rfind('{');
                let closed = out.rfind('}');
                let in_quant = match (open, closed) {
                    (Some(o), Some(cl)) => o > cl && !out[..o].ends_with('\\'),
                    (Some(o), None) => !out[..o].ends_with('\\'),
                    _ => false,
                };
                out.push_str(if in_quant { "}" } else { r"\}" });
            }
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => match chars.get(i + 2) {
                Some('=') | Some('!') => {
                    return Err("lookahead is not supported in patterns".into())
                }
                Some('<') if matches!(chars.get(i + 3), Some('=') | Some('!')) => {
                    return Err("lookbehind is not supported in patterns".into())
                }
                _ => out.push('('),
            },
            '&' | '~' | '-' if in_class => {
                // regex-syntax gives `&&`, `~~`, `--` class-set meanings: keep them literal.
                if chars.get(i + 1) == Some(&c) {
                    out.push('\\');
                    out.push(c);
                    out.push('\\');
                    out.push(c);
                    i += 2;
                    continue;
                }
                out.push(c);
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

fn build_pattern(source: &str) -> Result<Pattern, String> {
    let translated = translate_ecma(source)?;
    let dfa = dense::Builder::new()
        .syntax(
            regex_automata::util::syntax::Config::new()
                .unicode(true)
                .utf8(true),
        )
        .thompson(regex_automata::nfa::thompson::Config::new().utf8(true))
        .configure(
            dense::DFA::config()
                .match_kind(MatchKind::All)
                .start_kind(regex_automata::dfa::StartKind::Unanchored)
                .unicode_word_boundary(false)
                .dfa_size_limit(Some(64 << 20))
                .determinize_size_limit(Some(64 << 20)),
        )
        .build(&translated)
        .map_err(|e| format!("pattern {source:?} is not supported: {e}"))?;
    let start = dfa
        .start_state(&start::Config::new().anchored(Anchored::No))
        .map_err(|e| format!("pattern {source:?}: {e}"))?;
    Ok(Pattern {
        source: source.to_string(),
        dfa,
        start,
    })
}

/// Compiled patterns are shared process-wide: the same pattern recurs across schemas.
pub fn pattern(source: &str) -> Result<Arc<Pattern>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Pattern>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(p) = cache
        .lock()
        .map_err(|_| "pattern cache poisoned")?
        .get(source)
    {
        return Ok(p.clone());
    }
    let p = Arc::new(build_pattern(source)?);
    cache
        .lock()
        .map_err(|_| "pattern cache poisoned")?
        .insert(source.to_string(), p.clone());
    Ok(p)
}

pub fn check_pattern(source: &str) -> Result<(), String> {
    pattern(source).map(|_| ())
}

/// Whether `pattern` matches `s` (a pattern that does not compile matches nothing; schema
/// compilation reports it before this is ever reached).
pub fn pattern_matches(source: &str, s: &str) -> bool {
    pattern(source)
        .map(|p| p.search(s.as_bytes()))
        .unwrap_or(false)
}

pub fn char_len(s: &str) -> u64 {
    s.chars().count() as u64
}

// ---------------------------------------------------------------------------------------------
// UTF-8 validation as a DFA over bytes (the strings of a document are always valid UTF-8).

/// UTF-8 decoder states: 0 = between characters; others = inside a multi-byte character.
/// Returns `None` for a byte that can never continue a valid string here.
#[inline]
pub fn utf8_step(state: u8, b: u8) -> Option<u8> {
    // States: 0 start; 1 need 1 more (80..BF); 2 need 2 more; 3 need 3 more;
    // 4 after E0 (A0..BF then 1); 5 after ED (80..9F then 1); 6 after F0 (90..BF then 2);
    // 7 after F4 (80..8F then 2).
    match state {
        0 => match b {
            0x00..=0x7F => Some(0),
            0xC2..=0xDF => Some(1),
            0xE0 => Some(4),
            0xE1..=0xEC | 0xEE..=0xEF => Some(2),
            0xED => Some(5),
            0xF0 => Some(6),
            0xF1..=0xF3 => Some(3),
            0xF4 => Some(7),
            _ => None,
        },
        1 => (0x80..=0xBF).contains(&b).then_some(0),
        2 => (0x80..=0xBF).contains(&b).then_some(1),
        3 => (0x80..=0xBF).contains(&b).then_some(2),
        4 => (0xA0..=0xBF).contains(&b).then_some(1),
        5 => (0x80..=0x9F).contains(&b).then_some(1),
        6 => (0x90..=0xBF).contains(&b).then_some(2),
        7 => (0x80..=0x8F).contains(&b).then_some(2),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled string specs.

/// A negative spec: the string must NOT satisfy all of these at once.
pub struct NegSpec {
    pub min_len: u64,
    pub max_len: Option<u64>,
    /// Indices into [`StrSpec::dfas`].
    pub pats: Vec<usize>,
}

/// All the constraints on one string (or map key), compiled.
pub struct StrSpec {
    pub min_len: u64,
    pub max_len: Option<u64>,
    /// Every DFA the spec tracks: first the positive patterns, then the others.
    pub dfas: Vec<Arc<Pattern>>,
    /// Indices of the DFAs that must match.
    pub must: Vec<usize>,
    pub neg: Vec<NegSpec>,
    /// Exact values that are not allowed (sorted).
    pub excluded: Vec<String>,
    /// For map keys: the DFAs `combo_dfas` decide the entry schema; `combo_ok[bits]` says whether
    /// a key matching exactly that combination is allowed (bit i = `combo_dfas[i]` matched).
    pub combo_dfas: Vec<usize>,
    pub combo_ok: Vec<bool>,
    /// True when nothing but UTF-8 validity is required (the common case, kept fast).
    pub trivial: bool,
    /// Lengths above this behave the same for every constraint.
    len_cap: u64,
    live_memo: Mutex<HashMap<Vec<u32>, bool>>,
}

impl StrState {
    /// [`StrSpec::step_ascii_run`] (the state knows all it needs).
    #[inline]
    pub fn step_ascii_run(&mut self, n: usize) -> bool {
        if self.utf8 != 0 || !self.dfa.is_empty() {
            return false;
        }
        self.chars = self.chars.saturating_add(n as u64).min(self.cap);
        true
    }
}

/// Progress through one string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StrState {
    pub utf8: u8,
    pub chars: u64,
    /// The spec's `len_cap`: `chars` counts up to it and no further (kept here so that a run
    /// of ASCII bytes is stepped without looking the spec up).
    cap: u64,
    /// Current DFA states (index-aligned with `StrSpec::dfas`); `u32::MAX` = already matched.
    pub dfa: Vec<u32>,
}

const MATCHED: u32 = u32::MAX;

/// States a completion search visits before it gives up (and reads the string as dead).
const SEARCH_BOUND: usize = 200_000;

/// Printable ASCII in the order completions try it: letters, then digits, then the rest of
/// 0x20..0x7F. Shortest completions stay shortest; among equally short ones the first readable
/// choice wins (`"a"` rather than `" "`), so completed documents read as text.
pub const READABLE: [u8; 95] = {
    let mut out = [0u8; 95];
    let mut n = 0;
    let mut pass = 0;
    while pass < 4 {
        let mut b = 0x20u8;
        while b < 0x7F {
            let class = if b.is_ascii_lowercase() {
                0
            } else if b.is_ascii_uppercase() {
                1
            } else if b.is_ascii_digit() {
                2
            } else {
                3
            };
            if class == pass {
                out[n] = b;
                n += 1;
            }
            b += 1;
        }
        pass += 1;
    }
    out
};

impl StrSpec {
    pub fn new(
        min_len: u64,
        max_len: Option<u64>,
        must: &[String],
        neg: &[(u64, Option<u64>, Vec<String>)],
        mut excluded: Vec<String>,
        combo: Option<(Vec<String>, Vec<bool>)>,
    ) -> Result<StrSpec, String> {
        let mut dfas: Vec<Arc<Pattern>> = Vec::new();
        let idx = |src: &str, dfas: &mut Vec<Arc<Pattern>>| -> Result<usize, String> {
            if let Some(i) = dfas.iter().position(|d| d.source == src) {
                return Ok(i);
            }
            dfas.push(pattern(src)?);
            Ok(dfas.len() - 1)
        };
        let must_idx = must
            .iter()
            .map(|p| idx(p, &mut dfas))
            .collect::<Result<Vec<_>, _>>()?;
        let mut negs = Vec::new();
        let mut len_cap = min_len.max(max_len.unwrap_or(0));
        for (lo, hi, pats) in neg {
            let pats = pats
                .iter()
                .map(|p| idx(p, &mut dfas))
                .collect::<Result<Vec<_>, _>>()?;
            len_cap = len_cap.max(*lo).max(hi.unwrap_or(0));
            negs.push(NegSpec {
                min_len: *lo,
                max_len: *hi,
                pats,
            });
        }
        let (combo_dfas, combo_ok) = match combo {
            Some((pats, ok)) => (
                pats.iter()
                    .map(|p| idx(p, &mut dfas))
                    .collect::<Result<Vec<_>, _>>()?,
                ok,
            ),
            None => (Vec::new(), Vec::new()),
        };
        excluded.sort();
        excluded.dedup();
        let trivial = min_len == 0
            && max_len.is_none()
            && dfas.is_empty()
            && negs.is_empty()
            && excluded.is_empty()
            && (combo_ok.is_empty() || (combo_dfas.is_empty() && combo_ok == [true]));
        Ok(StrSpec {
            min_len,
            max_len,
            dfas,
            must: must_idx,
            neg: negs,
            excluded,
            combo_dfas,
            combo_ok,
            trivial,
            len_cap: len_cap + 1,
            live_memo: Mutex::new(HashMap::new()),
        })
    }

    pub fn start(&self) -> StrState {
        StrState {
            utf8: 0,
            chars: 0,
            cap: self.len_cap,
            dfa: self.dfas.iter().map(|d| d.start.as_u32()).collect(),
        }
    }

    /// Advance by one byte; `None` if the byte breaks UTF-8.
    #[inline]
    pub fn step(&self, st: &mut StrState, b: u8) -> bool {
        let Some(u) = utf8_step(st.utf8, b) else {
            return false;
        };
        st.utf8 = u;
        if u == 0 {
            st.chars = (st.chars + 1).min(self.len_cap);
        }
        for (i, s) in st.dfa.iter_mut().enumerate() {
            if *s != MATCHED {
                let d = &self.dfas[i];
                let n = d.next(StateID::new_unchecked(*s as usize), b);
                *s = if d.is_match(n) { MATCHED } else { n.as_u32() };
            }
        }
        true
    }

    /// Advance by `n` ASCII bytes when that needs no per-byte work (the decoder is between
    /// characters and no automaton runs): `false` when it does, and nothing changes then.
    #[inline]
    pub fn step_ascii_run(&self, st: &mut StrState, n: usize) -> bool {
        st.step_ascii_run(n)
    }

    fn matched_at_end(&self, st: &StrState, i: usize) -> bool {
        let s = st.dfa[i];
        s == MATCHED || self.dfas[i].matches_at_end(StateID::new_unchecked(s as usize))
    }

    /// Whether the string may end here, ignoring excluded values (checked by the caller, which
    /// knows the bytes).
    pub fn accepts_end(&self, st: &StrState) -> bool {
        if st.utf8 != 0 {
            return false;
        }
        if self.trivial {
            return true;
        }
        let n = st.chars;
        if n < self.min_len || self.max_len.is_some_and(|m| n > m) {
            return false;
        }
        if !self.must.iter().all(|&i| self.matched_at_end(st, i)) {
            return false;
        }
        for ng in &self.neg {
            let len_in = n >= ng.min_len && ng.max_len.is_none_or(|m| n <= m);
            if len_in && ng.pats.iter().all(|&i| self.matched_at_end(st, i)) {
                return false;
            }
        }
        if !self.combo_ok.is_empty() {
            let mut bits = 0usize;
            for (k, &i) in self.combo_dfas.iter().enumerate() {
                if self.matched_at_end(st, i) {
                    bits |= 1 << k;
                }
            }
            return self.combo_ok.get(bits).copied().unwrap_or(false);
        }
        true
    }

    /// Which combination of `combo_dfas` matched (for choosing a map entry's schema).
    pub fn combo_bits(&self, st: &StrState) -> usize {
        let mut bits = 0usize;
        for (k, &i) in self.combo_dfas.iter().enumerate() {
            if self.matched_at_end(st, i) {
                bits |= 1 << k;
            }
        }
        bits
    }

    /// Whole-string check (the encoder's view).
    pub fn accepts(&self, s: &str, extra_excluded: &[&str]) -> bool {
        if extra_excluded.contains(&s)
            || self
                .excluded
                .binary_search_by(|e| e.as_str().cmp(s))
                .is_ok()
        {
            return false;
        }
        if self.trivial {
            return true;
        }
        let mut st = self.start();
        for &b in s.as_bytes() {
            if !self.step(&mut st, b) {
                return false;
            }
        }
        self.accepts_end(&st)
    }

    /// Can the string that reached `st` (with bytes `prefix`) still be completed to an accepted
    /// one that is not excluded? Exact for completions over ASCII characters (multi-byte
    /// characters are only used to finish a character already started), which keeps the search
    /// finite and small.
    pub fn live(&self, st: &StrState, prefix: &[u8], extra_excluded: &[&str]) -> bool {
        if self.trivial && extra_excluded.is_empty() {
            return true;
        }
        if self.max_len.is_some_and(|m| st.chars > m) {
            return false;
        }
        // Excluded strings that still extend the prefix must be avoided explicitly.
        let pending: Vec<&[u8]> = self
            .excluded
            .iter()
            .map(|s| s.as_bytes())
            .chain(extra_excluded.iter().map(|s| s.as_bytes()))
            .filter(|e| e.starts_with(prefix))
            .map(|e| &e[prefix.len()..])
            .collect();
        if pending.is_empty() {
            self.live_ignoring_exclusions(st)
        } else {
            self.completes(st, &pending)
        }
    }

    /// `live` without excluded values (they only remove finitely many strings).
    pub fn live_ignoring_exclusions(&self, st: &StrState) -> bool {
        if self.trivial {
            return true;
        }
        if self.max_len.is_some_and(|m| st.chars > m) {
            return false;
        }
        let key = self.memo_key(st);
        if let Ok(m) = self.live_memo.lock() {
            if let Some(&r) = m.get(&key) {
                return r;
            }
        }
        let r = self.completes(st, &[]);
        if let Ok(mut m) = self.live_memo.lock() {
            if m.len() < 1 << 20 {
                m.insert(key, r);
            }
        }
        r
    }

    fn memo_key(&self, st: &StrState) -> Vec<u32> {
        let mut k = Vec::with_capacity(st.dfa.len() + 2);
        k.push(st.utf8 as u32);
        k.push(st.chars.min(self.len_cap) as u32);
        k.extend_from_slice(&st.dfa);
        k
    }

    /// When only the length is left to satisfy (every pattern has matched, nothing to avoid):
    /// `Some(Some((head, n)))`, the shortest completion being the bytes `head` that finish a
    /// character already started, then `n` times the first readable byte: what `search` would
    /// find, without walking one level per character (minLength 150,000 made each mask take
    /// ~22 s, and a search that ran out of room read as "no document"). `Some(None)`: no
    /// completion. `None`: the search is needed.
    fn length_only(&self, st: &StrState, pending: &[&[u8]]) -> Option<Option<(Vec<u8>, u64)>> {
        if !(pending.is_empty()
            && self.neg.is_empty()
            && self.combo_ok.is_empty()
            && st.dfa.iter().all(|&d| d == MATCHED))
        {
            return None;
        }
        let mut s = st.clone();
        let mut head = Vec::new();
        while s.utf8 != 0 {
            // The first continuation byte that keeps UTF-8 valid, as the search tries them.
            let Some(b) = (0x80u8..=0xBF).find(|&b| self.step(&mut s.clone(), b)) else {
                return Some(None);
            };
            self.step(&mut s, b);
            head.push(b);
        }
        let need = self.min_len.saturating_sub(s.chars);
        let fits = self
            .max_len
            .is_none_or(|m| s.chars.saturating_add(need) <= m);
        Some(fits.then_some((head, need)))
    }

    /// Whether `search` would find a completion (without building it).
    fn completes(&self, st: &StrState, pending: &[&[u8]]) -> bool {
        match self.length_only(st, pending) {
            Some(found) => found.is_some(),
            None => self.exists(st, pending),
        }
    }

    /// `search(st, pending).is_some()`, depth first: the same states and the same bound, but
    /// the first completion found will do, and going deep finds one after a few steps where
    /// breadth first visits every shorter state first (an `allOf` of 12 patterns: ~1 s per
    /// search, and a mask runs one per distinct next state).
    fn exists(&self, st: &StrState, pending: &[&[u8]]) -> bool {
        let start_pend: Vec<u32> = vec![0; pending.len()];
        let mut seen: HashSet<(Vec<u32>, Vec<u32>)> = HashSet::new();
        seen.insert((self.memo_key(st), start_pend.clone()));
        let mut stack: Vec<(StrState, Vec<u32>)> = vec![(st.clone(), start_pend)];
        let mut visited = 0usize;
        while let Some((s, pend)) = stack.pop() {
            if self.search_done(&s, &pend, pending) {
                return true;
            }
            visited += 1;
            if visited > SEARCH_BOUND {
                return false;
            }
            // Pushed in reverse, so that the first readable byte is tried first.
            for (_, n, np) in self.search_next(&s, &pend, pending).into_iter().rev() {
                if seen.insert((self.memo_key(&n), np.clone())) {
                    stack.push((n, np));
                }
            }
        }
        false
    }

    /// Whether the search may stop at `s`: the string may end, and not as an excluded value
    /// (one whose `pending` suffix is consumed exactly).
    fn search_done(&self, s: &StrState, pend: &[u32], pending: &[&[u8]]) -> bool {
        self.accepts_end(s)
            && !pend
                .iter()
                .zip(pending)
                .any(|(&p, suf)| p != u32::MAX && p as usize == suf.len())
    }

    /// The search's successors of (`s`, `pend`), in the order it tries bytes: readable ASCII
    /// (or the continuation bytes of a character already started), skipping invalid UTF-8
    /// and states where a required pattern can no longer match.
    fn search_next(
        &self,
        s: &StrState,
        pend: &[u32],
        pending: &[&[u8]],
    ) -> Vec<(u8, StrState, Vec<u32>)> {
        if self.max_len.is_some_and(|m| s.chars >= m) && s.utf8 == 0 {
            return Vec::new();
        }
        let range: Box<dyn Iterator<Item = u8>> = if s.utf8 == 0 {
            Box::new(READABLE.iter().copied())
        } else {
            Box::new(0x80u8..=0xBF)
        };
        let mut out = Vec::new();
        for b in range {
            let mut n = s.clone();
            if !self.step(&mut n, b) {
                continue;
            }
            if n.dfa.iter().enumerate().any(|(i, &d)| {
                d != MATCHED
                    && self.must.contains(&i)
                    && self.dfas[i].is_dead(StateID::new_unchecked(d as usize))
            }) {
                continue;
            }
            let np: Vec<u32> = pend
                .iter()
                .zip(pending)
                .map(|(&p, suf)| {
                    if p != u32::MAX && (p as usize) < suf.len() && suf[p as usize] == b {
                        p + 1
                    } else {
                        u32::MAX
                    }
                })
                .collect();
            out.push((b, n, np));
        }
        out
    }

    /// The first byte of `search`'s completion (`None`: none, or nothing left to add).
    pub fn first_completion_byte(&self, st: &StrState, pending: &[&[u8]]) -> Option<u8> {
        match self.length_only(st, pending) {
            Some(found) => {
                let (head, need) = found?;
                head.first().copied().or((need > 0).then_some(READABLE[0]))
            }
            None => self.search(st, pending)?.first().copied(),
        }
    }

    /// Shortest completion (bytes to append) from `st`, avoiding the `pending` suffixes of
    /// excluded strings. Breadth-first over (state, how far into each pending suffix).
    pub fn search(&self, st: &StrState, pending: &[&[u8]]) -> Option<Vec<u8>> {
        if let Some(found) = self.length_only(st, pending) {
            let (mut head, need) = found?;
            head.resize(head.len() + usize::try_from(need).ok()?, READABLE[0]);
            return Some(head);
        }
        type Node = (StrState, Vec<u32>);
        let start_pend: Vec<u32> = vec![0; pending.len()];
        let mut seen: HashSet<(Vec<u32>, Vec<u32>)> = HashSet::new();
        let mut queue: VecDeque<(Node, usize, u8)> = VecDeque::new();
        let mut parents: Vec<(usize, u8)> = Vec::new();
        seen.insert((self.memo_key(st), start_pend.clone()));
        queue.push_back(((st.clone(), start_pend), usize::MAX, 0));
        let mut visited = 0usize;
        while let Some(((s, pend), parent, via)) = queue.pop_front() {
            let me = parents.len();
            parents.push((parent, via));
            if self.search_done(&s, &pend, pending) {
                // Rebuild the path.
                let mut bytes = Vec::new();
                let mut at = me;
                while parents[at].0 != usize::MAX {
                    bytes.push(parents[at].1);
                    at = parents[at].0;
                }
                bytes.reverse();
                return Some(bytes);
            }
            visited += 1;
            if visited > SEARCH_BOUND {
                return None;
            }
            for (b, n, np) in self.search_next(&s, &pend, pending) {
                if seen.insert((self.memo_key(&n), np.clone())) {
                    queue.push_back(((n, np), me, b));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecma_patterns_translate() {
        assert!(pattern_matches(
            r"^\$\{\{(.|[\r\n])*\}\}$",
            "${{ github.token }}"
        ));
        assert!(!pattern_matches(r"^\$\{\{(.|[\r\n])*\}\}$", "x ${{ a }}"));
        assert!(pattern_matches(
            r"^.*\$\{\{(.|[\r\n])*\}\}.*$",
            "x ${{ a }} y"
        ));
        assert!(pattern_matches(r"^[_a-zA-Z][a-zA-Z0-9_-]*$", "build_1-x"));
        assert!(!pattern_matches(r"^[_a-zA-Z][a-zA-Z0-9_-]*$", "1build"));
        assert!(pattern_matches(
            r"^(.+\/)+(.+)\.(ya?ml)(@.+)?$",
            "o/r/.github/workflows/x.yml@main"
        ));
        assert!(pattern_matches(r"\d", "a1"));
        assert!(!pattern_matches(r"^\d+$", "١٢")); // ECMA \d is ASCII only
        assert!(pattern_matches("a{", "a{"));
        assert!(check_pattern("(?=x)").is_err());
    }

    #[test]
    fn live_and_search_respect_lengths_patterns_and_exclusions() {
        let spec = StrSpec::new(
            2,
            Some(3),
            &["^a".to_string()],
            &[],
            vec!["ab".into()],
            None,
        )
        .unwrap();
        let st = spec.start();
        assert!(spec.live(&st, b"", &[]));
        let done = spec.search(&st, &[b"ab"]).unwrap();
        let s = String::from_utf8(done).unwrap();
        assert!(spec.accepts(&s, &[]), "{s}");
        let mut st2 = spec.start();
        assert!(spec.step(&mut st2, b'b'));
        assert!(!spec.live(&st2, b"b", &[]));
    }

    #[test]
    fn utf8_is_enforced() {
        let spec = StrSpec::new(0, None, &[], &[], vec![], None).unwrap();
        let mut st = spec.start();
        assert!(!spec.step(&mut st, 0xFF));
        assert!(spec.step(&mut st, 0xE2));
        assert!(!spec.accepts_end(&st));
    }
}
