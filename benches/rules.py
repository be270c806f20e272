"""What the rules layer costs and what it buys, on the bundled ``github-workflow`` tokenizer.

1. Over-constraining: of real schema-valid workflows (those passing actionlint's semantic
   checks, when actionlint is installed), the share the rules matcher accepts id by id, and
   the reason for every rejection.
2. Matcher cost: p50/p99 microseconds per step (``allowed()`` then ``advance(id)``) on the
   same documents, with rules and without.
3. With ``--checkpoint``: samples of that model on the same seeds with rules and without,
   linted by actionlint: share passing all checks, the semantic ones, and documents per kind.

Run::

    python benches/rules.py --docs 40
    python benches/rules.py --docs 40 --checkpoint out/ckpt.pt --samples 20 --json rules.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import tct
from bench_common import cpu_name

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "workflows" / "workflows.jsonl.gz"


def load_docs(path: Path, n: int, seed: int) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        recs = [json.loads(line) for line in f]
    recs = [r for r in recs if r.get("schema_valid")]
    random.Random(seed).shuffle(recs)
    return recs[: n * 2]


def walk(tok: tct.Tokenizer, ids: list[int], rules: bool) -> tuple[list[float], str | None]:
    """Per-step microseconds of allowed()+advance(); the rejection message, if any."""
    m = tok.matcher(rules=True) if rules else tok.matcher(rules=False)
    times = []
    for i in [*ids, tok.eos_id]:
        t0 = time.perf_counter()
        mask = m.allowed()
        try:
            m.advance(i)
        except tct.DecodeError as e:
            return times, str(e)
        times.append((time.perf_counter() - t0) * 1e6)
        if not mask[i]:
            return times, f"id {i} not in the mask"
    return times, None


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def lint_summary(docs: list[Any]) -> dict[str, Any]:
    from trainer import lint

    res = lint.lint_documents(docs)
    kinds: Counter[str] = Counter()
    for r in res:
        kinds.update(r.kinds)
    n = max(1, len(res))
    return {
        "n": len(res),
        "lint_all": sum(r.passes_all for r in res) / n,
        "lint_semantic": sum(r.passes_semantic for r in res) / n,
        "per_kind": dict(kinds.most_common()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    p.add_argument("--docs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="a trainer checkpoint: sample with and without rules")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    tok = tct.load("github-workflow")
    out: dict[str, Any] = {"machine": cpu_name(), "rules": tok.rules}
    recs = load_docs(Path(args.corpus), args.docs, args.seed)
    try:
        from trainer import lint

        verdicts = lint.lint_documents([r["json"] for r in recs])
        recs = [r for r, v in zip(recs, verdicts, strict=True) if v.passes_semantic]
        out["real_filter"] = "schema-valid and actionlint-semantic-clean"
    except (ImportError, OSError, tct.TctError) as e:  # no actionlint: schema-valid only
        out["real_filter"] = f"schema-valid only ({type(e).__name__}: {e})"
    recs = recs[: args.docs]
    accepted, rejections = 0, []
    steps = {True: [], False: []}
    for r in recs:
        try:
            ids = tok.encode(r["json"])
        except tct.EncodeError:
            continue
        t_plain, why_plain = walk(tok, ids, rules=False)
        t_rules, why = walk(tok, ids, rules=True)
        steps[False] += t_plain
        steps[True] += t_rules
        if why is None and why_plain is None:
            accepted += 1
        else:
            rejections.append({"path": f"{r['repo']}/{r['path']}", "reason": why or why_plain})
    n = accepted + len(rejections)
    out["real"] = {"n": n, "accepted": accepted / max(1, n), "rejections": rejections}
    out["latency_us"] = {
        ("with_rules" if k else "without_rules"): {
            "steps": len(v),
            "p50": pct(v, 0.5),
            "p99": pct(v, 0.99),
        }
        for k, v in steps.items()
    }
    if args.checkpoint:
        from trainer.generate import generate, load_model
        from trainer.sampling import SamplingConfig

        lm = load_model(args.checkpoint, "github-workflow", "cpu", "auto")
        arms = {}
        for rules in (True, False):
            samples, _ = generate(
                lm,
                args.samples,
                SamplingConfig(1.0, 0, 1.0),
                max_tokens=args.max_tokens,
                seed=args.seed,
                rules=rules,
            )
            docs = [json.loads(s.record()["json"]) for s in samples]
            arms["with_rules" if rules else "without_rules"] = lint_summary(docs)
        out["samples"] = arms
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
