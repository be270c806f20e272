//! Shared helpers for the integration tests: the data directory beside the repository.
//!
//! Tests that need `../shared/data` (the corpus, the SchemaStore schemas and their test
//! documents) carry `#[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]`: build.rs sets
//! `tct_no_data` when the data is missing (and `TCT_REQUIRE_DATA` is unset), so a fresh clone
//! lists them as ignored instead of failing. Tests that only need the workflow schema take it
//! from the bundled tokenizer, which embeds it, and run everywhere.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// The bundled trained tokenizer's file (`tct.load("github-workflow")`).
pub fn bundled_bytes() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/tct/data/github-workflow.tct.json"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The bundled trained tokenizer (8,192 ids: text-only, dictionary and structural ids).
pub fn bundled() -> tct::Tokenizer {
    tct::Tokenizer::from_bytes(&bundled_bytes()).unwrap()
}

pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        dir.is_dir(),
        "{} not found: the development data must sit beside the repository \
         (TCT_REQUIRE_DATA is set, or this test lacks its `tct_no_data` ignore)",
        dir.display()
    );
    dir
}

/// SchemaStore's github-workflow.json: from the data when it is there, else the copy embedded
/// in the bundled tokenizer (the schema it was trained for).
pub fn workflow_schema() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/schemas/github-workflow.json");
    if path.is_file() {
        return read_json(&path);
    }
    let file: Value = serde_json::from_slice(&bundled_bytes()).expect("bundled tokenizer JSON");
    file["schema"].clone()
}

pub fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every schema under schemas/ and schemas/refs/, registered the way SchemaStore names them.
pub fn registry() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for dir in ["schemas", "schemas/refs"] {
        let mut files: Vec<_> = std::fs::read_dir(data_dir().join(dir))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            out.push((
                format!("https://json.schemastore.org/{name}"),
                read_json(&f),
            ));
        }
    }
    out
}

/// The workflow corpus records (parsed JSON lines).
pub fn corpus() -> Vec<Value> {
    let f = std::fs::File::open(data_dir().join("workflows/workflows.jsonl.gz")).expect("corpus");
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    r.lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}
