"""TCT against byte-level BPE: the same GPT, parameter count, steps and documents, two tokenizers.

    PYTHONPATH=python python benches/compare_bpe.py                       # CPU, tiny: a few minutes
    PYTHONPATH=python python benches/compare_bpe.py --preset small --docs 20000 --max-steps 2000 \\
        --device cuda --out runs/compare-small                           # a GPU

What it does, in order:
1. Reads `--docs` workflows from the development corpus as compact JSON and splits them by a hash
   of their position into train and validation (`--val-fraction`); both tokenizers get exactly
   these documents.
2. TCT: `tct-encode --tokenizer github-workflow` over each split. BPE: HF `tokenizers` byte-level
   BPE (GPT-2 pre-tokenizer) with a vocabulary of 8,192 including `<pad> <bos> <eos>`, trained on
   the training split only, written in the same shard format (tests/trainer_shards.make_shard).
   Both vocabularies are 8,192, so both models have the same parameter count (checked).
3. Trains both with `trainer.train` (same preset, flags, seed and steps) and evaluates each on its
   whole validation split: bits per byte of the same compact-JSON bytes (checked equal), so the
   two numbers compare directly.
4. Samples `--samples` documents from each model at temperature 1 from BOS: the BPE model
   *without* any mask (what a plain BPE model gives), TCT under its matcher (trainer.generate).
   Reports the share that parse as JSON and the share valid against the schema (jsonschema
   Draft7Validator), and the share complete (EOS) before `--max-tokens`.

The result goes to stdout as a Markdown table and to `--out/compare_bpe.json`, with the device and
model named. A tiny model trained for a hundred steps is far from converged: the comparison is
small but honest (same budget for both); scale it with --preset small on a GPU.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the numpy shard writer the tests use
from trainer.eval import DEFAULT_SCHEMA, check_samples, make_validator  # noqa: E402
from trainer.generate import Sample, generate, load_model  # noqa: E402
from trainer.kv_cache import KVCache  # noqa: E402
from trainer.metrics import device_name, read_metrics  # noqa: E402
from trainer.sampling import SamplingConfig, sample_next  # noqa: E402
from trainer.train import main as train_main  # noqa: E402
from trainer_shards import make_shard  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "workflows" / "workflows.jsonl.gz"
BPE_VOCAB = 8192
SPECIALS = ["<pad>", "<bos>", "<eos>"]  # ids 0, 1, 2


def read_docs(path: Path, n: int) -> list[str]:
    docs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            docs.append(json.dumps(rec["json"], separators=(",", ":"), ensure_ascii=False))
            if len(docs) == n:
                break
    return docs


def split(docs: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic by position (crc32), so every run and both tokenizers get the same split."""
    is_val = [zlib.crc32(str(i).encode()) / 2**32 < val_fraction for i in range(len(docs))]
    return [d for d, v in zip(docs, is_val, strict=True) if not v], [
        d for d, v in zip(docs, is_val, strict=True) if v
    ]


def tct_shards(train: list[str], val: list[str], out: Path) -> tuple[Path, Path]:
    paths = []
    for name, docs in (("train", train), ("val", val)):
        src = out / f"{name}.jsonl"
        src.write_text("".join(d + "\n" for d in docs), encoding="utf-8")
        shard = out / f"tct-{name}.bin"
        cmd = [sys.executable, "-m", "tct.cli_encode", str(src), str(shard)]
        cmd += ["--tokenizer", "github-workflow", "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"tct-encode failed on {src}: {proc.stderr}")
        paths.append(shard)
    return paths[0], paths[1]


def train_bpe(train: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train, trainer)
    return tok


def bpe_shards(tok: Any, train: list[str], val: list[str], out: Path) -> tuple[Path, Path]:
    paths = []
    for name, docs in (("train", train), ("val", val)):
        ids = [np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(docs)]
        paths.append(
            make_shard(
                out / f"bpe-{name}.bin",
                ids,
                tok.get_vocab_size(),
                [len(d.encode("utf-8")) for d in docs],
                pad_id=0,
                bos_id=1,
                eos_id=2,
                tokenizer_name="bpe-bytelevel-8192",
                tokenizer_hash="bpe-" + str(zlib.crc32(tok.to_str().encode())),
                split_kind=name,
            )
        )
    return paths[0], paths[1]


def shard_stats(path: Path) -> dict[str, Any]:
    import tct

    s = tct.read_shard(path)
    lengths = np.diff(s.offsets) - 2  # without BOS/EOS
    return {
        "documents": len(s),
        "tokens": int(lengths.sum()),
        "json_bytes": int(sum(s.meta["documents"]["json_bytes"])),
        "tokens_per_doc_mean": float(lengths.mean()),
        "tokens_per_doc_median": float(np.median(lengths)),
    }


def train_one(data: Path, val: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    argv = ["--data", str(data), "--val-data", str(val), "--preset", args.preset]
    argv += ["--max-steps", str(args.max_steps), "--eval-every", "0", "--seed", str(args.seed)]
    argv += ["--eval-tokens", str(1 << 40), "--device", args.device, "--out", str(out)]
    argv += ["--no-progress", "--save-every", "0"]
    if args.sequence_len:
        argv += ["--sequence-len", str(args.sequence_len)]
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    t0 = time.perf_counter()
    code = train_main(argv)
    if code != 0:
        raise SystemExit(f"training on {data} failed with status {code}")
    final = [r for r in read_metrics(out / "metrics.jsonl") if "val_bpb" in r][-1]
    final["train_seconds"] = time.perf_counter() - t0
    return final


@torch.no_grad()
def sample_bpe(
    run: Path, tok: Any, n: int, max_tokens: int, seed: int, device: str
) -> list[Sample]:
    """Unconstrained samples: every id allowed except PAD and BOS; EOS ends a sample."""
    from trainer import checkpoint
    from trainer.model import GPT, GPTConfig

    step = checkpoint.latest(run)
    assert step is not None
    meta = json.loads(checkpoint.paths(run, step)["meta"].read_text())
    dev = torch.device(
        device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    model = GPT(GPTConfig(**meta["model_config"]))
    state = torch.load(checkpoint.paths(run, step)["model"], map_location=dev, weights_only=True)
    model.load_state_dict(state)
    model.to(dev).eval()
    V = model.config.vocab_size
    gen = torch.Generator(device=dev).manual_seed(seed)
    cache = KVCache(model.config, n, dev)
    logits = model(torch.full((n, 1), 1, dtype=torch.long, device=dev), cache=cache)[:, -1]
    allowed = torch.ones((n, V), dtype=torch.bool, device=dev)
    allowed[:, 0] = allowed[:, 1] = False
    ids: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    for _ in range(max_tokens):
        nxt = sample_next(logits, allowed, SamplingConfig(), gen)
        for r, t in enumerate(nxt.tolist()):
            if not done[r]:
                if t == 2:
                    done[r] = True
                else:
                    ids[r].append(t)
        if all(done):
            break
        # Finished rows keep running (simple lockstep); their draws are ignored.
        logits = model(nxt[:, None], cache=cache)[:, -1]
    return [Sample(tok.decode(ids[r]), not done[r], ids[r]) for r in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=str(CORPUS))
    p.add_argument("--docs", type=int, default=1000, help="documents read from the corpus")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--sequence-len", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--max-tokens", type=int, default=512, help="ids per sample, both tokenizers")
    p.add_argument("--schema", default=str(DEFAULT_SCHEMA))
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/compare-bpe")
    args = p.parse_args(argv)
    if args.device == "cpu":
        # One thread: on the shared 2-core box, two spinning OpenMP threads were measured 5x
        # slower for training (tests/test_trainer.py) and 19x slower for generation.
        torch.set_num_threads(1)

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    docs = read_docs(Path(args.corpus), args.docs)
    train, val = split(docs, args.val_fraction)
    print(f"{len(train)} training and {len(val)} validation documents from {args.corpus}")

    tct_train, tct_val = tct_shards(train, val, out)
    bpe = train_bpe(train)
    bpe.save(str(out / "bpe-tokenizer.json"))
    bpe_train, bpe_val = bpe_shards(bpe, train, val, out)
    stats = {
        "tct": {"train": shard_stats(tct_train), "val": shard_stats(tct_val)},
        "bpe": {"train": shard_stats(bpe_train), "val": shard_stats(bpe_val)},
    }
    for part in ("train", "val"):
        a, b = stats["tct"][part]["json_bytes"], stats["bpe"][part]["json_bytes"]
        if a != b:
            raise SystemExit(f"{part}: TCT counts {a} JSON bytes, BPE {b}: not the same documents")

    results: dict[str, Any] = {}
    validator = make_validator(Path(args.schema))
    for name, (tr, va) in {"tct": (tct_train, tct_val), "bpe": (bpe_train, bpe_val)}.items():
        print(f"--- training on {name} ---")
        final = train_one(tr, va, out / f"run-{name}", args)
        lm = load_model(out / f"run-{name}", device=args.device) if name == "tct" else None
        t_s = time.perf_counter()
        if lm is not None:
            samples, _ = generate(
                lm, args.samples, SamplingConfig(), max_tokens=args.max_tokens, seed=args.seed
            )
            params = lm.model.num_params()
        else:
            samples = sample_bpe(
                out / f"run-{name}", bpe, args.samples, args.max_tokens, args.seed, args.device
            )
            params = None
        checked = check_samples(samples, validator)
        checked.pop("parsed")
        results[name] = {
            "val_bpb": final["val_bpb"],
            "val_loss": final["val_loss"],
            "train_loss": final["train_loss"],
            "train_seconds": final["train_seconds"],
            "tokens_per_s": final["tokens_per_s"],
            "sampling_seconds": time.perf_counter() - t_s,
            "params": params,
            **{k: checked[k] for k in ("samples", "valid_json", "schema_valid", "complete")},
            "masked": name == "tct",
            **stats[name],
        }
    # Same architecture and vocabulary size: the same parameter count.
    bpe_meta = json.loads(next((out / "run-bpe").glob("meta_*.json")).read_text())
    tct_meta = json.loads(next((out / "run-tct").glob("meta_*.json")).read_text())
    if bpe_meta["model_config"] != tct_meta["model_config"]:
        raise SystemExit("the two models differ in shape: not a fair comparison")
    results["bpe"]["params"] = results["tct"]["params"]

    report = {
        "device": device_name(torch.device(args.device if args.device != "auto" else "cpu")),
        "model": tct_meta["model_config"],
        "preset": args.preset,
        "steps": args.max_steps,
        "documents": {"train": len(train), "val": len(val)},
        "results": results,
        "seconds": time.perf_counter() - t0,
    }
    (out / "compare_bpe.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    t, b = results["tct"], results["bpe"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    print(
        f"\nTCT vs byte-level BPE: {args.preset} preset ({t['params'] / 1e6:.2f}M parameters each), "
        f"{args.max_steps} steps, {len(train)} training / {len(val)} validation workflows, "
        f"{report['device']}\n"
    )
    print("| | TCT (github-workflow, 8192) | byte-level BPE (8192) |")
    print("| --- | --- | --- |")
    print(f"| validation bits per byte | {t['val_bpb']:.4f} | {b['val_bpb']:.4f} |")
    print(f"| validation loss (nats/token) | {t['val_loss']:.4f} | {b['val_loss']:.4f} |")
    print(
        f"| tokens per document (mean / median) | {t['val']['tokens_per_doc_mean']:.0f} / "
        f"{t['val']['tokens_per_doc_median']:.0f} | {b['val']['tokens_per_doc_mean']:.0f} / "
        f"{b['val']['tokens_per_doc_median']:.0f} |"
    )
    print(f"| samples | {t['samples']} (masked) | {b['samples']} (no mask) |")
    print(f"| samples that parse as JSON | {pct(t['valid_json'])} | {pct(b['valid_json'])} |")
    print(
        f"| samples valid against the schema | {pct(t['schema_valid'])} | {pct(b['schema_valid'])} |"
    )
    print(
        f"| samples complete before {args.max_tokens} ids | {pct(t['complete'])} | {pct(b['complete'])} |"
    )
    print(f"\nreport: {out / 'compare_bpe.json'} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
