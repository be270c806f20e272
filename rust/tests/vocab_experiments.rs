//! Corpus experiments behind the numbers in docs/vocabulary-decisions.md (ignored tests, run by hand).
//!
//! They read the split written by `python benches/compression.py --skip-tct --write-split DIR`
//! (`DIR/train.jsonl`, `DIR/heldout.jsonl`; `DIR` from `TCT_VOCAB_SPLIT`, default
//! `/tmp/tct_vocab/split`), train each variant on the training split and report tokens per
//! held-out document:
//!
//! ```text
//! TCT_VOCAB_SPLIT=/tmp/tct_vocab/split cargo test --release --test vocab_experiments -- --ignored --nocapture
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

use tct::vocab::segment;
use tct::vocab::*;

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

struct Split {
    pub base_size: u32,
    pub train: Vec<Vec<u32>>,
    /// Repository of each training stream (from `DIR/train.repos`; all 0 without that file).
    pub train_groups: Vec<u32>,
    pub held: Vec<Vec<u32>>,
    pub held_groups: Vec<u32>,
}

/// Group ids from a file of repository names, one per line (numbered in order of first use).
fn read_groups(path: &std::path::Path, n: usize) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("{}: missing, every document in group 0", path.display());
        return vec![0; n];
    };
    let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let g: Vec<u32> = text
        .lines()
        .map(|l| {
            let next = ids.len() as u32;
            *ids.entry(l).or_insert(next)
        })
        .collect();
    assert_eq!(g.len(), n, "{}: one line per document", path.display());
    g
}

fn load_split(encode: &(dyn Fn(&Value) -> Option<Vec<u32>> + Sync), base_size: u32) -> Split {
    let dir = std::env::var("TCT_VOCAB_SPLIT").unwrap_or_else(|_| "/tmp/tct_vocab/split".into());
    let dir = std::path::Path::new(&dir);
    let t = Instant::now();
    let enc = |name: &str, repos: &str| -> (Vec<Vec<u32>>, Vec<u32>) {
        use rayon::prelude::*;
        let docs = read_jsonl(&dir.join(name));
        let groups = read_groups(&dir.join(repos), docs.len());
        let streams: Vec<Option<Vec<u32>>> = docs.par_iter().map(encode).collect();
        streams
            .into_iter()
            .zip(groups)
            .filter_map(|(s, g)| Some((s?, g)))
            .unzip()
    };
    // Training groups: repositories, or repository files with TCT_VOCAB_GROUPS=files.
    let by = std::env::var("TCT_VOCAB_GROUPS").unwrap_or_else(|_| "repos".into());
    let (train, train_groups) = enc("train.jsonl", &format!("train.{by}"));
    let (held, held_groups) = enc("heldout.jsonl", "heldout.repos");
    eprintln!(
        "split: {} train, {} held-out streams ({:.1}s)",
        train.len(),
        held.len(),
        t.elapsed().as_secs_f64()
    );
    Split {
        base_size,
        train,
        train_groups,
        held,
        held_groups,
    }
}

fn standin_split() -> Split {
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

/// Mean over held-out repositories of their mean ids per document (each repository counts
/// once: a check that a change does not only help the largest held-out repositories).
fn repo_mean(counts: &[usize], groups: &[u32]) -> f64 {
    let mut by: std::collections::BTreeMap<u32, (usize, usize)> = Default::default();
    for (&c, &g) in counts.iter().zip(groups) {
        let e = by.entry(g).or_default();
        e.0 += c;
        e.1 += 1;
    }
    by.values().map(|&(s, n)| s as f64 / n as f64).sum::<f64>() / by.len() as f64
}

fn run_vocab(split: &Split, label: &str, v: &Vocab, secs: f64) -> f64 {
    let t = Instant::now();
    let counts: Vec<usize> = split.held.iter().map(|s| v.apply(s).len()).collect();
    let apply_secs = t.elapsed().as_secs_f64();
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    if std::env::var("TCT_VOCAB_TRAIN_MEAN").is_ok() {
        let tc: usize = split
            .train
            .iter()
            .step_by(10)
            .map(|s| v.apply(s).len())
            .sum();
        println!(
            "  (training sample mean {:.1})",
            tc as f64 / split.train.iter().step_by(10).count() as f64
        );
    }
    println!(
        "{label:40} | dict {:4} merges {:4} | {} | repo-mean {:6.1} | train {secs:5.1}s apply {apply_secs:4.2}s",
        v.dictionary().len(),
        v.merges().len(),
        stats(counts.clone()),
        repo_mean(&counts, &split.held_groups),
    );
    mean
}

/// Trains `cfg` on the training split (with its repository ids when `grouped`) and reports
/// ids per held-out document.
fn run_variant_grouped(split: &Split, label: &str, cfg: &TrainConfig, grouped: bool) -> f64 {
    let t = Instant::now();
    let groups = grouped.then_some(split.train_groups.as_slice());
    let (v, _) = train_grouped(&split.train, groups, cfg).unwrap();
    run_vocab(split, label, &v, t.elapsed().as_secs_f64())
}

fn run_variant(split: &Split, label: &str, cfg: &TrainConfig) -> f64 {
    run_variant_grouped(split, label, cfg, false)
}

fn variants(split: &Split) {
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
        weighting: Weighting::Raw,
        encoding: Encoding::RankedMerges,
        prune_extra: 0,
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
                ref_siblings: tct::compile::RefSiblings::ByDraft,
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
fn real_split() -> Split {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/schemas");
    let text = std::fs::read(dir.join("github-workflow.json")).unwrap();
    let schema: Value = serde_json::from_slice(&text).unwrap();
    let tok = tct::Tokenizer::from_schema(&schema, &[]).unwrap();
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
    let tok = tct::Tokenizer::from_schema(&schema, &[]).unwrap();
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

/// A configuration from a compact spec: `dict=256,power=65,extra=0,enc=shortest,...` (keys:
/// `dict`, `power` (0 = raw), `log`, `distinct`, `extra`, `enc` (`shortest` | `ranked`),
/// `scope`, `vocab`, `mindict`); unset keys keep [`TrainConfig::new`]'s defaults. Returns the
/// configuration and whether to train with the repository groups.
fn parse_spec(split: &Split, spec: &str) -> (TrainConfig, bool) {
    let mut c = TrainConfig::new(split.base_size - FIRST_SEL, 8192);
    c.progress = std::env::var("TCT_VOCAB_PROGRESS").is_ok();
    for kv in spec.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "dict" => c.dictionary_size = v.parse().unwrap(),
            "power" => {
                let p: u32 = v.parse().unwrap();
                c.weighting = if p == 0 {
                    Weighting::Raw
                } else {
                    Weighting::Power(p)
                };
            }
            "log" => c.weighting = Weighting::Log,
            "distinct" => c.weighting = Weighting::Distinct,
            "extra" => c.prune_extra = v.parse().unwrap(),
            "enc" => {
                c.encoding = match v {
                    "shortest" => Encoding::Shortest,
                    "ranked" => Encoding::RankedMerges,
                    _ => panic!("enc={v}: shortest or ranked"),
                }
            }
            "scope" => c.scope = serde_json::from_value(Value::String(v.into())).unwrap(),
            "vocab" => c.vocab_size = v.parse().unwrap(),
            "mindict" => c.min_dict_count = v.parse().unwrap(),
            "default" => {}
            _ => panic!("unknown key {k}"),
        }
    }
    let grouped = c.weighting != Weighting::Raw;
    (c, grouped)
}

/// Variants given on the command line, `;`-separated specs (see [`parse_spec`]):
///
/// ```text
/// TCT_VOCAB_SPLIT=/tmp/tct_vocab/split TCT_VOCAB_CFGS="default;power=0;enc=ranked,extra=0" \
///   cargo test --release --test vocab_experiments real_configs -- --ignored --nocapture
/// ```
#[test]
#[ignore = "corpus experiment: needs the split files, minutes of CPU"]
fn real_configs() {
    let split = real_split();
    let cfgs = std::env::var("TCT_VOCAB_CFGS").unwrap_or_else(|_| "default".into());
    for spec in cfgs.split(';').filter(|s| !s.is_empty()) {
        let (c, grouped) = parse_spec(&split, spec);
        run_variant_grouped(&split, spec, &c, grouped);
    }
}

/// The default vocabulary trained on the training split with its repository groups.
fn default_vocab(split: &Split) -> Vocab {
    let cfg = TrainConfig::new(split.base_size - FIRST_SEL, 8192);
    train_grouped(&split.train, Some(&split.train_groups), &cfg)
        .unwrap()
        .0
}

/// Where the held-out ids go (default vocabulary): words by kind and content length.
#[test]
#[ignore = "corpus experiment: needs the split files"]
fn real_cost_breakdown() {
    let split = real_split();
    let v = default_vocab(&split);
    let mut buckets: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    let mut word = Vec::new();
    for s in &split.held {
        segment::segment(
            s,
            v.scope(),
            v.base_size(),
            &|_, _| None,
            &mut word,
            &mut |piece| {
                let (label, base_len, ids) = match piece {
                    segment::Piece::Single(t) => {
                        let l = if t == STR_END {
                            "empty string"
                        } else {
                            "struct alone"
                        };
                        (l.to_string(), 1, 1)
                    }
                    segment::Piece::Word(w) => {
                        let n_struct = w
                            .iter()
                            .filter(|&&t| t > STR_END && t < v.base_size())
                            .count();
                        let bytes = w.iter().filter(|&&t| t < STR_END).count();
                        let kind = match (n_struct > 0, bytes) {
                            (true, 0) => "struct run".to_string(),
                            (s, b) => {
                                let lb = match b {
                                    0..=8 => "<=8",
                                    9..=32 => "9-32",
                                    33..=128 => "33-128",
                                    129..=512 => "129-512",
                                    _ => ">512",
                                };
                                format!("{}content {lb}", if s { "struct+" } else { "" })
                            }
                        };
                        (kind, w.len(), v.apply(w).len())
                    }
                };
                let e = buckets.entry(label).or_default();
                e.0 += 1;
                e.1 += base_len;
                e.2 += ids;
            },
        );
    }
    let n = split.held.len() as f64;
    let total: usize = buckets.values().map(|e| e.2).sum();
    println!("| word kind | words/doc | base ids/doc | ids/doc | share |");
    for (k, (w, b, i)) in &buckets {
        println!(
            "| {k} | {:.1} | {:.1} | {:.1} | {:.1}% |",
            *w as f64 / n,
            *b as f64 / n,
            *i as f64 / n,
            *i as f64 * 100.0 / total as f64
        );
    }
    println!("total ids/doc {:.1}", total as f64 / n);
}

/// Writes `base ids, ids` per held-out document (default vocabulary) to `$TCT_VOCAB_DUMP`
/// (for comparisons with other tokenizers document by document, e.g. per repository), and
/// the vocabulary to `$TCT_VOCAB_DUMP.vocab.json`.
#[test]
#[ignore = "corpus experiment: needs the split files"]
fn real_dump_counts() {
    let split = real_split();
    let v = default_vocab(&split);
    let out =
        std::env::var("TCT_VOCAB_DUMP").unwrap_or_else(|_| "/tmp/tct_vocab/counts.txt".into());
    let text: String = split
        .held
        .iter()
        .map(|s| format!("{} {}\n", s.len(), v.apply(s).len()))
        .collect();
    std::fs::write(&out, text).unwrap();
    let f = TokenizerFile {
        name: "experiment".into(),
        schema: Value::Null,
        registry: vec![],
        vocab: v,
        training: Value::Null,
        ref_siblings: tct::compile::RefSiblings::ByDraft,
    };
    f.write(std::path::Path::new(&format!("{out}.vocab.json")))
        .unwrap();
}

fn show_ids(v: &Vocab, ids: &[u32]) -> String {
    let mut s = String::new();
    for &id in ids {
        s.push('[');
        for &t in v.expansion(id).unwrap_or(&[]) {
            match t {
                10 => s.push_str("\\n"),
                0..=255 => s.push(t as u8 as char),
                256 => s.push('⏎'),
                257 => s.push_str("END "),
                258 => s.push_str("ARR "),
                259 => s.push_str("ITEM "),
                268.. => s.push_str(&format!("S{} ", t - 268)),
                _ => s.push_str(&format!("<{t}> ")),
            }
        }
        s.push(']');
    }
    s
}

/// Prints the held-out documents `$TCT_VOCAB_DOCS` (comma-separated indices) id by id, with
/// the vocabulary written by `real_dump_counts`.
#[test]
#[ignore = "corpus experiment: needs the split files"]
fn real_show_heldout() {
    let split = real_split();
    let path =
        std::env::var("TCT_VOCAB_DUMP").unwrap_or_else(|_| "/tmp/tct_vocab/counts.txt".into());
    let v = TokenizerFile::read(std::path::Path::new(&format!("{path}.vocab.json")))
        .unwrap()
        .vocab;
    for i in std::env::var("TCT_VOCAB_DOCS").unwrap().split(',') {
        let i: usize = i.parse().unwrap();
        let ids = v.apply(&split.held[i]);
        println!("doc {i}: {} ids\n{}\n", ids.len(), show_ids(&v, &ids));
    }
}

/// Oracle: the default configuration trained on the training split plus the held-out
/// documents themselves (each held-out repository its own group): how much of the gap is
/// generalisation to new repositories rather than vocabulary capacity.
#[test]
#[ignore = "corpus experiment: needs the split files"]
fn real_oracle() {
    let split = real_split();
    let mut all = split.train.clone();
    all.extend(split.held.iter().cloned());
    let offset = split.train_groups.iter().max().map_or(0, |m| m + 1);
    let mut groups = split.train_groups.clone();
    groups.extend(split.held_groups.iter().map(|g| g + offset));
    for spec in ["enc=ranked,extra=0,power=0,dict=256", "default"] {
        let (c, grouped) = parse_spec(&split, spec);
        let t = Instant::now();
        let (v, _) = train_grouped(&all, grouped.then_some(groups.as_slice()), &c).unwrap();
        run_vocab(
            &split,
            &format!("ORACLE {spec}"),
            &v,
            t.elapsed().as_secs_f64(),
        );
    }
}

/// Apply speed, single thread, on the held-out streams, for tokenizer files
/// `$TCT_VOCAB_FILES` (comma-separated; default: the bundled one).
#[test]
#[ignore = "corpus experiment: needs the split files"]
fn real_apply_speed() {
    let split = real_split();
    let files = std::env::var("TCT_VOCAB_FILES").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/tct/data/github-workflow.tct.json"
        )
        .into()
    });
    let n: usize = split.held.iter().map(Vec::len).sum();
    for path in files.split(',') {
        let v = TokenizerFile::read(std::path::Path::new(path))
            .unwrap()
            .vocab;
        for round in 0..3 {
            let t = Instant::now();
            let out: usize = split.held.iter().map(|s| v.apply(s).len()).sum();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{} {round}: {n} base ids -> {out} ids, {:.1} ns/base id",
                v.encoding().as_str(),
                secs * 1e9 / n as f64
            );
        }
    }
}
