"""Muon: the Newton-Schulz step gives a near-orthogonal update whatever the matrix's shape and
scale, and MuonAdamW trains (one batch overfits as it does under AdamW)."""

from __future__ import annotations

import pytest
import torch

from trainer.model import GPT, GPTConfig
from trainer.muon import MuonAdamW, orthogonalize
from trainer.optimizer import muon_groups
from trainer.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shape", [(64, 64), (32, 128), (128, 32)])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e3])
def test_orthogonalize_pushes_singular_values_towards_one(
    shape: tuple[int, int], scale: float
) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g) * scale
    # A badly conditioned matrix: singular values spread over two orders of magnitude.
    u, _, v = torch.linalg.svd(x, full_matrices=False)
    s = torch.logspace(0, -2, min(shape)) * scale
    x = u @ torch.diag(s) @ v
    o = orthogonalize(x)
    assert o.shape == x.shape
    sv = torch.linalg.svdvals(o)
    assert sv.min() > 0.5 and sv.max() < 1.3, sv
    # Same singular vectors: the update keeps the gradient's directions.
    assert torch.sum(o * x) > 0


def test_muon_groups_cover_every_parameter_once() -> None:
    model = GPT(GPTConfig(vocab_size=300, n_embd=32, n_layer=2, n_head=2, sequence_len=16))
    groups = muon_groups(model, TrainConfig())
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted({id(p) for p in model.parameters()})
    muon = groups[0]
    assert muon["muon"] and all(p.dim() == 2 for p in muon["params"])
    in_muon = {id(p) for p in muon["params"]}
    assert id(model.wte.weight) not in in_muon and id(model.lm_head.weight) not in in_muon
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW([{"params": [model.norm_f.weight], "muon": True, "lr": 0.02}])


def test_one_batch_overfits_under_muon() -> None:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=300, n_embd=64, n_layer=2, n_head=4, sequence_len=32)
    model = GPT(cfg)
    x = torch.randint(0, 300, (4, 32))
    y = torch.roll(x, -1, dims=1)
    opt = MuonAdamW(muon_groups(model, TrainConfig(learning_rate=3e-3, muon_lr=0.02)))
    first = None
    for _ in range(80):
        loss = model(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 5.0  # about ln(300)
    assert model(x, y).item() < 0.5
