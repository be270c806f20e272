"""What generation's "mask us/token" is made of, per sampled row, next to ``allowed()`` alone.

``trainer.generate`` (and ``trainer.eval``) time everything between two forward passes that is
not sampling: filling the packed int32 bitmask of every row (``fill_next_token_bitmask_batch``,
budget checks included), the float copy of the logits and their NaN check, applying the bitmask
with torch, and the Python loop that advances each row's matcher. This times those pieces on the
states of a seeded random walk under the bundled tokenizer's mask (CPU, one torch thread; the
mean per row, best of three repetitions).

Run::

    python benches/mask_cost.py --steps 200 --batch 16
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import numpy as np
import torch

import tct


def walk(tok: tct.Tokenizer, steps: int, seed: int) -> list[tct.Matcher]:
    """Matcher states along a random walk of allowed ids (EOS excluded until nothing else is)."""
    rng = random.Random(seed)
    m = tok.matcher()
    states = [m.copy()]
    for _ in range(steps):
        allowed = np.flatnonzero(m.allowed())
        allowed = allowed[allowed != tok.eos_id]
        if not len(allowed):
            break
        m.advance(int(rng.choice(allowed)))
        states.append(m.copy())
    return states


def best_of(f: Callable[[], object], reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = tct.load()
    states = walk(tok, args.steps, args.seed)
    b = min(args.batch, len(states))
    groups = [states[i : i + b] for i in range(0, len(states) - b + 1, b)]
    rows = len(groups) * b
    bitmask = tct.allocate_token_bitmask(b, tok.vocab_size)
    logits = torch.randn(b, tok.vocab_size)

    def per_row(f: Callable[[list[tct.Matcher]], object]) -> float:
        return 1e6 * best_of(lambda: [f(g) for g in groups]) / rows

    us = {
        "allowed() alone": 1e6 * best_of(lambda: [m.allowed() for m in states]) / len(states),
        "fill bitmask": per_row(lambda g: tct.fill_next_token_bitmask_batch(g, bitmask)),
        "float copy + NaN check": per_row(lambda g: torch.isnan(logits.float()).any().item()),
        "apply bitmask": per_row(
            lambda g: tct.apply_token_bitmask_inplace(logits.float(), bitmask)
        ),
    }
    print(f"{len(states)} states, batch {b}, mean us per row:")
    for name, v in us.items():
        print(f"  {name:24s} {v:8.1f}")


if __name__ == "__main__":
    main()
