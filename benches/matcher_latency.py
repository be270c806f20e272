"""Matcher latency per generation step, on real workflows.

Walks the canonical encodings of a seeded sample of real workflows (schema-valid ones that
encode without fallback, since the matcher never allows the fallback path) with the bundled
``github-workflow`` tokenizer, and times every step as a sampler would run it: ``m.allowed()``
(the numpy mask of all 8,192 ids) then ``m.advance(id)``. The final step is EOS. Each step's
id is checked against the mask, so the walk also re-checks completeness.

Reports p50/p90/p99/max per step in microseconds (the time of the two Python calls, as a
generation loop sees it, including the call overhead and the mask's allocation), the same for
``allowed()`` and ``advance()`` alone, and a breakdown by what the matcher waits for before the
step (``Matcher.top_kind()``: ``string`` inside a string, ``header`` at an object's
presence header, ``value:union`` before a union's selector, ...).

Goal from the issue: p50 <= 5 us and p99 <= 50 us per step.

Run::

    python benches/matcher_latency.py                 # 300 workflows
    python benches/matcher_latency.py --docs 100 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bench_common import cpu_name

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "workflows" / "workflows.jsonl.gz"
GOAL_P50_US = 5.0
GOAL_P99_US = 50.0


def sample_docs(path: Path, n: int, seed: int) -> list[dict]:
    """A seeded sample of schema-valid documents from the corpus."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        docs = [r["json"] for r in map(json.loads, f) if r.get("schema_valid")]
    return random.Random(seed).sample(docs, min(n, len(docs)))


def percentiles(xs: Sequence[float]) -> dict:
    s = sorted(xs)
    n = len(s)

    def q(p: float) -> float:
        return s[min(n - 1, int(p * n))]

    return {
        "steps": n,
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "max": s[-1],
        "mean": sum(s) / n,
    }


def walk(tok, ids: list[int]) -> tuple[list[float], list[float], list[str]]:
    """Times (ns) of allowed() and advance() per step, and the matcher's kind before it."""
    m = tok.matcher()
    clock = time.perf_counter_ns
    t_allowed: list[float] = []
    t_advance: list[float] = []
    kinds: list[str] = []
    for i, id_ in enumerate([*ids, tok.eos_id]):
        kinds.append(m.top_kind())
        t0 = clock()
        mask = m.allowed()
        t1 = clock()
        m.advance(id_)
        t2 = clock()
        if not mask[id_]:
            raise AssertionError(f"step {i}: id {id_} is accepted but not in allowed()")
        t_allowed.append(t1 - t0)
        t_advance.append(t2 - t1)
    return t_allowed, t_advance, kinds


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--docs", type=int, default=300, help="workflows to walk")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default="github-workflow", help="bundled name or file")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="workflows walked untimed first (default: a tenth of --docs; 0 times a cold matcher)",
    )
    args = ap.parse_args(argv)

    import tct

    tok = tct.load(args.tokenizer)
    docs = sample_docs(args.corpus, args.docs, args.seed)
    encodings = []
    skipped = 0
    for d in docs:
        enc = tok.encode_detailed(d)
        if enc.fallbacks:
            skipped += 1
            continue
        encodings.append(list(enc.ids))
    gc.collect()
    gc.freeze()
    # Warm-up: the first visit of a context (a constrained string state, a structural context)
    # fills per-tokenizer caches, as a generation loop's first documents do. `--warmup 0`
    # times those first visits too. The warm-up documents are timed as well.
    n_warm = args.warmup if args.warmup is not None else max(1, len(encodings) // 10)
    warm = encodings[:n_warm]
    for ids in warm:
        walk(tok, ids)
    step_ns: list[float] = []
    allowed_ns: list[float] = []
    advance_ns: list[float] = []
    by_kind: dict[str, list[float]] = defaultdict(list)
    gc.disable()
    for ids in encodings:
        a, b, kinds = walk(tok, ids)
        for x, y, k in zip(a, b, kinds, strict=True):
            step_ns.append(x + y)
            allowed_ns.append(x)
            advance_ns.append(y)
            by_kind[k].append(x + y)
    gc.enable()

    def us(d: dict) -> dict:
        return {k: (v / 1000 if k not in ("steps",) else v) for k, v in d.items()}

    result = {
        "cpu": cpu_name(),
        "tokenizer": tok.name if hasattr(tok, "name") else args.tokenizer,
        "vocab_size": tok.vocab_size,
        "documents": len(encodings),
        "skipped_fallback": skipped,
        "warmup_documents": len(warm),
        "step": us(percentiles(step_ns)),
        "allowed": us(percentiles(allowed_ns)),
        "advance": us(percentiles(advance_ns)),
        "by_kind": {k: us(percentiles(v)) for k, v in sorted(by_kind.items())},
    }
    print(
        f"{result['documents']} workflows walked ({skipped} skipped: fallback), "
        f"{result['step']['steps']} steps, vocab {tok.vocab_size}, one thread, {result['cpu']}; "
        f"first {len(warm)} walked once before timing (warm-up)"
    )
    print()
    print("| what | steps | share | p50 us | p90 us | p99 us | max us | mean us |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    total = result["step"]["steps"]

    def line(name: str, d: dict) -> None:
        print(
            f"| {name} | {d['steps']} | {100 * d['steps'] / total:.1f}% | {d['p50']:.2f} "
            f"| {d['p90']:.2f} | {d['p99']:.2f} | {d['max']:.1f} | {d['mean']:.2f} |"
        )

    line("**step: allowed() + advance()**", result["step"])
    line("allowed() alone", result["allowed"])
    line("advance() alone", result["advance"])
    for k, d in sorted(result["by_kind"].items(), key=lambda kv: -kv[1]["steps"]):
        line(f"step, waiting in `{k}`", d)
    p50, p99 = result["step"]["p50"], result["step"]["p99"]
    print()
    print(
        f"Goal: p50 <= {GOAL_P50_US:g} us: {'met' if p50 <= GOAL_P50_US else 'NOT met'}"
        f" ({p50:.2f}); p99 <= {GOAL_P99_US:g} us: "
        f"{'met' if p99 <= GOAL_P99_US else 'NOT met'} ({p99:.2f})."
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
