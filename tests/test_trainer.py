"""The trainer on CPU with the tiny preset: windows and exact bits per byte, loss falls, one batch
overfits, resume is exact, Ctrl-C saves, a killed run never leaves a half-written checkpoint, and a
corrupt shard gets a clear error. (The 2-process DDP run is in test_ddp.py.)

Shapes are cut to context 64 x batch 8 so that the whole file runs in well under a minute on two
shared cores. Torch runs on one thread: on a busy 2-core machine, two spinning OpenMP threads were
measured 5x slower than one.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import tct
from trainer import checkpoint
from trainer.data import BatchLoader, DataError, DocumentSet, load_data
from trainer.metrics import read_metrics
from trainer.model import GPT, GPTConfig
from trainer.presets import PRESETS
from trainer.train import main
from trainer.validation_loss import validation_loss
from trainer_shards import (
    BYTE_BOS,
    BYTE_EOS,
    BYTE_PAD,
    BYTE_POSITION_RANGE,
    BYTE_VOCAB,
    build_test_shard,
    make_shard,
    read_workflows,
)

ROOT = Path(__file__).resolve().parents[1]
# Small shapes for speed; every run also gets an explicit --out and --max-steps.
FAST = ["--preset", "tiny", "--sequence-len", "64", "--batch-size", "8", "--eval-tokens", "4096"]
FAST += ["--log-every", "5", "--no-progress", "--device", "cpu"]


# The fixture shard is encoded by tct-encode with the bundled tokenizer.
_TOKENIZER = tct.load("github-workflow")
TCT_VOCAB = _TOKENIZER.vocab_size
TCT_BOS = _TOKENIZER.bos_id
TCT_POSITION_RANGE = _TOKENIZER.position_range


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_shard(tmp_path_factory.mktemp("data"))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


# ---- data: windows, exact counting, order ---------------------------------------------------------


@pytest.mark.parametrize("window_format", ["plain", "position"])
@pytest.mark.parametrize("T", [16, 64, 700])
def test_eval_windows_score_every_token_but_bos_exactly_once(
    shard: Path, window_format: str, T: int
) -> None:
    data = load_data(str(shard), None, 0.1)
    docs = data.val
    assert docs is not None and docs.num_docs > 5
    stream = np.concatenate([docs.shards[0].doc(int(i)) for i in docs.selection[0]]).astype(
        np.int64
    )
    loader = BatchLoader(
        docs, data.tokenizer, sequence_len=T, batch_size=5, window_format=window_format
    )
    hits = np.zeros(len(stream), dtype=np.int64)
    for w in range(loader.num_windows):
        x, y = loader.fill([w], count_once=True)
        p = int(loader.plan.starts[w])
        if window_format == "plain":
            n = min(T, len(stream) - p)
            assert np.array_equal(x[0, :n], stream[p : p + n])  # inputs are the stream
            target_pos = p + 1 + np.arange(T)
        else:
            lo, hi = TCT_POSITION_RANGE
            assert lo <= x[0, 0] < hi
            assert x[0, 0] - lo == min(loader.plan.doc_pos[w], hi - lo - 1)
            n = min(T - 1, len(stream) - p)
            assert np.array_equal(x[0, 1 : 1 + n], stream[p : p + n])
            target_pos = p + np.arange(T)
        scored = y[0] >= 0
        assert np.array_equal(y[0][scored], stream[target_pos[scored]])  # targets are the stream
        hits[target_pos[scored]] += 1
    is_bos = stream == TCT_BOS
    assert (hits[~is_bos] == 1).all() and (hits[is_bos] == 0).all()
    assert hits.sum() == docs.predicted_tokens


def test_windows_start_at_bos_unless_inside_a_long_document(shard: Path) -> None:
    data = load_data(str(shard), None, 0.0)
    loader = BatchLoader(data.train, data.tokenizer, sequence_len=64, batch_size=8)
    starts, doc_pos = loader.plan.starts, loader.plan.doc_pos
    # A window begins mid-document only as the continuation of the window before it.
    for i in np.flatnonzero(doc_pos > 0):
        assert starts[i] - starts[i - 1] == 64 and doc_pos[i] == doc_pos[i - 1] + 64
    # Windows start at documents' BOS; several short documents can share one window.
    assert 0 < (doc_pos == 0).sum() <= data.train.num_docs


def test_order_is_deterministic_and_resumable(shard: Path) -> None:
    data = load_data(str(shard), None, 0.02)

    def loader(seed: int) -> BatchLoader:
        return BatchLoader(data.train, data.tokenizer, sequence_len=64, batch_size=8, seed=seed)

    a, b = loader(1), loader(1)
    for _ in range(3):
        xa, _ = a.next_batch()
        xb, _ = b.next_batch()
        assert torch.equal(xa, xb)
    state = a.state()
    expected = [a.next_batch()[0] for _ in range(2)]
    c = loader(1)
    c.load_state(json.loads(json.dumps(state)))  # through JSON, as in a checkpoint
    assert all(torch.equal(c.next_batch()[0], e) for e in expected)
    assert not torch.equal(loader(2).next_batch()[0], loader(1).next_batch()[0])


def test_ranks_split_the_global_batch(shard: Path) -> None:
    """2 ranks x B rows == 1 rank x 2B rows: the same global order for any number of processes."""
    data = load_data(str(shard), None, 0.02)
    kw = dict(sequence_len=64, seed=3)
    whole = BatchLoader(data.train, data.tokenizer, batch_size=8, **kw)
    ranks = [
        BatchLoader(data.train, data.tokenizer, batch_size=4, rank=r, world_size=2, **kw)
        for r in (0, 1)
    ]
    for _ in range(3):
        x = whole.next_batch()[0]
        assert torch.equal(torch.cat([r.next_batch()[0] for r in ranks]), x)


def test_bits_per_byte_is_exact_for_a_uniform_model(shard: Path) -> None:
    """A model whose logits are all zero pays ln(V) nats on every scored token."""
    data = load_data(str(shard), None, 0.05)
    assert data.val is not None
    model = GPT(GPTConfig(vocab_size=TCT_VOCAB, sequence_len=64, n_layer=1, n_head=2, n_embd=32))
    torch.nn.init.zeros_(model.lm_head.weight)
    loader = BatchLoader(data.val, data.tokenizer, sequence_len=64, batch_size=8)
    result = validation_loss(model, loader, torch.autocast("cpu", enabled=False))
    assert result["val_tokens"] == data.val.predicted_tokens
    assert result["val_loss"] == pytest.approx(math.log(TCT_VOCAB), rel=1e-6)
    expected_bpb = data.val.predicted_tokens * math.log2(TCT_VOCAB) / data.val.total_json_bytes
    assert result["val_bpb"] == pytest.approx(expected_bpb, rel=1e-6)


def test_eval_budget_takes_whole_documents(shard: Path) -> None:
    data = load_data(str(shard), None, 0.2)
    assert data.val is not None
    head = data.val.head(5000)
    assert isinstance(head, DocumentSet) and 1 <= head.num_docs < data.val.num_docs
    assert head.total_tokens <= 5000 or head.num_docs == 1
    assert head.total_json_bytes == int(data.val.json_bytes[: head.num_docs].sum())


def test_data_accepts_a_directory_or_glob_and_finds_val_shards(shard: Path, tmp_path: Path) -> None:
    docs = read_workflows(30)
    kw = dict(bos_id=BYTE_BOS, eos_id=BYTE_EOS, pad_id=BYTE_PAD, position_range=BYTE_POSITION_RANGE)
    for name, part, kind in (
        ("a", docs[:10], "train"),
        ("b", docs[10:20], "train"),
        ("c", docs[20:], "val"),
    ):
        ids = [np.frombuffer(t, dtype=np.uint8) for t, _ in part]
        make_shard(
            tmp_path / f"{name}.bin",
            ids,
            BYTE_VOCAB,
            [len(t) for t, _ in part],
            split_kind=kind,
            **kw,
        )
    for spec in (str(tmp_path), str(tmp_path / "*.bin"), str(tmp_path / "*")):
        data = load_data(spec, None, 0.5)
        assert [p.name for p in data.train_paths] == ["a.bin", "b.bin"]
        assert data.train.num_docs == 20 and data.val is not None and data.val.num_docs == 10
        assert "validation shards" in data.val_source
    data = load_data(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"), 0.5)
    assert data.train.num_docs == 10 and data.val is not None and data.val.num_docs == 10
    with pytest.raises(DataError, match="no shards found"):
        load_data(str(tmp_path / "nothing*.bin"), None, 0.0)
    # Shards of different tokenizers cannot be mixed.
    (tmp_path / "other").mkdir()
    make_shard(
        tmp_path / "other" / "d.bin", [[1, 2]], BYTE_VOCAB, [2], tokenizer_name="another", **kw
    )
    with pytest.raises(DataError, match="tokenizer"):
        load_data(str(tmp_path / "a.bin"), str(tmp_path / "other" / "d.bin"), 0.0)


# ---- training ---------------------------------------------------------------------------------


def test_one_batch_can_be_overfit(shard: Path) -> None:
    data = load_data(str(shard), None, 0.0)
    x, y = BatchLoader(
        data.train, data.tokenizer, sequence_len=64, batch_size=8, seed=0
    ).next_batch()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TCT_VOCAB, **{**PRESETS["tiny"]["model"], "sequence_len": 64}))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(60):
        loss = model(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 5.0  # about ln(260) at initialisation
    assert model(x, y).item() < 0.1


def test_loss_falls_and_outputs_are_written(shard: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = main(
        ["--data", str(shard), "--out", str(out), "--max-steps", "40", "--eval-every", "20", *FAST]
    )
    assert rc == 0
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(5, 45, 5))
    assert all({"step", "train_loss", "lr", "tokens_per_s"} <= r.keys() for r in records)
    val = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in val] == [20, 40]
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 0.7
    assert val[-1]["val_loss"] < math.log(TCT_VOCAB) - 1.0  # well below uniform
    assert val[-1]["val_bpb"] < val[0]["val_bpb"]
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert checkpoint.list_steps(out) == [40]
    meta = json.loads((out / "meta_000040.json").read_text())
    assert (
        meta["tokenizer"]["name"] == "github-workflow"
        and meta["model_config"]["vocab_size"] == TCT_VOCAB
    )


def test_position_window_format_trains(shard: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "--data",
            str(shard),
            "--out",
            str(out),
            "--max-steps",
            "5",
            "--window-format",
            "position",
            *FAST,
        ]
    )
    assert rc == 0
    meta = json.loads((out / "meta_000005.json").read_text())
    assert meta["model_config"]["vocab_size"] == TCT_POSITION_RANGE[1]  # covers the position ids
    assert math.isfinite(read_metrics(out / "metrics.jsonl")[-1]["val_loss"])


def _state(out: Path, step: int) -> tuple[dict, dict]:
    model, optim, _ = checkpoint.load(out, step, torch.device("cpu"))
    return model, optim


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_is_exact(shard: Path, tmp_path: Path, optimizer: str) -> None:
    """20 steps straight == 10 steps, then a resume and 10 more."""
    args = [
        "--data",
        str(shard),
        "--max-steps",
        "20",
        "--save-every",
        "10",
        "--keep-checkpoints",
        "0",
        "--optimizer",
        optimizer,
        *FAST,
    ]
    straight = tmp_path / "straight"
    assert main([*args, "--out", str(straight)]) == 0
    assert checkpoint.list_steps(straight) == [10, 20]

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for p in checkpoint.paths(straight, 10).values():  # the state a run stopped at step 10 leaves
        (resumed / p.name).write_bytes(p.read_bytes())
    assert main([*args, "--out", str(resumed), "--resume"]) == 0

    model_a, optim_a = _state(straight, 20)
    model_b, optim_b = _state(resumed, 20)
    for name, t in model_a.items():
        torch.testing.assert_close(model_b[name], t, rtol=0, atol=1e-6, msg=name)
    assert optim_a["state"].keys() == optim_b["state"].keys()
    for pid, s in optim_a["state"].items():
        keys = [k for k, v in s.items() if isinstance(v, torch.Tensor) and v.dim() > 0]
        assert keys  # exp_avg / exp_avg_sq (AdamW) or momentum_buffer (Muon)
        for key in keys:
            torch.testing.assert_close(optim_b["state"][pid][key], s[key], rtol=0, atol=1e-7)
    meta_a = json.loads((straight / "meta_000020.json").read_text())
    meta_b = json.loads((resumed / "meta_000020.json").read_text())
    assert meta_a["loader"] == meta_b["loader"]
    assert meta_a["metrics"]["val_loss"] == pytest.approx(meta_b["metrics"]["val_loss"], abs=1e-6)


def test_resume_with_another_optimizer_is_refused(shard: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--data", str(shard), "--out", str(out), *FAST]
    assert main([*args, "--max-steps", "2"]) == 0
    assert main([*args, "--max-steps", "4", "--resume", "--optimizer", "muon"]) == 2
    assert "trained with --optimizer adamw, not muon" in capsys.readouterr().err


def test_fresh_run_refuses_an_out_dir_with_checkpoints(shard: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["--data", str(shard), "--out", str(out), "--max-steps", "1", *FAST]) == 0
    assert main(["--data", str(shard), "--out", str(out), "--max-steps", "2", *FAST]) == 2
    assert "--resume" in capsys.readouterr().err


def test_corrupt_shard_is_a_clear_error(shard: Path, tmp_path: Path, capsys) -> None:
    stem = shard.name[: -len(".bin")]
    for suffix in (".bin", ".idx", ".meta.json"):
        (tmp_path / (stem + suffix)).write_bytes((shard.parent / (stem + suffix)).read_bytes())
    idx = tmp_path / f"{stem}.idx"
    with open(idx, "r+b") as f:
        f.write(b"GARBAGE!")
    rc = main(
        [
            "--data",
            str(tmp_path / shard.name),
            "--out",
            str(tmp_path / "run"),
            "--max-steps",
            "1",
            *FAST,
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert str(idx) in err and "magic" in err


# ---- interruption -------------------------------------------------------------------------------


def test_crash_while_saving_never_leaves_a_checkpoint_that_looks_whole(
    shard: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "--data",
                str(shard),
                "--out",
                str(out),
                "--max-steps",
                "4",
                "--save-every",
                "2",
                *FAST,
            ]
        )
        == 0
    )
    assert checkpoint.list_steps(out) == [2, 4]
    model, optim, meta = checkpoint.load(out, 4, torch.device("cpu"))
    real_write = checkpoint._atomic_write

    for victim in ("model", "optim", "meta"):

        def dies_half_way(path: Path, write, victim: str = victim) -> None:
            if not path.name.startswith(victim):
                return real_write(path, write)

            def half(f) -> None:  # killed in the middle of writing this file
                write(f)
                f.truncate(f.tell() // 2)
                raise KeyboardInterrupt

            return real_write(path, half)

        monkeypatch.setattr(checkpoint, "_atomic_write", dies_half_way)
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save(out, 6, model, optim, meta)
        monkeypatch.undo()
        assert checkpoint.latest(out) == 4  # step 6 is not a checkpoint
        assert not (out / f"{victim}_000006.{'json' if victim == 'meta' else 'pt'}").exists()
        assert not list(out.glob("*.tmp-*"))  # the temporary file was removed on the way out
        for orphan in out.glob("*_000006.pt"):  # files finished before the crash are whole
            torch.load(orphan, weights_only=True)

    # A resumed run continues from step 4 and overwrites the orphans of step 6.
    assert (
        main(
            [
                "--data",
                str(shard),
                "--out",
                str(out),
                "--max-steps",
                "6",
                "--save-every",
                "2",
                "--resume",
                *FAST,
            ]
        )
        == 0
    )
    assert checkpoint.latest(out) == 6
    checkpoint.load(out, 6, torch.device("cpu"))


def _start(shard: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "trainer.train",
        "--data",
        str(shard),
        "--out",
        str(out),
        *FAST,
        *extra,
    ]
    return subprocess.Popen(
        cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"trainer exited early ({proc.returncode}): {proc.communicate()[1][-2000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the trainer")
        time.sleep(0.05)


def test_sigkill_while_checkpointing_leaves_only_whole_checkpoints(
    shard: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = _start(
        shard, out, "--max-steps", "100000", "--save-every", "1", "--keep-checkpoints", "2"
    )
    _wait_for(lambda: len(checkpoint.list_steps(out)) >= 3, proc)
    proc.send_signal(signal.SIGKILL)  # no handler can run: only the write order protects the files
    proc.wait()
    steps = checkpoint.list_steps(out)
    assert steps
    for step in steps:
        checkpoint.load(out, step, torch.device("cpu"))
    for pt in out.glob("*.pt"):  # every file under a final name is whole
        torch.load(pt, weights_only=True)
    # The next run removes the stray temporary file a kill may leave, and resumes.
    (out / f"model_{steps[-1] + 1:06d}.pt.tmp-99999").write_bytes(b"half")
    assert (
        main(
            [
                "--data",
                str(shard),
                "--out",
                str(out),
                "--max-steps",
                str(steps[-1] + 1),
                "--resume",
                *FAST,
            ]
        )
        == 0
    )
    assert not list(out.glob("*.tmp-*"))


def test_ctrl_c_saves_a_checkpoint_then_exits(shard: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(shard, out, "--max-steps", "100000", "--save-every", "0")
    _wait_for(lambda: len(read_metrics(out / "metrics.jsonl")) >= 1, proc)
    proc.send_signal(signal.SIGINT)
    out_text, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    steps = checkpoint.list_steps(out)
    assert len(steps) == 1 and steps[0] >= 5
    _, _, meta = checkpoint.load(out, steps[0], torch.device("cpu"))
    assert meta["step"] == steps[0] and meta["loader"]["rows_consumed"] == 8 * steps[0]
    # The summary names the checkpoint it saved, whatever step the last metrics came from.
    final = [
        line for line in err.splitlines() + out_text.splitlines() if line.startswith("final: ")
    ]
    assert final, (out_text[-2000:], err[-2000:])
    summary = json.loads(final[-1].removeprefix("final: "))
    assert summary["checkpoint_step"] == steps[0], summary
    assert Path(summary["checkpoint"]).name == f"model_{steps[0]:06d}.pt", summary
    assert summary.get("step", summary.get("metrics_step")) <= steps[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_run(shard: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "--data",
        str(shard),
        "--out",
        str(out),
        "--max-steps",
        "20",
        "--preset",
        "tiny",
        "--no-progress",
    ]
    assert main([*args, "--device", "cuda", "--eval-every", "10"]) == 0
    records = read_metrics(out / "metrics.jsonl")
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["mfu"] is not None


def test_options_are_checked_in_reading_order(
    shard: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first wrong option in --help's order is the one named, before anything is written."""
    out = tmp_path / "run"
    # A missing --data is named before a device that may be missing too, and --out stays unmade.
    assert main(["--data", str(tmp_path / "nope.bin"), "--out", str(out), "--device", "cuda"]) == 2
    assert "nope.bin" in capsys.readouterr().err
    assert not out.exists()
    # Good data, bad validation fraction: named before the later --max-steps and --device.
    args = ["--data", str(shard), "--out", str(out), "--val-fraction", "1.5", "--max-steps", "0"]
    assert main([*args, "--device", "cuda"]) == 2
    assert "--val-fraction 1.5" in capsys.readouterr().err
    assert main(["--data", str(shard), "--out", str(out), "--max-steps", "0"]) == 2
    assert "--max-steps 0" in capsys.readouterr().err
    assert not out.exists()
