"""Generation and evaluation on CPU with a tiny model trained here on real shards.

300 development workflows are encoded with `tct-encode --tokenizer github-workflow`, a tiny GPT
(context 128) trains for 20 steps, and then: 200 unconditional samples all parse and all validate
against github-workflow.json with python-jsonschema (the model is barely trained: validity comes
from the matcher's mask, not from the model); prompts are kept; a seed reproduces a run; corrupt,
foreign and mismatched checkpoints get clear errors; trainer.eval writes its reports.

Torch runs on one thread (see test_trainer.py: faster on the shared 2-core box).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tct
from conftest import load_yaml
from trainer import eval as trainer_eval
from trainer import generate as trainer_generate
from trainer.eval import COMPLEX_PROMPT, cut_prompt, respects_prompt, same_json
from trainer.generate import LoadedModel, generate, load_model
from trainer.kv_cache import KVCache
from trainer.model import GPT, GPTConfig
from trainer.sampling import SamplingConfig, sample_next
from trainer.train import main as train_main
from trainer.yaml_output import to_yaml_builtin, to_yaml_pyyaml
from trainer_shards import read_workflows

SEQ = 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train.bin, train.val.bin) from 300 real workflows, encoded by tct-encode."""
    from conftest import require_data

    require_data()
    d = tmp_path_factory.mktemp("gen_data")
    corpus = d / "docs.jsonl"
    corpus.write_bytes(b"".join(text + b"\n" for text, _ in read_workflows(300)))
    out = d / "train.bin"
    cmd = [sys.executable, "-m", "tct.cli_encode", str(corpus), str(out)]
    cmd += ["--tokenizer", "github-workflow", "--val-fraction", "0.1", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out, d / "train.val.bin"


@pytest.fixture(scope="module")
def run_dir(shards: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, val = shards
    out = tmp_path_factory.mktemp("gen_run") / "run"
    torch.set_num_threads(1)
    args = ["--data", str(train), "--val-data", str(val), "--preset", "tiny"]
    args += ["--sequence-len", str(SEQ), "--batch-size", "8", "--max-steps", "20"]
    args += ["--learning-rate", "3e-3", "--eval-every", "0", "--eval-tokens", "4096"]
    args += ["--no-progress", "--device", "cpu", "--out", str(out)]
    assert train_main(args) == 0
    return out


@pytest.fixture(scope="module")
def lm(run_dir: Path) -> LoadedModel:
    return load_model(run_dir, device="cpu")


def run_generate(capsys: pytest.CaptureFixture[str], flags: str, *more: str) -> tuple[int, str]:
    """trainer.generate's CLI in this process: (exit status, stderr). `flags` is split on spaces,
    `more` is passed as is (paths, JSON)."""
    code = trainer_generate.main(flags.split() + list(more))
    return code, capsys.readouterr().err


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- the 200-sample validity test ----------------------------------------------------------------


def test_200_samples_all_parse_and_validate(
    run_dir: Path,
    lm: LoadedModel,
    workflow_validator: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "samples.jsonl"
    flags = "--num-samples 200 --max-tokens 96 --batch-size 100 --seed 3 --quiet --device cpu"
    code, err = run_generate(capsys, flags, "--checkpoint", str(run_dir), "--out", str(out))
    assert code == 0, err
    assert "tokens/s" in err and "us/token" in err
    records = read_jsonl(out)
    assert len(records) == 200
    invalid = []
    for i, rec in enumerate(records):
        assert set(rec) == {"document", "truncated", "tokens", "ids"}
        # The document as text, parsed by the standard library: an independent JSON check.
        doc = json.loads(json.dumps(rec["document"]))
        errors = [e.message for e in workflow_validator.iter_errors(doc)]
        if errors:
            invalid.append((i, errors[:2]))
        tok = lm.tokenizer
        if rec["truncated"]:
            assert rec["tokens"] == 96 and len(rec["ids"]) == 96
        else:
            # A complete sample is exactly what the drawn ids decode to (EOS ends it).
            assert rec["tokens"] == len(rec["ids"]) + 1
            text, consumed, total = tok.decode(rec["ids"] + [tok.eos_id])
            assert consumed == total and same_json(json.loads(text), rec["document"])
    assert not invalid, f"{len(invalid)} of 200 samples fail the schema: {invalid[:3]}"
    # A 20-step model rarely closes a workflow within 96 ids: the closing path is exercised.
    assert any(r["truncated"] for r in records)


# ---- prompts -------------------------------------------------------------------------------------


def _real_prompt(lm: LoadedModel, val: Path) -> Any:
    shard = tct.read_shard(val)
    for i in range(len(shard)):
        text, _, _ = lm.tokenizer.decode(shard.doc(i))
        prompt = cut_prompt(json.loads(text))
        if prompt is not None:
            try:
                lm.tokenizer.encode_prefix(prompt)
            except tct.EncodeError:
                continue
            return prompt
    pytest.fail("no validation document gives a prompt")


def test_prompts_are_respected(
    run_dir: Path,
    lm: LoadedModel,
    shards: tuple[Path, Path],
    workflow_validator: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = _real_prompt(lm, shards[1])
    prompt_file = tmp_path / "prompt.json"
    prompt_file.write_text(json.dumps(real), encoding="utf-8")
    cases = [
        (COMPLEX_PROMPT, ["--prompt", json.dumps(COMPLEX_PROMPT)]),
        (real, ["--prompt-file", str(prompt_file)]),  # longer than 128 with 96 more: slides
    ]
    for prompt, flag in cases:
        out = tmp_path / "p.jsonl"
        flags = "--num-samples 12 --max-tokens 96 --seed 1 --quiet"
        code, err = run_generate(
            capsys, flags, "--checkpoint", str(run_dir), *flag, "--out", str(out)
        )
        assert code == 0, err
        for rec in read_jsonl(out):
            doc = rec["document"]
            assert respects_prompt(doc, prompt), (prompt, doc)
            assert not list(workflow_validator.iter_errors(doc))
            # The given fields, spelled out: unchanged.
            for key in ("name", "on"):
                assert same_json(doc[key], prompt[key])
            first_job = next(iter(prompt["jobs"]))
            given_steps = prompt["jobs"][first_job]["steps"]
            got_steps = doc["jobs"][first_job]["steps"]
            assert all(same_json(a, b) for a, b in zip(got_steps, given_steps[:-1], strict=False))


def test_respects_prompt_detects_changes() -> None:
    prompt = {"name": "CI", "on": "push", "jobs": {"a": {"steps": [{"run": "x"}]}}}
    grown = {
        "name": "CI",
        "on": "push",
        "jobs": {"a": {"steps": [{"run": "x"}, {"run": "y"}]}, "b": {}},
    }
    assert respects_prompt(grown, prompt)
    assert not respects_prompt({**grown, "name": "CD"}, prompt)
    assert not respects_prompt({**grown, "on": ["push"]}, prompt)
    moved = {"name": "CI", "on": "push", "jobs": {"b": {}, "a": {"steps": [{"run": "x"}]}}}
    assert not respects_prompt(moved, prompt)  # a new entry before the given one
    assert not respects_prompt({"name": "CI", "on": "push", "jobs": {"a": {"steps": []}}}, prompt)


def test_minimal_seed_prompt_is_accepted(lm: LoadedModel) -> None:
    """The seed's minimal prompt means "write the jobs of this workflow"."""
    ids = lm.tokenizer.encode_prefix({"name": "CI", "on": "push", "jobs": {}})
    samples, _ = generate(lm, 4, SamplingConfig(), max_tokens=64, seed=0, prompt=ids)
    for s in samples:
        doc = json.loads(s.document)
        assert respects_prompt(doc, {"name": "CI", "on": "push", "jobs": {}})
        assert doc["jobs"]  # the schema wants at least one job, and the model wrote it


def test_bad_prompt_is_a_clear_error(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_generate(capsys, "", "--checkpoint", str(run_dir), "--prompt", '{"on": ')
    assert code == 2 and "prompt: not JSON" in err
    bad_on = '{"on": 5, "jobs": {"a": {"runs-on": "x", "steps": []}}}'  # `on` is not a number
    code, err = run_generate(capsys, "", "--checkpoint", str(run_dir), "--prompt", bad_on)
    assert code == 2 and "prompt:" in err and "/on" in err


# ---- reproducibility -----------------------------------------------------------------------------


def test_seed_makes_sampling_reproducible(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def sample(seed: int, name: str) -> str:
        out = tmp_path / name
        flags = "--num-samples 6 --max-tokens 150 --batch-size 4 --temperature 0.9 --top-k 200"
        flags += f" --top-p 0.95 --seed {seed} --quiet"
        code, err = run_generate(capsys, flags, "--checkpoint", str(run_dir), "--out", str(out))
        assert code == 0, err
        return out.read_text(encoding="utf-8")

    a, b, c = sample(7, "a.jsonl"), sample(7, "b.jsonl"), sample(8, "c.jsonl")
    assert a == b
    assert a != c


# ---- bad checkpoints -----------------------------------------------------------------------------


def test_corrupt_checkpoint_is_a_clear_error(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    model = next(bad.glob("model_*.pt"))
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    code, err = run_generate(capsys, "", "--checkpoint", str(bad))
    assert code == 2 and str(model) in err and "corrupt" in err

    meta = next(bad.glob("meta_*.json"))
    meta.write_text("{not json", encoding="utf-8")
    code, err = run_generate(capsys, "", "--checkpoint", str(model))
    assert code == 2 and str(meta) in err and "unreadable" in err

    code, err = run_generate(capsys, "", "--checkpoint", str(tmp_path / "nowhere"))
    assert code == 2 and "no such checkpoint" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_generate(capsys, "", "--checkpoint", str(empty))
    assert code == 2 and "no complete checkpoint" in err


def test_mismatched_tokenizer_is_a_clear_error(
    run_dir: Path, workflow_schema_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same schema without the trained vocabulary: different ids, different hash.
    other = tmp_path / "base.tct.json"
    tct.Tokenizer.from_schema(workflow_schema_path).save(other)
    code, err = run_generate(capsys, "", "--checkpoint", str(run_dir), "--tokenizer", str(other))
    assert code == 2
    assert "trained with tokenizer 'github-workflow'" in err and tct.load().hash in err

    # A checkpoint whose meta names a tokenizer hash that is not the bundled one.
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    meta_path = next(moved.glob("meta_*.json"))
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["tokenizer"]["hash"] = "sha256:" + "0" * 64
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    code, err = run_generate(capsys, "", "--checkpoint", str(moved))
    assert code == 2 and str(meta_path) in err and "sha256:" + "0" * 64 in err


# ---- the pieces: sampling, KV cache, YAML --------------------------------------------------------


def test_sampling_respects_mask_and_filters() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
    allowed = torch.tensor([[False, True, True, True, True]]).repeat(4000, 1)
    ids = sample_next(logits, allowed, SamplingConfig(), g)
    counts = torch.bincount(ids, minlength=5).double() / 4000
    assert counts[0] == 0  # the most likely id, disallowed, never drawn
    expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0, -1.0]), 0).double()
    assert torch.allclose(counts[1:], expected, atol=0.03)
    assert set(sample_next(logits, allowed, SamplingConfig(top_k=2), g).tolist()) == {1, 2}
    # top-p 0.6: id 1 alone holds 0.64 of the allowed mass.
    assert set(sample_next(logits, allowed, SamplingConfig(top_p=0.6), g).tolist()) == {1}
    assert set(sample_next(logits, allowed, SamplingConfig(temperature=0), g).tolist()) == {1}
    with pytest.raises(ValueError, match="allows no id"):
        sample_next(logits[:1], torch.zeros_like(allowed[:1]), SamplingConfig(), g)


def test_kv_cache_matches_the_full_forward() -> None:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=97, sequence_len=32, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg).eval()
    x = torch.randint(0, 97, (3, 32))
    with torch.no_grad():
        full = model(x)  # (3, 32, 97)
        cache = KVCache(cfg, 3, "cpu")
        parts = [model(x[:, :11], cache=cache)]
        parts += [model(x[:, t : t + 1], cache=cache) for t in range(11, 32)]
        assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
        # Dropping rows keeps the others exact.
        cache = KVCache(cfg, 3, "cpu")
        model(x[:, :20], cache=cache)
        cache.keep(torch.tensor([2, 0]))
        step = model(x[[2, 0], 20:21], cache=cache)
        assert torch.allclose(step[:, 0], full[[2, 0], 20], atol=1e-5)
        # Past the context the window slides: the cache never outgrows it.
        for _ in range(40):
            out = model(x[:, :1][[0, 1]], cache=cache)
            assert cache.length <= cfg.sequence_len and torch.isfinite(out).all()
        assert cache.pos == 21 + 40


def test_yaml_output_reads_back_as_the_same_document(lm: LoadedModel) -> None:
    import yaml

    docs = [json.loads(text) for text, _ in read_workflows(300)]
    samples, _ = generate(lm, 20, SamplingConfig(), max_tokens=96, seed=5)
    docs += [json.loads(s.document) for s in samples]
    docs += [{"on": "on", "x": ["yes", "0o17", "1e3", "", " a", "a\n", "\u0085", 1e300, -0.5]}]
    for doc in docs:
        for emit in (to_yaml_builtin, to_yaml_pyyaml):
            text = emit(doc)
            assert same_json(load_yaml(text), doc), (emit.__name__, doc, text)  # YAML 1.2
            assert same_json(yaml.safe_load(text), doc), (emit.__name__, doc, text)  # YAML 1.1


# ---- evaluation ----------------------------------------------------------------------------------


def test_eval_writes_reports(
    run_dir: Path,
    shards: tuple[Path, Path],
    workflow_schema_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--checkpoint", str(run_dir), "--data", str(shards[1]), "--samples", "16"]
    # No --schema: the tokenizer's embedded schema validates.
    args += ["--prompt-samples", "4", "--max-tokens", "64", "--reference-docs", "12"]
    args += ["--report-dir", str(tmp_path), "--device", "cpu"]
    assert trainer_eval.main(args) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "eval_report.json").read_text(encoding="utf-8"))
    v, s = report["validation"], report["samples"]
    assert math.isfinite(v["val_loss"]) and 0 < v["val_bpb"] < 10
    assert s["samples"] == 16 and s["valid_json"] == 1.0 and s["schema_valid"] == 1.0
    assert 0 <= s["complete"] <= 1 and 0 < s["distinct_documents"] <= 1
    assert s["novel"] is not None and "training documents" in s["novelty_reference"]
    assert s["generation"]["tokens_per_s"] > 0 and s["generation"]["mask_us_per_token"] > 0
    assert s["yaml_examples"]
    tests = {t["name"]: t for t in report["prompt_tests"]}
    assert set(tests) == {"minimal", "complex", "real"}
    for t in tests.values():
        assert t["accepted"] and t["schema_valid"] == 1.0 and t["respects_prompt"] == 1.0
    d = s["distortion"]
    assert d["steps"] >= 16 and 0 < d["feasible_mass_p10"] <= d["feasible_mass_mean"] <= 1
    assert 0 <= d["below_half"] <= 1 and 0 <= d["argmax_forbidden"] <= 1
    ref, lint = report["reference"], s["lint"]
    if lint.get("error") is None:  # actionlint installed (the eval extra)
        assert lint["n"] == 16 and 0 <= lint["lint_semantic"] <= 1
        assert ref["n"] == 12 and ref["lint_all"] <= ref["lint_semantic"]
        assert sum(lint["kinds"].values()) >= 16 * (1 - lint["lint_all"])
    md = (tmp_path / "eval_report.md").read_text(encoding="utf-8")
    assert "bits per byte" in md and "```yaml" in md and "## Prompt tests" in md
    assert "## actionlint" in md and "## Distortion of masked sampling" in md


def test_eval_rejects_a_shard_of_another_tokenizer(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer_shards import BYTE_BOS, BYTE_EOS, BYTE_PAD, BYTE_VOCAB, make_shard

    docs = read_workflows(5)
    val = make_shard(
        tmp_path / "bytes.bin",
        [np.frombuffer(t, dtype=np.uint8) for t, _ in docs],
        BYTE_VOCAB,
        [len(t) for t, _ in docs],
        bos_id=BYTE_BOS,
        eos_id=BYTE_EOS,
        pad_id=BYTE_PAD,
    )
    code = trainer_eval.main(["--checkpoint", str(run_dir), "--data", str(val), "--samples", "1"])
    err = capsys.readouterr().err
    assert code == 2 and str(val) in err and "tokenizer" in err


def test_eval_checks_data_before_schema_and_threads(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Options are reported in the order --help lists them: --data before --schema, --threads."""
    missing = tmp_path / "nope.bin"
    args = ["--checkpoint", str(run_dir), "--data", str(missing), "--samples", "1"]
    args += ["--schema", str(tmp_path / "no-schema.json"), "--threads", "0"]
    assert trainer_eval.main(args) == 2
    err = capsys.readouterr().err
    assert "nope.bin" in err and "no-schema.json" not in err and "threads" not in err
