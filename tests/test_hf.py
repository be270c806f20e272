"""Hugging Face export and generation: a randomly initialised tiny model (nothing is downloaded).

The checkpoint is written here in the trainer's format with the bundled tokenizer, exported with
`python -m trainer.export`, loaded by `transformers.AutoModelForCausalLM` without remote code, and
its fp32 logits are compared with ours; then `model.generate` with `tct.hf.TctLogitsProcessor`
must give schema-valid documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import tct
from trainer import checkpoint
from trainer.export import ExportError, hf_config
from trainer.export import main as export_main
from trainer.generate import load_model
from trainer.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_checkpoint(out: Path, cfg: GPTConfig, seed: int = 0) -> Path:
    """A random model saved as trainer.train would save it (step 0). Returns the run directory."""
    tok = tct.load("github-workflow")
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():  # non-trivial gains, so the folding into the matmuls is exercised
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "tct-trainer-checkpoint",
        "version": 1,
        "model_config": cfg.__dict__,
        "train_config": {"window_format": "plain"},
        "tokenizer": {
            "name": tok.name,
            "hash": tok.hash,
            "vocab_size": tok.vocab_size,
            "pad_id": tok.pad_id,
            "bos_id": tok.bos_id,
            "eos_id": tok.eos_id,
            "position_range": list(tok.position_range),
        },
    }
    checkpoint.save(out, 0, model.state_dict(), {}, meta)
    return out


TINY = dict(vocab_size=8192, sequence_len=64, n_layer=2, n_head=4, n_embd=64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("hf")
    run = write_checkpoint(d / "run", GPTConfig(**TINY))
    out = d / "hf"
    assert export_main(["--checkpoint", str(run), "--out", str(out)]) == 0
    return run, out


@pytest.mark.parametrize("activation", ["relu2", "gelu"])
def test_exported_logits_equal_ours(tmp_path: Path, activation: str) -> None:
    run = write_checkpoint(tmp_path / "run", GPTConfig(**TINY, activation=activation), seed=3)
    out = tmp_path / "hf"
    assert export_main(["--checkpoint", str(run), "--out", str(out)]) == 0
    for name in (
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tct_tokenizer.json",
    ):
        assert (out / name).is_file(), name
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)  # no trust_remote_code
    assert type(hf).__name__ == "NanoChatForCausalLM"
    hf.eval()
    ours = load_model(run, device="cpu", dtype="float32").model
    x = torch.randint(0, 8192, (3, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = ours(x)
        b = hf(input_ids=x).logits
    diff = (a - b).abs().max().item()
    assert diff <= 1e-4, diff
    assert a.abs().max().item() > 0.1  # not trivially equal
    tok = tct.Tokenizer.from_file(out / "tct_tokenizer.json")
    assert tok.hash == tct.load("github-workflow").hash
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (
        tok.bos_id,
        tok.eos_id,
        tok.pad_id,
    )


def test_export_refuses_what_nanochat_cannot_express(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="qk_norm"):
        hf_config(GPT(GPTConfig(**TINY, qk_norm=False)), 0, 1, 2)
    with pytest.raises(ExportError, match="embed_norm"):
        hf_config(GPT(GPTConfig(**TINY, embed_norm=False)), 0, 1, 2)
    # A checkpoint from before the embedding norm (no key in its meta) loads as embed_norm=False.
    assert GPTConfig.from_dict({k: v for k, v in TINY.items()}).embed_norm is False
    run = write_checkpoint(tmp_path / "run", GPTConfig(**TINY))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    assert export_main(["--checkpoint", str(run), "--out", str(tmp_path / "full")]) == 2
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_hf_generate_with_the_processor_gives_valid_documents(
    exported: tuple[Path, Path], workflow_validator: Any
) -> None:
    import tct.hf

    _, out = exported
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tok = tct.Tokenizer.from_file(out / "tct_tokenizer.json")
    bos = torch.tensor([[tok.bos_id]] * 4)
    torch.manual_seed(0)
    with torch.no_grad():
        rows = model.generate(
            bos,
            do_sample=True,
            max_new_tokens=40,
            logits_processor=[tct.hf.TctLogitsProcessor(tok)],
            pad_token_id=tok.pad_id,
            eos_token_id=tok.eos_id,
        )
    assert rows.shape[0] == 4
    for row in rows:
        doc = json.loads(tct.hf.decode(tok, row[1:]))
        assert not list(workflow_validator.iter_errors(doc))
    # Beam search: rows are reordered between steps; the processor follows them by prefix.
    with torch.no_grad():
        beams = model.generate(
            bos[:1],
            num_beams=2,
            do_sample=False,
            max_new_tokens=12,
            logits_processor=[tct.hf.TctLogitsProcessor(tok)],
            pad_token_id=tok.pad_id,
            eos_token_id=tok.eos_id,
        )
    m = tok.matcher()
    for t in beams[0].tolist():
        if t == tok.eos_id:
            break
        assert m.accept_token(t), t  # every id the beams kept was allowed


def test_processor_checks_its_arguments() -> None:
    import tct.hf

    tok = tct.load("github-workflow")
    with pytest.raises(ValueError, match="max_tokens"):
        tct.hf.TctLogitsProcessor(tok, max_tokens=0)
    proc = tct.hf.TctLogitsProcessor(tok)
    with pytest.raises(ValueError, match="prompt id"):
        proc(torch.tensor([[tok.bos_id, tok.eos_id]]), torch.zeros(1, tok.vocab_size))
    scores = proc(torch.tensor([[tok.bos_id]]), torch.zeros(1, tok.vocab_size + 7))
    allowed = torch.isfinite(scores[0])
    assert torch.equal(allowed[: tok.vocab_size], torch.from_numpy(tok.matcher().allowed()))
    assert not allowed[tok.vocab_size :].any()
