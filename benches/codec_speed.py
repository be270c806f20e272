"""Codec speed: TCT encode and decode beside orjson and o200k_base, one thread, one process.

On the workflow corpus (every document as compact JSON
text, ``separators=(",", ":")``, ``ensure_ascii=False``), in the same process and on the same
documents, one document per call from Python:

- ``orjson.loads`` (JSON text -> Python value): the speed of just reading the JSON;
- o200k_base from ``bpe-openai`` (``encode_ordinary``: text -> ids; ``decode``: ids -> text);
- TCT encode (JSON text -> ids) and decode (ids -> compact JSON text) with (a) the base
  tokenizer compiled from ``github-workflow.json`` and (b) the bundled trained tokenizer
  ``tct.load("github-workflow")``;
- also TCT ``encode_batch(..., num_threads=1)``: the same work without a Python call and a
  Python list per document.

It reports MB/s (of compact JSON, UTF-8) and documents/s, best of ``--repeat`` runs (process CPU
time: the development box is shared; see ``CLOCK``), the ratios
to o200k_base and to orjson, tokens per document, and correctness: every TCT round trip must give
back the document value- and type-exact (key order may differ: TCT's key order is canonical), and
every o200k round trip the exact text. Each timed TCT encode starts from a fresh copy of the
tokenizer, so its caches (pieces and whole words, ``rust/src/vocab/piece_cache.rs`` and
``word_cache.rs``) start empty: the number is
one cold pass over the documents, never a rerun of documents already seen. A synthetic check
encodes a workflow whose ``run`` string is 10 KB and one where it is 1 MB (decode: 10 KB and
100 KB): the time per byte must stay flat (no quadratic codec).

The garbage collector is disabled while timing (as ``timeit`` does): allocating millions of
small lists next to a large live heap otherwise spends most of the time in full collections,
whichever codec runs.

Run::

    python benches/codec_speed.py                    # whole corpus, Markdown table
    python benches/codec_speed.py --limit 2000       # a seeded sample of 2,000 documents
    python benches/codec_speed.py --json out.json    # also write the numbers as JSON
"""

from __future__ import annotations

import os

# Before numpy is imported (by tct): idle OpenBLAS threads would spin on CPU time we measure.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import gc
import gzip
import json
import math
import pickle
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_common import compact, cpu_name
from tct.testing import same_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "workflows" / "workflows.jsonl.gz"
DEFAULT_SCHEMA = ROOT.parent / "shared" / "data" / "schemas" / "github-workflow.json"
GOAL_ENCODE_VS_O200K = 4.0
# CPU time of this process, not wall time: the development box is shared, and wall time counts
# the time this process waits for a core. Everything timed is single-threaded (encode_batch
# runs on one rayon worker while the caller waits), so on an idle machine the two agree.
CLOCK = time.process_time


def load_texts(path: Path, limit: int | None, seed: int) -> list[str]:
    """Compact JSON text of every corpus document (or a seeded sample of ``limit``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        texts = [compact(json.loads(line)["json"]) for line in f if line.strip()]
    if limit is not None and limit < len(texts):
        texts = random.Random(seed).sample(texts, limit)
    return texts


def best_time(
    fn: Callable[[Any], object], repeat: int, setup: Callable[[], Any] = lambda: None
) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs of ``fn(setup())`` (GC off, ``setup`` untimed), and
    the last run's result."""
    best = math.inf
    result: object = None
    for _ in range(repeat):
        result = None  # free the previous run's output before timing the next
        arg = setup()
        gc.disable()
        t = CLOCK()
        result = fn(arg)
        dt = CLOCK() - t
        gc.enable()
        best = min(best, dt)
    return best, result


def row(name: str, seconds: float, n_bytes: int, n_docs: int, ok: int | None, **extra: Any) -> dict:
    return {
        "name": name,
        "seconds": seconds,
        "mb_s": n_bytes / seconds / 1e6,
        "docs_s": n_docs / seconds,
        "ok": ok,
        **extra,
    }


def fresh(tok: Any) -> Any:
    """An independent copy of ``tok`` (pickle round trip): its caches start empty, so
    every timed repetition encodes the corpus cold, as a single pass over it would. One tiny
    document is encoded untimed, so that dropping the previous copy's cache is not timed."""
    copy = pickle.loads(pickle.dumps(tok))
    copy.encode(b'{"on":"push","jobs":{}}')
    return copy


def bench_tct(
    label: str, tok: Any, texts: Sequence[str], blobs: Sequence[bytes], repeat: int
) -> tuple[list[dict], dict]:
    """Encode, decode and encode_batch rows for one tokenizer, plus token counts."""
    import numpy as np

    n_bytes = sum(map(len, blobs))
    n = len(texts)

    def encode_all(t: Any) -> list[list[int]]:
        enc = t.encode
        return [enc(x) for x in texts]

    t_enc, ids = best_time(encode_all, repeat, lambda: fresh(tok))
    assert isinstance(ids, list)
    dec = tok.decode
    t_dec, decoded = best_time(lambda _: [dec(x) for x in ids], repeat)
    assert isinstance(decoded, list)
    ok = 0
    bad: list[int] = []
    for i, (src, (text, consumed, total)) in enumerate(zip(texts, decoded, strict=True)):
        if consumed == total == len(ids[i]) and same_json(json.loads(text), json.loads(src)):
            ok += 1
        elif len(bad) < 5:
            bad.append(i)
    t_batch, batch = best_time(
        lambda t: t.encode_batch(blobs, num_threads=1), repeat, lambda: fresh(tok)
    )
    flat, offsets = batch  # type: ignore[misc]
    batch_ok = all(
        np.array_equal(flat[offsets[i] : offsets[i + 1]], np.asarray(ids[i], dtype=np.uint16))
        for i in range(n)
    )
    counts = sorted(len(x) for x in ids)
    tokens = {
        "mean": sum(counts) / n,
        "median": counts[n // 2],
        "p90": counts[min(n - 1, int(0.9 * n))],
    }
    rows = [
        row(f"TCT {label} encode", t_enc, n_bytes, n, ok, tokens=tokens),
        row(f"TCT {label} decode", t_dec, n_bytes, n, ok, failures=bad),
        row(
            f"TCT {label} encode_batch(num_threads=1)",
            t_batch,
            n_bytes,
            n,
            n if batch_ok else 0,
        ),
    ]
    return rows, tokens


def bench_o200k(texts: Sequence[str], n_bytes: int, repeat: int) -> list[dict]:
    import bpe_openai

    enc = bpe_openai.get_encoding("o200k_base")
    encode = enc.encode_ordinary
    decode = enc.decode
    t_enc, ids = best_time(lambda _: [encode(x) for x in texts], repeat)
    assert isinstance(ids, list)
    t_dec, back = best_time(lambda _: [decode(x) for x in ids], repeat)
    assert isinstance(back, list)
    ok = sum(a == b for a, b in zip(back, texts, strict=True))
    n = len(texts)
    counts = sorted(len(x) for x in ids)
    tokens = {"mean": sum(counts) / n, "median": counts[n // 2]}
    return [
        row("o200k_base encode (bpe-openai)", t_enc, n_bytes, n, ok, tokens=tokens),
        row("o200k_base decode (bpe-openai)", t_dec, n_bytes, n, ok),
    ]


def bench_orjson(texts: Sequence[str], n_bytes: int, repeat: int) -> list[dict]:
    import orjson

    loads = orjson.loads
    failed = object()

    def load(x: str) -> Any:
        # orjson rejects numbers that overflow a double (the corpus has a few); TCT keeps them.
        try:
            return loads(x)
        except orjson.JSONDecodeError:
            return failed

    t, values = best_time(lambda _: [load(x) for x in texts], repeat)
    assert isinstance(values, list)
    ok = sum(
        v is not failed and same_json(v, json.loads(x)) for v, x in zip(values, texts, strict=True)
    )
    return [row("orjson.loads", t, n_bytes, len(texts), ok)]


def long_string_doc(size: int, seed: int = 0) -> bytes:
    """A workflow whose one ``run`` script is ``size`` bytes of varied shell lines (seeded, so
    that pieces rarely repeat and no cache can hide the cost of merging)."""
    rng = random.Random(seed)
    words = ["echo", "make", "npm", "run", "test", "build", "cp", "-r", "dist", "$HOME", "&&"]
    parts: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(6)) + "\n"
        parts.append(line)
        total += len(line)
    script = "".join(parts)[:size]
    d = {"on": "push", "jobs": {"build": {"runs-on": "ubuntu-latest", "steps": [{"run": script}]}}}
    return compact(d).encode()


def linearity(tok: Any, repeat: int) -> dict:
    """Time per byte of encode (10 KB vs 1 MB ``run`` string) and decode (10 KB vs 100 KB).

    Each encode uses a fresh copy of the tokenizer (cold caches)."""
    out: dict = {}
    for op, small, large in (("encode", 10_000, 1_000_000), ("decode", 10_000, 100_000)):
        res = {}
        for size in (small, large):
            blob = long_string_doc(size)
            if op == "encode":
                t, _ = best_time(lambda k, b=blob: k.encode(b), repeat, lambda: fresh(tok))
            else:
                ids = tok.encode(blob)
                t, _ = best_time(lambda _, i=ids: tok.decode(i), repeat)
            res[size] = t / len(blob) * 1e9
        out[op] = {
            "small_bytes": small,
            "large_bytes": large,
            "small_ns_per_byte": res[small],
            "large_ns_per_byte": res[large],
            "ratio": res[large] / res[small],
        }
    return out


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x"


def markdown(result: dict) -> str:
    rows = result["rows"]
    by = {r["name"]: r for r in rows}
    o_enc = by["o200k_base encode (bpe-openai)"]["mb_s"]
    o_dec = by["o200k_base decode (bpe-openai)"]["mb_s"]
    oj = by["orjson.loads"]["mb_s"]
    n = result["documents"]
    lines = [
        f"{n} documents, {result['megabytes']:.1f} MB of compact JSON; one thread; "
        f"best of {result['repeat']}; {result['cpu']}",
        "",
        "| what | MB/s | docs/s | vs o200k (same direction) | vs orjson.loads | tokens/doc (mean / median) | round trips exact |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ref = o_dec if "decode" in r["name"] else o_enc
        tokens = r.get("tokens")
        tok_s = f"{tokens['mean']:.0f} / {tokens['median']}" if tokens else ""
        ok = "" if r["ok"] is None else f"{r['ok']}/{n}"
        lines.append(
            f"| {r['name']} | {r['mb_s']:.1f} | {r['docs_s']:.0f} | {fmt_ratio(r['mb_s'] / ref)} "
            f"| {fmt_ratio(r['mb_s'] / oj)} | {tok_s} | {ok} |"
        )
    lines.append("")
    for op, d in result["linearity"].items():
        lines.append(
            f"Long strings, {op} (trained tokenizer): one `run` string of "
            f"{d['small_bytes']:,} B: {d['small_ns_per_byte']:.1f} ns/B; of "
            f"{d['large_bytes']:,} B: {d['large_ns_per_byte']:.1f} ns/B (ratio "
            f"{d['ratio']:.2f}; 1.0 is linear)."
        )
    trained = by["TCT trained encode"]["mb_s"]
    goal = trained / o_enc >= GOAL_ENCODE_VS_O200K
    dec_faster = by["TCT trained decode"]["mb_s"] > trained
    lines.append(
        f"Goals: trained encode >= {GOAL_ENCODE_VS_O200K:.0f}x o200k: "
        f"{'met' if goal else 'NOT met'} ({trained / o_enc:.2f}x); decode faster than encode: "
        f"{'met' if dec_faster else 'NOT met'}."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    ap.add_argument("--limit", type=int, default=None, help="seeded sample of N documents")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import tct

    texts = load_texts(args.corpus, args.limit, args.seed)
    blobs = [x.encode("utf-8") for x in texts]
    n_bytes = sum(map(len, blobs))
    # Everything loaded so far lives until the end: move it out of the collector's way.
    gc.collect()
    gc.freeze()
    print(
        f"{len(texts)} documents, {n_bytes / 1e6:.1f} MB compact JSON; timing ...",
        file=sys.stderr,
    )
    base = tct.Tokenizer.from_schema(args.schema)
    trained = tct.load("github-workflow")
    rows: list[dict] = []
    rows += bench_orjson(texts, n_bytes, args.repeat)
    rows += bench_o200k(texts, n_bytes, args.repeat)
    base_rows, base_tokens = bench_tct("base", base, texts, blobs, args.repeat)
    trained_rows, trained_tokens = bench_tct("trained", trained, texts, blobs, args.repeat)
    rows += base_rows + trained_rows
    result = {
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "documents": len(texts),
        "megabytes": n_bytes / 1e6,
        "repeat": args.repeat,
        "rows": rows,
        "base_tokens_per_doc": base_tokens,
        "trained_tokens_per_doc": trained_tokens,
        "linearity": linearity(trained, args.repeat),
    }
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    n = len(texts)
    # orjson is only the speed reference: its rejections are reported, not failures of TCT.
    all_ok = all(r["ok"] == n for r in rows if not r["name"].startswith("orjson"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
