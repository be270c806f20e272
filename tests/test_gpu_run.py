"""benches/gpu_run.py on CPU with its tiny setting: every stage runs and the summary prints."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("tokenizers")


def test_gpu_run_tiny_on_cpu(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as f:
        for repo in range(12):
            for i in range(3):
                doc = {
                    "name": f"CI {repo} {i}",
                    "on": "push",
                    "jobs": {"b": {"runs-on": "ubuntu-latest", "steps": [{"run": f"make {i}"}]}},
                }
                f.write(json.dumps({"repo": f"owner/r{repo}", "json": doc}) + "\n")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benches" / "gpu_run.py"), "--device", "cpu", "--tiny"]
    cmd += ["--data", str(corpus), "--out", str(out), "--budget", "400"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [s["stage"] for s in summary["stages"]] == ["speed-tiny", "quality"]
    assert "tokens/s" in summary["text"] and "val_bpb" in summary["text"]
    assert (out / "quality" / "quality.md").is_file()


def test_gpu_run_reports_a_failing_stage_and_still_summarizes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benches" / "gpu_run.py"), "--device", "cpu", "--tiny"]
    cmd += ["--data", str(tmp_path / "missing.jsonl.gz"), "--out", str(out), "--budget", "300"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    status = {s["stage"]: s["status"] for s in summary["stages"]}
    assert status["speed-tiny"] == "ok" and status["quality"].startswith("failed")
    assert "=== summary" in proc.stdout
