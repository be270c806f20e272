"""The optimizer a run trains with: AdamW for everything, or Muon for the blocks' matrices.

`--optimizer adamw` (the default): torch's AdamW, decay on the matmul weights only
(`GPT.param_groups`). `--optimizer muon`: `trainer.muon.MuonAdamW`, Muon at `--muon-lr` on the
2-D weights inside the transformer blocks and AdamW at `--learning-rate` on the embedding
table, the output head and the norm gains. Every group carries `peak_lr`; the schedule scales it
(`set_lr`), so one schedule drives both learning rates.
"""

from __future__ import annotations

from typing import Any

import torch

from .model import GPT
from .muon import MuonAdamW

OPTIMIZERS = ("adamw", "muon")


def build_optimizer(model: GPT, cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    """`cfg`: the TrainConfig (optimizer, learning_rate, muon_lr, weight_decay, betas)."""
    if cfg.optimizer == "adamw":
        groups = model.param_groups(cfg.weight_decay)
        for g in groups:
            g["peak_lr"] = cfg.learning_rate
        return torch.optim.AdamW(
            groups,
            lr=cfg.learning_rate,
            betas=(cfg.beta1, cfg.beta2),
            eps=1e-8,
            fused=device.type == "cuda",  # one kernel for all parameters
        )
    if cfg.optimizer == "muon":
        return MuonAdamW(muon_groups(model, cfg))
    raise ValueError(f"--optimizer {cfg.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")


def muon_groups(model: GPT, cfg: Any) -> list[dict[str, Any]]:
    """Blocks' matrices -> Muon; output head -> AdamW with decay; embedding and gains -> AdamW
    without (the reasons are in `GPT.param_groups`)."""
    muon, head, rest = [], [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.dim() == 2 and name.startswith("blocks."):
            muon.append(p)
        elif p.dim() == 2 and name != "wte.weight":
            head.append(p)
        else:
            rest.append(p)
    adam = {"betas": (cfg.beta1, cfg.beta2), "eps": 1e-8, "lr": cfg.learning_rate}
    return [
        {"params": muon, "muon": True, "lr": cfg.muon_lr, "weight_decay": 0.0},
        {"params": head, **adam, "weight_decay": cfg.weight_decay},
        {"params": rest, **adam, "weight_decay": 0.0},
    ]


def apply_flags(optimizer: torch.optim.Optimizer, model: GPT, cfg: Any) -> None:
    """After loading a checkpoint's optimizer state: this run's flags win over the stored
    hyperparameters (peak learning rates, decay, betas)."""
    fresh = (
        model.param_groups(cfg.weight_decay)
        if cfg.optimizer == "adamw"
        else muon_groups(model, cfg)
    )
    for group, new in zip(optimizer.param_groups, fresh, strict=True):
        group["peak_lr"] = new.get("lr", cfg.learning_rate)
        group["weight_decay"] = new["weight_decay"]
        if not group.get("muon", False):
            group["betas"] = (cfg.beta1, cfg.beta2)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Each group's learning rate at this step: its peak times the schedule's factor."""
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor
