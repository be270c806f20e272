//! Codec tests over every schema of the data set and small hand-written schemas.
mod common;
use serde_json::{json, Value};
use tct::Tokenizer;

fn schema_files() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(common::data_dir().join("schemas"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

#[test]
#[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]
fn every_schema_compiles_and_its_positive_tests_round_trip() {
    let reg = common::registry();
    for f in schema_files() {
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let schema = common::read_json(&f);
        let t0 = std::time::Instant::now();
        let tok = Tokenizer::from_schema(&schema, &reg).unwrap_or_else(|e| panic!("{stem}: {e}"));
        eprintln!(
            "{stem}: {} nodes, vocab {}, {} warnings, compiled in {:?}",
            tok.graph().nodes.len(),
            tok.vocab_size(),
            tok.warnings().len(),
            t0.elapsed()
        );
        for w in tok.warnings() {
            eprintln!("   warning: {w}");
        }
        for kind in ["positive", "negative"] {
            let dir = common::data_dir()
                .join("schema-tests")
                .join(&stem)
                .join(kind);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for doc_path in files {
                let text = std::fs::read_to_string(&doc_path).unwrap();
                let doc: Value = match doc_path.extension().and_then(|x| x.to_str()) {
                    Some("json") => match serde_json::from_str(&text) {
                        Ok(v) => v,
                        Err(_) => continue,
                    },
                    _ => continue, // YAML/TOML documents are covered by the Python tests.
                };
                let enc = tok
                    .encode_value(&doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
                let dec = tok
                    .decode(&enc.ids)
                    .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
                let back: Value = serde_json::from_str(&dec.json).unwrap();
                assert_eq!(back, doc, "{} does not round-trip", doc_path.display());
                if kind == "positive" && !enc.fallbacks.is_empty() {
                    eprintln!(
                        "   positive test with fallback: {} {:?}",
                        doc_path.display(),
                        enc.fallbacks
                    );
                }
            }
        }
    }
}

fn tok(schema: Value) -> Tokenizer {
    Tokenizer::from_schema(&schema, &[]).unwrap()
}

fn round_trip(t: &Tokenizer, doc: &Value) -> tct::Encoding {
    let enc = t.encode_value(doc).unwrap();
    let dec = t.decode(&enc.ids).unwrap();
    let back: Value = serde_json::from_str(&dec.json).unwrap();
    assert_eq!(&back, doc);
    enc
}

#[test]
fn strings_written_straight_out_match_buffered_ones() {
    // "plain" strings go straight to the output while they are decoded; the items of a unique
    // array and strings with excluded values are buffered and checked at their end. Both must
    // give the same text, for escapes and for characters split across base ids.
    let t = tok(json!({
        "type": "object",
        "properties": {
            "plain": {"type": "string"},
            "unique": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
            "excluded": {"type": "string", "not": {"enum": ["no"]}}
        },
        "additionalProperties": {"type": "string"}
    }));
    let texts = [
        "",
        "plain",
        "quote \" backslash \\ newline \n tab \t cr \r",
        "control \u{1} \u{1f} \u{8} \u{c}",
        "é 中文 𝄞 mixed \"é\"",
    ];
    for s in texts {
        let doc = json!({"plain": s, "unique": [s, "other"], "excluded": s, "key \" é": s});
        let enc = round_trip(&t, &doc);
        let text = t.decode(&enc.ids).unwrap().json;
        assert_eq!(text, serde_json::to_string(&doc).unwrap());
        // The text so far leaves out a string that is still open: it stops right before the
        // string's opening quote.
        let mut m = t.matcher();
        let inside = enc.ids.iter().position(|&id| id < 256).unwrap();
        for &id in &enc.ids[..=inside] {
            m.advance(id).unwrap();
        }
        let partial = m.document(false).unwrap();
        assert!(text.starts_with(&partial), "{partial:?} {text:?}");
        assert_eq!(text.as_bytes()[partial.len()], b'"', "{partial:?} {text:?}");
    }
}

#[test]
fn required_and_const_properties_cost_nothing() {
    let t = tok(json!({
        "type": "object",
        "properties": {"kind": {"const": "job"}, "name": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["kind", "name"],
        "additionalProperties": false
    }));
    let enc = round_trip(&t, &json!({"kind": "job", "name": "ab"}));
    // header: END (no optional key present); then "ab" STR_END.
    assert_eq!(
        enc.ids,
        vec![tct::base::END, b'a' as u32, b'b' as u32, tct::base::STR_END]
    );
    assert!(enc.fallbacks.is_empty());
}

#[test]
fn nonconforming_subtrees_fall_back_with_their_pointer() {
    let t = tok(json!({
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "integer"}}},
    }));
    let doc = json!({"a": [1, "two", 3], "zzz": null});
    let enc = round_trip(&t, &doc);
    assert_eq!(enc.fallbacks, vec!["/a/1".to_string()]);
}

#[test]
fn numbers_are_lossless() {
    let t = tok(json!({"type": "array", "items": {"type": "number"}}));
    let doc: Value =
        serde_json::from_str("[0, -0, 1.0, 3.1, 1e300, 123456789012345678901234567890, 2.5e-8]")
            .unwrap();
    let enc = round_trip(&t, &doc);
    let dec = t.decode(&enc.ids).unwrap();
    // Number texts are kept as parsed (serde_json writes the exponent sign explicitly).
    assert_eq!(
        dec.json,
        "[0,-0,1.0,3.1,1e+300,123456789012345678901234567890,2.5e-8]"
    );
}

#[test]
fn oneof_branches_are_exclusive() {
    // Under oneOf, "a" and "${{ x }}" match two branches each (the last branch is any string),
    // so they are invalid: they must fall back, and the matcher must never produce them.
    let t = tok(json!({"oneOf": [
        {"type": "string", "pattern": "^\\$\\{\\{.*\\}\\}$"},
        {"type": "string", "enum": ["a", "b"]},
        {"type": "string"},
        {"type": "integer"}
    ]}));
    assert_eq!(round_trip(&t, &json!("c")).fallbacks, Vec::<String>::new());
    assert_eq!(round_trip(&t, &json!(7)).fallbacks, Vec::<String>::new());
    for s in ["a", "${{ x }}"] {
        assert_eq!(
            round_trip(&t, &json!(s)).fallbacks,
            vec!["".to_string()],
            "{s}"
        );
    }
    let n = t.vocab_size() as usize;
    let mut allowed = vec![false; n];
    let mut m = t.matcher();
    m.fill_allowed(&mut allowed);
    // Two branches remain: the string (minus the others) and the integer.
    let sel: Vec<usize> = (0..n).filter(|&i| allowed[i]).collect();
    assert_eq!(
        sel,
        vec![tct::base::SEL0 as usize, tct::base::SEL0 as usize + 1]
    );
    let g = t.graph();
    let tct::compile::ir::Node::Union(bs) = &g.nodes[g.root as usize] else {
        panic!("not a union")
    };
    let k = bs
        .iter()
        .position(|&b| matches!(g.nodes[b as usize], tct::compile::ir::Node::Str(_)))
        .unwrap() as u32;
    m.advance(tct::base::SEL0 + k).unwrap();
    m.advance(b'a' as u32).unwrap();
    m.fill_allowed(&mut allowed);
    assert!(
        !allowed[tct::base::STR_END as usize],
        "\"a\" would match two oneOf branches"
    );
    assert!(allowed[b'a' as usize]);
    m = t.matcher();
    m.advance(tct::base::SEL0 + k).unwrap();
    for c in "${{ x }}".bytes() {
        m.advance(c as u32).unwrap();
    }
    m.fill_allowed(&mut allowed);
    assert!(!allowed[tct::base::STR_END as usize]);
}

#[test]
fn decode_is_total_on_garbage() {
    let schema = common::workflow_schema();
    let t = Tokenizer::from_schema(&schema, &[]).unwrap();
    let n = t.vocab_size() + 10;
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for len in 0..3000usize {
        let ids: Vec<u32> = (0..len % 64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % n as u64) as u32
            })
            .collect();
        let _ = t.decode(&ids);
    }
}

#[test]
fn masked_random_walks_reencode_without_fallback() {
    let schema = common::workflow_schema();
    let t = Tokenizer::from_schema(&schema, &[]).unwrap();
    for seed in 0..300 {
        let (ids, doc) = t
            .random_document(seed, 400)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let v: Value =
            serde_json::from_str(&doc).unwrap_or_else(|e| panic!("seed {seed}: {e}: {doc}"));
        let enc = t.encode_value(&v).unwrap();
        assert!(
            enc.fallbacks.is_empty(),
            "seed {seed}: generated document does not conform: {:?}\n{doc}",
            enc.fallbacks
        );
        if ids.len() < 400 {
            // Walks that completed on their own are canonical or equivalent encodings.
            t.matcher_accepts(&enc.ids, 7)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
}

#[test]
#[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]
fn corpus_encodings_are_accepted_by_the_matcher_sample() {
    let schema = common::workflow_schema();
    let t = Tokenizer::from_schema(&schema, &[]).unwrap();
    for (i, r) in common::corpus().iter().enumerate().step_by(97) {
        let enc = t.encode_value(&r["json"]).unwrap();
        if enc.fallbacks.is_empty() {
            t.matcher_accepts(&enc.ids, 13)
                .unwrap_or_else(|e| panic!("doc {i}: {e}"));
        }
    }
}

#[test]
#[ignore]
fn debug_walk() {
    let schema = common::workflow_schema();
    let t = Tokenizer::from_schema(&schema, &[]).unwrap();
    let seed: u64 = std::env::var("SEED").unwrap_or("0".into()).parse().unwrap();
    let r = t.random_document(seed, 400);
    eprintln!(
        "{:?}",
        r.map(|x| x.1)
            .map_err(|e| e.message.chars().take(3000).collect::<String>())
    );
}

#[test]
#[ignore]
fn profile_matcher_by_frame_kind() {
    let t = common::bundled();
    let mut by: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut allowed = vec![false; t.vocab_size() as usize];
    for r in common::corpus().iter().step_by(1500) {
        let enc = t.encode_value(&r["json"]).unwrap();
        if !enc.fallbacks.is_empty() {
            continue;
        }
        let mut m = t.matcher();
        for &id in &enc.ids {
            let k = m.top_kind();
            let t0 = std::time::Instant::now();
            m.fill_allowed(&mut allowed);
            by.entry(k)
                .or_default()
                .push(t0.elapsed().as_secs_f64() * 1e6);
            assert!(allowed[id as usize]);
            m.advance(id).unwrap();
        }
    }
    for (k, mut v) in by {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
        eprintln!(
            "{k:16} n={:6} p50={:8.1} p90={:8.1} p99={:8.1} max={:8.1}",
            v.len(),
            p(0.5),
            p(0.9),
            p(0.99),
            v[v.len() - 1]
        );
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z\\-]{0,8}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn typed() -> Tokenizer {
        tok(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "on": {"oneOf": [{"type": "string", "enum": ["push", "pull_request"]}, {"type": "array", "items": {"type": "string"}}]},
                "n": {"type": "integer", "minimum": 0, "maximum": 100},
                "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
            },
            "required": ["on"],
            "additionalProperties": false
        }))
    }

    /// [`common::bundled`], loaded once for all cases.
    fn bundled() -> &'static Tokenizer {
        static T: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
        T.get_or_init(common::bundled)
    }

    /// Text with what decoding treats specially: escapes, control characters, multi-byte
    /// characters (split across ids), and the words the bundled vocabulary knows.
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                "\\PC{0,6}",
                Just("\"".to_string()),
                Just("\\".to_string()),
                Just("\n".to_string()),
                Just("\u{1}".to_string()),
                Just("é中𝄞".to_string()),
                Just("ubuntu-latest".to_string()),
                Just("actions/checkout@v4".to_string()),
                Just("${{ secrets.GITHUB_TOKEN }}".to_string()),
            ],
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn workflows_round_trip_with_the_trained_tokenizer(
            name in text(), runs_on in text(), run in text(), key in text(), value in text(),
            extra in json_value(),
        ) {
            let t = bundled();
            let doc = json!({
                "name": name,
                "on": "push",
                "env": {key.clone(): value},
                "jobs": {"build": {
                    "runs-on": runs_on,
                    "steps": [{"run": run}, {"uses": "actions/checkout@v4", "with": {key: extra}}]
                }}
            });
            let enc = t.encode_value(&doc).unwrap();
            let dec = t.decode(&enc.ids).unwrap();
            prop_assert_eq!(dec.consumed, enc.ids.len());
            let back: Value = serde_json::from_str(&dec.json).unwrap();
            prop_assert_eq!(back, doc);
        }

        #[test]
        fn random_trained_ids_never_panic(ids in prop::collection::vec(0u32..8300, 0..300)) {
            let t = bundled();
            match t.decode(&ids) {
                Ok(d) => prop_assert!(d.consumed <= ids.len()),
                Err(e) => prop_assert!(e.position <= ids.len()),
            }
        }

        #[test]
        fn any_json_round_trips_against_the_empty_schema(v in json_value()) {
            let t = tok(json!({}));
            // Floats with 3-digit exponents fall back (the matcher cannot generate them); every
            // value round-trips either way.
            let enc = t.encode_value(&v).unwrap();
            let back: Value = serde_json::from_str(&t.decode(&enc.ids).unwrap().json).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn any_json_round_trips_against_a_typed_schema(v in json_value()) {
            let t = typed();
            let enc = t.encode_value(&v).unwrap();
            let back: Value = serde_json::from_str(&t.decode(&enc.ids).unwrap().json).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn random_ids_never_panic(ids in prop::collection::vec(0u32..400, 0..200)) {
            let t = typed();
            let _ = t.decode(&ids);
            let mut m = t.matcher();
            let mut allowed = vec![false; t.vocab_size() as usize];
            let mut started = false;
            for id in ids {
                m.fill_allowed(&mut allowed);
                let ok = m.advance(id).is_ok();
                // BOS is accepted (and ignored) only before the document starts.
                let expected = allowed.get(id as usize).copied().unwrap_or(false) || (id == t.bos_id() && !started);
                prop_assert_eq!(ok, expected, "id {}", id);
                started |= ok && id != t.bos_id();
            }
        }

        #[test]
        fn masked_walks_conform(seed in any::<u64>()) {
            let t = typed();
            let (_, doc) = t.random_document(seed, 60).unwrap();
            let v: Value = serde_json::from_str(&doc).unwrap();
            prop_assert!(t.encode_value(&v).unwrap().fallbacks.is_empty(), "{}", doc);
        }
    }
}

/// Where trained encoding spends its time: parse, schema walk, vocabulary. Each stage is
/// timed alone, best of 5 runs, in thread CPU time (the development box is shared). "Cold" runs start from a
/// fresh copy of the tokenizer, so the piece cache starts empty. Run with
/// `cargo test --profile fast --test codec profile_encode -- --ignored --nocapture`.
#[test]
#[ignore]
fn profile_encode() {
    let bytes = common::bundled_bytes();
    let texts: Vec<Vec<u8>> = common::corpus()
        .iter()
        .step_by(11)
        .map(|r| serde_json::to_vec(&r["json"]).unwrap())
        .collect();
    let mb = texts.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let fresh = || Tokenizer::from_bytes(&bytes).unwrap();
    // CPU time of this thread (Linux schedstat), so that waiting for a core on a shared box
    // is not counted; wall time where it is not available.
    let cpu = || -> Option<f64> {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
    };
    let time = |name: &str, f: &dyn Fn(&Tokenizer)| {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = fresh();
            let (w0, c0) = (std::time::Instant::now(), cpu());
            f(&t);
            let s = match (c0, cpu()) {
                (Some(a), Some(b)) => b - a,
                _ => w0.elapsed().as_secs_f64(),
            };
            best = best.min(s);
        }
        eprintln!("{name:28} {best:8.3} s {:8.1} MB/s", mb / best);
    };
    time("parse (serde_json::Value)", &|_| {
        for x in &texts {
            std::hint::black_box(serde_json::from_slice::<Value>(x).unwrap());
        }
    });
    time("parse (tct::json)", &|_| {
        for x in &texts {
            std::hint::black_box(tct::json::parse(x).unwrap());
        }
    });
    let trees: Vec<tct::json::Json> = texts.iter().map(|x| tct::json::parse(x).unwrap()).collect();
    time("walk (encode_base_tree)", &|t| {
        for v in &trees {
            std::hint::black_box(t.encode_base_tree(v).unwrap());
        }
    });
    let t = fresh();
    let bases: Vec<Vec<u32>> = trees
        .iter()
        .map(|v| t.encode_base_tree(v).unwrap().ids)
        .collect();
    let n_base: usize = bases.iter().map(Vec::len).sum();
    eprintln!("{} docs, {mb:.1} MB, {n_base} base ids", texts.len());
    time("apply (cold cache)", &|t| {
        for b in &bases {
            std::hint::black_box(t.vocab().apply(b));
        }
    });
    time("apply (warm cache)", &|t| {
        for b in bases.iter().chain(&bases) {
            std::hint::black_box(t.vocab().apply(b));
        }
    });
    eprintln!("(warm: two passes, so half of it is the second pass)");
    time("encode_json (cold cache)", &|t| {
        for x in &texts {
            std::hint::black_box(t.encode_json(x).unwrap());
        }
    });
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|x| t.encode_json(x).unwrap().ids)
        .collect();
    time("decode", &|t| {
        for x in &ids {
            std::hint::black_box(t.decode(x).unwrap());
        }
    });
    time("decode base ids", &|t| {
        for x in &bases {
            std::hint::black_box(t.decode(x).unwrap());
        }
    });
}

/// Decoding appends an id's text to the open string as one run: errors still name the id
/// where they happen, and ids after the document are never looked at.
#[test]
#[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]
fn decode_positions_across_chunks() {
    let t = common::bundled();
    let corpus = common::corpus();
    let ids = corpus
        .iter()
        .map(|r| t.encode_value(&r["json"]).unwrap().ids)
        .find(|ids| ids.len() > 900)
        .expect("a long document");
    let n = ids.len();
    let whole = t.decode(&ids).unwrap();
    assert_eq!((whole.consumed, whole.total), (n, n));
    // EOS after the document is consumed; anything after it is not even looked at.
    let mut more = ids.clone();
    more.extend([t.eos_id(), u32::MAX, 5]);
    let d = t.decode(&more).unwrap();
    assert_eq!((d.json.as_str(), d.consumed), (whole.json.as_str(), n + 1));
    more[n] = u32::MAX;
    assert_eq!(t.decode(&more).unwrap().consumed, n);
    for at in [0, 255, 256, 257, 600, n - 1] {
        let mut bad = ids.clone();
        if at > 0 {
            // (Leading PADs are skipped.)
            bad[at] = t.pad_id();
            assert_eq!(t.decode(&bad).unwrap_err().position, at, "PAD at {at}");
        }
        bad[at] = t.vocab_size() + 7;
        assert_eq!(
            t.decode(&bad).unwrap_err().position,
            at,
            "unknown id at {at}"
        );
        assert_eq!(
            t.decode(&ids[..at]).unwrap_err().position,
            at,
            "truncated at {at}"
        );
    }
    // A byte that breaks UTF-8 inside a string, far into the document.
    let mut base = t.encode_base(&corpus[0]["json"]).unwrap().ids;
    let k = base
        .iter()
        .rposition(|&b| b < 256 && (b as u8).is_ascii_lowercase())
        .unwrap();
    base[k] = 0xff;
    assert_eq!(t.decode(&base).unwrap_err().position, k);
}
