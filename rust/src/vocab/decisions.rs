//! Design decisions of the vocabulary layers, with the numbers that made them.
//!
//! # Method
//!
//! `python benches/compression.py --skip-tct --write-split /tmp/tct_vocab/split` holds out a
//! seeded random 10% of the development corpus's repositories (seed 20240603: 20 repositories,
//! 3,375 documents; 29,770 training documents from 181 repositories) and writes both sides as
//! JSONL, plus each document's repository (`*.repos`) and repository file (`*.files`). The
//! ignored tests in `experiments.rs` encode them to base streams, train each variant on the
//! training side with `vocab_size = 8192`, and count ids per held-out document (no BOS/EOS):
//!
//! ```text
//! cargo test --release --lib vocab::experiments::real_variants -- --ignored --nocapture
//! TCT_VOCAB_CFGS="default;power=0;enc=ranked,extra=0,power=0,dict=256" \
//!   cargo test --release --lib vocab::experiments::real_configs -- --ignored --nocapture
//! ```
//!
//! `repo-mean` (in the experiments' output) is the mean over held-out repositories of their
//! mean: a check that a change does not only help the largest held-out repositories.
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
//! # First layout: ranked merges, raw counts (github-workflow.json, base_size 303)
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
//! # Second round: generalising to new repositories (the 0.6x goal)
//!
//! The first layout reached 894.7 (re-measured with the current encoder; 0.652x o200k_base,
//! 0.622x the byte-level BPE-8192). Where the ids went (old default, held-out, ids/doc): run
//! scripts and other contents over 128 bytes 312 (35%), contents of 33-128 bytes 248 (28%),
//! 9-32 bytes 224 (25%), structural runs alone 36 (4%); the floor of one id per word of the
//! `across` scope is 135. Per held-out repository, TCT/o200k ranged from 0.47 (PyO3) to 0.87
//! (mockito); `ggml-org/whisper.cpp` alone holds 21% of the ids (0.72x), mostly repository
//! identifiers spelt in 2-3 byte pieces (`[W][H][I][SP][ER_][S][UP][POR][T_]`).
//!
//! **Oracle**: the same configuration trained on the training split *plus the held-out
//! documents* gives 735.5 (ranked) / 721.8 (shortest): the gap is generalisation to new
//! repositories (each held-out repository repeats its own content over ~200 versions), not
//! vocabulary capacity. Everything below targets that.
//!
//! Same split and baselines (o200k_base 1372.3, byte-level BPE-8192 1438.2); `x o200k` and
//! `x BPE` are mean ratios. "Power(p) by repo": per-repository counts raised to `p/100`.
//!
//! | variant (vocab 8192, `across`) | mean | median | p90 | <=512 | <=1024 | x o200k | x BPE |
//! | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
//! | old default: ranked, dict 256, raw | 894.7 | 405 | 2105 | 56.0% | 73.7% | 0.652 | 0.622 |
//! | *word* weighting, sqrt by repo (ranked) | 911.2 | 410 | 2102 | 55.9% | 72.8% | 0.664 | 0.634 |
//! | word weighting, log by repo | 919.0 | 416 | 2108 | 55.7% | 72.1% | 0.670 | 0.639 |
//! | word weighting, distinct repos | 942.4 | 425 | 2157 | 54.9% | 71.4% | 0.687 | 0.655 |
//! | word weighting, sqrt / log / distinct by document | 893.3 / 891.6 / 895.5 | 403-413 | 2079-2094 | ~55.9% | ~73.7% | ~0.65 | ~0.62 |
//! | *pair* weighting by repo, Power(35) (ranked) | 886.4 | 394 | 2062 | 56.7% | 73.4% | 0.646 | 0.616 |
//! | pair weighting by repo, Power(50) | 877.8 | 388 | 2041 | 56.6% | 73.8% | 0.640 | 0.610 |
//! | pair weighting by repo, Power(65) | 875.4 | 390 | 2027 | 56.7% | 74.4% | 0.638 | 0.609 |
//! | pair weighting by repo, Power(80) | 881.5 | 395 | 2044 | 56.4% | 74.4% | 0.642 | 0.613 |
//! | pair weighting by repo, log / distinct | 902.2 / 919.9 | 399 / 408 | 2067 / 2122 | 56.6% / 56.4% | 73.2% / 72.4% | 0.657 / 0.670 | 0.627 / 0.640 |
//! | shortest encoding, same vocabulary as the old default | 873.6 | 394 | 2059 | 56.5% | 74.3% | 0.637 | 0.607 |
//! | shortest, dict 0 / 1024 (ranked: 906.7 / 900.6) | 883.7 / 880.3 | 402 / 398 | 2069 / 2064 | 56.1% / 56.2% | 73.9% | 0.644 / 0.641 | 0.614 / 0.612 |
//! | shortest + pair Power(65) by repo | 854.1 | 379 | 2008 | 57.4% | 74.7% | 0.622 | 0.594 |
//! | shortest + Power(65) by repo *file* (4,422 groups) | 857.2 | 379 | 2003 | 57.2% | 74.5% | 0.625 | 0.596 |
//! | shortest + Power(65) by *document* (120 s training) | 864.7 | 385 | 2026 | 56.5% | 74.4% | 0.630 | 0.601 |
//! | + dict 0 / 128 / 512 / 1024 | 858.1 / 852.7 / 855.8 / 866.0 | 379-384 | 1989-2031 | ~57.3% | ~74.6% | 0.621-0.631 | |
//! | + prune extra 2000, leaves only (pairs kept) | 852.8 | 382 | 1998 | 57.1% | 74.9% | 0.621 | 0.593 |
//! | + prune extra 2000, any token (merges re-spelt) | 827.3 | 363 | 1948 | 57.9% | 75.6% | 0.603 | 0.575 |
//! | + prune extra 4000 / 8000, any token | 826.0 / 828.2 | 366 / 365 | 1936 / 1930 | 57.7% | 75.6% | 0.602 / 0.604 | |
//! | + usage weighted per repo too, extra 4000 | 822.5 | 361 | 1916 | 58.0% | 75.7% | 0.599 | 0.572 |
//! | + extra 6000 | 820.3 | 362 | 1901 | 58.1% | 75.6% | 0.598 | 0.570 |
//! | + dict 128, extra 6000, Power(65) / Power(57) | 818.2 / 815.8 | 361 / 359 | 1907 / 1906 | 58.0% | 75.7-75.9% | 0.596 / 0.594 | |
//! | + dict 64, Power(65) / dict 0 | 816.2 / 821.7 | 363 / 364 | 1904 / 1920 | 58.1% / 57.8% | 75.7% / 75.6% | | |
//! | **default: dict 128, Power(60) by repo, shortest, extra 6000, conflict-free batches** | **814.3** | **359** | **1904** | **58.1%** | **75.6%** | **0.593** | **0.566** |
//! | the same without group ids (raw counts; `tct.train` without `groups`) | 836.0 | 373 | 1960 | 57.5% | 75.1% | 0.609 | 0.581 |
//! | the default with the `document` scope (needs matcher support, see below) | 789.3 | 345 | 1830 | 59.1% | 76.2% | 0.575 | 0.549 |
//!
//! The default row is also what `python benches/compression.py --tct FILE` reports for a file
//! trained by `experiments::regenerate_bundled` on the training split with its repositories
//! (814.3, 0.593x o200k_base). Pre-tokenisation (contents of at least N bytes also cut before
//! each whitespace run that follows other bytes, GPT-style, dict 256, raw), ranked / shortest:
//! N = 16: 942.0 / 925.2; N = 64: 931.7 / 910.5; N = 256: 922.8 / 897.4; none: 894.7 / 873.6.
//!
//! **Check on another split** (seed 7: 3,119 held-out documents from 20 other repositories;
//! o200k_base 1302.9, BPE-8192 1359.4): old default 827.3 (0.635x); shortest 805.3; shortest +
//! Power(65) 783.4; default without groups 773.3 (0.594x); **default 751.1 (0.576x o200k_base,
//! 0.553x BPE-8192)**. The ranking of the variants holds; the gain (-9.2%) is not an artefact
//! of the split the parameters were tuned on (-9.0% there).
//!
//! # Decisions
//!
//! - **Weigh repetition per repository, at the level of pairs**: training counts each pair's
//!   occurrences per repository and sums `count^0.6` (`Weighting::Power(60)`). Weighting whole
//!   *words* per repository (first try) hurt: a long script is one word, so `distinct` or
//!   `log` weights starve the script merges that held-out scripts need (942.4 / 919.0). At the
//!   pair level the script's common substrings still add up across repositories while one
//!   repository's 150 versions count like ~20. Exponents 0.5-0.65 are within noise; 0.35 and
//!   0.8 are worse; log / distinct are too flat. Groups by repository file (4,422 groups) are
//!   slightly worse than by repository; per document is worse and takes 120+ s (one
//!   `(pair, group)` count per document), so **without group ids the weighting is raw**.
//! - **Shortest encoding** instead of ranked merges: BPE's greedy replay is 2-3% longer than
//!   the fewest ids over the same vocabulary (873.6 vs 894.7), at every dictionary size and
//!   scope. It also frees the vocabulary from being a BPE merge order, which is what makes
//!   pruning pay.
//! - **Learn 6,000 merges more than the budget, then prune** the tokens whose loss costs least
//!   (`usage x (next best spelling - 1)`, usage counted per repository with the same
//!   weighting), in batches of a quarter of the excess, never two tokens that stand in for each
//!   other in one batch. Pruning only the leaves of the merge graph (so that merges stay pairs)
//!   gains 1.3 ids; pruning any token and re-spelling the kept merges with the ids before them
//!   (merges of two *or more* parts) gains 27. Ranking by usage alone (first try) made even
//!   the training corpus longer (594.2 -> 637.1 ids/doc in-sample): a long rare token costs far
//!   more than its usage to replace. Removing alternatives together (`ab` and `abc` both look
//!   cheap while the other exists) made a small corpus 50% longer in the unit test; avoiding it
//!   gained 3 ids here (817.4 -> 814.3).
//! - **Dictionary 128** (pruning keeps ~124): whole values barely matter once merges cross
//!   structure and pruning can keep any long token; larger dictionaries keep repository
//!   specific values that do not recur (1024: 838.1 after pruning).
//! - **No pre-tokenisation**: cutting contents at whitespace costs 3-8% at every threshold;
//!   merges across words (`sudo apt-get install`, `${{ matrix.`) are worth more than the
//!   generalisation the cuts buy.
//! - **`across` stays the scope.** `document` (merges over value boundaries) would give another
//!   3.1% (789.3) but takes 178 s and 4 GB to train here, and the matcher's string tables allow
//!   only bytes-only and `bytes STR_END` ids inside a string, so an id like `bytes STR_END
//!   SEL(k)` would never be allowed: it needs matcher support (a base-format / matcher change
//!   for the lead, not made here).
//! - **Goal**: the default reaches 814.3 = 0.593x o200k_base and 0.566x the byte-level
//!   BPE-8192 on the held-out repositories (seed 7 split: 0.576x / 0.553x). It needs the
//!   repositories (`groups`); without them 836.0 (0.609x / 0.581x).
//! - **Training time** (this 2-core box, full development corpus, 33,145 documents): 17.8 s for
//!   dictionary, 13,758 merges and 15 pruning rounds, plus ~3 s of encoding; 2.1 GB peak. The
//!   training split through `tct.train`: 16.3 s. Deterministic: two runs give the same file
//!   (same hash), and renumbering the groups or reordering the documents changes nothing
//!   (unit-tested).
//! - **Apply speed** (single thread, the 13.1M base ids of the held-out split): the DP alone
//!   40.6 ns per base id; with cuts where no id can span plus a per-thread cache of pieces of
//!   2-256 symbols, 11.4 ns cold and ~8 ns warm, against 9.0 / 6.3 ns for ranked merges with
//!   `bpe_apply`'s cuts and cache on the old vocabulary.
//!
//! # First-round decisions (ranked merges, raw counts)
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
//! - **Goal gap** then: the issue asks for a mean <= 0.6x o200k_base (<= 823); that default
//!   reached 894.9 (0.652x o200k_base, 0.622x the byte-level BPE-8192), `document` 874.2. See
//!   the second round above.
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
