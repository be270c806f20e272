//! Whole-corpus checks of the base codec on the development workflows: exact round trip of
//! every document, no fallback for schema-valid documents, and the matcher accepting every
//! canonical encoding id by id.

mod common;
use tct::Tokenizer;

#[test]
#[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]
fn every_corpus_document_round_trips_and_valid_ones_need_no_fallback() {
    let schema = common::workflow_schema();
    let tok = Tokenizer::from_schema(&schema, &[]).expect("compile");
    let records = common::corpus();
    let mut fallback_docs = 0;
    let mut valid_with_fallback = Vec::new();
    let mut base_tokens = 0usize;
    let mut invalid_without_fallback = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let doc = &r["json"];
        let enc = tok
            .encode_value(doc)
            .unwrap_or_else(|e| panic!("doc {i}: {e}"));
        base_tokens += enc.ids.len();
        let dec = tok
            .decode(&enc.ids)
            .unwrap_or_else(|e| panic!("doc {i}: {e}"));
        let back: serde_json::Value = serde_json::from_str(&dec.json).unwrap();
        assert_eq!(&back, doc, "doc {i} does not round-trip");
        assert_eq!(dec.consumed, enc.ids.len());
        if enc.fallbacks.is_empty() && r["schema_valid"] == serde_json::Value::Bool(false) {
            invalid_without_fallback.push((i, r["schema_error"].to_string()));
        }
        if !enc.fallbacks.is_empty() {
            fallback_docs += 1;
            if r["schema_valid"] == serde_json::Value::Bool(true) {
                valid_with_fallback.push((i, enc.fallbacks.clone()));
            }
        }
    }
    eprintln!(
        "{} docs, {fallback_docs} with fallback, {:.1} base tokens/doc",
        records.len(),
        base_tokens as f64 / records.len() as f64
    );
    assert!(
        valid_with_fallback.is_empty(),
        "schema-valid docs that fell back: {:?}",
        &valid_with_fallback[..valid_with_fallback.len().min(10)]
    );
}

/// The encoder's fast path (contents by reference, whole words memoized) gives exactly the
/// vocabulary applied to the spelt-out base stream, on every corpus document, cold and warm.
#[test]
#[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]
fn trained_encoding_equals_the_vocabulary_over_base_ids() {
    let tok = common::bundled();
    let texts: Vec<Vec<u8>> = common::corpus()
        .iter()
        .map(|r| serde_json::to_vec(&r["json"]).unwrap())
        .collect();
    for pass in ["cold", "warm"] {
        for (i, text) in texts.iter().enumerate() {
            let doc = tct::json::parse(text).unwrap();
            let fast = tok.encode_tree(&doc).unwrap().ids;
            let base = tok.encode_base_tree(&doc).unwrap().ids;
            assert_eq!(fast, tok.vocab().apply(&base), "doc {i} ({pass})");
        }
    }
}

#[test]
#[ignore]
fn debug_one() {
    let schema = common::workflow_schema();
    let tok = Tokenizer::from_schema(&schema, &[]).expect("compile");
    let i: usize = std::env::var("DOC").unwrap().parse().unwrap();
    let r = &common::corpus()[i];
    let enc = tok.encode_value(&r["json"]).unwrap();
    match tok.decode(&enc.ids) {
        Ok(_) => eprintln!("ok"),
        Err(e) => {
            let p = e.position;
            let names: Vec<String> = enc.ids[p.saturating_sub(30)..(p + 5).min(enc.ids.len())]
                .iter()
                .map(|&t| {
                    if t < 256 {
                        (t as u8 as char).to_string()
                    } else {
                        tct::base::name(t)
                    }
                })
                .collect();
            eprintln!("{e}\n{}", names.join(" "));
            eprintln!("{}", serde_json::to_string(&r["json"]).unwrap());
        }
    }
}
