"""Validation loss and bits per byte.

Every token of every validation document except its BOS (its content ids and its EOS) is scored
exactly once (see data.py, `count_once`), so

    val_loss = sum of nats / number of scored tokens
    val_bpb  = sum of nats / ln 2 / sum of the documents' compact-JSON UTF-8 bytes

which compares any two tokenizers on the same documents. The count of scored tokens is checked
against the documents' lengths: a mismatch is a bug, and raises rather than report a wrong number.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn as nn

from .data import BatchLoader
from .distributed import all_reduce_sum


@torch.no_grad()
def validation_loss(
    model: nn.Module, loader: BatchLoader, autocast: contextlib.AbstractContextManager[Any]
) -> dict[str, Any]:
    """Run `model` (the unwrapped module: no DDP hooks) over this rank's share of the windows and
    combine the sums over ranks. Returns val_loss, val_bpb (None without byte counts), val_tokens."""
    was_training = model.training
    model.eval()
    device = loader.device
    nats = torch.zeros((), dtype=torch.float64, device=device)
    scored = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in loader.eval_batches():
        with autocast:
            loss_sum = model(x, y, reduction="sum")
        nats += loss_sum.double()
        scored += (y >= 0).sum()
    all_reduce_sum(nats)
    all_reduce_sum(scored)
    model.train(was_training)
    n, total = int(scored.item()), float(nats.item())
    expected = loader.docs.predicted_tokens
    if n != expected:
        raise RuntimeError(f"evaluation scored {n} tokens, the documents hold {expected}")
    json_bytes = loader.docs.total_json_bytes
    return {
        "val_loss": total / n,
        "val_bpb": total / math.log(2) / json_bytes if json_bytes else None,
        "val_tokens": n,
        "val_docs": loader.docs.num_docs,
    }
