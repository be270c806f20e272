//! Wide values: maps with many keys and `uniqueItems` arrays with many items. Every key and
//! unique item is checked against all before it; those checks must stay constant-time, or a
//! wide value costs quadratic time (a map of 100,000 keys took 9.3 s to decode, 100,000
//! unique strings 24 s to encode and 177 s to decode).
//!
//! Each case compares decoding with encoding the same value in the same run (both linear now,
//! so the ratio is near 1), not with a wall-clock limit, so a slow machine does not fail it.

use serde_json::{json, Value};
use std::time::Instant;

fn round_trip_in_linear_time(schema: Value, doc: Value) {
    let tok = tct::Tokenizer::from_schema(&schema, &[]).unwrap();
    let t = Instant::now();
    let enc = tok.encode_value(&doc).unwrap();
    let encode = t.elapsed().as_secs_f64();
    assert!(enc.fallbacks.is_empty(), "{:?}", &enc.fallbacks[..1]);
    let t = Instant::now();
    let dec = tok.decode(&enc.ids).unwrap();
    let decode = t.elapsed().as_secs_f64();
    assert_eq!(serde_json::from_str::<Value>(&dec.json).unwrap(), doc);
    // Quadratic bookkeeping made this ratio 40 (maps) to 100 (unique strings) at 100,000.
    assert!(
        decode <= 5.0 * encode + 0.2,
        "{schema}: decode {decode:.3} s, encode {encode:.3} s"
    );
}

#[test]
fn a_map_of_200000_keys_decodes_in_linear_time() {
    let doc: serde_json::Map<String, Value> =
        (0..200_000).map(|i| (format!("k{i}"), json!(i))).collect();
    round_trip_in_linear_time(
        json!({"type": "object", "additionalProperties": {"type": "integer"}}),
        Value::Object(doc.clone()),
    );
    round_trip_in_linear_time(json!({"type": "object"}), Value::Object(doc));
}

#[test]
fn unique_items_arrays_of_100000_items_encode_and_decode_in_linear_time() {
    let strings: Vec<Value> = (0..100_000).map(|i| json!(format!("v{i}"))).collect();
    let numbers: Vec<Value> = (0..100_000).map(|i| json!(i)).collect();
    let t = Instant::now();
    round_trip_in_linear_time(
        json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}),
        Value::Array(strings),
    );
    round_trip_in_linear_time(
        json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": true}),
        Value::Array(numbers),
    );
    // Encoding alone was quadratic here (24 s for the strings): no same-run reference exists
    // for it, so a generous wall-clock bound stands in.
    assert!(t.elapsed().as_secs_f64() < 20.0);
}

#[test]
fn unique_items_still_refuse_duplicates_of_every_kind() {
    let tok =
        tct::Tokenizer::from_schema(&json!({"type": "array", "uniqueItems": true}), &[]).unwrap();
    // Equal values: numbers by their text, objects whatever their member order.
    for dup in [
        json!(["a", 1, "a"]),
        json!([{"a": 1, "b": [2]}, {"b": [2], "a": 1}]),
        json!([[1, "x"], [1, "x"]]),
        json!([null, true, null]),
    ] {
        let enc = tok.encode_value(&dup).unwrap();
        assert_eq!(enc.fallbacks, vec![String::new()], "{dup}");
    }
    for fine in [
        json!(["1", 1]),
        json!([1, 1.0]),
        json!([{"a": 1}, {"a": 2}]),
        json!([[1, 2], [2, 1]]),
    ] {
        let enc = tok.encode_value(&fine).unwrap();
        assert!(enc.fallbacks.is_empty(), "{fine}: {:?}", enc.fallbacks);
        let dec = tok.decode(&enc.ids).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&dec.json).unwrap(), fine);
    }
}
