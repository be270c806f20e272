"""Benchmark `tct-encode`: the development corpus replicated to N documents, at 1 and 2 threads.

    python benches/encode_corpus.py                       # 100,000 docs, YAML tree + JSONL
    python benches/encode_corpus.py --docs 20000 --formats jsonl --sizes 10000,40000

The corpus is written to a temporary directory (never into the repository): a tree of `.yml`
files (the original YAML text, as users have them) and/or one `.jsonl` file (the recorded JSON).
Each run is a fresh `python -m tct.cli_encode` process; its wall time, documents/s, MB/s of input
and peak RSS (VmHWM of that child, polled) are reported beside the input size. The byte-identity
of the 1- and 2-thread outputs is checked too. A reference line (orjson parsing the same JSONL
in this process) puts the MB/s in context, as machines differ.

Goals (on the 2-core dev box): 2 threads >= 1.7x one thread; 100k workflows in < 60 s;
peak RSS flat in the corpus size (`--sizes` runs two sizes at 2 threads to show it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tct

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CORPUS = DATA / "workflows" / "workflows.jsonl.gz"
SCHEMA = DATA / "schemas" / "github-workflow.json"


def load_records() -> list[dict]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_jsonl(records: list[dict], n: int, path: Path) -> int:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(records[i % len(records)]["json"], ensure_ascii=False) + "\n")
    return path.stat().st_size


def write_tree(records: list[dict], n: int, root: Path) -> int:
    total = 0
    for i in range(n):
        d = root / f"{i // 1000:04d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        data = records[i % len(records)]["yaml"].encode()
        (d / f"{i:06d}.yml").write_bytes(data)
        total += len(data)
    return total


def run_encode(src: Path, out: Path, threads: int, tokenizer_args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(tct.__file__).absolute().parents[1]))
    cmd = [sys.executable, "-m", "tct.cli_encode", str(src), str(out), "--threads", str(threads)]
    t0 = time.perf_counter()
    err_path = out.with_suffix(".stderr")
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd + tokenizer_args + ["--quiet"], env=env, stderr=err, stdout=subprocess.DEVNULL
        )
        # Peak RSS: VmHWM of the child, polled. (rusage's ru_maxrss would include the memory of
        # this benchmark process that the child shares between fork and exec.)
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    stderr = err_path.read_text()
    err_path.unlink()
    code = proc.returncode
    if code not in (0, 1):
        raise SystemExit(f"tct-encode failed ({code}): {stderr}")
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    return {
        "wall_s": wall,
        "documents": meta["counts"]["documents"],
        "rejected": meta["counts"]["rejected"],
        "tokens": meta["counts"]["tokens"],
        "peak_rss_mb": peak_kb / 1024,
    }


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def orjson_reference(path: Path) -> float:
    """MB/s of orjson.loads over the JSONL lines, in this process (lines orjson cannot read,
    integers beyond 64 bits, are left out of the byte count)."""
    import orjson

    data = path.read_bytes().splitlines()
    done = 0
    t0 = time.perf_counter()
    for line in data:
        try:
            orjson.loads(line)
            done += len(line)
        except orjson.JSONDecodeError:
            pass
    return done / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--formats", default="yaml,jsonl", help="comma list of yaml, jsonl")
    ap.add_argument(
        "--sizes", default="25000,100000", help="two sizes for the RSS check ('' to skip)"
    )
    ap.add_argument(
        "--tokenizer", default=None, help="tokenizer name/file (default: --schema base)"
    )
    ap.add_argument("--tmp", default=None, help="scratch directory (default: a fresh one in /tmp)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    tok_args = ["--tokenizer", args.tokenizer] if args.tokenizer else ["--schema", str(SCHEMA)]
    records = load_records()
    scratch = Path(args.tmp or tempfile.mkdtemp(prefix="tct-bench-encode-"))
    scratch.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": os.uname().nodename, "cores": os.cpu_count(), "runs": []}
    print(
        f"tct-encode benchmark: {args.docs:,} documents (corpus of {len(records):,} replicated), "
        f"{os.cpu_count()} cores, scratch {scratch}"
    )
    try:
        for fmt in [f for f in args.formats.split(",") if f]:
            src = scratch / ("tree" if fmt == "yaml" else "docs.jsonl")
            t0 = time.perf_counter()
            size = (
                write_tree(records, args.docs, src)
                if fmt == "yaml"
                else write_jsonl(records, args.docs, src)
            )
            print(
                f"\n[{fmt}] input {size / 1e6:,.1f} MB written in {time.perf_counter() - t0:.1f} s"
            )
            if fmt == "jsonl":
                print(
                    f"  reference: orjson.loads {orjson_reference(src):,.1f} MB/s (1 thread, in process)"
                )
            outs = {}
            for threads in (1, 2):
                out = scratch / f"{fmt}-t{threads}.bin"
                r = run_encode(src, out, threads, tok_args)
                r.update(format=fmt, threads=threads, input_mb=size / 1e6, docs_in=args.docs)
                r["docs_per_s"] = r["documents"] / r["wall_s"]
                r["mb_per_s"] = size / 1e6 / r["wall_s"]
                results["runs"].append(r)
                outs[threads] = out
                print(
                    f"  threads={threads}: {r['wall_s']:6.1f} s  {r['docs_per_s']:8,.0f} docs/s  "
                    f"{r['mb_per_s']:6.1f} MB/s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
                    f"({r['documents']:,} docs, {r['rejected']} rejected, {r['tokens']:,} tokens)"
                )
            t1, t2 = results["runs"][-2], results["runs"][-1]
            identical = all(
                outs[1].with_suffix(s).read_bytes() == outs[2].with_suffix(s).read_bytes()
                for s in (".bin", ".idx", ".meta.json")
            )
            print(
                f"  speedup 2 threads / 1 thread: {t1['wall_s'] / t2['wall_s']:.2f}x; "
                f"outputs byte-identical: {identical}"
            )
            results.setdefault("speedup", {})[fmt] = t1["wall_s"] / t2["wall_s"]
            results.setdefault("identical", {})[fmt] = identical
            for t in (1, 2):
                for s in (".bin", ".idx", ".meta.json"):
                    outs[t].with_suffix(s).unlink()
            if fmt == "yaml":
                shutil.rmtree(src)
            else:
                src.unlink()

        sizes = [int(s) for s in args.sizes.split(",") if s]
        if sizes:
            print("\n[rss] peak RSS against corpus size (JSONL, 2 threads)")
            for n in sizes:
                src = scratch / f"rss-{n}.jsonl"
                size = write_jsonl(records, n, src)
                r = run_encode(src, scratch / "rss.bin", 2, tok_args)
                print(
                    f"  {n:>8,} docs  input {size / 1e6:8.1f} MB  peak RSS {r['peak_rss_mb']:6.0f} MB  "
                    f"({r['wall_s']:.1f} s)"
                )
                results.setdefault("rss", []).append({"docs": n, "input_mb": size / 1e6, **r})
                src.unlink()
                for s in (".bin", ".idx", ".meta.json"):
                    (scratch / "rss").with_suffix(s).unlink()
    finally:
        if not args.tmp:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
