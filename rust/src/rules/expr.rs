//! An incremental checker for the GitHub Actions expression language, fed one byte at a time.
//!
//! It keeps exactly what decides whether the bytes so far can still become a well-formed
//! expression: whether an operand or an operator comes next, the open groups (parentheses,
//! index brackets, function calls with their argument counts), and the token being lexed.
//! Every binary operator sits between two operands whatever its precedence, so precedence
//! does not change which texts are well formed and is not tracked. A state that `step`
//! accepts always has a well-formed completion (close the open groups, add an operand), which
//! is what lets the matcher forbid a byte as soon as no valid expression starts like this.

/// Contexts GitHub defines, in a fixed order (bit `i` of a context mask is `CONTEXTS[i]`).
pub const CONTEXTS: [&str; 12] = [
    "github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix",
    "needs", "inputs",
];

/// Every context allowed.
pub const ALL_CONTEXTS: u16 = (1 << CONTEXTS.len()) - 1;

/// The built-in functions with their least and greatest argument counts.
const FUNCTIONS: [(&str, u8, u8); 12] = [
    ("contains", 2, 2),
    ("startswith", 2, 2),
    ("endswith", 2, 2),
    ("format", 1, u8::MAX),
    ("join", 1, 2),
    ("tojson", 1, 1),
    ("fromjson", 1, 1),
    ("hashfiles", 1, u8::MAX),
    ("success", 0, 0),
    ("always", 0, 0),
    ("cancelled", 0, 0),
    ("failure", 0, 0),
];

/// Literal words (case-insensitive like the rest of the language).
const WORDS: [&str; 5] = ["true", "false", "null", "nan", "infinity"];

/// The longest name among contexts, functions and words: an identifier in operand position
/// longer than this is no name at all.
const MAX_NAME: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Group {
    Paren,
    Index,
    /// A function call: arguments completed so far, allowed range, and whether the call was
    /// just opened (so `)` may close it with no arguments).
    Call {
        args: u8,
        min: u8,
        max: u8,
        empty: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Num {
    /// After a leading `-`.
    Minus,
    /// After a leading `0` (a hex prefix may follow).
    Zero,
    Int,
    /// After `0x`, no digit yet / with digits.
    HexStart,
    Hex,
    /// After `.`, no digit yet / with digits.
    Dot,
    Frac,
    /// After `e`, after its sign, with digits.
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn complete(self) -> bool {
        matches!(
            self,
            Num::Zero | Num::Int | Num::Hex | Num::Frac | Num::ExpDigits
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Tok {
    None,
    /// A name in operand position (lower-cased, at most `MAX_NAME` bytes).
    Name(Vec<u8>),
    /// A finished name waiting for the next byte: `(` makes it a call.
    NameDone(Vec<u8>),
    /// A property name after `.` (has at least one byte once started).
    Prop {
        started: bool,
    },
    Num(Num),
    /// Inside a string literal; `quote`: a `'` was just read (the end, or the first half of `''`).
    Str {
        quote: bool,
    },
    /// The first byte of a two-byte operator (`=`, `!` after an operand, `<`, `>`, `&`, `|`).
    Op(u8),
}

/// The checker's state. `Default` is the start of an expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Expr {
    /// An operand comes next (at the start, after an operator, `(`, `[` or `,`).
    operand: bool,
    groups: Vec<Group>,
    tok: Tok,
    /// Any token read at all (an empty expression is not well formed).
    any: bool,
}

impl Default for Expr {
    fn default() -> Self {
        Expr {
            operand: true,
            groups: Vec::new(),
            tok: Tok::None,
            any: false,
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn name_prefix_ok(p: &[u8]) -> bool {
    let starts = |n: &str| n.as_bytes().starts_with(p);
    CONTEXTS.iter().any(|c| starts(c))
        || FUNCTIONS.iter().any(|f| starts(f.0))
        || WORDS.iter().any(|w| starts(w))
}

fn context_index(n: &[u8]) -> Option<usize> {
    CONTEXTS.iter().position(|c| c.as_bytes() == n)
}

impl Expr {
    /// Whether the bytes so far form a complete, well-formed expression.
    pub fn complete(&self, contexts: u16) -> bool {
        let mut e = self.clone();
        e.finish_token(contexts) && e.any && !e.operand && e.groups.is_empty()
    }

    /// Whether the next non-space byte could be `}` ending an embedded expression.
    pub fn in_string_literal(&self) -> bool {
        matches!(self.tok, Tok::Str { quote: false })
    }

    /// Ends the token in progress as if a delimiter followed. False if it cannot end here.
    fn finish_token(&mut self, contexts: u16) -> bool {
        match std::mem::replace(&mut self.tok, Tok::None) {
            Tok::None => true,
            Tok::Name(n) | Tok::NameDone(n) => {
                if WORDS.iter().any(|w| w.as_bytes() == n) {
                    self.operand = false;
                    return true;
                }
                match context_index(&n) {
                    Some(i) if contexts & (1 << i) != 0 => {
                        self.operand = false;
                        true
                    }
                    _ => false,
                }
            }
            Tok::Prop { started } => {
                self.operand = false;
                started
            }
            Tok::Num(n) => {
                self.operand = false;
                n.complete()
            }
            Tok::Str { quote } => {
                if quote {
                    self.operand = false;
                }
                quote
            }
            // `<` and `>` are whole operators; the others need their second byte.
            Tok::Op(b) => {
                if matches!(b, b'<' | b'>') {
                    self.operand = true;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// One byte. False (state unspecified: keep a copy) when no well-formed expression starts
    /// with the bytes so far.
    pub fn step(&mut self, b: u8, contexts: u16) -> bool {
        // Tokens in progress take their own bytes first.
        match &mut self.tok {
            Tok::Str { quote } => {
                if *quote {
                    if b == b'\'' {
                        *quote = false;
                        return true;
                    }
                    self.tok = Tok::None;
                    self.operand = false;
                } else {
                    if b == b'\'' {
                        *quote = true;
                    }
                    return true;
                }
            }
            Tok::Name(n) => {
                if is_ident(b) {
                    n.push(b.to_ascii_lowercase());
                    return n.len() <= MAX_NAME && name_prefix_ok(n);
                }
                let n = std::mem::take(n);
                self.tok = Tok::NameDone(n);
                return self.after_name(b, contexts);
            }
            Tok::NameDone(_) => return self.after_name(b, contexts),
            Tok::Prop { started } => {
                if !*started {
                    if is_ident_start(b) {
                        *started = true;
                        return true;
                    }
                    if b == b'*' {
                        self.tok = Tok::None;
                        self.operand = false;
                        return true;
                    }
                    return false;
                }
                if is_ident(b) {
                    return true;
                }
                self.tok = Tok::None;
                self.operand = false;
            }
            Tok::Num(n) => {
                let next = match (*n, b) {
                    (Num::Minus, b'0') => Some(Num::Zero),
                    (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                    (Num::Zero, b'x' | b'X') => Some(Num::HexStart),
                    (Num::Int, b'0'..=b'9') => Some(Num::Int),
                    (Num::HexStart | Num::Hex, c) if c.is_ascii_hexdigit() => Some(Num::Hex),
                    (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                    (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                    (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
                    (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                    (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
                    _ => None,
                };
                if let Some(x) = next {
                    *n = x;
                    return true;
                }
                // A number runs into letters only by mistake (`1a`).
                if !n.complete() || is_ident(b) || b == b'.' {
                    return false;
                }
                self.tok = Tok::None;
                self.operand = false;
            }
            Tok::Op(first) => {
                let first = *first;
                self.tok = Tok::None;
                let pair = matches!(
                    (first, b),
                    (b'=', b'=')
                        | (b'!', b'=')
                        | (b'<', b'=')
                        | (b'>', b'=')
                        | (b'&', b'&')
                        | (b'|', b'|')
                );
                self.operand = true;
                if pair {
                    return true;
                }
                if !matches!(first, b'<' | b'>') {
                    return false;
                }
            }
            Tok::None => {}
        }
        self.step_fresh(b)
    }

    /// The byte after a finished name in operand position.
    fn after_name(&mut self, b: u8, contexts: u16) -> bool {
        if is_space(b) {
            return true;
        }
        if b == b'(' {
            let Tok::NameDone(n) = std::mem::replace(&mut self.tok, Tok::None) else {
                return false;
            };
            let Some(&(_, min, max)) = FUNCTIONS.iter().find(|f| f.0.as_bytes() == n) else {
                return false;
            };
            self.groups.push(Group::Call {
                args: 0,
                min,
                max,
                empty: true,
            });
            self.operand = true;
            return true;
        }
        if !self.finish_token(contexts) {
            return false;
        }
        self.step_fresh(b)
    }

    /// A byte with no token in progress.
    fn step_fresh(&mut self, b: u8) -> bool {
        if is_space(b) {
            return true;
        }
        self.any = true;
        if self.operand {
            if let Some(Group::Call { empty, max, .. }) = self.groups.last_mut() {
                let was_empty = *empty;
                *empty = false;
                if was_empty && b != b')' && *max == 0 {
                    return false;
                }
                if was_empty && b == b')' {
                    let Some(Group::Call { min, .. }) = self.groups.pop() else {
                        return false;
                    };
                    self.operand = false;
                    return min == 0;
                }
            }
            return match b {
                b'\'' => {
                    self.tok = Tok::Str { quote: false };
                    true
                }
                b'-' => {
                    self.tok = Tok::Num(Num::Minus);
                    true
                }
                b'0' => {
                    self.tok = Tok::Num(Num::Zero);
                    true
                }
                b'1'..=b'9' => {
                    self.tok = Tok::Num(Num::Int);
                    true
                }
                b'!' => true,
                b'(' => {
                    self.groups.push(Group::Paren);
                    true
                }
                c if is_ident_start(c) => {
                    let n = vec![c.to_ascii_lowercase()];
                    let ok = name_prefix_ok(&n);
                    self.tok = Tok::Name(n);
                    ok
                }
                _ => false,
            };
        }
        match b {
            b'.' => {
                self.tok = Tok::Prop { started: false };
                true
            }
            b'[' => {
                self.groups.push(Group::Index);
                self.operand = true;
                true
            }
            b']' => {
                let ok = self.groups.pop() == Some(Group::Index);
                self.operand = false;
                ok
            }
            b')' => match self.groups.pop() {
                Some(Group::Paren) => true,
                Some(Group::Call { args, min, .. }) => args + 1 >= min,
                _ => false,
            },
            b',' => match self.groups.last_mut() {
                Some(Group::Call { args, max, .. }) if *args + 1 < *max => {
                    *args += 1;
                    self.operand = true;
                    true
                }
                _ => false,
            },
            b'=' | b'!' | b'<' | b'>' | b'&' | b'|' => {
                self.tok = Tok::Op(b);
                true
            }
            _ => false,
        }
    }
}

/// Where an embedded-expression string stands: in plain text (`dollar`: how much of `${{`
/// was just read) or inside `${{ ... }}` (`close`: its first `}` was read).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Embedded {
    dollar: u8,
    inside: Option<Expr>,
    close: bool,
}

impl Embedded {
    pub fn step(&mut self, b: u8, contexts: u16) -> bool {
        if let Some(e) = &mut self.inside {
            if self.close {
                if b != b'}' {
                    return false;
                }
                self.inside = None;
                self.close = false;
                return true;
            }
            if b == b'}' && !e.in_string_literal() {
                if !e.complete(contexts) {
                    return false;
                }
                self.close = true;
                return true;
            }
            return e.step(b, contexts);
        }
        self.dollar = match (self.dollar, b) {
            (_, b'$') => 1,
            (1, b'{') => 2,
            (2, b'{') => {
                self.inside = Some(Expr::default());
                0
            }
            _ => 0,
        };
        true
    }

    pub fn accepts_end(&self) -> bool {
        self.inside.is_none()
    }
}

/// A whole-expression field (`if:`): a bare expression, or one `${{ ... }}` with only spaces
/// around it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Whole {
    /// 0: leading spaces; 1: bare expression; 2..=3: `$`, `${` read; 4: inside `${{`;
    /// 5: first `}` read; 6: after `}}` (spaces only).
    phase: u8,
    expr: Expr,
}

impl Whole {
    pub fn step(&mut self, b: u8, contexts: u16) -> bool {
        match self.phase {
            0 if is_space(b) => true,
            0 if b == b'$' => {
                self.phase = 2;
                true
            }
            0 => {
                self.phase = 1;
                self.expr.step(b, contexts)
            }
            1 => self.expr.step(b, contexts),
            2 | 3 => {
                self.phase += 1;
                b == b'{'
            }
            4 => {
                if b == b'}' && !self.expr.in_string_literal() {
                    self.phase = 5;
                    return self.expr.complete(contexts);
                }
                self.expr.step(b, contexts)
            }
            5 => {
                self.phase = 6;
                b == b'}'
            }
            _ => is_space(b),
        }
    }

    pub fn accepts_end(&self, contexts: u16) -> bool {
        match self.phase {
            1 => self.expr.complete(contexts),
            6 => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr_ok(s: &str) -> bool {
        let mut e = Expr::default();
        s.bytes().all(|b| e.step(b, ALL_CONTEXTS)) && e.complete(ALL_CONTEXTS)
    }

    fn embedded_ok(s: &str) -> bool {
        let mut e = Embedded::default();
        s.bytes().all(|b| e.step(b, ALL_CONTEXTS)) && e.accepts_end()
    }

    fn whole_ok(s: &str) -> bool {
        let mut e = Whole::default();
        s.bytes().all(|b| e.step(b, ALL_CONTEXTS)) && e.accepts_end(ALL_CONTEXTS)
    }

    #[test]
    fn well_formed_expressions() {
        for s in [
            "github.event_name == 'push'",
            "github.ref=='refs/heads/main'&&!cancelled()",
            "contains(github.event.head_commit.message, '[skip ci]')",
            "steps.build-1.outputs.x",
            "fromJSON(needs.setup.outputs.matrix).include[0]",
            "format('{0}-{1}', matrix.os, 'x''y')",
            "(1 < 2) || -1.5e3 >= 0x1F",
            "github.event.*.name",
            "success()",
            "hashFiles('**/go.sum', '**/go.mod')",
            "true",
            "env['MY_VAR'] != null",
            "  matrix.os  ",
        ] {
            assert!(expr_ok(s), "{s}");
        }
    }

    #[test]
    fn malformed_expressions() {
        for s in [
            "",
            "github.",
            "github ==",
            "foo.bar",
            "contains(a)",
            "contains(github.x)",
            "success(1)",
            "toJSON(1, 2)",
            "(github.x",
            "github.x)",
            "'open",
            "1a",
            "a = b",
            "github.x = 'y'",
            "github[0",
            "unknownfn()",
            "github..x",
            "1 2",
            "github.x && ",
        ] {
            assert!(!expr_ok(s), "{s}");
        }
    }

    #[test]
    fn prefixes_of_valid_expressions_stay_live() {
        let s = "contains(fromJSON(needs.a.outputs.list), format('{0}', 'x')) && 1 <= 0x2";
        let mut e = Expr::default();
        for b in s.bytes() {
            assert!(e.step(b, ALL_CONTEXTS));
        }
        assert!(e.complete(ALL_CONTEXTS));
    }

    #[test]
    fn a_dead_prefix_is_refused_at_its_first_bad_byte() {
        let mut e = Expr::default();
        assert!("githu".bytes().all(|b| e.step(b, ALL_CONTEXTS)));
        assert!(!e.clone().step(b'x', ALL_CONTEXTS));
        let mut e = Expr::default();
        assert!("success(".bytes().all(|b| e.step(b, ALL_CONTEXTS)));
        assert!(!e.clone().step(b'1', ALL_CONTEXTS));
    }

    #[test]
    fn contexts_can_be_restricted() {
        let only_github = 1;
        let mut e = Expr::default();
        assert!("steps.x".bytes().all(|b| e.step(b, ALL_CONTEXTS)));
        let mut e = Expr::default();
        let ok = "steps.x".bytes().all(|b| e.step(b, only_github)) && e.complete(only_github);
        assert!(!ok);
    }

    #[test]
    fn embedded_segments() {
        assert!(embedded_ok("echo ${{ github.sha }} and ${{ matrix.os }}"));
        assert!(embedded_ok("plain text with $ and { braces }"));
        assert!(embedded_ok("${{ '}}' }}"));
        assert!(!embedded_ok("echo ${{ github.sha }"));
        assert!(!embedded_ok("echo ${{ }}"));
        assert!(!embedded_ok("echo ${{ github.sha"));
        assert!(!embedded_ok("${{ github.sha } }"));
    }

    #[test]
    fn whole_expressions() {
        assert!(whole_ok("github.event_name == 'push'"));
        assert!(whole_ok("${{ github.event_name == 'push' }}"));
        assert!(whole_ok("  ${{ always() }}  "));
        assert!(!whole_ok("${{ always() }} && true"));
        assert!(!whole_ok(""));
        assert!(!whole_ok("${ always() }"));
    }
}
