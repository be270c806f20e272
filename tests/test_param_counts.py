"""One parameter-count convention: the preset tables of the README and `trainer/presets.py`
state what `GPT.num_params()` counts (all tensors once) and, in brackets, `num_params(
non_embedding=True)`, at vocabulary 8192 with untied embeddings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from trainer import presets
from trainer.model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[1]


def _counts(name: str) -> tuple[str, str]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = GPT(GPTConfig(vocab_size=8192, **presets.PRESETS[name]["model"]))
    return f"{model.num_params() / 1e6:.2f}M", f"{model.num_params(non_embedding=True) / 1e6:.2f}M"


def _row(text: str, name: str) -> str:
    rows = [line for line in text.splitlines() if re.match(rf"\|\s*`?{name}`?\s*\|", line)]
    assert len(rows) == 1, (name, rows)
    return rows[0]


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_preset_tables_state_the_model_s_counts(name: str) -> None:
    total, without = _counts(name)
    for source, text in [
        ("README.md", (ROOT / "README.md").read_text(encoding="utf-8")),
        ("presets.py", presets.__doc__ or ""),
    ]:
        row = _row(text, name)
        assert f"{total} ({without})" in row, (source, row, total, without)
