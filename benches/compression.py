"""Compression report: tokens per document on held-out workflows.

Holds out a seeded random 10% of the development corpus's *repositories* (so near-duplicate
versions of one file never straddle the split), then reports, on the held-out documents, tokens
per document (mean, median, p90) and the share of documents of <= 512 and <= 1024 tokens for:

- TCT-8192: trained on the training split with ``tct.train`` (one group per repository when the
  installed ``tct.train`` takes ``groups``), or loaded with ``--tct FILE``;
- o200k_base and cl100k_base (``bpe-openai``, offline, ids equal tiktoken's);
- a byte-level BPE of vocabulary 8,192 trained with HF ``tokenizers`` on the same training split,
  over compact JSON (``separators=(",", ":")``, ``ensure_ascii=False``).

The baselines tokenize compact JSON text; TCT encodes the same parsed documents (no BOS/EOS).

Run::

    python benches/compression.py                       # everything (TCT if `tct` has training)
    python benches/compression.py --skip-tct            # baselines only
    python benches/compression.py --tct tok.json        # TCT from a trained tokenizer file
    python benches/compression.py --write-split /tmp/s  # also write train/heldout JSONL there
    python benches/compression.py --tct tok.json --breakdown 300  # + where TCT's ids go

``--breakdown N`` walks N held-out documents id by id and reports TCT's ids by kind and by
schema location (``benches/token_breakdown.py``).

``--write-split`` writes ``train.jsonl`` and ``heldout.jsonl`` (one compact JSON document per
line) so that other experiments (e.g. the Rust vocabulary experiments) use the same split.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench_common import compact

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "workflows" / "workflows.jsonl.gz"
DEFAULT_SCHEMA = ROOT.parent / "shared" / "data" / "schemas" / "github-workflow.json"
SPLIT_SEED = 20240603
HELDOUT_FRACTION = 0.1
VOCAB_SIZE = 8192


def load_corpus(path: Path) -> list[dict]:
    """Records of the development corpus (``repo``, ``path``, ``json``, ...)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def split_by_repo(
    records: Sequence[dict], seed: int = SPLIT_SEED, fraction: float = HELDOUT_FRACTION
) -> tuple[list[dict], list[dict]]:
    """Seeded random ``fraction`` of the repositories held out; returns (train, heldout)."""
    repos = sorted({r["repo"] for r in records})
    k = max(1, round(fraction * len(repos)))
    held = set(random.Random(seed).sample(repos, k))
    train = [r for r in records if r["repo"] not in held]
    heldout = [r for r in records if r["repo"] in held]
    return train, heldout


def summarize(counts: Sequence[int]) -> dict:
    s = sorted(counts)
    n = len(s)
    return {
        "docs": n,
        "mean": sum(s) / n,
        "median": statistics.median(s),
        "p90": s[min(n - 1, int(0.9 * n))],
        "le512": sum(c <= 512 for c in s) / n,
        "le1024": sum(c <= 1024 for c in s) / n,
        "total": sum(s),
    }


def count_tokens(name: str, encode: Callable[[str], int], texts: Sequence[str]) -> dict:
    t = time.perf_counter()
    counts = [encode(x) for x in texts]
    row = summarize(counts)
    row["name"] = name
    row["seconds"] = time.perf_counter() - t
    return row


def openai_rows(texts: Sequence[str]) -> list[dict]:
    import bpe_openai

    rows = []
    for name in ("o200k_base", "cl100k_base"):
        enc = bpe_openai.get_encoding(name)
        rows.append(
            count_tokens(name, lambda x, e=enc: len(e.encode(x, disallowed_special=())), texts)
        )
    return rows


def hf_bpe_row(train_texts: Sequence[str], texts: Sequence[str], cache: Path | None) -> dict:
    """Byte-level BPE, vocabulary 8,192, trained on the training split's compact JSON."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if cache is not None and cache.exists():
        tok = Tokenizer.from_file(str(cache))
    else:
        t = time.perf_counter()
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(train_texts, trainer=trainer, length=len(train_texts))
        print(
            f"  trained HF byte-level BPE-8192 in {time.perf_counter() - t:.1f}s", file=sys.stderr
        )
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tok.save(str(cache))
    assert tok.get_vocab_size() <= VOCAB_SIZE
    return count_tokens(
        "bytelevel-bpe-8192 (HF)",
        lambda x: len(tok.encode(x, add_special_tokens=False).ids),
        texts,
    )


def tct_row(
    args, train_docs: list, held_docs: list, train_repos: list[str]
) -> tuple[dict, object] | None:
    """TCT-8192 through the Python package; None (with a note) if the package lacks it."""
    try:
        import tct
    except ImportError as e:
        print(f"  TCT skipped: cannot import tct ({e})", file=sys.stderr)
        return None
    schema = json.loads(Path(args.schema).read_text(encoding="utf-8"))
    t = time.perf_counter()
    if args.tct:
        tok = tct.load(args.tct)
    elif hasattr(tct, "train"):
        # Repetition inside a repository is weighed down when training knows the repositories
        # (rust/src/vocab/weighting.rs); older builds of `tct.train` have no `groups`.
        kw = {}
        if "groups" in inspect.signature(tct.train).parameters:
            kw["groups"] = train_repos
        else:
            print("  note: this tct.train has no `groups`: trained without them", file=sys.stderr)
        tok = tct.train(schema, train_docs, vocab_size=VOCAB_SIZE, progress=True, **kw)
        print(f"  trained TCT-8192 in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        if args.save_tct:
            tok.save(args.save_tct)
    else:
        print("  TCT skipped: this tct build has no train()", file=sys.stderr)
        return None
    t = time.perf_counter()
    counts = [len(tok.encode(compact(d))) for d in held_docs]
    row = summarize(counts)
    row["name"] = f"TCT-{tok.vocab_size}"
    row["seconds"] = time.perf_counter() - t
    return row, tok


def print_table(rows: list[dict], reference: dict | None) -> None:
    print(
        f"| tokenizer | mean | median | p90 | <=512 | <=1024 | mean vs {reference['name'] if reference else '-'} |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = f"{r['mean'] / reference['mean']:.3f}" if reference else "-"
        print(
            f"| {r['name']} | {r['mean']:.1f} | {r['median']:.0f} | {r['p90']} "
            f"| {100 * r['le512']:.1f}% | {100 * r['le1024']:.1f}% | {ratio} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    ap.add_argument("--seed", type=int, default=SPLIT_SEED)
    ap.add_argument("--tct", type=Path, help="a trained TCT tokenizer file (skips training)")
    ap.add_argument("--save-tct", type=Path, help="where to save the TCT tokenizer it trains")
    ap.add_argument("--skip-tct", action="store_true")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--hf-cache", type=Path, help="save/load the HF BPE-8192 here")
    ap.add_argument("--write-split", type=Path, help="write train.jsonl / heldout.jsonl here")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument(
        "--breakdown", type=int, default=0, metavar="N", help="where TCT's ids go, N documents"
    )
    args = ap.parse_args(argv)

    t = time.perf_counter()
    records = load_corpus(args.corpus)
    train, held = split_by_repo(records, args.seed)
    n_repos = len({r["repo"] for r in held})
    print(
        f"corpus: {len(records)} documents; held out {len(held)} documents from {n_repos} "
        f"repositories (seed {args.seed}); training split {len(train)} "
        f"({time.perf_counter() - t:.1f}s)",
        file=sys.stderr,
    )
    train_docs = [r["json"] for r in train]
    held_docs = [r["json"] for r in held]
    if args.write_split:
        args.write_split.mkdir(parents=True, exist_ok=True)
        for name, docs in (("train.jsonl", train_docs), ("heldout.jsonl", held_docs)):
            with open(args.write_split / name, "w", encoding="utf-8") as f:
                for d in docs:
                    f.write(compact(d) + "\n")
        # The repository (and the repository file) of each document, line by line, for
        # group-weighted training experiments.
        for side, recs in (("train", train), ("heldout", held)):
            with open(args.write_split / f"{side}.repos", "w", encoding="utf-8") as f:
                for r in recs:
                    f.write(r["repo"] + "\n")
            with open(args.write_split / f"{side}.files", "w", encoding="utf-8") as f:
                for r in recs:
                    f.write(r["repo"] + ":" + r["path"] + "\n")
    held_texts = [compact(d) for d in held_docs]

    rows = []
    tok = None
    if not args.skip_tct:
        got = tct_row(args, train_docs, held_docs, [r["repo"] for r in train])
        if got:
            row, tok = got
            rows.append(row)
    rows.extend(openai_rows(held_texts))
    if not args.skip_hf:
        rows.append(hf_bpe_row([compact(d) for d in train_docs], held_texts, args.hf_cache))
    reference = next((r for r in rows if r["name"] == "o200k_base"), None)
    print(f"\nHeld-out split: {len(held)} documents, {n_repos} repositories, seed {args.seed}\n")
    print_table(rows, reference)
    result: dict = {"rows": rows}
    if tok is not None and args.breakdown > 0:
        from token_breakdown import breakdown, print_breakdown

        step = max(1, len(held_texts) // args.breakdown)
        result["breakdown"] = breakdown(tok, held_texts[::step][: args.breakdown])
        print_breakdown(result["breakdown"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
