"""trainer.distortion on an untrained model (no data needed), and the tokenizer's embedded schema."""

from __future__ import annotations

import torch

import tct
from trainer.checkpoint import LoadedModel
from trainer.distortion import masked_nats, sample_distortion
from trainer.eval import make_validator
from trainer.generate import generate
from trainer.model import GPT, GPTConfig
from trainer.sampling import SamplingConfig

DOC = {"on": "push", "jobs": {"b": {"runs-on": "ubuntu-latest", "steps": [{"run": "make"}]}}}


def tiny_lm() -> LoadedModel:
    torch.manual_seed(0)
    tok = tct.load("github-workflow")
    cfg = GPTConfig(vocab_size=tok.vocab_size, sequence_len=32, n_layer=1, n_head=2, n_embd=32)
    model = GPT(cfg).eval()
    return LoadedModel(model, tok, {}, None, torch.device("cpu"), torch.float32)  # type: ignore[arg-type]


def test_embedded_schema_validates() -> None:
    tok = tct.load("github-workflow")
    schema = tok.schema
    assert isinstance(schema, dict) and "github-workflow" in schema.get("$id", "")
    validator = make_validator(tok)
    assert validator.is_valid(DOC)
    assert not validator.is_valid({"on": "push"})  # `jobs` is required


def test_distortion_of_an_untrained_model() -> None:
    lm = tiny_lm()
    samples, _ = generate(lm, 3, SamplingConfig(), max_tokens=40, seed=1, batch_size=3)
    d = sample_distortion(lm, samples)
    assert d["steps"] == sum(s.tokens for s in samples)
    assert 0 < d["feasible_mass_p10"] <= d["feasible_mass_mean"] < 1
    # Near-uniform over 8,192 ids: most steps put little mass on the few allowed ids.
    assert d["below_half"] > 0.5 and d["argmax_forbidden"] > 0.5


def test_masked_likelihood_is_never_worse() -> None:
    lm = tiny_lm()
    ids = list(lm.tokenizer.encode(DOC))
    m = masked_nats(lm, [[lm.tokenizer.bos_id, *ids, lm.tokenizer.eos_id], ids])
    assert m["tokens"] == 2 * (len(ids) + 1)
    assert 0 < m["masked_nats"] < m["nats"]


def test_documents_outside_the_schema_are_skipped_not_raised() -> None:
    lm = tiny_lm()
    good = list(lm.tokenizer.encode(DOC))
    bad = list(lm.tokenizer.encode({"on": "push", "jobs": 5}))  # generic fallback
    m = masked_nats(lm, [good, bad, good])
    assert m["scored"] == [0, 2] and m["skipped"] == [1]
    assert m["tokens"] == 2 * (len(good) + 1)
