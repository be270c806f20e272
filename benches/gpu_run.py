"""One GPU session in under 9 minutes: training speed of `small` and `medium`, then a short `small`
TCT-vs-BPE run with its quality report, and one summary at the end.

    python benches/gpu_run.py --out runs/gpu                     # one CUDA GPU, ~9 minutes
    python benches/gpu_run.py --device cpu --tiny --out /tmp/g   # the same stages, tiny, on CPU

Stages (each a subprocess with its own time box, cut to what is left of `--budget`; a stage that
fails or runs out of time is reported and the next one still runs, so the summary always prints):
1. `benches/train_speed.py --preset small --modes bf16,bf16+compile` (tokens/s, MFU, memory);
2. the same for `medium`;
3. `benches/quality.py --preset small --steps --quality-steps --samples --quality-samples` on
   `--data` (the development corpus by default).
`--tiny` runs the `tiny` preset, fp32, a few steps and a small corpus slice: it checks the script
itself on a machine without a GPU. The summary goes to stdout and to `OUT/summary.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "benches"
CORPUS = ROOT.parent / "shared" / "data" / "workflows" / "workflows.jsonl.gz"


def stages(args: argparse.Namespace, out: Path) -> list[tuple[str, list[str], float, Path]]:
    """(name, command, time box in s, result file) per stage."""
    py = [sys.executable]
    dev = ["--device", args.device]
    if args.tiny:
        speed = ["--modes", "fp32", "--steps", "2", "--warmup", "1", "--batch-size", "2"]
        speed += ["--sequence-len", "64"]
        presets = [("speed-tiny", "tiny")]
        quality = ["--preset", "tiny", "--steps", "3", "--samples", "2", "--max-tokens", "24"]
        quality += ["--docs", str(args.docs or 0), "--sequence-len", "64", "--batch-size", "2"]
        quality += ["--val-fraction", "0.3"]
        boxes = {"speed": 120.0, "quality": 300.0}
    else:
        speed = ["--modes", "bf16,bf16+compile", "--steps", "30", "--warmup", "10"]
        presets = [("speed-small", "small"), ("speed-medium", "medium")]
        quality = ["--preset", "small", "--steps", str(args.quality_steps)]
        quality += ["--samples", str(args.quality_samples), "--docs", str(args.docs or 20000)]
        boxes = {"speed": 150.0, "quality": 270.0}
    plan = []
    for name, preset in presets:
        res = out / f"{name}.json"
        cmd = py + [str(BENCHES / "train_speed.py"), "--preset", preset, *speed, *dev]
        plan.append((name, cmd + ["--json", str(res)], boxes["speed"], res))
    qdir = out / "quality"
    cmd = py + [str(BENCHES / "quality.py"), "--data", str(args.data), *quality, *dev]
    plan.append(
        (
            "quality",
            cmd + ["--out", str(qdir), "--seed", "1337"],
            boxes["quality"],
            qdir / "quality.json",
        )
    )
    return plan


def run_stage(cmd: list[str], box: float, log: Path) -> tuple[str, float]:
    """('ok' | 'failed (exit N)' | 'timed out after S s', seconds)."""
    t0 = time.perf_counter()
    with log.open("w", encoding="utf-8") as f:
        try:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=box, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return f"timed out after {box:.0f} s", time.perf_counter() - t0
        except OSError as e:
            return f"could not start: {e}", time.perf_counter() - t0
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    return status, time.perf_counter() - t0


def summarize(name: str, result: Path) -> list[str]:
    try:
        data: Any = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return ["  (no result file)"]
    if name.startswith("speed"):
        lines = []
        for r in data.get("results", []):
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
            lines.append(
                f"  {r['mode']:<13} {r['tokens_per_s']:>12,.0f} tokens/s  MFU {mfu:>6}  "
                f"peak {r.get('peak_mem_mib') or 0:,.0f} MiB  on {r['device']}"
            )
        return lines
    lines = []
    for arm, a in data["arms"].items():
        s = a["samples"]

        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.0f}%"

        lines.append(
            f"  {arm:<4} val_bpb {a['val_bpb']:.4f}"
            + (f" (masked {a['val_bpb_masked']:.4f})" if a.get("val_bpb_masked") else "")
            + f"  parse {pct(s['parse'])}  schema-valid {pct(s['schema_valid'])}"
            f"  complete {pct(s['complete'])}  lint {pct(s['lint_all'])}"
            f"  semantic {pct(s['lint_semantic'])}  {a['tokens_per_s']:,.0f} tokens/s"
        )
    ref = data["reference"]
    if ref.get("lint_all") is not None:
        lines.append(
            f"  real workflows ({ref['n']}): lint {100 * ref['lint_all']:.0f}%"
            f"  semantic {100 * ref['lint_semantic']:.0f}%"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/gpu")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny preset, few steps (a CPU check)")
    p.add_argument("--data", default=str(CORPUS), help="corpus for the quality stage")
    p.add_argument(
        "--docs", type=int, default=None, help="corpus records (default 20000; tiny: all)"
    )
    p.add_argument("--quality-steps", type=int, default=600)
    p.add_argument("--quality-samples", type=int, default=100)
    p.add_argument("--budget", type=float, default=530.0, help="seconds for all stages")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary: list[dict[str, Any]] = []
    for name, cmd, box, result in stages(args, out):
        left = args.budget - (time.perf_counter() - start)
        if left < 10:
            summary.append({"stage": name, "status": "skipped (budget spent)", "seconds": 0.0})
            continue
        print(f"--- {name}: {' '.join(cmd[1:])}", flush=True)
        status, secs = run_stage(cmd, min(box, left), out / f"{name}.log")
        print(f"    {status} in {secs:.0f} s", flush=True)
        summary.append({"stage": name, "status": status, "seconds": secs, "result": str(result)})
    lines = [f"=== summary ({time.perf_counter() - start:.0f} s, budget {args.budget:.0f} s)"]
    for s in summary:
        lines.append(f"{s['stage']}: {s['status']} ({s['seconds']:.0f} s)")
        if s["status"] == "ok":
            lines += summarize(s["stage"], Path(s["result"]))
        elif "result" in s:
            log = out / f"{s['stage']}.log"
            tail = (
                log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
                if log.exists()
                else []
            )
            lines += [f"  | {t}" for t in tail]
    text = "\n".join(lines)
    print(text)
    (out / "summary.json").write_text(
        json.dumps({"stages": summary, "text": text}, indent=1) + "\n"
    )
    return 0 if all(s["status"] == "ok" for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
