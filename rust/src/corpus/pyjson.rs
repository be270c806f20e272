//! Python-compatible JSON number text and compact sizes.
//!
//! The corpus statistics (`json_bytes`) and the bits-per-byte numbers computed from shards are
//! defined by Python's `json.dumps(doc, separators=(",", ":"), ensure_ascii=False)` of the parsed
//! document. This module reproduces that byte count exactly, whatever the input spelling of
//! numbers was (`1.0E+2` in a JSON file is the float `100.0` for Python).

use crate::json::Json;

/// Python's `repr(float)` for a finite `x`: shortest round-trip digits; positional notation
/// when the decimal exponent is in `-4..16`, else `d.ddde+XX` (at least two exponent digits);
/// positional notation always carries a `.` (`1.0`), so the text stays a float when re-read.
/// Non-finite values have no JSON spelling; callers map them to strings first.
pub fn python_float_repr(x: f64) -> String {
    debug_assert!(x.is_finite());
    // Rust's `{:e}` prints the shortest round-trip digits, like Python's repr, as `d.ddde<exp>`.
    let sci = format!("{:e}", x);
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push('0');
        }
        out.push_str(&a.to_string());
    }
    out
}

/// The text Python's `json.dumps` writes for the number whose JSON text is `text`
/// (after `json.loads`): integers are exact (arbitrary size), anything with `.`/`e` is a float.
pub fn python_number_text(text: &str) -> String {
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        let x: f64 = text.parse().unwrap_or(f64::NAN);
        if x.is_finite() {
            python_float_repr(x)
        } else if x.is_nan() {
            "NaN".to_string()
        } else if x > 0.0 {
            "Infinity".to_string()
        } else {
            "-Infinity".to_string()
        }
    } else {
        // JSON forbids leading zeros, so only the sign of zero can differ: int("-0") == 0.
        let digits = text.trim_start_matches('-');
        if digits.bytes().all(|b| b == b'0') {
            "0".to_string()
        } else {
            text.to_string()
        }
    }
}

/// Size in bytes of `json.dumps(value, separators=(",", ":"), ensure_ascii=False)`.
///
/// String escaping is the same in both (checked in the tests below): `"`, `\`, `\b \f \n \r \t`
/// short forms, other C0 controls as `\u00XX`; DEL, U+2028/U+2029 and all non-ASCII stay raw.
pub fn compact_json_size(value: &Json) -> u64 {
    match value {
        Json::Null => 4,
        Json::Bool(true) => 4,
        Json::Bool(false) => 5,
        Json::Number(n) => python_number_text(n).len() as u64,
        Json::String(s) => string_size(s),
        Json::Array(items) => {
            let inner: u64 = items.iter().map(compact_json_size).sum();
            2 + inner + items.len().saturating_sub(1) as u64
        }
        Json::Object(map) => {
            let inner: u64 = map
                .iter()
                .map(|(k, v)| string_size(k) + 1 + compact_json_size(v))
                .sum();
            2 + inner + map.len().saturating_sub(1) as u64
        }
    }
}

fn string_size(s: &str) -> u64 {
    // Plain bytes are skipped eight at a time: byte by byte, this was a tenth of
    // `tct-encode`'s CPU time on the workflow corpus.
    let mut n = 2 + s.len() as u64;
    crate::json::escape_runs(s.as_bytes(), |run| {
        if let crate::json::Run::Escape(b) = run {
            n += crate::json::escape_of(b).len() as u64 - 1;
        }
    });
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn size(v: &Value) -> u64 {
        compact_json_size(&Json::from_value(v).unwrap())
    }

    #[test]
    fn float_repr_matches_python() {
        // Expected strings are Python 3.11's repr() of the same floats.
        let cases: &[(f64, &str)] = &[
            (3.1, "3.1"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (123456.0, "123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.5871066723837624e18, "1.5871066723837624e+18"),
            (0.8455124082255701, "0.8455124082255701"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (-1.25e-7, "-1.25e-07"),
            (2.5e22, "2.5e+22"),
            (1e15, "1000000000000000.0"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(*x), *want, "repr of {x:e}");
        }
    }

    #[test]
    fn number_text_normalises_like_python() {
        assert_eq!(python_number_text("1.0E+2"), "100.0");
        assert_eq!(python_number_text("-0"), "0");
        assert_eq!(
            python_number_text("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
        assert_eq!(python_number_text("1e400"), "Infinity");
    }

    #[test]
    fn compact_size_matches_serde_for_strings() {
        // serde_json's compact writer escapes exactly like Python's json.dumps(ensure_ascii=False):
        // the sizes must agree on every control character, DEL, and the line separators.
        let mut s = String::new();
        for c in 0u32..0x80 {
            s.push(char::from_u32(c).unwrap());
        }
        s.push('\u{2028}');
        s.push('\u{2029}');
        s.push('é');
        s.push('😀');
        let v = Value::String(s);
        assert_eq!(size(&v), serde_json::to_vec(&v).unwrap().len() as u64);
        let doc: Value =
            serde_json::from_str(r#"{"a":[1,2.5,null,true,false,{"b":"x\ny"}],"c":{}}"#).unwrap();
        assert_eq!(size(&doc), serde_json::to_vec(&doc).unwrap().len() as u64);
    }
}
