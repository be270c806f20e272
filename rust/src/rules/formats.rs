//! Incremental checkers for string formats a schema leaves open: filter globs, names made of
//! two character classes, shell names, `uses` references. Each is a small state advanced one
//! byte at a time whose `step` refuses a byte as soon as no valid string starts like this (so
//! every accepted prefix has a valid completion) and whose `accepts_end` says whether the
//! string may end here.

/// A set of ASCII bytes, written like a regex class body: `A-Za-z0-9_-` (a `-` at either end
/// is literal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByteClass([u64; 2]);

impl ByteClass {
    pub fn parse(spec: &str) -> Result<ByteClass, String> {
        let b = spec.as_bytes();
        let mut set = [0u64; 2];
        let mut add = |c: u8| set[(c >> 6) as usize] |= 1 << (c & 63);
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii() || b[i].is_ascii_control() {
                return Err(format!("class {spec:?}: only printable ASCII bytes"));
            }
            if i + 2 < b.len() && b[i + 1] == b'-' {
                if b[i] > b[i + 2] {
                    return Err(format!("class {spec:?}: empty range"));
                }
                (b[i]..=b[i + 2]).for_each(&mut add);
                i += 3;
            } else {
                add(b[i]);
                i += 1;
            }
        }
        if set == [0, 0] {
            return Err(format!("class {spec:?} is empty"));
        }
        Ok(ByteClass(set))
    }

    pub fn contains(&self, c: u8) -> bool {
        c < 128 && self.0[(c >> 6) as usize] & (1 << (c & 63)) != 0
    }
}

/// A name: one byte of `first`, then bytes of `rest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NameSpec {
    pub first: ByteClass,
    pub rest: ByteClass,
}

impl NameSpec {
    pub fn step(&self, len: usize, b: u8) -> bool {
        if len == 0 {
            self.first.contains(b)
        } else {
            self.rest.contains(b)
        }
    }

    pub fn accepts(&self, s: &[u8]) -> bool {
        !s.is_empty() && s.iter().enumerate().all(|(i, &b)| self.step(i, b))
    }
}

/// A control character: C0, DEL (and, in UTF-8, C1 as `0xC2 0x80..=0x9F`; the byte-level
/// check covers the ASCII ones, which are what samples produce).
pub fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// GitHub's filter patterns for branches and tags (`refs`) or for paths.
///
/// Both: not empty, no control characters (a newline included), `[...]` classes closed and
/// not empty, a `\` escapes the next byte. Refs additionally refuse spaces and the bytes git
/// refuses in ref names (`~ ^ :`); paths refuse leading and trailing spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Glob {
    len: u32,
    /// Inside `[`: bytes of the class so far (0: just opened; a `]` there is literal? no:
    /// GitHub treats `[]` as an error).
    class: Option<u8>,
    escape: bool,
    last_space: bool,
}

impl Glob {
    pub fn step(&mut self, b: u8, refs: bool) -> bool {
        if is_control(b) {
            return false;
        }
        if refs && matches!(b, b' ' | b'~' | b'^' | b':') {
            return false;
        }
        if !refs && b == b' ' && self.len == 0 {
            return false;
        }
        self.len += 1;
        self.last_space = b == b' ';
        if self.escape {
            self.escape = false;
            if let Some(n) = &mut self.class {
                *n = n.saturating_add(1);
            }
            return true;
        }
        match (self.class, b) {
            (_, b'\\') => self.escape = true,
            (None, b'[') => self.class = Some(0),
            (None, b']') => return false,
            (Some(0), b']') => return false,
            (Some(_), b']') => self.class = None,
            (Some(_), b'[') => return false,
            (Some(n), _) => self.class = Some(n.saturating_add(1)),
            _ => {}
        }
        true
    }

    pub fn accepts_end(&self, refs: bool) -> bool {
        self.len > 0 && self.class.is_none() && !self.escape && (refs || !self.last_space)
    }
}

/// Shell names GitHub knows; any other value must be a command template holding `{0}`.
pub const SHELLS: [&str; 6] = ["bash", "pwsh", "python", "sh", "cmd", "powershell"];

/// `shell:`: a known shell, or a template with `{0}` (`perl {0}`). Every prefix can still get
/// a `{0}`, so only the end is checked; no control characters.
/// A value computed by an expression (`${{ matrix.shell }}`) is checked by GitHub at run time.
pub fn shell_accepts(s: &[u8]) -> bool {
    SHELLS.iter().any(|n| n.as_bytes() == s)
        || s.windows(3).any(|w| w == b"{0}")
        || s.windows(3).any(|w| w == b"${{")
}

/// `uses:` of a step or a job, by which kinds it may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UsesKind {
    /// A step: `./local/path`, `docker://image`, `owner/repo[/path]@ref`.
    Step,
    /// A job (reusable workflow): `./.github/workflows/x.yml` or
    /// `owner/repo/.github/workflows/x.yml@ref`.
    Job,
}

fn is_repo_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Whether `s` is a valid `uses` (complete) or a prefix of one (`complete == false`).
/// A re-scan of the string (they are short, and a `uses` is written once per step).
pub fn uses_ok(s: &[u8], kind: UsesKind, complete: bool) -> bool {
    if s.iter().any(|&b| is_control(b) || b == b' ') {
        return false;
    }
    let prefix_of = |lit: &[u8]| -> Option<bool> {
        // Some(true): `s` starts with `lit`; Some(false): `s` is a proper prefix of `lit`.
        if s.starts_with(lit) {
            Some(true)
        } else if lit.starts_with(s) {
            Some(false)
        } else {
            None
        }
    };
    let local: &[u8] = match kind {
        UsesKind::Step => b"./",
        UsesKind::Job => b"./.github/workflows/",
    };
    match prefix_of(local) {
        Some(true) => {
            let rest = &s[local.len()..];
            return match kind {
                // `./` alone is the action at the repository's root.
                UsesKind::Step => true,
                UsesKind::Job => workflow_file_ok(rest, complete) && !rest.contains(&b'@'),
            };
        }
        Some(false) if !complete => return true,
        _ => {}
    }
    if kind == UsesKind::Step {
        match prefix_of(b"docker://") {
            Some(true) => return !complete || s.len() > 9,
            Some(false) if !complete => return true,
            _ => {}
        }
    }
    // owner/repo[/path]@ref
    let (path, git_ref) = match s.iter().position(|&b| b == b'@') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = path.split(|&b| b == b'/');
    let owner = parts.next().unwrap_or_default();
    let repo = parts.next();
    let rest: Vec<&[u8]> = parts.collect();
    let name_ok = |p: &[u8], last: bool| {
        p.iter().all(|&b| is_repo_byte(b)) && (!p.is_empty() || (last && git_ref.is_none()))
    };
    if !name_ok(owner, repo.is_none()) {
        return false;
    }
    let Some(repo) = repo else {
        return !complete && git_ref.is_none();
    };
    if !name_ok(repo, rest.is_empty()) {
        return false;
    }
    match kind {
        UsesKind::Step => {
            let n = rest.len();
            for (i, p) in rest.iter().enumerate() {
                let last = i + 1 == n && git_ref.is_none();
                if p.is_empty() && !last {
                    return false;
                }
            }
        }
        UsesKind::Job => {
            let joined = rest.join(&b'/');
            let dir: &[u8] = b".github/workflows/";
            if rest.is_empty() {
                if git_ref.is_some() {
                    return false;
                }
            } else if joined.starts_with(dir) {
                if !workflow_file_ok(&joined[dir.len()..], complete || git_ref.is_some()) {
                    return false;
                }
            } else if !(dir.starts_with(&joined) && git_ref.is_none()) {
                return false;
            }
        }
    }
    match git_ref {
        None => !complete,
        Some(r) => !r.contains(&b'@') && (!complete || !r.is_empty()),
    }
}

/// A workflow file name `x.yml` / `x.yaml` (no directories).
fn workflow_file_ok(s: &[u8], complete: bool) -> bool {
    if s.contains(&b'/') {
        return false;
    }
    if !complete {
        return true;
    }
    (s.ends_with(b".yml") && s.len() > 4) || (s.ends_with(b".yaml") && s.len() > 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str, refs: bool) -> bool {
        let mut g = Glob::default();
        s.bytes().all(|b| g.step(b, refs)) && g.accepts_end(refs)
    }

    #[test]
    fn globs() {
        for s in [
            "main",
            "releases/**",
            "v[0-9]*",
            "!feature/*",
            "feat\\[x\\]",
        ] {
            assert!(glob(s, true), "{s}");
        }
        for s in [
            "",
            "my branch",
            "a\nb",
            "v[",
            "x]",
            "a[]",
            "a~1",
            "a^",
            "a:b",
        ] {
            assert!(!glob(s, true), "{s}");
        }
        assert!(glob("docs/my file.md", false));
        assert!(!glob(" docs", false));
        assert!(!glob("docs ", false));
        assert!(!glob("a\tb", false));
    }

    #[test]
    fn names() {
        let n = NameSpec {
            first: ByteClass::parse("A-Za-z_").unwrap(),
            rest: ByteClass::parse("A-Za-z0-9_-").unwrap(),
        };
        assert!(n.accepts(b"build-linux_2"));
        assert!(!n.accepts(b"2build"));
        assert!(!n.accepts(b"a b"));
        assert!(!n.accepts(b""));
        assert!(ByteClass::parse("").is_err());
        assert!(ByteClass::parse("z-a").is_err());
    }

    #[test]
    fn shells() {
        assert!(shell_accepts(b"bash"));
        assert!(shell_accepts(b"perl {0}"));
        assert!(!shell_accepts(b"zsh"));
    }

    #[test]
    fn uses_formats() {
        use UsesKind::*;
        for s in [
            "actions/checkout@v4",
            "github/codeql-action/init@v3",
            "./.github/actions/setup",
            "docker://alpine:3.19",
        ] {
            assert!(uses_ok(s.as_bytes(), Step, true), "{s}");
            for i in 0..s.len() {
                assert!(uses_ok(&s.as_bytes()[..i], Step, false), "{s} prefix {i}");
            }
        }
        for s in [
            "actions/checkout",
            "checkout@v4",
            "a b/c@d",
            "a/b@",
            "a//b@c",
        ] {
            assert!(!uses_ok(s.as_bytes(), Step, true), "{s}");
        }
        for s in [
            "octo/repo/.github/workflows/ci.yml@main",
            "./.github/workflows/build.yaml",
        ] {
            assert!(uses_ok(s.as_bytes(), Job, true), "{s}");
            for i in 0..s.len() {
                assert!(uses_ok(&s.as_bytes()[..i], Job, false), "{s} prefix {i}");
            }
        }
        for s in [
            "actions/checkout@v4",
            "./ci.yml",
            "o/r/.github/workflows/ci.txt@v1",
        ] {
            assert!(!uses_ok(s.as_bytes(), Job, true), "{s}");
        }
    }
}
