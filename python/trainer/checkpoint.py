"""Checkpoints: `model_NNNNNN.pt`, `optim_NNNNNN.pt`, `meta_NNNNNN.json` in the run directory.

Every file is written under a temporary name (`NAME.tmp-PID`), flushed to disk, and renamed into
place; the meta file goes last. A checkpoint exists only once its meta file does, so a run killed at
any instant leaves either the previous complete checkpoints or a new complete one, plus at most a
stray `.tmp-PID` file that nothing reads (and the next run removes). Deletion of old checkpoints runs
in the opposite order (meta first), for the same reason.

Loading uses `torch.load(weights_only=True)`: a checkpoint is data and can never run code.
`load_model` loads one for inference (generation, evaluation): it resolves a run directory to its
latest complete checkpoint, checks the tokenizer's hash against the one the model was trained
with, and raises CheckpointError naming the file for anything missing, corrupt or mismatched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import tct

from .model import GPT, GPTConfig

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


_MODEL_RE = re.compile(r"^model_(\d{6,})\.pt$")


class TokenizerMismatchError(CheckpointError):
    """The tokenizer at hand is not the one the checkpoint was trained with."""


# ---- loading a checkpoint for inference --------------------------------------------------------------------


@dataclass
class LoadedModel:
    model: GPT
    tokenizer: tct.Tokenizer
    meta: dict[str, Any]
    model_path: Path
    device: torch.device
    dtype: torch.dtype

    @property
    def start_ids(self) -> list[int]:
        """What the model reads before the document's content: BOS, preceded by the position id
        of offset 0 when it was trained on `--window-format position` windows."""
        fmt = self.meta.get("train_config", {}).get("window_format", "plain")
        if fmt == "position":
            first, _ = self.meta["tokenizer"]["position_range"]
            return [int(first), self.tokenizer.bos_id]
        return [self.tokenizer.bos_id]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def resolve_checkpoint(spec: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(model file, meta file) of a run directory's latest checkpoint or of one model file."""
    p = Path(spec)
    if p.is_dir():
        step = latest(p)
        if step is None:
            raise CheckpointError(
                f"{p}: no complete checkpoint (model_NNNNNN.pt + meta_NNNNNN.json)"
            )
        files = paths(p, step)
        return files["model"], files["meta"]
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file or directory")
    m = _MODEL_RE.match(p.name)
    if not m:
        raise CheckpointError(
            f"{p}: expected a run directory or a model_NNNNNN.pt file written by trainer.train"
        )
    meta = p.with_name(f"meta_{m.group(1)}.json")
    if not meta.is_file():
        raise CheckpointError(f"{meta}: missing; the model file {p.name} needs its meta beside it")
    return p, meta


def load_tokenizer_for(meta: dict[str, Any], meta_path: Path, spec: str | None) -> tct.Tokenizer:
    """The tokenizer `spec` (bundled name or file), or the one the checkpoint names; its hash must
    equal the checkpoint's."""
    want = meta.get("tokenizer") or {}
    name = spec or want.get("name")
    if not name:
        raise CheckpointError(f"{meta_path}: /tokenizer/name is missing; pass --tokenizer")
    try:
        tok = tct.load(name)
    except (tct.TctError, OSError) as e:
        raise CheckpointError(
            f"{meta_path}: cannot load the tokenizer {name!r} ({e}); pass --tokenizer FILE"
        ) from e
    if tok.hash != want.get("hash"):
        raise TokenizerMismatchError(
            f"{meta_path}: the model was trained with tokenizer {want.get('name')!r} "
            f"(hash {want.get('hash')}), but the tokenizer given is {tok.name!r} (hash {tok.hash}); "
            "its ids mean different things. Use the training tokenizer (--tokenizer)."
        )
    return tok


def load_model(
    spec: str | os.PathLike[str],
    tokenizer: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> LoadedModel:
    """Load a checkpoint for inference. Raises CheckpointError (naming the file) when it is
    missing, unreadable, corrupt, inconsistent or made for another tokenizer."""
    model_path, meta_path = resolve_checkpoint(spec)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path}: unreadable checkpoint metadata: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != "tct-trainer-checkpoint":
        raise CheckpointError(
            f"{meta_path}: not a trainer checkpoint (/format is not tct-trainer-checkpoint)"
        )
    try:
        cfg = GPTConfig.from_dict(meta["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_path}: bad /model_config: {e}") from e
    tok = load_tokenizer_for(meta, meta_path, tokenizer)
    if cfg.vocab_size < tok.vocab_size:
        raise CheckpointError(
            f"{meta_path}: the model has {cfg.vocab_size} ids, the tokenizer {tok.vocab_size}"
        )

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    else:
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    try:
        state = torch.load(model_path, map_location=dev, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"{model_path}: cannot load (corrupt or not a model file): {e}"
        ) from e
    model = GPT(cfg)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"{model_path}: weights do not fit {meta_path.name}'s config: {e}"
        ) from e
    model.to(dev).eval()
    return LoadedModel(model, tok, meta, model_path, dev, torch_dtype)
