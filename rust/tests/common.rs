//! Shared helpers for the integration tests: the data directory beside the repository.
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
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
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
