"""A 2-process DDP run (torchrun, gloo on CPU) equals one process accumulating 2 micro-batches.

Rank r reads rows [r*B, (r+1)*B) of each global batch and DDP averages the gradients, exactly what a
single process does with --grad-accum 2, so both runs must end with the same parameters (up to the
float summation order of the all-reduce). Rank 0 alone writes logs and checkpoints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer import checkpoint
from trainer.metrics import read_metrics
from trainer.train import main
from trainer_shards import build_test_shard

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--preset", "tiny", "--sequence-len", "64", "--eval-tokens", "4096", "--log-every", "2"]
ARGS += ["--no-progress", "--device", "cpu", "--max-steps", "6", "--eval-every", "3"]


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_shard(tmp_path_factory.mktemp("data"))


def test_two_process_gloo_run_matches_gradient_accumulation(shard: Path, tmp_path: Path) -> None:
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [
        "-m",
        "trainer.train",
        "--data",
        str(shard),
        "--out",
        str(ddp_out),
        "--batch-size",
        "4",
        *ARGS,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(
            [
                "--data",
                str(shard),
                "--out",
                str(single_out),
                "--batch-size",
                "4",
                "--grad-accum",
                "2",
                *ARGS,
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert rc == 0

    # Rank 0 alone logs: one record per logged step, no duplicates from rank 1.
    ddp_records = read_metrics(ddp_out / "metrics.jsonl")
    assert [r["step"] for r in ddp_records] == [2, 3, 4, 6]
    single_records = read_metrics(single_out / "metrics.jsonl")
    for a, b in zip(ddp_records, single_records, strict=False):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
    assert ddp_records[-1]["val_loss"] == pytest.approx(single_records[-1]["val_loss"], abs=1e-4)
    assert ddp_records[-1]["tokens"] == single_records[-1]["tokens"] == 6 * 8 * 64

    model_ddp, _, meta_ddp = checkpoint.load(ddp_out, 6, torch.device("cpu"))
    model_one, _, meta_one = checkpoint.load(single_out, 6, torch.device("cpu"))
    assert meta_ddp["world_size"] == 2 and meta_ddp["loader"] == meta_one["loader"]
    for name, t in model_one.items():
        torch.testing.assert_close(model_ddp[name], t, rtol=0, atol=2e-5, msg=name)
