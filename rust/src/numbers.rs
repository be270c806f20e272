//! The JSON number grammar the machine steps through and the encoder checks against:
//! `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, with bounded digit counts so that
//! generation cannot run away and every accepted text parses to a finite float, plus the
//! look-ahead that tells whether a number's prefix can still end inside its schema's bounds.

// that generation cannot run away and every accepted text parses to a finite float.

/// Long enough for the 489-digit integers real workflows contain; a fraction or an exponent
/// is only offered after at most `MAX_FLOAT_INT_DIGITS` so floats stay finite.
const MAX_INT_DIGITS: usize = 1000;
const MAX_FLOAT_INT_DIGITS: usize = 200;
const MAX_FRAC_DIGITS: usize = 40;
const MAX_EXP_DIGITS: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumPart {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

pub(crate) fn num_part(text: &[u8]) -> Option<(NumPart, usize)> {
    let mut p = NumPart::Start;
    let mut run = 0usize;
    for &b in text {
        let (np, nr) = num_next(p, run, b, false, true, false)?;
        p = np;
        run = nr;
    }
    Some((p, run))
}

/// One character of the number grammar. `run` counts the digits of the current part.
pub(crate) fn num_next(
    p: NumPart,
    run: usize,
    b: u8,
    integer: bool,
    allow_exp: bool,
    capped: bool,
) -> Option<(NumPart, usize)> {
    use NumPart::*;
    let d = b.is_ascii_digit();
    // Digit caps bound what constrained generation can produce; decoding is not capped.
    let (max_int, max_frac, max_exp) = if capped {
        (MAX_INT_DIGITS, MAX_FRAC_DIGITS, MAX_EXP_DIGITS)
    } else {
        (usize::MAX, usize::MAX, usize::MAX)
    };
    Some(match (p, b) {
        (Start, b'-') => (Minus, 0),
        (Start | Minus, b'0') => (Zero, 1),
        (Start | Minus, _) if d => (Int, 1),
        (Int, _) if d && run < max_int => (Int, run + 1),
        (Zero | Int, b'.') if !integer && (!capped || run <= MAX_FLOAT_INT_DIGITS) => (Dot, 0),
        (Dot, _) if d => (Frac, 1),
        (Frac, _) if d && run < max_frac => (Frac, run + 1),
        (Zero | Int, b'e' | b'E')
            if !integer && allow_exp && (!capped || run <= MAX_FLOAT_INT_DIGITS) =>
        {
            (E, 0)
        }
        (Frac, b'e' | b'E') if !integer && allow_exp => (E, 0),
        (E, b'+' | b'-') => (ESign, 0),
        (E | ESign, _) if d => (Exp, 1),
        (Exp, _) if d && run < max_exp => (Exp, run + 1),
        _ => return None,
    })
}

pub(crate) fn num_accepting(p: NumPart) -> bool {
    matches!(
        p,
        NumPart::Zero | NumPart::Int | NumPart::Frac | NumPart::Exp
    )
}

/// Whether `text` is a complete number in the grammar (integers only if `integer`).
pub(crate) fn number_grammar_ok(text: &str, integer: bool) -> bool {
    let mut p = NumPart::Start;
    let mut run = 0;
    for &b in text.as_bytes() {
        match num_next(p, run, b, integer, true, true) {
            Some((np, nr)) => {
                p = np;
                run = nr;
            }
            None => return false,
        }
    }
    num_accepting(p)
}

/// The bounds a number must end inside (a schema's `minimum`/`maximum` and whether it must be
/// an integer; whether a bound is exclusive is checked when the number ends).
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub integer: bool,
}

/// Can a number starting with `text` still end inside the bounds? Exact for plain decimals
/// (exponents are not offered when a number has bounds).
pub(crate) fn num_feasible(spec: Bounds, text: &[u8]) -> bool {
    if spec.min.is_none() && spec.max.is_none() {
        return true;
    }
    let s = std::str::from_utf8(text).unwrap_or("");
    let neg = s.starts_with('-');
    let body = s.trim_start_matches('-');
    let (lo, hi) = (
        spec.min.unwrap_or(f64::NEG_INFINITY),
        spec.max.unwrap_or(f64::INFINITY),
    );
    // Reachable magnitudes as closed intervals.
    let mut ivs: Vec<(f64, f64)> = Vec::new();
    if body.is_empty() {
        ivs.push((0.0, f64::INFINITY));
    } else if let Some((ip, fp)) = body.split_once('.') {
        let base: f64 = format!("{ip}.{}", if fp.is_empty() { "0" } else { fp })
            .parse()
            .unwrap_or(0.0);
        ivs.push((base, base + 10f64.powi(-(fp.len() as i32))));
    } else if body == "0" {
        ivs.push((0.0, if spec.integer { 0.0 } else { 1.0 }));
    } else {
        let m: f64 = body.parse().unwrap_or(0.0);
        let room = MAX_INT_DIGITS.saturating_sub(body.len());
        for k in 0..=room.min(30) {
            let scale = 10f64.powi(k as i32);
            let top = if spec.integer {
                (m + 1.0) * scale - 1.0
            } else {
                (m + 1.0) * scale
            };
            ivs.push((m * scale, top));
        }
    }
    ivs.iter().any(|&(a, b)| {
        let (a, b) = if neg { (-b, -a) } else { (a, b) };
        b >= lo && a <= hi
    })
}
