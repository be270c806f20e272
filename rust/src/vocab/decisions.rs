//! Design decisions of the vocabulary layers, with the numbers that made them.
//!
//! # Method
//!
//! `python benches/compression.py --skip-tct --write-split /tmp/tct_vocab/split` holds out a
//! seeded random 10% of the development corpus's repositories (seed 20240603: 20 repositories,
//! 3,375 documents; 29,770 training documents) and writes both sides as JSONL. The ignored
//! tests in `experiments.rs` encode them to base streams, train each variant on the training
//! side with `vocab_size = 8192`, and count ids per held-out document (no BOS/EOS):
//!
//! ```text
//! cargo test --release --lib vocab::experiments::real_variants -- --ignored --nocapture
//! ```
//!
//! Machine: the shared 2-core development box (other jobs running, so seconds are noisy).
//!
//! # Baselines on the same held-out split (`benches/compression.py`, same box)
//!
//! | tokenizer | mean | median | p90 | <=512 | <=1024 |
//! | --- | ---: | ---: | ---: | ---: | ---: |
//! | o200k_base | 1372.3 | 672 | 3212 | 40.1% | 61.3% |
//! | cl100k_base | 1351.1 | 660 | 3144 | 40.5% | 61.7% |
//! | byte-level BPE-8192 (HF, same training split) | 1438.2 | 710 | 3271 | 38.8% | 60.4% |
//!
//! # Variants, real base streams (github-workflow.json, base_size 303)
//!
//! Base ids alone: mean 3893.8, median 1879, p90 8742.
//!
//! | variant (vocab 8192) | dict | merges | mean | median | p90 | <=512 | <=1024 | train s |
//! | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
//! | strings, dict 1024 raw | 1024 | 6862 | 1046.5 | 502 | 2421 | 50.6% | 68.4% | 7.0 |
//! | structure-runs, dict 1024 raw | 1024 | 6862 | 932.6 | 424 | 2164 | 54.9% | 71.8% | 8.6 |
//! | across, dict 1024 raw | 1024 | 6862 | 900.8 | 411 | 2103 | 55.5% | 73.4% | 9.6 |
//! | across, dict 0 | 0 | 7886 | 907.0 | 415 | 2118 | 55.5% | 73.0% | 10.1 |
//! | **across, dict 256 raw** | 256 | 7630 | **894.9** | 405 | 2108 | 56.0% | 73.7% | 11.7 |
//! | across, dict 2048 raw | 2048 | 5838 | 926.0 | 417 | 2147 | 55.0% | 72.3% | 10.3 |
//! | across, dict 4096 raw | 4096 | 3790 | 999.2 | 444 | 2329 | 53.2% | 70.4% | 8.1 |
//! | spans, dict 1024 raw | 1024 | 6862 | 900.0 | 409 | 2098 | 55.6% | 73.3% | 9.9 |
//! | spans, dict 256 raw | 256 | 7630 | 894.3 | 405 | 2094 | 56.0% | 73.6% | 12.4 |
//! | spans, dict 0 | 0 | 7886 | 906.7 | 413 | 2114 | 55.4% | 73.0% | 11.4 |
//! | document, dict 256 raw | 256 | 7630 | 874.2 | 397 | 2034 | 56.6% | 74.4% | 46.3 |
//!
//! Stand-in streams (before the encoder existed: a `SEL` per object key, so structure was
//! over-counted) ranked the variants the same way: strings 941.7, structure-runs 847.2,
//! across 840.1 (dict 1024, BPE scoring); across with dict 0 / 256 / 1024 raw / 2048 / 4096:
//! 831.4 / 824.5 / 821.6 / 855.7 / 929.3; dict 1024 with BPE scoring 840.1 vs raw 821.6.
//!
//! # Decisions
//!
//! - **Merges across structure (`across`)**, not strings only: 14% fewer ids than `strings`
//!   (900.8 vs 1046.5) and 3.4% fewer than separate structural runs. A structural prefix plus
//!   its value (`SEL(uses) END "actions/checkout@v4"`) becomes one id. `spans` (also joining a
//!   value with the next one across `STR_END`) is within 0.1% of `across`: in real streams a
//!   value is almost always followed by a structural id (a union's `SEL` before each map value,
//!   a presence mask before each object), so it buys nothing and makes merges harder to read.
//! - **`document` (no cuts at all) is 2.3% shorter than `across` (874.2 vs 894.9) but not the
//!   default**: training needs every base id in memory (no repeated words: 46 s instead of 12 s),
//!   `apply` runs the heap over whole documents (2.86 s instead of 1.4 s on the held-out split),
//!   and its merges straddle value boundaries (`"0" STR_END SEL(1)`), which makes every merged id
//!   span many matcher states. It stays available (`MergeScope::Document`) if ids matter more.
//! - **Goal gap**: the issue asks for a mean <= 0.6x o200k_base (<= 823); the default reaches
//!   894.9 (0.652x o200k_base, 0.622x the byte-level BPE-8192), `document` 874.2 (0.637x).
//! - **A small global dictionary (256 entries, raw scoring)**: the dictionary barely matters
//!   once merges cross structure (0 / 256 / 1024 entries: 907.0 / 894.9 / 900.8), and large
//!   ones hurt because they take merge ids (4096: 999.2). Raw scoring (`count * bytes`) beat
//!   BPE scoring on the stand-in (821.6 vs 840.1 at 1024); BPE scoring picks values that stay
//!   expensive after merging, mostly long scripts repeated in the training repositories, which
//!   do not recur in held-out repositories.
//! - **No per-field dictionaries.** The same id meaning different strings in different fields
//!   would make an id's expansion depend on the decoder state: `expand` would need the schema
//!   walk, and the matcher could not test an id by its fixed expansion. With the global
//!   dictionary already worth only ~1% over no dictionary, per-field contexts (which only
//!   enlarge the dictionary's reach) cannot pay for that; not implemented, not measured.
//! - **Training speed**: the whole pipeline (content counts, dictionary, word counts, 7,630
//!   merges) takes 10-12 s on the training split (92.4M base ids, 2.1M words, 121k distinct)
//!   on this 2-core box, far under the 2-minute goal; BPE dictionary scoring adds one merge
//!   pass (~7 s).
//! - **Apply speed** (`bpe_apply`): 10-17M base ids/s single thread on the held-out stand-in
//!   split (11.7M base ids in 0.7-1.1 s); the 200 KB single-string test stays within 8x of the
//!   same bytes in 2 KB pieces. The direct scan is used up to 8 symbols, the heap above.
