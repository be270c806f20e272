//! Schemas the compiler used to read leniently without a word: `$ref` cycles that never
//! descend (compiled as "anything"), JSON pointers with invalid escapes, keys repeated in the
//! schema text (the last one won), and `$ref` siblings applied under draft-07 (which ignores
//! them).

use super::parse_schema_text;
use crate::error::SchemaError;
use crate::Tokenizer;
use serde_json::{json, Value};

fn refused(schema: Value) -> SchemaError {
    match Tokenizer::from_schema(&schema, &[]) {
        Ok(_) => panic!("compiled: {schema}"),
        Err(e) => e,
    }
}

fn bundled() -> Tokenizer {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/tct/data/github-workflow.tct.json"
    );
    Tokenizer::from_bytes(&std::fs::read(path).expect("bundled tokenizer")).unwrap()
}

/// Each schema applies itself to the same value through `$ref` (directly, through
/// definitions, or under `allOf`/`anyOf`), with no property or item in between.
#[test]
fn ref_cycles_with_no_base_case_are_refused() {
    let cases = [
        (json!({"$ref": "#"}), "/$ref"),
        (
            json!({
                "$ref": "#/definitions/a",
                "definitions": {
                    "a": {"$ref": "#/definitions/b"},
                    "b": {"$ref": "#/definitions/a"},
                },
            }),
            "/definitions/a/$ref",
        ),
        (json!({"allOf": [{"$ref": "#"}]}), "/allOf/0/$ref"),
        (
            json!({"type": "object", "allOf": [{"$ref": "#"}]}),
            "/allOf/0/$ref",
        ),
        (
            json!({"anyOf": [{"type": "string"}, {"$ref": "#"}]}),
            "/anyOf/1/$ref",
        ),
        // Under a property: the property's value refers to itself.
        (
            json!({
                "type": "object",
                "properties": {"p": {"$ref": "#/definitions/x"}},
                "definitions": {"x": {"allOf": [{"$ref": "#/definitions/x"}]}},
            }),
            "/definitions/x/allOf/0/$ref",
        ),
        // The draft-07 reading of `$ref` (siblings ignored) sees the same cycles.
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "$ref": "#"}),
            "/$ref",
        ),
    ];
    for (schema, pointer) in cases {
        let e = refused(schema.clone());
        assert_eq!(e.pointer, pointer, "{schema}: {e}");
        assert!(
            e.message.contains("$ref cycle with no base case"),
            "{schema}: {e}"
        );
    }
    let e = refused(json!({
        "$ref": "#/definitions/a",
        "definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}},
    }));
    assert!(
        e.message
            .contains("/definitions/a -> /definitions/b -> /definitions/a"),
        "{e}"
    );
}

/// Recursion through a property or an item is a schema for finite trees: still compiled, and
/// still enforced.
#[test]
fn recursion_through_properties_and_items_still_compiles() {
    let tree = json!({
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
    });
    let t = Tokenizer::from_schema(&tree, &[]).unwrap();
    let doc = json!({"children": [{"children": []}, {}]});
    let e = t.encode_value(&doc).unwrap();
    assert!(e.fallbacks.is_empty(), "{:?}", e.fallbacks);
    let back: Value = serde_json::from_str(&t.decode(&e.ids).unwrap().json).unwrap();
    assert_eq!(back, doc);
    // A child that is not an object is off the schema.
    let bad = t.encode_value(&json!({"children": [3]})).unwrap();
    assert!(!bad.fallbacks.is_empty());

    // A required recursive property, ended by `null`, through definitions and anyOf.
    let list = json!({
        "$ref": "#/definitions/node",
        "definitions": {
            "node": {
                "type": "object",
                "required": ["v", "next"],
                "additionalProperties": false,
                "properties": {
                    "v": {"type": "integer"},
                    "next": {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/node"}]},
                },
            },
        },
    });
    let t = Tokenizer::from_schema(&list, &[]).unwrap();
    let doc = json!({"v": 1, "next": {"v": 2, "next": null}});
    assert!(t.encode_value(&doc).unwrap().fallbacks.is_empty());
    let bad = t
        .encode_value(&json!({"v": 1, "next": {"v": "x", "next": null}}))
        .unwrap();
    assert!(!bad.fallbacks.is_empty());

    // SchemaStore's github-workflow.json (as the bundled tokenizer embeds it).
    assert!(bundled().graph().nodes.len() > 100);
}

#[test]
fn invalid_pointer_escapes_in_ref_are_refused() {
    for (reference, escape) in [("#/definitions/a~2b", "~2"), ("#/definitions/a~", "~")] {
        let e = refused(json!({
            "$ref": reference,
            "definitions": {"a~2b": {"type": "string"}, "a~": {"type": "string"}},
        }));
        assert_eq!(e.pointer, "/$ref", "{e}");
        assert!(e.message.contains("invalid escape"), "{e}");
        assert!(e.message.contains(&format!("\"{escape}")), "{e}");
    }
    // The two escapes there are: `~1` is `/`, `~0` is `~`.
    let ok = json!({
        "$ref": "#/definitions/a~1b~0c",
        "definitions": {"a/b~c": {"type": "string"}},
    });
    let t = Tokenizer::from_schema(&ok, &[]).unwrap();
    assert!(t.encode_value(&json!("x")).unwrap().fallbacks.is_empty());
    assert_eq!(t.encode_value(&json!(1)).unwrap().fallbacks, [""]);
}

#[test]
fn repeated_keys_in_schema_text_are_refused() {
    let e = parse_schema_text(br#"{"type":"string","type":"integer"}"#, "the schema").unwrap_err();
    assert_eq!(e.pointer, "/type", "{e}");
    assert!(e.message.contains("repeats the key \"type\""), "{e}");
    assert!(e.message.contains("at byte 17"), "{e}");

    let text = br#"{"properties": {"a/b": {"minLength": 1, "minLength": 2}}}"#;
    let e = parse_schema_text(text, "the schema").unwrap_err();
    assert_eq!(e.pointer, "/properties/a~1b/minLength", "{e}");
    assert!(e.message.contains("\"minLength\""), "{e}");

    // Not JSON at all: serde_json's message, as before.
    let e = parse_schema_text(b"{\"type\":", "the schema").unwrap_err();
    assert!(e.message.starts_with("the schema is not valid JSON"), "{e}");

    // The same key in different objects is fine, and the value is serde_json's.
    let text = br#"{"type": "object", "properties": {"type": {"type": "string"}}}"#;
    let v = parse_schema_text(text, "the schema").unwrap();
    assert_eq!(v, serde_json::from_slice::<Value>(text).unwrap());
}

/// The pointers where `doc` leaves the schema (encoded through the fallback path).
fn fallbacks(schema: &Value, doc: &Value) -> Vec<String> {
    let t = Tokenizer::from_schema(schema, &[]).unwrap();
    t.encode_value(doc).unwrap().fallbacks
}

/// Draft-07 and earlier ignore every keyword beside `$ref`; from 2019-09 they apply with it.
/// With no `$schema` the compiler keeps the 2019-09 reading.
#[test]
fn ref_siblings_follow_the_schema_draft() {
    let schema = |draft: Option<&str>| {
        let mut s = json!({
            "type": "object",
            "properties": {
                "a": {"$ref": "#/definitions/s", "maxLength": 3},
            },
            "definitions": {"s": {"type": "string"}},
        });
        if let Some(d) = draft {
            s["$schema"] = json!(d);
        }
        s
    };
    let long = json!({"a": "longer than three"});
    for draft in [
        "http://json-schema.org/draft-04/schema#",
        "http://json-schema.org/draft-06/schema#",
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft-07/schema",
    ] {
        assert!(
            fallbacks(&schema(Some(draft)), &long).is_empty(),
            "{draft}: maxLength beside $ref applied"
        );
        // The reference itself still applies.
        assert_eq!(fallbacks(&schema(Some(draft)), &json!({"a": 1})), ["/a"]);
    }
    for draft in [
        Some("https://json-schema.org/draft/2019-09/schema"),
        Some("https://json-schema.org/draft/2020-12/schema"),
        None,
    ] {
        assert_eq!(
            fallbacks(&schema(draft), &long),
            ["/a"],
            "{draft:?}: maxLength beside $ref ignored"
        );
        assert!(fallbacks(&schema(draft), &json!({"a": "abc"})).is_empty());
    }
}

/// github-workflow.json is draft-07: a step's `with` is `$ref: #/definitions/env` with
/// `properties` beside it, which draft-07 ignores, so `with: {args: 5}` conforms (as
/// python-jsonschema's Draft7Validator says).
#[test]
fn github_workflow_step_with_reads_as_draft_07() {
    let doc = json!({
        "on": "push",
        "jobs": {"build": {"runs-on": "ubuntu-latest", "steps": [
            {"uses": "actions/checkout@v4", "with": {"args": 5, "entrypoint": true}},
        ]}},
    });
    let round_trip = |t: &Tokenizer| {
        let e = t.encode_value(&doc).unwrap();
        let back: Value = serde_json::from_str(&t.decode(&e.ids).unwrap().json).unwrap();
        assert_eq!(back, doc);
        e.fallbacks
    };
    // A tokenizer built now reads the workflow schema as draft-07 does (`with` is
    // `#/definitions/env`, whose values may be numbers and booleans): no fallback.
    let schema = bundled().file().schema.clone();
    let fresh = Tokenizer::from_schema(&schema, &[]).unwrap();
    assert_eq!(fresh.file().ref_siblings, super::RefSiblings::ByDraft);
    assert!(round_trip(&fresh).is_empty());
    // The bundled file was built when siblings always applied (`args` a named string
    // property): it records no `ref_siblings`, keeps that reading and so the meaning of its
    // ids; the document still round-trips, through the fallback.
    let old = bundled();
    assert_eq!(old.file().ref_siblings, super::RefSiblings::Conjoined);
    assert!(!String::from_utf8(old.to_bytes())
        .unwrap()
        .contains("ref_siblings"));
    assert_eq!(
        round_trip(&old),
        [
            "/jobs/build/steps/0/with/args",
            "/jobs/build/steps/0/with/entrypoint"
        ]
    );
}
