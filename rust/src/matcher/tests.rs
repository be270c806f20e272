//! The matcher's fast paths (string masks, walks over copies of the top frames, caches)
//! against `fill_allowed_by_simulation`, which steps every id on a full copy: any difference
//! is a soundness or completeness bug of the fast path.

use super::*;
use crate::testing::SplitMix64;
use crate::Tokenizer;
use serde_json::Value;
use std::io::BufRead;

fn bundled() -> Tokenizer {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/tct/data/github-workflow.tct.json"
    );
    Tokenizer::from_bytes(&std::fs::read(path).expect("bundled tokenizer")).unwrap()
}

/// Every `every`-th schema-valid workflow of the corpus (`../shared/data`).
fn corpus_sample(every: usize) -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/workflows/workflows.jsonl.gz"
    );
    let f = std::fs::File::open(path).expect("the workflow corpus in ../shared/data");
    std::io::BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
        .filter(|r| r["schema_valid"] == Value::Bool(true))
        .step_by(every)
        .map(|r| r["json"].clone())
        .collect()
}

/// Compare the two masks; on a difference, name the ids and their expansions.
fn check(t: &Tokenizer, m: &mut Matcher, fast: &mut [bool], slow: &mut [bool], at: &str) {
    m.fill_allowed(fast);
    m.fill_allowed_by_simulation(slow);
    if fast != slow {
        let diff: Vec<String> = (0..fast.len())
            .filter(|&i| fast[i] != slow[i])
            .take(8)
            .map(|i| {
                let e = t.vocab().expansion(i as u32).unwrap_or(&[]);
                let names: Vec<String> = e.iter().map(|&b| crate::base::name(b)).collect();
                format!(
                    "id {i} fast={} exact={} [{}]",
                    fast[i],
                    slow[i],
                    names.join(" ")
                )
            })
            .collect();
        panic!(
            "{at} (waiting in {}): the fast mask differs from the simulation:\n{}",
            m.top_kind(),
            diff.join("\n")
        );
    }
}

#[test]
#[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]
fn fast_mask_equals_simulation_on_corpus_workflows() {
    let t = bundled();
    let n = t.vocab_size() as usize;
    let (mut fast, mut slow) = (vec![false; n], vec![false; n]);
    let mut checked = 0;
    let docs = corpus_sample(499);
    // The first documents come again at the end: every context then hits the caches
    // (the first time, most are filled).
    let order = (0..12).chain(0..3);
    for d in order {
        let enc = t.encode_value(&docs[d]).unwrap();
        if !enc.fallbacks.is_empty() {
            continue;
        }
        let mut m = t.matcher();
        for (i, &id) in enc.ids.iter().enumerate() {
            // Every structural step, and every 16th step inside strings.
            if m.top_kind() != "string" || i % 16 == 0 {
                check(
                    &t,
                    &mut m,
                    &mut fast,
                    &mut slow,
                    &format!("doc {d} step {i}"),
                );
                checked += 1;
            }
            m.advance(id).unwrap();
        }
        check(&t, &mut m, &mut fast, &mut slow, &format!("doc {d} end"));
    }
    assert!(checked > 500, "only {checked} steps checked");
}

#[test]
fn fast_mask_equals_simulation_on_random_walks() {
    // Documents drawn under the mask reach states the corpus rarely does (deep generic
    // values, unusual key sets, long numbers).
    let t = bundled();
    let n = t.vocab_size() as usize;
    let (mut fast, mut slow) = (vec![false; n], vec![false; n]);
    for seed in 0..24u64 {
        let mut rng = SplitMix64(seed);
        let mut m = t.matcher();
        let mut step = 0;
        while !m.is_complete() && step < 150 {
            check(
                &t,
                &mut m,
                &mut fast,
                &mut slow,
                &format!("seed {seed} step {step}"),
            );
            let choices: Vec<u32> = (0..n as u32).filter(|&i| fast[i as usize]).collect();
            // Favour trained structural ids (the walk's subject) half of the time.
            let structural: Vec<u32> = choices
                .iter()
                .copied()
                .filter(|&i| {
                    i >= t.vocab().base_size()
                        && t.vocab()
                            .expansion(i)
                            .is_some_and(|e| e.iter().any(|&b| b > crate::base::STR_END))
                })
                .collect();
            let pick = if !structural.is_empty() && rng.below(2) == 0 {
                structural[rng.below(structural.len())]
            } else {
                choices[rng.below(choices.len())]
            };
            m.advance(pick).unwrap();
            step += 1;
        }
    }
}
