"""The README's code blocks run as written.

Python blocks are executed one by one (each in a fresh namespace); shell commands that need
only the repository (tct-encode / tct-train / python on `examples/`) are run; the five-minute
walkthrough, which trains a model, is the `slow` test. Everything runs in a temporary directory
that links the repository's `examples/`, so `out/` and `runs/` land there. Installation and
test commands (`pip install`, `make`, `torchrun`, GPU runs) are not run here: CI runs them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import tct

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_shell(command: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """One README command through bash, with `python`, `tct-encode` and `tct-train` bound to
    the interpreter and package under test (small scripts first on PATH)."""
    bin_dir = cwd / ".bin"
    if not bin_dir.is_dir():
        bin_dir.mkdir()
        wrappers = {
            "python": "",
            "tct-encode": "-m tct.cli_encode ",
            "tct-train": "-m tct.cli_train ",
        }
        for name, args in wrappers.items():
            script = bin_dir / name
            script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {args}"$@"\n')
            script.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(tct.__file__).absolute().parents[1]), str(ROOT / "python")]
    )
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, timeout=1200
    )


def runnable(command: str) -> bool:
    """What this test runs: commands on the repository's own examples."""
    if command.startswith(("pip ", "make", "torchrun", ".ci/")):
        return False
    if "--preset small" in command or "--preset medium" in command or "--resume" in command:
        return False  # GPU-sized runs and a resume of them
    return command.startswith(("tct-encode", "tct-train", "python -c"))


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert len(blocks("python")) >= 2
    assert sum(runnable(c) for b in blocks("sh") for c in commands(b)) >= 4


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs(index: int, workdir: Path) -> None:
    code = blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_shell_commands_run(workdir: Path) -> None:
    ran = 0
    for block in blocks("sh"):
        for command in commands(block):
            # `pip install . && tct-encode ...`: the install is CI's part, the rest runs here.
            command = re.sub(r"^pip install [^&]*&&\s*", "", command)
            if not runnable(command):
                continue
            r = run_shell(command, workdir)
            assert r.returncode == 0, f"{command}\n{r.stderr.decode()}"
            ran += 1
    assert ran >= 4


@pytest.mark.slow
def test_the_five_minute_walkthrough_runs(workdir: Path) -> None:
    pytest.importorskip("torch")
    walkthrough = next(b for b in blocks("sh") if "trainer.generate" in b and "trainer.eval" in b)
    for command in commands(walkthrough):
        if command.startswith("pip "):
            continue
        r = run_shell(command, workdir)
        assert r.returncode == 0, f"{command}\n{r.stderr.decode()[-3000:]}"
    assert (workdir / "runs" / "example" / "eval_report.json").is_file()
