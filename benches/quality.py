"""TCT against byte-level BPE at equal compute: one command, both arms, one report.

    PYTHONPATH=python python benches/quality.py --data ../shared/data/workflows/workflows.jsonl.gz \
        --preset tiny --steps 300 --samples 100 --docs 3000 --out runs/quality   # CPU, minutes
    python benches/quality.py --data CORPUS.jsonl.gz --preset small --steps 2000 --samples 200 \
        --device cuda --out runs/quality-small                                  # a GPU

What it does, in order:
1. Reads `--docs` workflows (JSONL(.gz) records with `json`, and `repo` when present) and splits
   them *by repository* (crc32 of `repo`, `--val-fraction` of the repositories; records without
   `repo` are their own group): near-identical versions of one workflow live in one repository,
   so a split by document would leak. Both arms get exactly these documents.
2. TCT: `tct-encode --tokenizer github-workflow` over each split. BPE: HF `tokenizers` byte-level
   BPE with 8,192 ids including `<pad> <bos> <eos>`, trained on the training split's compact JSON,
   written in the same shard format. Same vocabulary size, so the same parameter count (checked).
3. Trains the same GPTConfig (`--preset`, same steps, batch, context, seed) on each: equal FLOPs.
4. Evaluates each on its whole validation split: bits per byte of the same compact-JSON bytes
   (checked equal). For TCT also the masked, renormalised model's bits per byte
   (trainer.distortion.masked_nats: the likelihood the masked sampler uses).
5. Samples `--samples` documents from each at temperature 1 from BOS (TCT under the matcher, BPE
   unconstrained), and measures: parse (JSON), schema_valid (the tokenizer's embedded schema,
   Draft7Validator), complete (EOS before `--max-tokens`), lint_all / lint_semantic (actionlint,
   trainer.lint; unparsable samples fail), distinct (distinct documents / samples), novel
   (parsable samples that are not a training document / samples that parse). For TCT, the
   distortion of masked sampling (trainer.distortion). A third arm, BPE constrained by
   `llguidance` with the same schema, is not implemented; the report says so when the package is
   installed.
6. The reference row: actionlint over the real validation documents (the ceiling).

Writes `DIR/quality.json` (`{"arms": {"tct": A, "bpe": A}, "reference": {...}, ...}`, shares are
fractions in [0, 1]) and `DIR/quality.md`. `train_docs_seen` is the training tokens divided by the
mean tokens per training document (documents' worth of tokens the model read).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the numpy shard writer the tests use
from trainer import lint  # noqa: E402
from trainer.distortion import masked_nats, sample_distortion  # noqa: E402
from trainer.eval import canonical, check_samples, make_validator  # noqa: E402
from trainer.generate import Sample, generate, load_model  # noqa: E402
from trainer.kv_cache import KVCache  # noqa: E402
from trainer.metrics import device_name, read_metrics  # noqa: E402
from trainer.sampling import SamplingConfig, sample_next  # noqa: E402
from trainer.train import main as train_main  # noqa: E402
from trainer_shards import make_shard  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "workflows" / "workflows.jsonl.gz"
BPE_VOCAB = 8192
SPECIALS = ["<pad>", "<bos>", "<eos>"]  # ids 0, 1, 2


def read_docs(path: Path, n: int) -> list[tuple[str, str | None]]:
    """(compact JSON, repo or None) of the first `n` records (`n` <= 0: all)."""
    opener = gzip.open if path.suffix == ".gz" else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            doc = rec["json"] if isinstance(rec, dict) and "json" in rec else rec
            repo = rec.get("repo") if isinstance(rec, dict) else None
            docs.append((json.dumps(doc, separators=(",", ":"), ensure_ascii=False), repo))
            if len(docs) == n:
                break
    return docs


def split(docs: list[tuple[str, str | None]], val_fraction: float) -> tuple[list[str], list[str]]:
    """By repository (crc32 of `repo`; a record without one is its own group): deterministic, and
    no repository has documents on both sides."""

    def is_val(i: int, repo: str | None) -> bool:
        key = f"repo:{repo}" if repo is not None else f"doc:{i}"
        return zlib.crc32(key.encode()) / 2**32 < val_fraction

    train, val = [], []
    for i, (text, repo) in enumerate(docs):
        (val if is_val(i, repo) else train).append(text)
    return train, val


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
                # A small training split can stop BPE short of 8,192 merges: the ids above stay
                # unused, so both models keep the same shape (and parameter count).
                max(BPE_VOCAB, tok.get_vocab_size()),
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


def train_argv(data: Path, val: Path, out: Path, args: argparse.Namespace) -> list[str]:
    """trainer.train's flags for one arm: the same for both but for the data."""
    argv = ["--data", str(data), "--val-data", str(val), "--preset", args.preset]
    argv += ["--max-steps", str(args.steps), "--eval-every", "0", "--seed", str(args.seed)]
    argv += ["--eval-tokens", str(1 << 40), "--device", args.device, "--out", str(out)]
    argv += ["--no-progress", "--save-every", "0"]
    if args.sequence_len:
        argv += ["--sequence-len", str(args.sequence_len)]
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    return argv + shlex.split(args.trainer_args)


def final_record(out: Path, seconds: float) -> dict[str, Any]:
    final = [r for r in read_metrics(out / "metrics.jsonl") if "val_bpb" in r][-1]
    final["train_seconds"] = seconds
    return final


def train_arms(
    runs: dict[str, tuple[Path, Path, Path]], args: argparse.Namespace
) -> dict[str, Any]:
    """Train every arm: one after the other in this process, or (`--parallel`) side by side in
    subprocesses with one torch thread each, which on a 2-core CPU halves the wall time at the
    same compute per arm (two threads in one process were measured slower than one; see main)."""
    finals: dict[str, Any] = {}
    if not args.parallel:
        for name, (tr, va, run) in runs.items():
            print(f"--- training on {name} ---")
            t0 = time.perf_counter()
            code = train_main(train_argv(tr, va, run, args))
            if code != 0:
                raise SystemExit(f"training on {tr} failed with status {code}")
            finals[name] = final_record(run, time.perf_counter() - t0)
        return finals
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    procs = {}
    for name, (tr, va, run) in runs.items():
        run.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "trainer.train", *train_argv(tr, va, run, args)]
        log = open(run.parent / f"train-{name}.log", "w", encoding="utf-8")  # noqa: SIM115
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        print(f"--- training on {name} (log: {log.name}) ---")
    t0 = time.perf_counter()
    for name, (proc, log) in procs.items():
        code = proc.wait()
        log.close()
        if code != 0:
            raise SystemExit(f"training {name} failed with status {code}: see {log.name}")
        finals[name] = final_record(runs[name][2], time.perf_counter() - t0)
    return finals


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
    model = GPT(GPTConfig.from_dict(meta["model_config"]))
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


def lint_shares(parsed: list[Any]) -> dict[str, Any]:
    """actionlint pass shares over all samples: one that does not parse fails both."""
    docs = [d for d in parsed if d is not None]
    try:
        results = lint.lint_documents(docs)
    except lint.LintError as e:
        return {"lint_all": None, "lint_semantic": None, "lint_error": str(e)}
    n = len(parsed)
    summary = lint.summarize(results)
    return {
        "lint_all": sum(r.passes_all for r in results) / n if n else None,
        "lint_semantic": sum(r.passes_semantic for r in results) / n if n else None,
        "lint_kinds": summary["kinds"],
    }


def sample_report(samples: list[Sample], validator: Any, train_keys: set[str]) -> dict[str, Any]:
    checked = check_samples(samples, validator)
    parsed = checked.pop("parsed")
    keys = [canonical(d) for d in parsed if d is not None]
    n = len(samples)
    return {
        "n": n,
        "parse": checked["valid_json"],
        "schema_valid": checked["schema_valid"],
        "complete": checked["complete"],
        **lint_shares(parsed),
        "distinct": len(set(keys)) / n if n else None,
        "novel": sum(k not in train_keys for k in keys) / len(keys) if keys else None,
        "mean_tokens": float(np.mean([x.tokens for x in samples])) if samples else None,
    }


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def num(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown(report: dict[str, Any]) -> str:
    arms, ref = report["arms"], report["reference"]
    names = list(arms)
    head = " | ".join(names)
    lines = [
        f"# TCT vs byte-level BPE at equal compute ({report['preset']}, {report['steps']} steps)",
        "",
        f"{report['documents']['train']} training / {report['documents']['val']} validation "
        f"workflows split by repository; {report['machine']}; {report['seconds']:.0f} s"
        + (", arms trained side by side" if report.get("parallel") else "")
        + (f"; trainer flags `{report['trainer_args']}`" if report.get("trainer_args") else "")
        + ".",
        "",
        f"| | {head} | real workflows |",
        "| --- |" + " --- |" * (len(names) + 1),
    ]

    def row(label: str, get: Any, fmt: Any, ref_value: str = "") -> None:
        lines.append(
            f"| {label} | " + " | ".join(fmt(get(arms[a])) for a in names) + f" | {ref_value} |"
        )

    row("parameters", lambda a: a["params"], lambda x: f"{x / 1e6:.2f}M")
    row("training tokens", lambda a: a["train_tokens"], lambda x: f"{x:,}")
    row("training documents seen", lambda a: a["train_docs_seen"], lambda x: f"{x:,.0f}")
    row("validation bits per byte", lambda a: a["val_bpb"], num)
    row("validation bits per byte, masked", lambda a: a["val_bpb_masked"], num)
    row("training tokens/s", lambda a: a["tokens_per_s"], lambda x: f"{x:,.0f}")
    row("training seconds", lambda a: a["train_seconds"], lambda x: f"{x:,.0f}")
    row("samples", lambda a: a["samples"]["n"], str, str(ref["n"]))
    row("parse as JSON", lambda a: a["samples"]["parse"], pct)
    row("schema-valid", lambda a: a["samples"]["schema_valid"], pct)
    row("complete (EOS) before max tokens", lambda a: a["samples"]["complete"], pct)
    row("pass actionlint", lambda a: a["samples"]["lint_all"], pct, pct(ref["lint_all"]))
    row(
        "pass actionlint's semantic checks",
        lambda a: a["samples"]["lint_semantic"],
        pct,
        pct(ref["lint_semantic"]),
    )
    row("distinct", lambda a: a["samples"]["distinct"], pct)
    row("novel", lambda a: a["samples"]["novel"], pct)
    row(
        "mass on allowed ids (mean)",
        lambda a: (a["distortion"] or {}).get("feasible_mass_mean"),
        lambda x: num(x, ".3f"),
    )
    row(
        "unmasked argmax forbidden",
        lambda a: (a["distortion"] or {}).get("argmax_forbidden"),
        pct,
    )
    lines += [""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(CORPUS), help="corpus: JSONL(.gz) records with `json`")
    p.add_argument("--docs", type=int, default=3000, help="records read (0: all)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of repositories")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--sequence-len", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--max-tokens", type=int, default=512, help="ids per sample, both arms")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--trainer-args",
        default="",
        help="more trainer.train flags for both arms, e.g. '--optimizer muon --n-layer 6'",
    )
    p.add_argument(
        "--parallel",
        action="store_true",
        help="train the arms side by side (subprocesses, one torch thread each)",
    )
    p.add_argument("--out", default="runs/quality")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cpu":
        # One thread: on the shared 2-core box, two spinning OpenMP threads were measured 5x
        # slower for training (tests/test_trainer.py) and 19x slower for generation.
        torch.set_num_threads(1)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, val = split(read_docs(Path(args.data), args.docs), args.val_fraction)
    if not train or not val:
        raise SystemExit(f"{len(train)} training / {len(val)} validation documents: need both")
    print(f"{len(train)} training and {len(val)} validation documents from {args.data}")

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

    train_keys = {canonical(json.loads(d)) for d in train}
    val_docs = [json.loads(d) for d in val]
    arms: dict[str, Any] = {}
    validator = None
    configs = {}
    shards = {"tct": (tct_train, tct_val), "bpe": (bpe_train, bpe_val)}
    finals = train_arms({k: (tr, va, out / f"run-{k}") for k, (tr, va) in shards.items()}, args)
    for name in shards:
        run = out / f"run-{name}"
        final = finals[name]
        meta = json.loads(next(run.glob("meta_*.json")).read_text())
        configs[name] = meta["model_config"]
        tc = meta.get("train_config", {})
        train_tokens = int(final.get("tokens") or 0)
        per_doc = stats[name]["train"]["tokens"] / stats[name]["train"]["documents"]
        arm: dict[str, Any] = {
            "params": None,
            "train_tokens": train_tokens,
            "train_docs_seen": train_tokens / per_doc if per_doc else None,
            "val_bpb": final["val_bpb"],
            "val_bpb_masked": None,
            "tokens_per_s": final.get("tokens_per_s"),
            "batch_size": tc.get("batch_size"),
            "sequence_len": configs[name].get("sequence_len"),
            "train_seconds": final["train_seconds"],
            "distortion": None,
        }
        if name == "tct":
            lm = load_model(run, device=args.device)
            validator = make_validator(lm.tokenizer)
            arm["params"] = lm.model.num_params()
            shard = tct.read_shard(tct_val)
            m = masked_nats(lm, (shard.doc(i) for i in range(len(shard))))
            # Over the documents the matcher accepts (the others are impossible under the mask);
            # `val_bpb_same_pass` is the unmasked model on the same documents and windows.
            doc_bytes = shard.meta["documents"]["json_bytes"]
            scored_bytes = sum(int(doc_bytes[i]) for i in m["scored"])
            arm["val_bpb_masked"] = m["masked_nats"] / np.log(2) / scored_bytes
            arm["val_bpb_same_pass"] = m["nats"] / np.log(2) / scored_bytes
            arm["val_docs_outside_schema"] = len(m["skipped"])
            samples, _ = generate(
                lm, args.samples, SamplingConfig(), max_tokens=args.max_tokens, seed=args.seed
            )
            d = sample_distortion(lm, samples)
            arm["distortion"] = d
        else:
            samples = sample_bpe(run, bpe, args.samples, args.max_tokens, args.seed, args.device)
        arm["samples"] = sample_report(samples, validator, train_keys)
        arms[name] = arm
    if configs["tct"] != configs["bpe"]:
        raise SystemExit("the two models differ in shape: not a fair comparison")
    arms["bpe"]["params"] = arms["tct"]["params"]

    notes = []
    import importlib.util

    if importlib.util.find_spec("llguidance") is not None:
        notes.append("llguidance is installed, but the constrained-BPE arm is not implemented")
    else:
        notes.append("no constrained-BPE arm: llguidance is not installed")
    try:
        ref_summary = lint.lint_summary(val_docs)
    except lint.LintError as e:
        ref_summary = {"n": len(val_docs), "lint_all": None, "lint_semantic": None, "error": str(e)}
    reference = {k: ref_summary.get(k) for k in ("n", "lint_all", "lint_semantic", "kinds")}
    dev = torch.device(args.device if args.device != "auto" else "cpu")
    report = {
        "arms": arms,
        "reference": reference,
        "preset": args.preset,
        "steps": args.steps,
        "trainer_args": args.trainer_args,
        "parallel": args.parallel,
        "model": configs["tct"],
        "documents": {"train": len(train), "val": len(val)},
        "split": "by repository",
        "shards": stats,
        "machine": device_name(dev),
        "notes": notes,
        "seconds": time.perf_counter() - t0,
    }
    (out / "quality.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md = markdown(report)
    (out / "quality.md").write_text(md, encoding="utf-8")
    print(md)
    print(f"reports: {out / 'quality.json'}, {out / 'quality.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
