"""Throughput accounting (MFU), the metrics.jsonl log and the loss-curve plot.

MFU = achieved model FLOP/s per device / the device's peak FLOP/s, with model FLOPs from
`GPT.flops_per_token()` (6 N + 12 L d T). Peaks:
- CUDA: the data-sheet dense peak of the card for the compute dtype (bf16, or TF32 for float32);
  unknown cards report no MFU unless `--peak-flops` is given.
- CPU: there is no data sheet for "2 cores of whatever this VM is", so the peak is MEASURED: the best
  of repeated 1024^3 matmuls in the compute dtype over 0.3 s at start-up. CPU MFU is therefore
  "fraction of this machine's own matmul speed", which tells how much the training loop wastes. On a
  machine shared with other jobs, a start-up measurement taken while they ran is too low (MFU above
  100% was seen that way); benches/train_speed.py calibrates longer and passes --peak-flops.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

# Dense (non-sparse) tensor-core peaks in FLOP/s: (bf16, tf32). Substrings of the device name.
_CUDA_PEAKS: list[tuple[str, float, float]] = [
    ("H200", 989e12, 494e12),
    ("GH200", 989e12, 494e12),
    ("H100 PCIe", 756e12, 378e12),
    ("H100", 989e12, 494e12),  # SXM / NVL
    ("A100", 312e12, 156e12),
    ("L40S", 362e12, 183e12),
    ("L4", 121e12, 60e12),
    ("A10G", 70e12, 35e12),
    ("A10", 125e12, 62.5e12),
]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu} ({torch.get_num_threads()} threads)"


def measure_cpu_peak(dtype: torch.dtype, size: int = 1024, seconds: float = 0.3) -> float:
    """Best FLOP/s of repeated size^3 matmuls over about `seconds`. The best, not the mean: on a
    shared machine other processes only ever slow a matmul down, so the fastest is the truest."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm up
    best = math.inf
    deadline = time.perf_counter() + seconds
    for i in range(1000):
        t0 = time.perf_counter()
        torch.mm(a, b)
        t1 = time.perf_counter()
        best = min(best, t1 - t0)
        if t1 > deadline and i >= 2:
            break
    return 2.0 * size**3 / best


def peak_flops(
    device: torch.device, dtype: torch.dtype, override: float | None
) -> tuple[float | None, str]:
    """(peak FLOP/s or None, where it came from)."""
    if override:
        return override, "--peak-flops"
    if device.type == "cpu":
        return measure_cpu_peak(dtype), f"measured {dtype} matmul on this CPU"
    name = torch.cuda.get_device_name(device)
    for key, bf16, tf32 in _CUDA_PEAKS:
        if key in name:
            peak = bf16 if dtype == torch.bfloat16 else tf32
            return peak, f"{name} data sheet, dense {'bf16' if dtype == torch.bfloat16 else 'tf32'}"
    return None, f"unknown peak for {name} (pass --peak-flops)"


class MetricsLog:
    """Appends one JSON object per line to `path`, flushed at once (a crash loses no record)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self._file = open(path, "a", encoding="utf-8") if enabled else None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a torn last line (killed mid-write) is skipped."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records after `last_step` (a resumed run re-logs them), atomically."""
    if not path.exists():
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, path)


def plot_loss_curve(metrics_path: Path, png_path: Path) -> bool:
    """Train and validation loss (and validation bits per byte) against step. Returns False when
    matplotlib is missing (it comes with the `train` extra) or there is nothing to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    records = read_metrics(metrics_path)
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    bpb = [(r["step"], r["val_bpb"]) for r in records if r.get("val_bpb") is not None]
    if not train and not val:
        return False
    fig, axes = plt.subplots(1, 2 if bpb else 1, figsize=(11 if bpb else 6, 4), squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="val", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.grid(alpha=0.3)
    ax.legend()
    if bpb:
        ax2 = axes[0][1]
        ax2.plot(*zip(*bpb, strict=True), "o-", color="C1", markersize=3)
        ax2.set_xlabel("step")
        ax2.set_ylabel("val bits per byte of compact JSON")
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png_path.with_name(f"{png_path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    os.replace(tmp, png_path)
    return True
