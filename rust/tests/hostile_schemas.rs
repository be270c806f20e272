//! Schemas that used to hang the compiler or compile into something wrong: each is refused
//! quickly with a `SchemaError` that names the keyword's pointer.

use serde_json::{json, Value};
use std::time::Instant;

fn refused(schema: Value, pointer: &str, words: &str) {
    let t = Instant::now();
    let e = match tct::Tokenizer::from_schema(&schema, &[]) {
        Ok(_) => panic!("compiled: {schema}"),
        Err(e) => e,
    };
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(e.pointer, pointer, "{e}");
    assert!(e.to_string().contains(words), "{e}");
    assert!(secs < 5.0, "{secs} s to refuse {pointer}");
}

#[test]
fn huge_min_items_is_refused_not_looped_on() {
    // Looped forever in the cost analysis.
    refused(
        json!({"type": "array", "items": {"type": "integer"}, "minItems": 1e18}),
        "/minItems",
        "limit",
    );
    refused(
        json!({"properties": {"a": {"type": "object", "minProperties": 1e12}}}),
        "/properties/a/minProperties",
        "limit",
    );
}

#[test]
fn large_but_allowed_minimum_counts_compile_fast() {
    for schema in [
        json!({"type": "array", "items": {"type": "integer"}, "minItems": 65536}),
        json!({"type": "array", "prefixItems": [{"const": 1}], "items": {"type": "null"}, "minItems": 60000}),
        json!({"type": "object", "minProperties": 65536}),
    ] {
        let t = Instant::now();
        assert!(
            tct::Tokenizer::from_schema(&schema, &[]).is_ok(),
            "{schema}"
        );
        assert!(t.elapsed().as_secs_f64() < 5.0, "{schema}");
    }
}

#[test]
fn enum_size_is_checked_before_any_work() {
    let values: Vec<Value> = (0..140_000).map(|i| json!(format!("v{i}"))).collect();
    refused(json!({"enum": values}), "/enum", "limit");
}

#[test]
fn enum_with_many_duplicates_compiles_fast() {
    // Deduplication was quadratic in the number of values.
    let values: Vec<Value> = (0..50_000).map(|i| json!(format!("v{}", i % 50))).collect();
    let t = Instant::now();
    assert!(tct::Tokenizer::from_schema(&json!({"type": "string", "enum": values}), &[]).is_ok());
    assert!(t.elapsed().as_secs_f64() < 5.0);
}

#[test]
fn nested_one_of_explosion_fails_early() {
    // allOf of five 6-way oneOfs: 6^5 alternatives; took 14.7 s to reach the size limit.
    let one_of = |tag: &str| {
        let branches: Vec<Value> = (0..6)
            .map(|i| {
                let key = format!("{tag}{i}");
                json!({"type": "object", "properties": {key.clone(): {"const": i}}, "required": [key]})
            })
            .collect();
        json!({ "oneOf": branches })
    };
    let parts: Vec<Value> = ["a", "b", "c", "d", "e"].into_iter().map(one_of).collect();
    let schema = json!({ "allOf": parts });
    let t = Instant::now();
    let e = tct::Tokenizer::from_schema(&schema, &[]).expect_err("compiled 6^5 alternatives");
    assert!(e.pointer.starts_with("/allOf/"), "{e}");
    assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
}

#[test]
fn multiple_of_must_be_positive() {
    refused(
        json!({"type": "number", "multipleOf": 0}),
        "/multipleOf",
        "greater than 0",
    );
    refused(
        json!({"type": "integer", "multipleOf": -2}),
        "/multipleOf",
        "greater than 0",
    );
    assert!(
        tct::Tokenizer::from_schema(&json!({"type": "number", "multipleOf": 0.5}), &[]).is_ok()
    );
}
