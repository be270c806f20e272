"""Muon for the hidden matrices, AdamW for the rest, as one torch optimizer.

Muon (Jordan et al. 2024, used by modded-nanogpt and nanochat) takes the momentum of a 2-D
weight's gradient and replaces it by the nearest semi-orthogonal matrix (all singular values ~1),
computed by a few Newton-Schulz iterations, so that every direction of the update moves at the
same rate. It is meant for the matrices inside the transformer blocks; the embedding table, the
output head and the norm gains keep AdamW (their rows are looked up or scored one token at a
time, which is not the geometry Muon assumes).

    python -m trainer.train --data out.bin --preset tiny --optimizer muon --max-steps 200 --out runs/m

One class, so that checkpoints (`state_dict` / `load_state_dict`), the learning-rate schedule and
gradient clipping treat it like AdamW: every param group holds `peak_lr`, and the trainer sets
`lr = peak_lr * schedule factor` in each group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

# Coefficients of the quintic iteration X <- aX + b(XX^T)X + c(XX^T)^2 X, chosen (Jordan et al.)
# to push singular values in (0, 1] towards 1 fast; it does not converge exactly (they end in
# about [0.7, 1.2]), which measured as good as an exact polar factor for training.
_NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T of g = U S V^T (g: (rows, cols)), by Newton-Schulz iteration."""
    a, b, c = _NS_COEFFS
    x = g.float()
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the wide side: X X^T is the smaller Gram matrix
        x = x.T
    x = x / (x.norm() + 1e-7)  # Frobenius norm >= spectral norm: singular values now <= 1
    for _ in range(steps):
        gram = x @ x.T  # (rows, rows)
        x = a * x + (b * gram + c * gram @ gram) @ x
    if tall:
        x = x.T
    return x.to(g.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """Param groups with `"muon": True` get Muon, the others AdamW (decoupled weight decay).

    Muon group keys: lr, momentum (Nesterov), weight_decay, ns_steps. AdamW group keys: lr,
    betas, eps, weight_decay. Each group also carries `peak_lr` for the schedule.
    """

    def __init__(self, groups: Iterable[dict[str, Any]]) -> None:
        groups = [dict(g) for g in groups]
        for g in groups:
            g.setdefault("muon", False)
            g.setdefault("peak_lr", g["lr"])
            if g["muon"]:
                if any(p.dim() != 2 for p in g["params"]):
                    raise ValueError("Muon groups hold 2-D weight matrices only")
                g.setdefault("momentum", 0.95)
                g.setdefault("ns_steps", 5)
            else:
                g.setdefault("betas", (0.9, 0.95))
                g.setdefault("eps", 1e-8)
            g.setdefault("weight_decay", 0.0)
        super().__init__(groups, {})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("MuonAdamW does not take a closure")
        for group in self.param_groups:
            if group["muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)

    def _muon_step(self, group: dict[str, Any]) -> None:
        lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - mom)
            update = orthogonalize(p.grad.lerp(buf, mom), group["ns_steps"])  # Nesterov
            # An orthogonal (rows, cols) matrix has RMS 1/sqrt(max side); scaling by
            # sqrt(max(1, rows / cols)) keeps the update's size per weight independent of
            # the aspect ratio (the MLP's 4x matrices would otherwise move half as fast).
            scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
            if wd:
                p.mul_(1 - lr * wd)
            p.add_(update, alpha=-lr * scale)

    def _adamw_step(self, group: dict[str, Any]) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (v / (1 - b2**t)).sqrt_().add_(eps)
            if wd:
                p.mul_(1 - lr * wd)
            p.addcdiv_(m, denom, value=-lr / (1 - b1**t))
