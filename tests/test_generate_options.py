"""trainer.generate on a randomly initialised model (no data needed): options are validated, NaN
logits are a clear error naming the checkpoint, long prompts are capped, a non-conforming prompt
names its JSON pointer, the token budget ends samples by EOS and --stream prints snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from test_hf import TINY, write_checkpoint
from trainer import generate as G
from trainer.model import GPTConfig
from trainer.sampling import SamplingConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("opts") / "run", GPTConfig(**TINY))


@pytest.mark.parametrize("t", [float("inf"), float("nan"), -1.0])
def test_bad_temperature_is_refused(run: Path, t: float, capsys: Any) -> None:
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=t)
    assert G.main(["--checkpoint", str(run), "--temperature", str(t), "--quiet"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_nan_logits_name_the_checkpoint(run: Path) -> None:
    lm = G.load_model(run, device="cpu", dtype="float32")
    with torch.no_grad():
        lm.model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(G.NonFiniteLogitsError, match=str(lm.model_path)):
        G.generate(lm, 2, SamplingConfig(), max_tokens=8, seed=0)


def test_prompt_caps_and_pointer(run: Path, tmp_path: Path, capsys: Any) -> None:
    lm = G.load_model(run, device="cpu", dtype="float32")
    with pytest.raises(G.PromptError, match="at /jobs/a/runs-on"):
        G.prompt_ids(lm.tokenizer, {"on": "push", "jobs": {"a": {"runs-on": 5}}})
    with pytest.raises(G.PromptError, match="characters, more than"):
        G.prompt_ids(lm.tokenizer, " " * (G.MAX_PROMPT_BYTES + 1))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (G.MAX_PROMPT_BYTES + 1))
    assert G.main(["--checkpoint", str(run), "--prompt-file", str(big), "--quiet"]) == 2
    assert "bytes, more than" in capsys.readouterr().err


def test_long_prompt_feeds_only_the_last_window(run: Path) -> None:
    lm = G.load_model(run, device="cpu", dtype="float32")
    steps = [{"run": f"echo {i}"} for i in range(60)]
    ids = G.prompt_ids(
        lm.tokenizer, {"on": "push", "jobs": {"a": {"runs-on": "x", "steps": steps}}}
    )
    assert len(ids) > lm.model.config.sequence_len
    samples, _ = G.generate(lm, 1, SamplingConfig(), max_tokens=4, seed=0, prompt=ids)
    assert json.loads(samples[0].document)["jobs"]["a"]["steps"][:60] == steps


def test_budgeted_samples_end_by_eos_and_stream(run: Path, workflow_validator: Any) -> None:
    lm = G.load_model(run, device="cpu", dtype="float32")
    snaps: list[str] = []
    samples, stats = G.generate(
        lm,
        4,
        SamplingConfig(),
        max_tokens=48,
        seed=1,
        budget=True,
        stream=lambda step, text: snaps.append(text),
    )
    assert stats.extra["budget"]
    for s in samples:
        assert not s.truncated and s.tokens <= 48
        assert not list(workflow_validator.iter_errors(json.loads(s.document)))
    assert snaps and all(json.loads(x) is not None for x in snaps)
    assert json.loads(snaps[-1]) == json.loads(samples[0].document)


def test_help_says_what_each_option_does() -> None:
    """Every option's help stands on its own: no pointers to text that is not there."""
    text = G.build_parser().format_help()
    assert "see below" not in text
    threads = text[text.index("--threads") :]
    assert "default 1" in threads and "tiny ops" in " ".join(threads.split())
