"""Learning-rate schedule: linear warmup, then cosine decay to `min_lr_ratio * peak` at the end.

lr(step) for step = 0 .. max_steps - 1 (the lr used by the optimizer step that makes `step + 1`)
"""

from __future__ import annotations

import math


def lr_at(
    step: int, *, peak: float, warmup_steps: int, max_steps: int, min_lr_ratio: float
) -> float:
    """Warmup from peak / warmup_steps up to peak over `warmup_steps` steps (never 0: a zero-lr
    first step would waste a batch), then a half cosine down to peak * min_lr_ratio at max_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    floor = peak * min_lr_ratio
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


def default_warmup(max_steps: int) -> int:
    """5% of the run, at least one step, when --warmup-steps is not given."""
    return max(1, round(0.05 * max_steps))
