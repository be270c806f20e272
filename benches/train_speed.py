"""Training throughput of the `small` preset (384 d x 8 layers x 6 heads, 20.4M parameters) at
context 512, batch 32: tokens/s and MFU, with the device named beside every number.

    PYTHONPATH=python python benches/train_speed.py                      # CPU here: ~1 min
    PYTHONPATH=python python benches/train_speed.py --modes bf16,bf16+compile --steps 50   # a GPU
    PYTHONPATH=python python benches/train_speed.py --data out.bin       # a real tct-encode shard

It runs the real trainer (`trainer.train.main`: loader, autocast, fused AdamW, clipping, logging)
on a shard, and reads tokens/s and MFU from the trainer's own metrics.jsonl, so the number is what a
user gets, loader included. The first `--warmup` steps (torch.compile, allocator and cache warm-up)
are excluded. Without --data the shard is synthetic: random ids below 8192 (the real tokenizer's
vocabulary) in documents of 200 to 2,000 tokens, so the loss must sit at about ln(8192) = 9.01;
with real data it must fall. The loss is reported beside the speed as the correctness check.

Goal: >= 1,000,000 tokens/s on one H100 (5x the proof of concept's 193k tokens/s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the numpy shard writer the tests use
from trainer.metrics import device_name, measure_cpu_peak, read_metrics  # noqa: E402
from trainer.train import main as train_main  # noqa: E402
from trainer_shards import make_shard  # noqa: E402

VOCAB = 8192


def synthetic_shard(directory: Path, tokens: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    docs, total = [], 0
    while total < tokens:
        n = int(rng.integers(200, 2000))
        docs.append(rng.integers(0, VOCAB - 3, n, dtype=np.int64))
        total += n + 2
    return make_shard(
        directory / "synthetic.bin",
        docs,
        VOCAB,
        [len(d) * 3 for d in docs],  # arbitrary: bits per byte is not measured here
        pad_id=VOCAB - 3,
        bos_id=VOCAB - 2,
        eos_id=VOCAB - 1,
        tokenizer_name="synthetic-uniform",
    )


def run_mode(mode: str, data: Path, args: argparse.Namespace, workdir: Path) -> dict:
    dtype = "bfloat16" if "bf16" in mode else "float32"
    out = workdir / mode.replace("+", "_")
    total_steps = args.warmup + args.steps
    argv = [
        "--data", str(data), "--out", str(out), "--preset", args.preset,
        "--batch-size", str(args.batch_size), "--sequence-len", str(args.sequence_len),
        "--max-steps", str(total_steps), "--warmup-steps", "10",
        "--log-every", str(args.log_every), "--eval-every", "0", "--val-fraction", "0",
        "--save-every", "0", "--device", args.device, "--dtype", dtype, "--no-progress",
    ]  # fmt: skip
    if "compile" in mode:
        argv.append("--compile")
    if args.cpu_peaks:
        argv += ["--peak-flops", str(args.cpu_peaks[dtype])]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    rc = train_main(argv)
    if rc != 0:
        raise SystemExit(f"{mode}: the trainer exited with {rc}")
    records = read_metrics(out / "metrics.jsonl")
    timed = [r for r in records if r["step"] > args.warmup]
    if not timed:
        raise SystemExit(
            f"{mode}: no logged steps after warm-up; raise --steps or lower --log-every"
        )
    tok_s = statistics.median(r["tokens_per_s"] for r in timed)
    mfu = [r["mfu"] for r in timed if r["mfu"] is not None]
    if torch.cuda.is_available() and args.device != "cpu":
        device = torch.device("cuda")
        peak_mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        device = torch.device("cpu")
        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "mode": mode,
        "dtype": dtype,
        "device": device_name(device),
        "tokens_per_s": tok_s,
        "mfu": statistics.median(mfu) if mfu else None,
        "loss_first": records[0]["train_loss"],
        "loss_last": records[-1]["train_loss"],
        "peak_mem_mib": peak_mem,
        "timed_steps": sum(1 for _ in timed) * args.log_every,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", help="a real shard (default: synthetic ids, vocabulary 8192)")
    p.add_argument("--preset", default="small")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sequence-len", type=int, default=512)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--modes", help="comma-separated: fp32, bf16, fp32+compile, bf16+compile")
    p.add_argument("--steps", type=int, help="timed steps (default: 2 on CPU, 50 on GPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default: 1 on CPU, 10 on GPU)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    gpu = args.device != "cpu" and torch.cuda.is_available()
    args.modes = (args.modes or ("bf16,bf16+compile" if gpu else "fp32")).split(",")
    args.steps = args.steps or (50 if gpu else 2)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    args.log_every = 1 if not gpu else 10
    if args.steps % args.log_every or args.warmup % args.log_every:
        raise SystemExit(f"--steps and --warmup must be multiples of {args.log_every}")

    args.cpu_peaks = {}
    if not gpu:
        # One careful peak per dtype, shared by every mode (the trainer's 0.3 s start-up probe is
        # easily fooled by other jobs on a shared machine).
        args.cpu_peaks = {
            name: measure_cpu_peak(dt, seconds=3.0)
            for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
        }
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        workdir = Path(tmp)
        tokens_needed = (args.warmup + args.steps + 1) * args.batch_size * (args.sequence_len + 1)
        data = Path(args.data) if args.data else synthetic_shard(workdir, int(tokens_needed * 1.2))
        results = [run_mode(mode, data, args, workdir) for mode in args.modes]
    if not gpu:  # a second look: keep the best, so a busy first calibration cannot inflate MFU
        for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            again = measure_cpu_peak(dt, seconds=3.0)
            if again > args.cpu_peaks[name]:
                for r in results:
                    if r["dtype"] == name and r["mfu"] is not None:
                        r["mfu"] *= args.cpu_peaks[name] / again
                args.cpu_peaks[name] = again

    print()
    print(
        f"{args.preset} preset, context {args.sequence_len}, batch {args.batch_size}, data: {args.data or 'synthetic'}"
    )
    if not gpu:
        print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        peaks = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in args.cpu_peaks.items())
        print(f"MFU against this CPU's best measured matmul speed: {peaks}")
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        loss_ok = math.isfinite(r["loss_last"]) and (
            args.data or abs(r["loss_last"] - math.log(VOCAB)) < 0.5
        )
        print(
            f"  {r['mode']:<13} {r['tokens_per_s']:>12,.0f} tokens/s  MFU {mfu:>6}  on {r['device']}"
            f"  | loss {r['loss_first']:.3f} -> {r['loss_last']:.3f} ({'ok' if loss_ok else 'SUSPECT'})"
            f"  | peak memory {r['peak_mem_mib']:,.0f} MiB  | {r['timed_steps']} timed steps"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
