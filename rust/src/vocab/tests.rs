//! Unit and property tests of the vocabulary layers, on synthetic base streams.

use proptest::prelude::*;

use super::bpe_apply::{MergeTable, Workspace};
use super::*;

const BASE: u32 = FIRST_SEL + 10; // a schema with 10 selector ids
const END: u32 = 257;
const ARR_END: u32 = 258;
const SEL0: u32 = FIRST_SEL;

fn content(s: &str) -> Vec<u32> {
    let mut v: Vec<u32> = s.bytes().map(u32::from).collect();
    v.push(STR_END);
    v
}

/// A small corpus of base streams that looks like workflows: selectors, then strings.
fn corpus() -> Vec<Vec<u32>> {
    let values = [
        "ubuntu-latest",
        "actions/checkout@v4",
        "actions/setup-node@v4",
        "${{ secrets.GITHUB_TOKEN }}",
        "npm ci",
        "npm test",
        "build",
        "test",
        "main",
        "18.x",
    ];
    (0..200)
        .map(|d| {
            let mut s = vec![SEL0 + 1, SEL0 + 3, END];
            for k in 0..(3 + d % 5) {
                s.push(SEL0 + (k % 4) as u32);
                s.push(END);
                s.extend(content(values[(d * 7 + k * 3) % values.len()]));
                if k % 3 == 0 {
                    s.extend(content(&format!("run {d} step {k}")));
                }
            }
            s.push(ARR_END);
            s
        })
        .collect()
}

fn config(scope: MergeScope, dict: u32, vocab_size: u32) -> TrainConfig {
    TrainConfig {
        base_size: BASE,
        vocab_size,
        dictionary_size: dict,
        scope,
        dict_scoring: DictScoring::Bpe,
        min_dict_count: 2,
        min_pair_count: 2,
        n_positions: DEFAULT_N_POSITIONS,
        weighting: Weighting::Raw,
        encoding: Encoding::RankedMerges,
        prune_extra: 0,
        progress: false,
    }
}

fn expand_all(v: &Vocab, ids: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    v.expand(ids, &mut out).expect("expands");
    out
}

#[test]
fn layout_is_explicit() {
    let v = Vocab::new(
        BASE,
        MergeScope::Strings,
        vec!["ubuntu-latest".into(), "main".into()],
        vec![[b'a' as u32, b'b' as u32], [BASE + 2, STR_END]],
        4096,
    )
    .unwrap();
    assert_eq!(v.dict_start(), BASE);
    assert_eq!(v.merge_start(), BASE + 2);
    assert_eq!(v.pad_id(), BASE + 4);
    assert_eq!(v.bos_id(), BASE + 5);
    assert_eq!(v.eos_id(), BASE + 6);
    assert_eq!(v.vocab_size(), BASE + 7);
    assert_eq!(v.position_range(), (BASE + 7, BASE + 7 + 4096));
    assert_eq!(v.expansion(BASE + 1).unwrap(), content("main").as_slice());
    assert_eq!(
        v.expansion(BASE + 3).unwrap(),
        &[b'a' as u32, b'b' as u32, STR_END]
    );
    assert_eq!(v.expansion(7).unwrap(), &[7]);
    assert_eq!(v.expansion(v.pad_id()), None);
}

#[test]
fn apply_uses_dictionary_only_for_whole_values() {
    let v = Vocab::new(
        BASE,
        MergeScope::Strings,
        vec!["main".into()],
        Vec::<[u32; 2]>::new(),
        0,
    )
    .unwrap();
    let base = [
        content("main"),
        vec![SEL0],
        content("mainline"),
        content(""),
    ]
    .concat();
    let ids = v.apply(&base);
    let mut expect = vec![BASE, SEL0];
    expect.extend(content("mainline"));
    expect.push(STR_END);
    assert_eq!(ids, expect);
    assert_eq!(expand_all(&v, &ids), base);
}

#[test]
fn expand_rejects_what_has_no_expansion() {
    let v = Vocab::new(
        BASE,
        MergeScope::Strings,
        vec!["x".into()],
        vec![[97, 98]],
        16,
    )
    .unwrap();
    let mut out = Vec::new();
    for (id, what) in [
        (v.pad_id(), "PAD"),
        (v.bos_id(), "BOS"),
        (v.eos_id(), "EOS"),
        (v.vocab_size(), "position"),
        (v.vocab_size() + 16, "out of range"),
        (u32::MAX, "out of range"),
    ] {
        out.clear();
        let err = v.expand(&[97, BASE, id, 98], &mut out).unwrap_err();
        assert_eq!(err.0, 2, "{what}");
        assert!(err.1.contains(what), "{err:?} should mention {what}");
        assert_eq!(out, vec![97, 120, STR_END]);
    }
}

#[test]
fn invalid_vocabularies_are_rejected_with_a_pointer() {
    let bad = |scope, dict: Vec<&str>, merges: Vec<[u32; 2]>, n_pos| {
        Vocab::new(
            BASE,
            scope,
            dict.into_iter().map(String::from).collect(),
            merges,
            n_pos,
        )
        .unwrap_err()
        .pointer
    };
    assert_eq!(
        bad(MergeScope::Strings, vec!["a", "a"], vec![], 0),
        "/dictionary/1"
    );
    assert_eq!(
        bad(MergeScope::Strings, vec![""], vec![], 0),
        "/dictionary/0"
    );
    assert_eq!(
        bad(MergeScope::Strings, vec![], vec![[97, BASE]], 0),
        "/merges/0/1"
    );
    assert_eq!(
        bad(MergeScope::Strings, vec![], vec![[97, 98], [97, 98]], 0),
        "/merges/1"
    );
    assert_eq!(
        bad(MergeScope::Across, vec![], vec![[FALLBACK, 98]], 0),
        "/merges/0/0"
    );
    // STR_END must end a merge: words end after it.
    assert_eq!(
        bad(MergeScope::Strings, vec![], vec![[STR_END, 97]], 0),
        "/merges/0"
    );
    assert_eq!(
        bad(MergeScope::Strings, vec![], vec![[SEL0, 97]], 0),
        "/merges/0"
    );
    assert_eq!(
        bad(MergeScope::StructureRuns, vec![], vec![[SEL0, 97]], 0),
        "/merges/0"
    );
    assert_eq!(
        bad(MergeScope::Across, vec![], vec![[97, SEL0]], 0),
        "/merges/0"
    );
    assert_eq!(
        bad(MergeScope::Strings, vec!["a"], vec![[SEL0, BASE]], 0),
        "/merges/0"
    );
    assert_eq!(bad(MergeScope::Strings, vec![], vec![], 65_536), "/layout");
    Vocab::new(
        BASE,
        MergeScope::Across,
        vec!["a".into()],
        vec![[SEL0, BASE]],
        0,
    )
    .unwrap();
    Vocab::new(
        BASE,
        MergeScope::StructureRuns,
        vec![],
        vec![[SEL0, END]],
        0,
    )
    .unwrap();
}

#[test]
fn positions_are_bucketed_as_documented() {
    let v = Vocab::base_only(BASE, 4096).unwrap();
    let p0 = v.vocab_size();
    assert_eq!(v.position_id(0), p0);
    assert_eq!(v.position_id(2047), p0 + 2047);
    assert_eq!(v.position_id(2048), p0 + 2048);
    assert_eq!(v.position_id(2063), p0 + 2048);
    assert_eq!(v.position_id(2064), p0 + 2049);
    assert_eq!(v.position_id(34_815), p0 + 4095);
    assert_eq!(v.position_id(10_000_000), p0 + 4095);
    assert_eq!(v.position_offsets(p0 + 5), Some((5, 6)));
    assert_eq!(v.position_offsets(p0 + 2049), Some((2064, 2080)));
    assert_eq!(v.position_offsets(p0 + 4095), Some((34_800, usize::MAX)));
    assert_eq!(v.position_offsets(p0 - 1), None);
    for start in [0usize, 1, 100, 2047, 2048, 3000, 34_799, 34_800, 99_999] {
        let (lo, hi) = v.position_offsets(v.position_id(start)).unwrap();
        assert!(lo <= start && start < hi, "{start} not in [{lo}, {hi})");
    }
    let ids = [1, 2, 3, 4, 5];
    assert_eq!(v.extract_window(&ids, 1, 3), vec![p0 + 1, 2, 3]);
    assert_eq!(v.extract_window(&ids, 4, 99), vec![p0 + 4, 5]);
    assert_eq!(v.extract_window(&ids, 9, 3), vec![p0 + 3]);
    let small = Vocab::base_only(BASE, 512).unwrap();
    assert_eq!(small.position_id(511), small.vocab_size() + 511);
    assert_eq!(small.position_id(600), small.vocab_size() + 511);
}

#[test]
fn training_round_trips_and_compresses_in_every_scope() {
    let docs = corpus();
    let base_total: usize = docs.iter().map(Vec::len).sum();
    for scope in [
        MergeScope::Strings,
        MergeScope::StructureRuns,
        MergeScope::Across,
        MergeScope::Spans,
        MergeScope::Document,
    ] {
        for dict in [0, 8] {
            let v = train(&docs, &config(scope, dict, BASE + 200)).unwrap();
            assert!(v.vocab_size() <= BASE + 200);
            assert!(v.dictionary().len() <= dict as usize);
            let mut total = 0;
            for d in &docs {
                let ids = v.apply(d);
                assert!(ids.iter().all(|&i| i < v.pad_id()));
                assert_eq!(expand_all(&v, &ids), *d, "{scope:?} dict {dict}");
                total += ids.len();
            }
            assert!(
                total * 3 < base_total,
                "{scope:?}/{dict}: {total} vs {base_total} base ids"
            );
        }
    }
}

#[test]
fn dictionary_takes_frequent_whole_values() {
    let mut cfg = config(MergeScope::Strings, 4, BASE + 100);
    cfg.dict_scoring = DictScoring::Raw;
    let v = train(&corpus(), &cfg).unwrap();
    assert_eq!(v.dictionary().len(), 4);
    // The most frequent long values, in the deterministic order of their saving.
    for d in v.dictionary() {
        assert!(
            [
                "actions/checkout@v4",
                "actions/setup-node@v4",
                "${{ secrets.GITHUB_TOKEN }}",
                "ubuntu-latest",
                "npm test",
                "npm ci"
            ]
            .contains(&d.as_str()),
            "unexpected dictionary entry {d:?}"
        );
    }
    let ids = v.apply(&content(&v.dictionary()[0]));
    assert_eq!(ids, vec![BASE]);
}

#[test]
fn across_scope_joins_structure_with_the_value_after_it() {
    let docs: Vec<Vec<u32>> = (0..50)
        .map(|_| [vec![SEL0 + 2, END], content("ubuntu-latest")].concat())
        .collect();
    let v = train(&docs, &config(MergeScope::Across, 1, BASE + 10)).unwrap();
    assert_eq!(v.dictionary(), ["ubuntu-latest"]);
    assert_eq!(v.apply(&docs[0]).len(), 1);
    let s = train(&docs, &config(MergeScope::Strings, 1, BASE + 10)).unwrap();
    assert_eq!(s.apply(&docs[0]), vec![SEL0 + 2, END, BASE]);
}

#[test]
fn spans_scope_joins_consecutive_values() {
    // A map entry `key STR_END value STR_END` then END: one word in the spans scope.
    let doc = [
        vec![SEL0, END],
        content("node-version"),
        content("18"),
        vec![END],
    ]
    .concat();
    let docs: Vec<Vec<u32>> = (0..20).map(|_| doc.clone()).collect();
    let v = train(&docs, &config(MergeScope::Spans, 0, BASE + 40)).unwrap();
    assert_eq!(v.apply(&doc).len(), 2, "{:?}", v.apply(&doc));
    assert_eq!(expand_all(&v, &v.apply(&doc)), doc);
    let a = train(&docs, &config(MergeScope::Across, 0, BASE + 40)).unwrap();
    assert_eq!(a.apply(&doc).len(), 3);
    // In the spans scope STR_END may sit inside a merge, a structural id after content may not.
    Vocab::new(BASE, MergeScope::Spans, vec![], vec![[STR_END, 97]], 0).unwrap();
    let e = Vocab::new(BASE, MergeScope::Spans, vec![], vec![[STR_END, SEL0]], 0).unwrap_err();
    assert_eq!(e.pointer, "/merges/0");
}

#[test]
fn training_is_deterministic_and_independent_of_input_order() {
    let docs = corpus();
    let cfg = config(MergeScope::Across, 8, BASE + 150);
    let a = train(&docs, &cfg).unwrap();
    let b = train(&docs, &cfg).unwrap();
    let mut rev = docs.clone();
    rev.reverse();
    let c = train(&rev, &cfg).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn merge_learner_counts_overlaps_correctly() {
    // "aaaa" x3 has 3 overlapping (a,a) per word: 9. "abab" x2: (a,b) 4, (b,a) 2.
    // After (a,a): "aaaa" is [z z] (3 of (z,z)), so (a,b) with 4 comes next; then (z,z) 3
    // before (y,y) 2.
    let words = vec![(vec![97, 97, 97, 97], 3), (vec![97, 98, 97, 98], 2)];
    let m = bpe_train::learn_merges(words, 10, 300, 1, &|_| {}).unwrap();
    assert_eq!(m, vec![[97, 97], [97, 98], [300, 300], [301, 301]]);
    // Ties go to the smaller pair: (b,c) and (a,b) both occur twice.
    let words = vec![(vec![98, 99], 2), (vec![97, 98], 2)];
    let m = bpe_train::learn_merges(words, 1, 300, 1, &|_| {}).unwrap();
    assert_eq!(m, vec![[97, 98]]);
}

#[test]
fn apply_is_not_quadratic() {
    // A 200 KB single string (a `run` script of many KB is the realistic case).
    let text: String = (0..20_000).map(|i| format!("l{} x\n", i % 997)).collect();
    let mut text = text.repeat(200_000 / text.len() + 1);
    text.truncate(200_000);
    let docs: Vec<Vec<u32>> = vec![content(&text[..50_000]), content(&text[50_000..100_000])];
    let v = train(&docs, &config(MergeScope::Strings, 0, BASE + 1000)).unwrap();
    assert!(v.merges().len() > 500);
    let big = content(&text);
    let t = std::time::Instant::now();
    let ids = v.apply(&big);
    let long = t.elapsed();
    assert_eq!(expand_all(&v, &ids), big);
    // Same total size in 2 KB pieces: linear work; the whole string must not be much slower.
    let pieces: Vec<Vec<u32>> = big.chunks(2000).map(|c| c.to_vec()).collect();
    let t = std::time::Instant::now();
    for p in &pieces {
        std::hint::black_box(v.apply(p));
    }
    let short = t.elapsed();
    assert!(
        long < short * 8 + std::time::Duration::from_millis(50),
        "200 KB string: {long:?}, same bytes in 2 KB pieces: {short:?}"
    );
}

#[test]
fn segmentation_handles_malformed_streams() {
    // Bytes without STR_END, non-base ids, FALLBACK: never merged across, never lost.
    let v = train(&corpus(), &config(MergeScope::Across, 4, BASE + 100)).unwrap();
    let weird = [
        vec![97, 98, 99],
        vec![SEL0, 97, 98, END, FALLBACK, SEL0, END],
        content("ubuntu-latest"),
        vec![BASE + 5000, 97, 98, 99, 65_535, STR_END, STR_END],
    ]
    .concat();
    let ids = v.apply(&weird);
    let mut out = Vec::new();
    // Non-base ids pass through; expand them only where they have an expansion.
    let kept: Vec<u32> = ids.iter().copied().filter(|&i| i < v.pad_id()).collect();
    v.expand(&kept, &mut out).unwrap();
    let expect: Vec<u32> = weird.iter().copied().filter(|&i| i < v.pad_id()).collect();
    assert_eq!(out, expect);
}

#[test]
fn file_round_trip_and_identity() {
    let v = train(&corpus(), &config(MergeScope::Across, 8, BASE + 150)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        r#"{"type":"object","properties":{"z":{},"a":{"type":"number","const":1.50}}}"#,
    )
    .unwrap();
    let f = TokenizerFile {
        name: "test".into(),
        schema: schema.clone(),
        registry: vec![(
            "https://x/y.json".into(),
            serde_json::json!({"type": "string"}),
        )],
        vocab: v.clone(),
        training: serde_json::json!({"documents": 200}),
        ref_siblings: crate::compile::RefSiblings::ByDraft,
    };
    let bytes = f.to_bytes();
    let g = TokenizerFile::from_bytes(&bytes).unwrap();
    assert_eq!(g, f);
    assert_eq!(g.to_bytes(), bytes);
    // Key order and number text survive.
    assert!(String::from_utf8_lossy(&bytes)
        .contains(r#"{"type":"object","properties":{"z":{},"a":{"type":"number","const":1.50}}}"#));
    for d in corpus() {
        assert_eq!(g.vocab.apply(&d), v.apply(&d));
    }
    // Name and training metadata are not identity; the merges are.
    let mut h = f.clone();
    h.name = "other".into();
    h.training = serde_json::Value::Null;
    assert_eq!(h.content_hash(), f.content_hash());
    let mut merges = v.merges().to_vec();
    merges.pop();
    h.vocab = Vocab::new(
        v.base_size(),
        v.scope(),
        v.dictionary().to_vec(),
        merges,
        v.n_positions(),
    )
    .unwrap();
    assert_ne!(h.content_hash(), f.content_hash());
}

#[test]
fn file_errors_say_where() {
    let v = train(&corpus(), &config(MergeScope::Strings, 4, BASE + 60)).unwrap();
    let f = TokenizerFile {
        name: "t".into(),
        schema: serde_json::json!({}),
        registry: vec![],
        vocab: v,
        training: serde_json::Value::Null,
        ref_siblings: crate::compile::RefSiblings::ByDraft,
    };
    let text = String::from_utf8(f.to_bytes()).unwrap();
    let err = |t: &str| TokenizerFile::from_bytes(t.as_bytes()).unwrap_err();
    assert_eq!(
        err(&text.replace("\"version\": 1", "\"version\": 2")).pointer,
        "/version"
    );
    assert_eq!(
        err(&text.replace("tct-tokenizer", "other")).pointer,
        "/format"
    );
    assert_eq!(
        err(&text.replace("\"hash\": \"sha256:", "\"hash\": \"sha256:0")).pointer,
        "/hash"
    );
    // Edits below re-sign the file: the content hash is checked before the tables are built,
    // so only a file whose hash matches reaches the layout and merge checks.
    let rehashed = |t: &str| -> String {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(t).unwrap();
        let h = super::file_format::raw_identity_hash(&v).unwrap();
        v.insert("hash".into(), serde_json::json!(h));
        serde_json::to_string(&v).unwrap()
    };
    let e = err(&rehashed(&text.replace(
        &format!("\"vocab_size\":{}", f.vocab.vocab_size()),
        "\"vocab_size\":8192",
    )));
    assert_eq!(e.pointer, "/layout/vocab_size");
    // Change the first merge into a pair that is not defined yet.
    let m0 = f.vocab.merges()[0].clone();
    let e = err(&rehashed(&text.replacen(
        &format!("[{},{}]", m0[0], m0[1]),
        "[60000,1]",
        1,
    )));
    assert_eq!(e.pointer, "/merges/0/0");
    assert_eq!(err("[1,2]").pointer, "");
    assert!(err("{").message.contains("line 1"));
    let dir = std::env::temp_dir().join(format!("tct-vocab-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tok.json");
    f.write(&path).unwrap();
    assert_eq!(TokenizerFile::read(&path).unwrap(), f);
    let missing = TokenizerFile::read(&dir.join("nope.json")).unwrap_err();
    assert!(missing.message.contains("nope.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn arb_table() -> impl Strategy<Value = Vec<[u32; 2]>> {
    // Merges over the alphabet {97, 98, 99, STR_END}, each part defined before it.
    prop::collection::vec((0u32..40, 0u32..40), 0..30).prop_map(|raw| {
        let mut merges: Vec<[u32; 2]> = Vec::new();
        let alphabet = [97u32, 98, 99];
        for (x, y) in raw {
            let n = (alphabet.len() + merges.len()) as u32;
            let pick = |i: u32| {
                let i = i % n;
                if (i as usize) < alphabet.len() {
                    alphabet[i as usize]
                } else {
                    BASE + i - alphabet.len() as u32
                }
            };
            let m = [pick(x), pick(y)];
            if !merges.contains(&m) {
                merges.push(m);
            }
        }
        merges
    })
}

proptest! {
    #[test]
    fn heap_and_scan_paths_agree(merges in arb_table(), word in prop::collection::vec(97u32..100, 0..80)) {
        let table = MergeTable::new(&merges, BASE);
        let mut a = word.clone();
        let mut b = word.clone();
        table.merge_with_heap(&mut a, &mut Workspace::default());
        table.merge_with_scan(&mut b);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn apply_then_expand_is_identity(ids in prop::collection::vec(prop_oneof![
        4 => 97u32..100, 2 => Just(STR_END), 1 => Just(SEL0), 1 => Just(END),
        1 => Just(FALLBACK), 1 => 0u32..BASE, 1 => 60_000u32..70_000], 0..200)) {
        let v = train(&corpus(), &config(MergeScope::Across, 4, BASE + 120)).unwrap();
        let out = v.apply(&ids);
        // Everything that is not a base id passes through; the rest expands back exactly.
        let mut back = Vec::new();
        for &id in &out {
            if id < v.base_size() || id >= v.pad_id() {
                back.push(id);
            } else {
                back.extend_from_slice(v.expansion(id).unwrap());
            }
        }
        prop_assert_eq!(back, ids);
    }
}

// ---- Shortest encoding, pruning, group weighting ----

fn shortest_config(dict: u32, vocab_size: u32, extra: u32) -> TrainConfig {
    let mut c = config(MergeScope::Across, dict, vocab_size);
    c.dict_scoring = DictScoring::Raw;
    c.encoding = Encoding::Shortest;
    c.prune_extra = extra;
    c
}

/// The fewest tokens spelling `w`, by brute force over all ids' expansions.
fn brute_shortest(v: &Vocab, w: &[u32]) -> usize {
    let mut best = vec![usize::MAX; w.len() + 1];
    best[w.len()] = 0;
    for i in (0..w.len()).rev() {
        for id in 0..v.pad_id() {
            let e = v.expansion(id).unwrap();
            if !e.is_empty() && w[i..].starts_with(e) && best[i + e.len()] != usize::MAX {
                best[i] = best[i].min(1 + best[i + e.len()]);
            }
        }
    }
    best[0]
}

#[test]
fn shortest_encoding_is_minimal_and_prefers_long_tokens() {
    // "ab", "abc", "cd": "abcd" is [abc][d] or [ab][cd] (2 ids); the tie goes to the longest
    // token first: [abc][d].
    let merges: Vec<Vec<u32>> = vec![vec![97, 98], vec![BASE, 99], vec![99, 100]];
    let v = Vocab::build(
        BASE,
        MergeScope::Strings,
        Encoding::Shortest,
        vec![],
        merges,
        0,
    )
    .unwrap();
    let w = [97, 98, 99, 100, STR_END];
    assert_eq!(v.apply(&w), vec![BASE + 1, 100, STR_END]);
    // Ranked merges over the same pairs take "ab" then "cd" (rank order): 3 ids as well here,
    // but never fewer than the shortest encoding.
    let ranked = Vocab::new(
        BASE,
        MergeScope::Strings,
        vec![],
        vec![[97, 98], [BASE, 99], [99, 100]],
        0,
    )
    .unwrap();
    assert!(ranked.apply(&w).len() >= v.apply(&w).len());
}

#[test]
fn shortest_vocabularies_reject_what_could_never_be_produced() {
    let build = |enc, dict: Vec<String>, merges: Vec<Vec<u32>>| {
        Vocab::build(BASE, MergeScope::Across, enc, dict, merges, 0)
    };
    // A merge that spells a dictionary entry ("ab" STR_END) is dead under the shortest encoding.
    let e = build(
        Encoding::Shortest,
        vec!["ab".into()],
        vec![vec![97, 98], vec![BASE + 1, STR_END]],
    )
    .unwrap_err();
    assert_eq!(e.pointer, "/merges/1");
    assert!(e.message.contains("same base ids"), "{}", e.message);
    // Ranked merges are pairs; the shortest encoding allows more parts, but at least two.
    let e = build(Encoding::RankedMerges, vec![], vec![vec![97, 98, 99]]).unwrap_err();
    assert_eq!(e.pointer, "/merges/0");
    build(Encoding::Shortest, vec![], vec![vec![97, 98, 99]]).unwrap();
    let e = build(Encoding::Shortest, vec![], vec![vec![97]]).unwrap_err();
    assert_eq!(e.pointer, "/merges/0");
    let e = build(Encoding::Shortest, vec![], vec![vec![97, BASE]]).unwrap_err();
    assert_eq!(e.pointer, "/merges/0/1");
}

#[test]
fn pruning_fills_the_budget_exactly_and_round_trips() {
    // The corpus supports ~125 merges: a budget of 57 plus up to 60 extra fits.
    let docs = corpus();
    for (dict, extra) in [(0, 0), (8, 20), (8, 60)] {
        let v = train(&docs, &shortest_config(dict, BASE + 60, extra)).unwrap();
        assert_eq!(v.encoding(), Encoding::Shortest);
        if extra > 0 {
            assert_eq!(v.vocab_size(), BASE + 60, "dict {dict} extra {extra}");
        } else {
            // Merges that duplicate another id are dropped even without pruning.
            assert!(v.vocab_size() <= BASE + 60);
        }
        for (r, parts) in v.merges().iter().enumerate() {
            assert!(parts.len() >= 2);
            assert!(parts.iter().all(|&p| p < v.merge_start() + r as u32));
        }
        for d in &docs {
            assert_eq!(expand_all(&v, &v.apply(d)), *d);
        }
    }
    // Pruning a larger candidate set spells the training corpus itself with no more ids than
    // keeping the first BPE merges.
    let count = |v: &Vocab| docs.iter().map(|d| v.apply(d).len()).sum::<usize>();
    let plain = train(&docs, &shortest_config(8, BASE + 60, 0)).unwrap();
    let pruned = train(&docs, &shortest_config(8, BASE + 60, 60)).unwrap();
    assert!(
        count(&pruned) <= count(&plain),
        "{} > {}",
        count(&pruned),
        count(&plain)
    );
}

#[test]
fn group_weighting_damps_repetition_inside_a_group() {
    // Group 0: 100 documents with "xy"; groups 1..=20: one document each with "pq".
    // Raw counts: (x,y) 100 > (p,q) 20. Square root per group: (x,y) 10 < (p,q) 20.
    let mut docs = Vec::new();
    let mut groups = Vec::new();
    for _ in 0..100 {
        docs.push(content("xy"));
        groups.push(0);
    }
    for g in 1..=20 {
        docs.push(content("pq"));
        groups.push(g);
    }
    let mut cfg = config(MergeScope::Strings, 0, BASE + 4);
    cfg.weighting = Weighting::Power(50);
    let first = |v: &Vocab| v.merges()[0].clone();
    let (raw, _) = train_grouped(&docs, None, &cfg).unwrap();
    assert_eq!(first(&raw), vec![u32::from(b'x'), u32::from(b'y')]);
    let (damped, report) = train_grouped(&docs, Some(&groups), &cfg).unwrap();
    assert_eq!(first(&damped), vec![u32::from(b'p'), u32::from(b'q')]);
    assert_eq!(report.groups, 21);
    assert_eq!(report.weighting, Weighting::Power(50));
    // Without group ids the weighting is raw, whatever the configuration says.
    let mut raw_cfg = cfg.clone();
    raw_cfg.weighting = Weighting::Raw;
    assert_eq!(train(&docs, &raw_cfg).unwrap(), raw);
    // One group id per document.
    let e = train_grouped(&docs, Some(&groups[1..]), &cfg).unwrap_err();
    assert_eq!(e.pointer, "/groups");
}

#[test]
fn grouped_training_is_deterministic_and_independent_of_labels_and_order() {
    let docs = corpus();
    let groups: Vec<u32> = (0..docs.len() as u32).map(|i| i % 7).collect();
    let mut cfg = shortest_config(8, BASE + 150, 100);
    cfg.weighting = Weighting::Power(60);
    let (a, _) = train_grouped(&docs, Some(&groups), &cfg).unwrap();
    let (b, _) = train_grouped(&docs, Some(&groups), &cfg).unwrap();
    assert_eq!(a, b);
    // Other labels for the same groups, and the documents in another order.
    let relabeled: Vec<u32> = groups.iter().map(|g| 1000 - 3 * g).collect();
    let (c, _) = train_grouped(&docs, Some(&relabeled), &cfg).unwrap();
    assert_eq!(a, c);
    let (mut rdocs, mut rgroups) = (docs.clone(), groups.clone());
    rdocs.reverse();
    rgroups.reverse();
    let (d, _) = train_grouped(&rdocs, Some(&rgroups), &cfg).unwrap();
    assert_eq!(a, d);
}

#[test]
fn weighting_values() {
    assert_eq!(Weighting::Raw.weigh(9), 9);
    assert_eq!(Weighting::Raw.unit(), 1);
    let u = Weighting::Power(50).unit();
    assert_eq!(Weighting::Power(50).weigh(9), 3 * u);
    assert_eq!(Weighting::Power(100).weigh(9), 9 * u);
    assert_eq!(Weighting::Distinct.weigh(9), u);
    assert_eq!(Weighting::Log.weigh(1), u);
}

#[test]
fn shortest_file_round_trip_keeps_encoding_and_identity() {
    let v = train(&corpus(), &shortest_config(8, BASE + 150, 100)).unwrap();
    let f = TokenizerFile {
        name: "t".into(),
        schema: serde_json::json!({}),
        registry: vec![],
        vocab: v.clone(),
        training: serde_json::Value::Null,
        ref_siblings: crate::compile::RefSiblings::ByDraft,
    };
    let text = String::from_utf8(f.to_bytes()).unwrap();
    assert!(text.contains("\"encoding\": \"shortest\""));
    let back = TokenizerFile::from_bytes(text.as_bytes()).unwrap();
    assert_eq!(back, f);
    assert_eq!(back.vocab.encoding(), Encoding::Shortest);
    // The encoding is part of the identity: the same ids read as ranked merges (where
    // possible) hash differently; an unknown encoding is an error that says where.
    let err = |t: &str| TokenizerFile::from_bytes(t.as_bytes()).unwrap_err();
    assert_eq!(
        err(&text.replace("\"encoding\": \"shortest\"", "\"encoding\": \"greedy\"")).pointer,
        "/encoding"
    );
    let e = err(&text.replace("\"encoding\": \"shortest\",\n", ""));
    assert!(
        e.pointer == "/hash" || e.pointer.starts_with("/merges/"),
        "{e:?}"
    );
    // Ranked files written before the field existed carry no `encoding` and keep their hash.
    let ranked = train(&corpus(), &config(MergeScope::Across, 8, BASE + 150)).unwrap();
    let rf = TokenizerFile {
        vocab: ranked,
        ..f.clone()
    };
    assert!(!String::from_utf8(rf.to_bytes())
        .unwrap()
        .contains("encoding"));
}

proptest! {
    #[test]
    fn shortest_apply_is_minimal_and_expands_back(
        merges in arb_table(),
        word in prop::collection::vec(prop_oneof![4 => 97u32..100, 1 => Just(SEL0)], 0..40),
    ) {
        let v = Vocab::new(BASE, MergeScope::Strings, vec![], merges.clone(), 0).unwrap();
        let parts: Vec<Vec<u32>> = merges.iter().map(|m| m.to_vec()).collect();
        let Ok(s) = Vocab::build(BASE, MergeScope::Strings, Encoding::Shortest, vec![], parts, 0)
        else {
            // Two merges with the same expansion: not a shortest-encoding vocabulary.
            return Ok(());
        };
        let mut w = word.clone();
        w.push(STR_END);
        let ids = s.apply(&w);
        prop_assert_eq!(expand_all(&s, &ids), w.clone());
        prop_assert!(ids.len() <= v.apply(&w).len());
        // Minimal within each word (words end at structural ids in the strings scope).
        let mut expect = 0;
        for piece in w.split_inclusive(|&t| t == SEL0) {
            let (body, sel) = match piece.last() {
                Some(&SEL0) => (&piece[..piece.len() - 1], 1),
                _ => (piece, 0),
            };
            expect += brute_shortest(&s, body) + sel;
        }
        prop_assert_eq!(ids.len(), expect);
    }
}

#[test]
fn shortest_training_round_trips_in_every_scope() {
    let docs = corpus();
    let groups: Vec<u32> = (0..docs.len() as u32).map(|i| i % 5).collect();
    for scope in [
        MergeScope::Strings,
        MergeScope::StructureRuns,
        MergeScope::Across,
        MergeScope::Spans,
        MergeScope::Document,
    ] {
        let mut cfg = shortest_config(8, BASE + 60, 30);
        cfg.scope = scope;
        cfg.weighting = Weighting::Power(60);
        let (v, report) = train_grouped(&docs, Some(&groups), &cfg).unwrap();
        assert_eq!(report.groups, 5);
        assert!(report.prune_rounds > 0, "{scope:?}");
        let base_total: usize = docs.iter().map(Vec::len).sum();
        let mut total = 0;
        for d in &docs {
            let ids = v.apply(d);
            assert_eq!(expand_all(&v, &ids), *d, "{scope:?}");
            total += ids.len();
        }
        assert!(total * 2 < base_total, "{scope:?}: {total} of {base_total}");
        // The file keeps everything that decides the encoding.
        let f = TokenizerFile {
            name: "t".into(),
            schema: serde_json::json!({}),
            registry: vec![],
            vocab: v,
            training: serde_json::Value::Null,
            ref_siblings: crate::compile::RefSiblings::ByDraft,
        };
        assert_eq!(TokenizerFile::from_bytes(&f.to_bytes()).unwrap(), f);
    }
}

// ---- Contents by reference (the encoder's fast path) ----

/// One element of an encoder's output: a content's text, or any other id.
#[derive(Debug, Clone)]
enum Item {
    Text(String),
    Id(u32),
}

fn arb_items() -> impl Strategy<Value = Vec<Item>> {
    let text = prop::collection::vec(prop_oneof![4 => 97u8..101, 1 => 32u8..127], 0..12)
        .prop_map(|b| Item::Text(String::from_utf8(b).unwrap()));
    let id = prop_oneof![
        3 => (SEL0..BASE).prop_map(Item::Id),
        1 => Just(Item::Id(END)),
        1 => Just(Item::Id(ARR_END)),
        1 => Just(Item::Id(FALLBACK)),
        1 => (60_000u32..70_000).prop_map(Item::Id),
    ];
    prop::collection::vec(prop_oneof![3 => text, 2 => id], 0..40)
}

/// The stream spelt out (what `apply` takes) and by reference (what `apply_with_contents`
/// takes).
fn both_forms(items: &[Item]) -> (Vec<u32>, Vec<u32>, Vec<&str>) {
    let (mut base, mut refs, mut texts) = (Vec::new(), Vec::new(), Vec::new());
    for it in items {
        match it {
            Item::Text(t) => {
                base.extend(content(t));
                refs.push(CONTENT_REF + texts.len() as u32);
                texts.push(t.as_str());
            }
            Item::Id(x) => {
                base.push(*x);
                refs.push(*x);
            }
        }
    }
    (base, refs, texts)
}

proptest! {
    #[test]
    fn contents_by_reference_encode_as_spelt_out(items in arb_items()) {
        let (base, refs, texts) = both_forms(&items);
        let shortest = train(&corpus(), &shortest_config(4, BASE + 60, 20)).unwrap();
        let ranked = train(&corpus(), &config(MergeScope::Across, 4, BASE + 60)).unwrap();
        let strings = train(&corpus(), &config(MergeScope::Strings, 4, BASE + 60)).unwrap();
        for v in [&shortest, &ranked, &strings] {
            let want = v.apply(&base);
            // Twice: the second pass runs from the word cache.
            for _ in 0..2 {
                let mut got = vec![7];
                v.apply_with_contents(&refs, &texts, &mut got);
                prop_assert_eq!(&got[1..], &want[..]);
            }
        }
    }
}

#[test]
fn contents_by_reference_take_the_long_way_on_odd_input() {
    // Bytes spelt out, or a reference to no content: the same ids as `apply` of the stream
    // with the reference passed through as any non-base id.
    let v = train(&corpus(), &shortest_config(4, BASE + 60, 20)).unwrap();
    let mut spelt = vec![SEL0];
    spelt.extend(content("npm ci"));
    let dangling = [SEL0, CONTENT_REF + 5, END];
    for (items, texts) in [(&spelt[..], vec![]), (&dangling[..], vec!["x"])] {
        let mut got = Vec::new();
        v.apply_with_contents(items, &texts, &mut got);
        assert_eq!(got, v.apply(items));
    }
}

#[test]
fn ref_siblings_are_part_of_the_identity_and_absent_means_conjoined() {
    let v = train(&corpus(), &shortest_config(8, BASE + 150, 100)).unwrap();
    let f = TokenizerFile {
        name: "t".into(),
        schema: serde_json::json!({}),
        registry: vec![],
        vocab: v,
        training: serde_json::Value::Null,
        ref_siblings: crate::compile::RefSiblings::ByDraft,
    };
    let text = String::from_utf8(f.to_bytes()).unwrap();
    assert!(text.contains("\"ref_siblings\": \"by-draft\""));
    assert_eq!(TokenizerFile::from_bytes(text.as_bytes()).unwrap(), f);
    // Files written before the field: no field, read as conjoined, their hash unchanged.
    let old = TokenizerFile {
        ref_siblings: crate::compile::RefSiblings::Conjoined,
        ..f.clone()
    };
    let old_text = String::from_utf8(old.to_bytes()).unwrap();
    assert!(!old_text.contains("ref_siblings"));
    assert_ne!(old.content_hash(), f.content_hash());
    assert_eq!(TokenizerFile::from_bytes(old_text.as_bytes()).unwrap(), old);
    // Dropping the field from a new file changes what its ids mean: the hash says so.
    let err = |t: &str| TokenizerFile::from_bytes(t.as_bytes()).unwrap_err();
    assert_eq!(
        err(&text.replace("\"ref_siblings\": \"by-draft\",\n", "")).pointer,
        "/hash"
    );
    assert_eq!(
        err(&text.replace("\"by-draft\"", "\"later\"")).pointer,
        "/ref_siblings"
    );
}
