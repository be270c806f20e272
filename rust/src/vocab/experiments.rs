//! Corpus experiments behind the numbers in [`super::decisions`] (ignored tests, run by hand).
//!
//! They read the split written by `python benches/compression.py --skip-tct --write-split DIR`
//! (`DIR/train.jsonl`, `DIR/heldout.jsonl`; `DIR` from `TCT_VOCAB_SPLIT`, default
//! `/tmp/tct_vocab/split`), train each variant on the training split and report tokens per
//! held-out document:
//!
//! ```text
//! TCT_VOCAB_SPLIT=/tmp/tct_vocab/split cargo test --release --lib vocab::experiments -- --ignored --nocapture
//! ```
//!
//! Base streams come from the real encoder (`Tokenizer::encode_value` on SchemaStore's
//! `github-workflow.json`) when `TCT_VOCAB_REAL=1`, otherwise from a stand-in that mimics the
//! base format without a schema (a `SEL` per object key, strings and numbers as
//! `bytes STR_END`, `ARR_END` after arrays): good enough to compare the layers before the codec
//! existed, never used by the product.

use std::io::BufRead;
use std::time::Instant;

use serde_json::Value;

use super::*;

const STANDIN_SEL: u32 = 64;
const END: u32 = 257;
const ARR_END: u32 = 258;

fn standin(v: &Value, out: &mut Vec<u32>) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(FIRST_SEL + u32::from(*b)),
        Value::Number(n) => {
            out.extend(n.to_string().bytes().map(u32::from));
            out.push(STR_END);
        }
        Value::String(s) => {
            out.extend(s.bytes().map(u32::from));
            out.push(STR_END);
        }
        Value::Array(a) => {
            for x in a {
                standin(x, out);
            }
            out.push(ARR_END);
        }
        Value::Object(m) => {
            for k in m.keys() {
                let h = k
                    .bytes()
                    .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                out.push(FIRST_SEL + h % STANDIN_SEL);
            }
            out.push(END);
            for x in m.values() {
                standin(x, out);
            }
        }
    }
}

fn read_jsonl(path: &std::path::Path) -> Vec<Value> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::BufReader::new(f)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

pub(crate) struct Split {
    pub base_size: u32,
    pub train: Vec<Vec<u32>>,
    pub held: Vec<Vec<u32>>,
}

fn load_split(encode: &(dyn Fn(&Value) -> Option<Vec<u32>> + Sync), base_size: u32) -> Split {
    let dir = std::env::var("TCT_VOCAB_SPLIT").unwrap_or_else(|_| "/tmp/tct_vocab/split".into());
    let dir = std::path::Path::new(&dir);
    let t = Instant::now();
    let enc = |docs: Vec<Value>| -> Vec<Vec<u32>> {
        use rayon::prelude::*;
        docs.par_iter().filter_map(encode).collect()
    };
    let train = enc(read_jsonl(&dir.join("train.jsonl")));
    let held = enc(read_jsonl(&dir.join("heldout.jsonl")));
    eprintln!(
        "split: {} train, {} held-out streams ({:.1}s)",
        train.len(),
        held.len(),
        t.elapsed().as_secs_f64()
    );
    Split {
        base_size,
        train,
        held,
    }
}

pub(crate) fn standin_split() -> Split {
    load_split(
        &|v| {
            let mut out = Vec::new();
            standin(v, &mut out);
            Some(out)
        },
        FIRST_SEL + STANDIN_SEL,
    )
}

fn stats(mut c: Vec<usize>) -> String {
    c.sort_unstable();
    let n = c.len();
    let mean = c.iter().sum::<usize>() as f64 / n as f64;
    let le = |x| c.iter().filter(|&&v| v <= x).count() as f64 * 100.0 / n as f64;
    format!(
        "mean {mean:7.1} | median {:5} | p90 {:5} | <=512 {:5.1}% | <=1024 {:5.1}%",
        c[n / 2],
        c[(n * 9 / 10).min(n - 1)],
        le(512),
        le(1024)
    )
}

pub(crate) fn run_variant(split: &Split, label: &str, cfg: &TrainConfig) -> f64 {
    let t = Instant::now();
    let v = train(&split.train, cfg).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let counts: Vec<usize> = split.held.iter().map(|s| v.apply(s).len()).collect();
    let apply_secs = t.elapsed().as_secs_f64();
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    println!(
        "{label:40} | dict {:4} merges {:4} | {} | train {secs:5.1}s apply {apply_secs:4.2}s",
        v.dictionary().len(),
        v.merges().len(),
        stats(counts)
    );
    mean
}

pub(crate) fn variants(split: &Split) {
    let base: Vec<usize> = split.held.iter().map(Vec::len).collect();
    println!(
        "{:40} | {:20} | {}",
        "base ids (no vocabulary)",
        "",
        stats(base)
    );
    let cfg = |scope, dict, scoring| TrainConfig {
        base_size: split.base_size,
        vocab_size: 8192,
        dictionary_size: dict,
        scope,
        dict_scoring: scoring,
        min_dict_count: 2,
        min_pair_count: 2,
        n_positions: DEFAULT_N_POSITIONS,
        progress: std::env::var("TCT_VOCAB_PROGRESS").is_ok(),
    };
    let only = std::env::var("TCT_VOCAB_ONLY").unwrap_or_default();
    let mut runs: Vec<(String, TrainConfig)> = Vec::new();
    for scope in [
        MergeScope::Spans,
        MergeScope::Strings,
        MergeScope::StructureRuns,
        MergeScope::Across,
    ] {
        runs.push((
            format!("{} dict 1024 raw", scope.as_str()),
            cfg(scope, 1024, DictScoring::Raw),
        ));
    }
    for dict in [0, 256, 2048, 4096] {
        runs.push((
            format!("across dict {dict} raw"),
            cfg(MergeScope::Across, dict, DictScoring::Raw),
        ));
    }
    runs.push((
        "document dict 256 raw".into(),
        cfg(MergeScope::Document, 256, DictScoring::Raw),
    ));
    for dict in [0, 256] {
        runs.push((
            format!("spans dict {dict} raw"),
            cfg(MergeScope::Spans, dict, DictScoring::Raw),
        ));
    }
    for dict in [256, 1024] {
        runs.push((
            format!("across dict {dict} bpe"),
            cfg(MergeScope::Across, dict, DictScoring::Bpe),
        ));
    }
    for (label, c) in runs {
        if only.is_empty() || label.contains(&only) {
            run_variant(split, &label, &c);
        }
    }
}

#[test]
#[ignore = "corpus experiment: needs the split files, minutes of CPU"]
fn standin_variants() {
    variants(&standin_split());
}

/// Apply speed on the held-out split with a vocabulary trained once and cached in a file.
#[test]
#[ignore = "corpus experiment: needs the split files"]
fn standin_apply_speed() {
    let split = standin_split();
    let path = std::path::Path::new("/tmp/tct_vocab/standin_across_1024.json");
    let v = match TokenizerFile::read(path) {
        Ok(f) => f.vocab,
        Err(_) => {
            let mut cfg = TrainConfig::new(STANDIN_SEL, 8192);
            cfg.scope = MergeScope::Across;
            let v = train(&split.train, &cfg).unwrap();
            let f = TokenizerFile {
                name: "standin".into(),
                schema: Value::Null,
                registry: vec![],
                vocab: v.clone(),
                training: Value::Null,
            };
            f.write(path).unwrap();
            v
        }
    };
    let n: usize = split.held.iter().map(Vec::len).sum();
    for round in 0..3 {
        let t = Instant::now();
        let mut out = 0;
        for s in &split.held {
            out += v.apply(s).len();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "round {round}: {n} base ids -> {out} ids in {secs:.3}s: {:.1} M base ids/s",
            n as f64 / secs / 1e6
        );
    }
}

/// Base streams from the real encoder on SchemaStore's `github-workflow.json`.
pub(crate) fn real_split() -> Split {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/schemas");
    let text = std::fs::read(dir.join("github-workflow.json")).unwrap();
    let schema: Value = serde_json::from_slice(&text).unwrap();
    let tok = crate::tokenizer::Tokenizer::from_schema(&schema, &[]).unwrap();
    let base_size = tok.vocab().base_size();
    eprintln!("github-workflow: base_size {base_size}");
    load_split(&|v| tok.encode_base(v).ok().map(|e| e.ids), base_size)
}

#[test]
#[ignore = "corpus experiment: needs the split files, minutes of CPU"]
fn real_variants() {
    variants(&real_split());
}

#[test]
#[ignore = "corpus experiment: prints one real base stream"]
fn real_show_stream() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/schemas");
    let schema: Value =
        serde_json::from_slice(&std::fs::read(dir.join("github-workflow.json")).unwrap()).unwrap();
    let tok = crate::tokenizer::Tokenizer::from_schema(&schema, &[]).unwrap();
    let doc: Value = serde_json::from_str(
        r#"{"name":"CI","on":{"push":{"branches":["main","dev"]}},"env":{"A":"1","B":"x"},
        "jobs":{"build":{"runs-on":"ubuntu-latest","steps":[{"uses":"actions/checkout@v4",
        "with":{"fetch-depth":0}},{"run":"npm ci"}]}}}"#,
    )
    .unwrap();
    let ids = tok.encode_base(&doc).unwrap().ids;
    let mut s = String::new();
    for id in ids {
        match id {
            0..=255 => s.push(id as u8 as char),
            256 => s.push_str("⏎ "),
            257 => s.push_str("END "),
            258 => s.push_str("ARR_END "),
            259 => s.push_str("ITEM "),
            268.. => s.push_str(&format!("S{} ", id - 268)),
            _ => s.push_str(&format!("<{id}> ")),
        }
    }
    println!("{s}");
}
