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

fn workflow_rules(t: &Tokenizer) -> Arc<crate::rules::layer::Enforced> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/tct/data/github-workflow.rules.json"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(path).expect("bundled overlay")).unwrap();
    t.enforce(Arc::new(crate::rules::Rules::from_overlay(&v).unwrap()))
}

/// The rules mask with the string-end shortcut and without (every id stepped).
fn check_rules(
    fast_m: &mut Matcher,
    slow_m: &mut Matcher,
    a: &mut [bool],
    b: &mut [bool],
    at: &str,
) {
    fast_m.fill_allowed(a);
    slow_m.fill_allowed(b);
    if a != b {
        let diff: Vec<String> = (0..a.len())
            .filter(|&i| a[i] != b[i])
            .take(8)
            .map(|i| {
                let e = slow_m
                    .src
                    .vocab()
                    .expansion(i as u32)
                    .unwrap_or(&[])
                    .to_vec();
                let why = slow_m.rules.as_ref().and_then(|r| r.refusal(&e));
                let names: Vec<String> = e.iter().map(|&x| crate::base::name(x)).collect();
                format!(
                    "id {i} shortcut={} stepped={} [{}]: {why:?}",
                    a[i],
                    b[i],
                    names.join(" ")
                )
            })
            .collect();
        panic!("{at}: the rules masks differ:\n{}", diff.join("\n"));
    }
}

fn rules_pair(t: &Tokenizer, e: &Arc<crate::rules::layer::Enforced>) -> (Matcher, Matcher) {
    let fast = t.matcher().with_rules(e.clone());
    let mut slow = t.matcher().with_rules(e.clone());
    if let Some(r) = &mut slow.rules {
        r.end_shortcut = false;
    }
    (fast, slow)
}

#[test]
fn rules_string_end_shortcut_equals_stepping_on_random_walks() {
    let t = bundled();
    let e = workflow_rules(&t);
    let n = t.vocab_size() as usize;
    let (mut a, mut b) = (vec![false; n], vec![false; n]);
    let mut in_strings = 0;
    // (The stepped side costs ~20 ms a mask: the sizes keep this test near ten seconds.)
    for seed in 0..6u64 {
        let mut rng = SplitMix64(seed);
        let (mut fast, mut slow) = rules_pair(&t, &e);
        let mut step = 0;
        while !fast.is_complete() && step < 100 {
            check_rules(
                &mut fast,
                &mut slow,
                &mut a,
                &mut b,
                &format!("seed {seed} step {step}"),
            );
            in_strings += usize::from(fast.top_kind() == "string");
            let choices: Vec<u32> = (0..n as u32).filter(|&i| a[i as usize]).collect();
            // End strings often: the shortcut's subject.
            let ends: Vec<u32> = choices
                .iter()
                .copied()
                .filter(|&i| {
                    t.vocab()
                        .expansion(i)
                        .is_some_and(|x| x.last() == Some(&crate::base::STR_END))
                })
                .collect();
            let pick = if !ends.is_empty() && rng.below(3) == 0 {
                ends[rng.below(ends.len())]
            } else {
                choices[rng.below(choices.len())]
            };
            fast.advance(pick).unwrap();
            slow.advance(pick).unwrap();
            step += 1;
        }
    }
    assert!(in_strings > 50, "only {in_strings} steps inside strings");
}

#[test]
#[cfg_attr(tct_no_data, ignore = "needs ../shared/data")]
fn rules_string_end_shortcut_equals_stepping_on_corpus_workflows() {
    let t = bundled();
    let e = workflow_rules(&t);
    let n = t.vocab_size() as usize;
    let (mut a, mut b) = (vec![false; n], vec![false; n]);
    let mut checked = 0;
    for (d, doc) in corpus_sample(997).iter().take(6).enumerate() {
        let enc = t.encode_value(doc).unwrap();
        let (mut fast, mut slow) = rules_pair(&t, &e);
        for (i, &id) in enc.ids.iter().enumerate() {
            if i % 9 == 0 {
                check_rules(
                    &mut fast,
                    &mut slow,
                    &mut a,
                    &mut b,
                    &format!("doc {d} step {i}"),
                );
                checked += 1;
            }
            // A workflow the rules refuse stops here (its acceptance is tested elsewhere).
            if fast.advance(id).is_err() {
                assert!(slow.advance(id).is_err(), "doc {d} step {i}");
                break;
            }
            slow.advance(id).unwrap();
        }
    }
    assert!(checked > 100, "only {checked} steps checked");
}
