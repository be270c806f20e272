//! The rules layer on the bundled tokenizer: real workflows stay accepted id by id, the mask
//! with rules is a subset of the mask without, and random masked walks keep the rules.

mod common;
use std::sync::Arc;
use tct::rules::Rules;

fn overlay() -> Arc<Rules> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/tct/data/github-workflow.rules.json"
    );
    let v = common::read_json(std::path::Path::new(path));
    Arc::new(Rules::from_overlay(&v).expect("bundled overlay"))
}

fn have_data() -> bool {
    let ok = common::data_dir()
        .join("workflows/workflows.jsonl.gz")
        .exists();
    if !ok && std::env::var("TCT_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("TCT_REQUIRE_DATA=1 but ../shared/data is missing");
    }
    ok
}

#[test]
fn corpus_workflows_are_accepted_with_rules() {
    if !have_data() {
        return;
    }
    let tok = common::bundled();
    let rules = tok.enforce(overlay());
    let records = common::corpus();
    let (mut n, mut rejected) = (0usize, Vec::new());
    let mut mask = vec![false; tok.vocab_size() as usize];
    let mut plain = vec![false; tok.vocab_size() as usize];
    for (i, r) in records.iter().enumerate().step_by(60) {
        if r["schema_valid"] != serde_json::Value::Bool(true) {
            continue;
        }
        let Ok(enc) = tok.encode_value(&r["json"]) else {
            continue;
        };
        n += 1;
        let mut m = tok.matcher().with_rules(rules.clone());
        let mut p = tok.matcher();
        for (k, &id) in enc.ids.iter().enumerate() {
            // The mask with rules is within the schema's, and holds the real next id when
            // the rules accept it.
            if k % 97 == 0 {
                m.fill_allowed(&mut mask);
                p.fill_allowed(&mut plain);
                assert!(mask.iter().zip(&plain).all(|(a, b)| !a || *b), "doc {i}");
            }
            if let Err(e) = m.advance(id) {
                rejected.push(format!("doc {i} ({}): {e}", r["path"]));
                break;
            }
            if k % 97 == 0 {
                assert!(
                    mask[id as usize],
                    "doc {i} step {k}: accepted id not in the mask"
                );
            }
            p.advance(id).unwrap();
        }
    }
    let share = 1.0 - rejected.len() as f64 / n.max(1) as f64;
    eprintln!("accepted {:.4} of {n}", share);
    for r in &rejected {
        eprintln!("  {r}");
    }
    assert!(share >= 0.9, "{share}");
}
