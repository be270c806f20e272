"""How much the matcher's mask bends the model: distortion of masked sampling, masked likelihood.

Masked sampling draws from softmax(logits) restricted to the ids the matcher allows and
renormalised. When the model puts most of its probability on allowed ids, the mask changes little;
when it does not, every step is a correction and the samples are the mask's, not the model's.

`sample_distortion` replays sampled sequences through the model (teacher forcing, the same KV-cache
window as generation) and measures per step, from the *unmasked* softmax at temperature 1:

- `feasible_mass_mean`, `feasible_mass_p10`: the probability mass on allowed ids (mean, 10th
  percentile over steps);
- `below_half`: the share of steps where that mass is below 0.5;
- `argmax_forbidden`: the share of steps whose unmasked argmax is an id the matcher forbids.

`masked_nats` scores real documents the same way and returns, beside the plain negative
log-likelihood, the masked one: -log(p(id) / p(allowed)), the likelihood the masked sampler
actually uses (never larger than the plain one, id by id).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

import tct

from .checkpoint import LoadedModel
from .kv_cache import KVCache


@torch.no_grad()
def _logits(lm: LoadedModel, seq: list[int]) -> torch.Tensor:
    """(len(seq), V) float32 logits, position t predicting seq[t + 1]. Fed in quarter-context
    chunks through a KV cache, so the window slides as in generation."""
    model = lm.model
    cache = KVCache(model.config, 1, lm.device, lm.dtype)
    chunk = max(1, cache.capacity // 4)
    x = torch.tensor([seq], dtype=torch.long, device=lm.device)
    out = []
    with lm.autocast():
        for s in range(0, x.size(1), chunk):
            out.append(model(x[:, s : s + chunk], cache=cache)[0].float())
    return torch.cat(out, dim=0)


def _replay(
    lm: LoadedModel, prompt: Sequence[int], ids: Sequence[int], eos: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each step after the prompt: log-softmax rows (S, V), allowed masks (S, V), targets (S,).
    `eos`: the sequence ended with EOS (scored as its last step)."""
    tok = lm.tokenizer
    V_model, V_tok = lm.model.config.vocab_size, tok.vocab_size
    matcher = tok.matcher()
    for t in prompt:
        matcher.advance(t)
    targets = list(ids) + ([tok.eos_id] if eos else [])
    masks = np.zeros((len(targets), V_model), dtype=np.bool_)
    for i, t in enumerate(targets):
        matcher.allowed_into(masks[i, :V_tok])
        if i < len(ids):
            matcher.advance(t)
    start = list(lm.start_ids) + list(prompt)
    seq = start + list(ids)
    logp = torch.log_softmax(_logits(lm, seq), dim=-1)
    # Row len(start) - 1 predicts the first drawn id.
    rows = logp[len(start) - 1 : len(start) - 1 + len(targets)]
    return rows, torch.from_numpy(masks).to(rows.device), torch.tensor(targets, device=rows.device)


def sample_distortion(
    lm: LoadedModel, samples: Iterable[Any], prompt: Sequence[int] = ()
) -> dict[str, Any]:
    """Distortion figures over every step of `samples` (trainer.generate.Sample: `.ids`,
    `.truncated`), drawn after `prompt`."""
    mass: list[np.ndarray] = []
    forbidden = 0
    for s in samples:
        if not s.ids and s.truncated:
            continue
        logp, allowed, _ = _replay(lm, prompt, s.ids, eos=not s.truncated)
        feasible = torch.where(allowed, logp, torch.full_like(logp, -math.inf)).logsumexp(-1).exp()
        mass.append(feasible.cpu().numpy())
        best = logp.argmax(-1)
        forbidden += int((~allowed.gather(1, best[:, None])).sum())
    if not mass:
        return {"steps": 0, "feasible_mass_mean": None, "feasible_mass_p10": None,
                "below_half": None, "argmax_forbidden": None}  # fmt: skip
    m = np.concatenate(mass)
    return {
        "steps": int(m.size),
        "feasible_mass_mean": float(m.mean()),
        "feasible_mass_p10": float(np.percentile(m, 10)),
        "below_half": float((m < 0.5).mean()),
        "argmax_forbidden": forbidden / m.size,
    }


def masked_nats(lm: LoadedModel, docs_ids: Iterable[Sequence[int]]) -> dict[str, Any]:
    """Plain and masked negative log-likelihood (nats, summed) of documents given as ids (a
    leading BOS and trailing EOS, as in shards, are dropped), EOS scored; with the number of
    scored tokens and the indices of the documents scored and skipped (those the matcher rejects:
    encoded through the generic fallback, so impossible under the mask)."""
    plain = masked = 0.0
    tokens = 0
    bos, eos = lm.tokenizer.bos_id, lm.tokenizer.eos_id
    scored: list[int] = []
    skipped: list[int] = []
    for index, ids in enumerate(docs_ids):
        ids = [int(t) for t in ids]
        # Shard documents carry their BOS and EOS; the replay adds its own.
        if ids and ids[0] == bos:
            ids = ids[1:]
        if ids and ids[-1] == eos:
            ids = ids[:-1]
        try:
            logp, allowed, targets = _replay(lm, (), ids, eos=True)
        except tct.DecodeError:
            # A document outside the schema is encoded through the generic path, which the
            # matcher never allows: the masked model gives it probability 0. Not scored.
            skipped.append(index)
            continue
        scored.append(index)
        lp = logp.gather(1, targets[:, None])[:, 0].double()
        norm = torch.where(allowed, logp, torch.full_like(logp, -math.inf)).logsumexp(-1).double()
        plain -= float(lp.sum())
        masked -= float((lp - norm).sum())
        tokens += int(targets.numel())
    return {
        "nats": plain,
        "masked_nats": masked,
        "tokens": tokens,
        "scored": scored,
        "skipped": skipped,
    }
