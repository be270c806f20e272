"""Checkpoints: `model_NNNNNN.pt`, `optim_NNNNNN.pt`, `meta_NNNNNN.json` in the run directory.

Every file is written under a temporary name (`NAME.tmp-PID`), flushed to disk, and renamed into
place; the meta file goes last. A checkpoint exists only once its meta file does, so a run killed at
any instant leaves either the previous complete checkpoints or a new complete one, plus at most a
stray `.tmp-PID` file that nothing reads (and the next run removes). Deletion of old checkpoints runs
in the opposite order (meta first), for the same reason.

Loading uses `torch.load(weights_only=True)`: a checkpoint is data and can never run code.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

_META_RE = re.compile(r"^meta_(\d{6,})\.json$")
_TMP_RE = re.compile(r"^(model|optim|meta)_\d{6,}\.(pt|json)\.tmp-\d+$")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not fit this run. The message names the file."""


def paths(out_dir: Path, step: int) -> dict[str, Path]:
    return {
        "model": out_dir / f"model_{step:06d}.pt",
        "optim": out_dir / f"optim_{step:06d}.pt",
        "meta": out_dir / f"meta_{step:06d}.json",
    }


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (Windows); the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> None:
    """Call write(file) on a temporary sibling, fsync it, rename it over `path`."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Includes KeyboardInterrupt: never leave the temporary file behind on the way out.
        tmp.unlink(missing_ok=True)
        raise


def save(
    out_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """Write one complete checkpoint; returns the meta path."""
    p = paths(out_dir, step)
    _atomic_write(p["model"], lambda f: torch.save(model_state, f))
    _atomic_write(p["optim"], lambda f: torch.save(optim_state, f))
    meta = {**meta, "step": step, "files": {"model": p["model"].name, "optim": p["optim"].name}}
    body = json.dumps(meta, indent=1).encode("utf-8")
    _atomic_write(p["meta"], lambda f: f.write(body))
    _fsync_dir(out_dir)
    return p["meta"]


def list_steps(out_dir: Path) -> list[int]:
    """Steps of complete checkpoints (meta present, model and optim present), ascending."""
    steps = []
    if not out_dir.is_dir():
        return steps
    for entry in out_dir.iterdir():
        m = _META_RE.match(entry.name)
        if m:
            step = int(m.group(1))
            p = paths(out_dir, step)
            if p["model"].is_file() and p["optim"].is_file():
                steps.append(step)
    return sorted(steps)


def latest(out_dir: Path) -> int | None:
    steps = list_steps(out_dir)
    return steps[-1] if steps else None


def load(out_dir: Path, step: int, device: torch.device) -> tuple[dict, dict, dict]:
    """(model_state, optim_state, meta) of checkpoint `step`."""
    p = paths(out_dir, step)
    for key in ("meta", "model", "optim"):
        if not p[key].is_file():
            raise CheckpointError(f"{p[key]}: missing; checkpoint {step} is incomplete")
    try:
        meta = json.loads(p["meta"].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p['meta']}: unreadable: {e}") from e
    try:
        model_state = torch.load(p["model"], map_location=device, weights_only=True)
        optim_state = torch.load(p["optim"], map_location=device, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"checkpoint {step} in {out_dir}: cannot load: {e}") from e
    return model_state, optim_state, meta


def prune(out_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps everything)."""
    if keep <= 0:
        return
    for step in list_steps(out_dir)[:-keep]:
        p = paths(out_dir, step)
        for key in ("meta", "model", "optim"):  # meta first: a half-deleted one is not listed
            p[key].unlink(missing_ok=True)


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Remove `.tmp-PID` files left by a killed run (only our own checkpoint names)."""
    removed = []
    if out_dir.is_dir():
        for entry in out_dir.iterdir():
            if _TMP_RE.match(entry.name):
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def rng_state() -> dict[str, Any]:
    """RNG states as JSON-friendly lists (the model has no dropout, but a resumed run must be
    exact even if someone adds randomness later)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))
