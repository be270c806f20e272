"""benches/quality.py end to end on a tiny setting, on a corpus written here (no shared data)."""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))

pytest.importorskip("tokenizers")
import quality  # noqa: E402


def workflow(repo: int, i: int) -> dict:
    steps = [{"uses": "actions/checkout@v5"}, {"name": f"Build {i}", "run": f"make target{i}"}]
    jobs = {"build": {"runs-on": "ubuntu-latest", "steps": steps}}
    if i % 2:
        jobs["test"] = {
            "needs": "build",
            "runs-on": "ubuntu-latest",
            "steps": [{"run": "make test"}],
        }
    return {"name": f"CI {repo}-{i}", "on": {"push": {"branches": ["main"]}}, "jobs": jobs}


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for repo in range(12):
            for i in range(4):
                f.write(json.dumps({"repo": f"owner/r{repo}", "json": workflow(repo, i)}) + "\n")
    return path


def test_split_is_by_repository() -> None:
    docs = [(json.dumps({"i": i}), f"r{i % 7}") for i in range(70)]
    train, val = quality.split(docs, 0.3)
    assert train and val and len(train) + len(val) == 70
    val_repos = {f"r{json.loads(d)['i'] % 7}" for d in val}
    train_repos = {f"r{json.loads(d)['i'] % 7}" for d in train}
    assert not val_repos & train_repos
    # Records without a repository are their own groups.
    alone = quality.split([(json.dumps({"i": i}), None) for i in range(200)], 0.5)
    assert alone[0] and alone[1]


@pytest.mark.parametrize(
    "extra", [[], ["--parallel", "--trainer-args", "--optimizer muon"]], ids=["serial", "parallel"]
)
def test_quality_end_to_end(corpus: Path, tmp_path: Path, extra: list[str]) -> None:
    val_repos = sum(zlib.crc32(f"repo:owner/r{r}".encode()) / 2**32 < 0.3 for r in range(12))
    assert 0 < val_repos < 12  # the fixture gives both splits documents
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        code = quality.main(
            ["--data", str(corpus), "--docs", "0", "--val-fraction", "0.3", "--steps", "3"]
            + ["--samples", "3", "--max-tokens", "24", "--sequence-len", "64"]
            + ["--batch-size", "2", "--out", str(out), "--device", "cpu", *extra]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    report = json.loads((out / "quality.json").read_text(encoding="utf-8"))
    assert set(report["arms"]) >= {"tct", "bpe"}
    tct, bpe = report["arms"]["tct"], report["arms"]["bpe"]
    assert tct["params"] == bpe["params"] > 0
    assert tct["train_tokens"] == bpe["train_tokens"] == 3 * 2 * 64
    for arm in (tct, bpe):
        assert 0 < arm["val_bpb"] < 20 and arm["tokens_per_s"] > 0 and arm["train_docs_seen"] > 0
        s = arm["samples"]
        assert s["n"] == 3
        for key in ("parse", "schema_valid", "complete", "distinct"):
            assert 0 <= s[key] <= 1, key
    # Masked likelihood is never worse than the plain one of the same pass.
    assert tct["val_bpb_masked"] <= tct["val_bpb_same_pass"] + 1e-9
    assert tct["samples"]["parse"] == 1.0 and tct["samples"]["schema_valid"] == 1.0
    d = tct["distortion"]
    assert 0 <= d["feasible_mass_mean"] <= 1 and 0 <= d["argmax_forbidden"] <= 1
    assert bpe["distortion"] is None and bpe["val_bpb_masked"] is None
    ref = report["reference"]
    assert ref["n"] == report["documents"]["val"] == 4 * val_repos
    if ref["lint_all"] is not None:  # actionlint installed
        assert 0 <= ref["lint_all"] <= ref["lint_semantic"] <= 1
        assert tct["samples"]["lint_all"] is not None
    for arm in ("tct", "bpe"):  # the trainer flags reached both arms
        meta = json.loads(next((out / f"run-{arm}").glob("meta_*.json")).read_text())
        assert meta["train_config"]["optimizer"] == ("muon" if extra else "adamw")
    assert report["parallel"] == bool(extra)
    md = (out / "quality.md").read_text(encoding="utf-8")
    assert "validation bits per byte" in md and "real workflows" in md
