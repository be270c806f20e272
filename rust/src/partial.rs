//! Streaming snapshots: the partial JSON text of a matcher, closed into a JSON document.
//!
//! The text is cut at the last point where closing it gives valid JSON (after a complete value,
//! just inside an opened container, or inside a value string), and the open string and
//! containers are closed there. What comes after that point (a key without its value, a number
//! or literal that could still change, half an escape) is left out until it is complete. The cut
//! text only grows as ids arrive, so each snapshot extends the previous one: the same text with
//! more appended before the closing brackets.

/// `text` (a prefix of compact JSON) cut and closed: see the module docs.
pub fn close_partial_json(text: &str) -> String {
    let b = text.as_bytes();
    // Open containers: b'{' or b'['.
    let mut stack: Vec<u8> = Vec::new();
    // The last safe cut: (length, containers open there, inside a value string).
    let mut safe: (usize, usize, bool) = (0, 0, false);
    let mut in_string = false;
    let mut string_is_key = false;
    let mut escape = false;
    let mut unicode_left = 0u8;
    // In an object: true while the next string is a key.
    let mut expect_key = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            if unicode_left > 0 {
                unicode_left -= 1;
            } else if escape {
                escape = false;
                if c == b'u' {
                    unicode_left = 4;
                }
            } else if c == b'\\' {
                escape = true;
            } else if c == b'"' {
                in_string = false;
                if string_is_key {
                    expect_key = false;
                } else {
                    safe = (i + 1, stack.len(), false);
                }
                i += 1;
                continue;
            }
            if !string_is_key && !escape && unicode_left == 0 {
                safe = (i + 1, stack.len(), true);
            }
            i += 1;
            continue;
        }
        match c {
            b'{' | b'[' => {
                stack.push(c);
                expect_key = c == b'{';
                safe = (i + 1, stack.len(), false);
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
                safe = (i + 1, stack.len(), false);
            }
            b',' => expect_key = stack.last() == Some(&b'{'),
            b':' => {}
            b'"' => {
                in_string = true;
                string_is_key = expect_key;
                if !string_is_key {
                    safe = (i + 1, stack.len(), true);
                }
            }
            _ => {
                // A scalar: safe once complete, i.e. at its end (a delimiter or the text's end
                // is only safe for a literal that is whole and a number that cannot change
                // meaning, so wait for the delimiter).
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b':') {
                    i += 1;
                }
                if i < b.len() && start < i {
                    safe = (i, stack.len(), false);
                }
                continue;
            }
        }
        i += 1;
    }
    let (len, depth, open_string) = safe;
    let mut out = String::with_capacity(len + depth + 1);
    out.push_str(&text[..len]);
    if open_string {
        out.push('"');
    }
    for &c in stack[..depth.min(stack.len())].iter().rev() {
        out.push(if c == b'{' { '}' } else { ']' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::close_partial_json as close;

    #[test]
    fn cuts_and_closes() {
        assert_eq!(close(""), "");
        assert_eq!(close("{"), "{}");
        assert_eq!(close("{\"a\""), "{}");
        assert_eq!(close("{\"a\":"), "{}");
        assert_eq!(close("{\"a\":\"x"), "{\"a\":\"x\"}");
        assert_eq!(close("{\"a\":\"x\\"), "{\"a\":\"x\"}");
        assert_eq!(close("{\"a\":\"x\\u00"), "{\"a\":\"x\"}");
        assert_eq!(close("{\"a\":[1,2"), "{\"a\":[1]}");
        assert_eq!(close("{\"a\":[1,2]"), "{\"a\":[1,2]}");
        assert_eq!(close("{\"a\":tru"), "{}");
        assert_eq!(
            close("{\"a\":true,\"b\":{\"c\":[\"d"),
            "{\"a\":true,\"b\":{\"c\":[\"d\"]}}"
        );
        assert_eq!(close("[\"a\",\"b\""), "[\"a\",\"b\"]");
        assert_eq!(close("{\"a\":1}"), "{\"a\":1}");
    }

    #[test]
    fn every_prefix_closes_to_json_that_extends_the_previous() {
        let doc = r#"{"name":"CI \"x\" \u00e9","on":["push",{"a":null}],"jobs":{"b":{"n":-1.5e3,"t":true}}}"#;
        let mut prev = String::new();
        for end in 0..=doc.len() {
            if !doc.is_char_boundary(end) {
                continue;
            }
            let s = close(&doc[..end]);
            if end > 0 {
                assert!(serde_json::from_str::<serde_json::Value>(&s).is_ok(), "{s}");
            }
            let body = s.trim_end_matches(['}', ']', '"']);
            let prev_body = prev.trim_end_matches(['}', ']', '"']);
            assert!(
                doc.starts_with(body) && body.starts_with(prev_body),
                "{prev} -> {s}"
            );
            prev = s;
        }
        assert_eq!(prev, doc);
    }
}
