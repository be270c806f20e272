"""Evaluate a trained model: validation loss and bits per byte, then what its samples are worth.

    python -m trainer.eval --checkpoint runs/tiny --data out.val.bin --samples 200
    # -> runs/tiny/eval_report.json and runs/tiny/eval_report.md (--report-dir to put them elsewhere)

What the report holds:
- `val_loss`, `val_bpb`: trainer.validation_loss over every document of `--data` (exact bits per byte of
  the compact JSON, comparable across tokenizers).
- Unconditional samples (from BOS, `--samples N`, constrained by the matcher as in
  trainer.generate): the share that parse as JSON (`json.loads` of the text, independent of tct);
  the share that validate against the schema with python-jsonschema's Draft7Validator (an
  independent check of the matcher; format keywords are not checked, as in the corpus'
  `schema_valid`); the share complete (EOS) before `--max-tokens`. The schema is the one the
  tokenizer embeds (`Tokenizer.schema`), so nothing outside the installed package is needed;
  `--schema FILE` validates against another.
- actionlint (trainer.lint, the `eval` extra): for the samples and for the first
  `--reference-docs` real validation documents (the ceiling a model can aim at), the share
  passing all checks, the share passing the semantic ones, and the documents per error kind.
- Distortion of masked sampling (trainer.distortion): per sampled step, the unmasked softmax's
  mass on allowed ids (mean, p10, share below 0.5) and the share of steps whose unmasked argmax is
  forbidden.
- Diversity: distinct documents (canonical JSON) over samples, and distinct n-grams of the sampled
  ids (n = 1, 2, 4; distinct / total, pooled over samples). Novelty: the share of samples that are
  not a training document (canonical JSON against every document of the run's training
  selection, decoded from its shards; `--train-data` if they moved).
- Generation tokens/s and the matcher's cost per token (trainer.generate.GenerationStats).
- A few samples as YAML.
- The seed's three prompt tests, `--prompt-samples` each: a minimal prompt (`{"name": "CI", "on":
  "push", "jobs": {}}`), a complex prompt (a workflow with steps, actions and branches), and a
  prompt cut from a real validation document (its first job, half of that job's steps). For each:
  whether tct accepts the prompt, then the shares that parse, validate, complete, and *respect the
  prompt* (`respects_prompt`: every given value unchanged; only the open containers at the end of
  the prompt's last path have grown).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tct
from tct.shard import ShardError, read_shard

from . import lint
from .checkpoint import CheckpointError
from .data import BatchLoader, DataError, DocumentSet, TokenizerInfo, load_data
from .distortion import sample_distortion
from .generate import (
    LoadedModel,
    PromptError,
    Sample,
    generate,
    load_model,
    prompt_ids,
    set_cpu_threads,
)
from .sampling import SamplingConfig
from .validation_loss import validation_loss as score_validation
from .yaml_output import to_yaml

MINIMAL_PROMPT: dict[str, Any] = {"name": "CI", "on": "push", "jobs": {}}
# Written in the schema's canonical key order and ending inside `steps`, so that the open tail of
# its last path is jobs -> test -> steps: the model adds steps to `test`, then maybe more jobs.
COMPLEX_PROMPT: dict[str, Any] = {
    "name": "Build and release",
    "on": {
        "push": {"branches": ["main", "release/**"], "tags": ["v*"]},
        "pull_request": {"branches": ["main"]},
    },
    "env": {"PYTHONUNBUFFERED": "1"},
    "jobs": {
        "lint": {
            "runs-on": "ubuntu-latest",
            "steps": [{"uses": "actions/checkout@v4"}, {"run": "pipx run ruff check ."}],
        },
        "test": {
            "needs": "lint",
            "runs-on": "${{ matrix.os }}",
            "steps": [
                {"uses": "actions/checkout@v4"},
                {
                    "name": "Set up Python",
                    "uses": "actions/setup-python@v5",
                    "with": {"python-version": "3.12"},
                },
                {"name": "Install", "run": "pip install -e .[test]"},
            ],
        },
    },
}


# ---- checks on one document --------------------------------------------------------------------


def same_json(a: Any, b: Any) -> bool:
    """Value- and type-exact equality (1 != 1.0 != True), key order ignored."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def respects_prompt(doc: Any, prompt: Any) -> bool:
    """True if `doc` keeps every value `prompt` gives, and only extends the containers at the end
    of the prompt's last path (the rule of `Tokenizer.encode_prefix`). "Last" is in the document's
    key order, which is the schema's canonical order."""
    if isinstance(prompt, dict):
        if not isinstance(doc, dict) or not prompt.keys() <= doc.keys():
            return False
        order = [k for k in doc if k in prompt]
        # New keys may only follow the prompt's keys (entries added to an open map).
        if order and list(doc).index(order[-1]) != len(order) - 1:
            return False
        for k in order[:-1]:
            if not same_json(doc[k], prompt[k]):
                return False
        return not order or respects_prompt(doc[order[-1]], prompt[order[-1]])
    if isinstance(prompt, list):
        if not isinstance(doc, list) or len(doc) < len(prompt):
            return False
        if not all(
            same_json(d, p) for d, p in zip(doc[: len(prompt) - 1], prompt[:-1], strict=True)
        ):
            return False
        return not prompt or respects_prompt(doc[len(prompt) - 1], prompt[-1])
    return same_json(doc, prompt)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def make_validator(schema: Path | tct.Tokenizer) -> Any:
    """A Draft7Validator for a schema file, or for the schema a tokenizer embeds (with its
    registered schemas, so remote `$ref`s resolve offline)."""
    import jsonschema

    if isinstance(schema, tct.Tokenizer):
        registry = schema.registry
        if not registry:
            return jsonschema.Draft7Validator(schema.schema)
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7

        resources = [
            (uri, Resource.from_contents(doc, default_specification=DRAFT7))
            for uri, doc in registry.items()
        ]
        return jsonschema.Draft7Validator(
            schema.schema, registry=Registry().with_resources(resources)
        )
    try:
        value = json.loads(schema.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"--schema {schema}: {e}") from e
    return jsonschema.Draft7Validator(value)


def lint_report(docs: list[Any]) -> dict[str, Any]:
    """actionlint's summary of `docs` (trainer.lint), or why it could not run."""
    try:
        return lint.lint_summary(docs)
    except lint.LintError as e:
        return {"n": len(docs), "lint_all": None, "lint_semantic": None, "error": str(e)}


def reference_documents(lm: LoadedModel, val_spec: str, n: int) -> list[Any]:
    """The first `n` documents of the validation shard, decoded (the real-workflow ceiling)."""
    shard = read_shard(val_spec)
    docs = []
    for i in range(min(n, len(shard))):
        text, _, _ = lm.tokenizer.decode(shard.doc(i))
        docs.append(json.loads(text))
    return docs


def check_samples(samples: list[Sample], validator: Any) -> dict[str, Any]:
    """Parse, validate and count; also returns the parsed documents (None where unparsable)."""
    parsed: list[Any] = []
    n_json = n_valid = 0
    first_errors: list[str] = []
    for s in samples:
        try:
            doc = json.loads(s.document)
        except json.JSONDecodeError as e:
            parsed.append(None)
            first_errors.append(f"not JSON: {e}")
            continue
        parsed.append(doc)
        n_json += 1
        err = next(iter(validator.iter_errors(doc)), None)
        if err is None:
            n_valid += 1
        elif len(first_errors) < 5:
            first_errors.append(f"at /{'/'.join(map(str, err.absolute_path))}: {err.message[:200]}")
    n = len(samples)
    return {
        "samples": n,
        "valid_json": n_json / n if n else None,
        "schema_valid": n_valid / n if n else None,
        "complete": sum(not s.truncated for s in samples) / n if n else None,
        "errors": first_errors,
        "parsed": parsed,
    }


def distinct_ngrams(seqs: list[list[int]], n: int) -> float | None:
    seen: set[tuple[int, ...]] = set()
    total = 0
    for ids in seqs:
        for i in range(len(ids) - n + 1):
            seen.add(tuple(ids[i : i + n]))
            total += 1
    return len(seen) / total if total else None


# ---- the report ----------------------------------------------------------------------------------


def training_documents(lm: LoadedModel, train_data: str | None) -> tuple[set[str] | None, str]:
    """Canonical JSON of every training document (the run's own selection), or None and why."""
    tc = lm.meta.get("train_config", {})
    spec = train_data or tc.get("data")
    if not spec:
        return None, "no training data recorded in the checkpoint; pass --train-data"
    try:
        if train_data:
            data = load_data(train_data, None, 0.0)
        else:
            data = load_data(spec, tc.get("val_data"), float(tc.get("val_fraction", 0.0)))
    except (DataError, ShardError, OSError) as e:
        return None, f"training data {spec} unavailable ({e}); pass --train-data"
    if data.tokenizer.hash != lm.tokenizer.hash:
        return None, f"training data {spec} has another tokenizer ({data.tokenizer.hash})"
    docs: set[str] = set()
    for shard, sel in zip(data.train.shards, data.train.selection, strict=True):
        for i in sel.tolist():
            text, _, _ = lm.tokenizer.decode(shard.doc(i))
            docs.add(canonical(json.loads(text)))
    return docs, f"{len(docs)} distinct training documents from {spec}"


def open_validation_shard(lm: LoadedModel, val_spec: str) -> tuple[Any, TokenizerInfo]:
    """The --data shard and its tokenizer, which must be the model's (cheap: memory-mapped)."""
    shard = read_shard(val_spec)
    info = TokenizerInfo.from_shard(shard)
    if info.hash != lm.tokenizer.hash:
        raise DataError(
            f"{shard.path}: encoded with tokenizer {info.name!r} ({info.hash}), the model with "
            f"{lm.tokenizer.name!r} ({lm.tokenizer.hash})"
        )
    return shard, info


def validation_loss(lm: LoadedModel, val_spec: str, batch_size: int) -> dict[str, Any]:
    shard, info = open_validation_shard(lm, val_spec)
    docs = DocumentSet([shard], [np.arange(len(shard))])
    fmt = lm.meta.get("train_config", {}).get("window_format", "plain")
    loader = BatchLoader(
        docs,
        info,
        sequence_len=lm.model.config.sequence_len,
        batch_size=batch_size,
        window_format=fmt,
        device=lm.device,
    )
    result = score_validation(lm.model, loader, lm.autocast())
    result["val_json_bytes"] = docs.total_json_bytes
    return result


def cut_prompt(doc: Any) -> Any | None:
    """A prompt cut from a real workflow, as if its text were cut in the middle of its first job's
    steps: `doc` must be in the schema's canonical key order (as decoded by tct); the root keeps
    its keys up to `jobs`, `jobs` keeps its first job, that job its keys up to `steps`, and
    `steps` its first half (at least one). None if there is no job with two or more steps."""
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict) or not doc["jobs"]:
        return None
    name, job = next(iter(doc["jobs"].items()))
    if not isinstance(job, dict) or not isinstance(job.get("steps"), list) or len(job["steps"]) < 2:
        return None

    def up_to(d: dict[str, Any], last: str) -> dict[str, Any]:
        keys = list(d)
        return {k: d[k] for k in keys[: keys.index(last) + 1]}

    job = up_to(job, "steps")
    job["steps"] = job["steps"][: max(1, len(job["steps"]) // 2)]
    root = up_to(doc, "jobs")
    root["jobs"] = {name: job}
    return root


def prompt_test(
    lm: LoadedModel, name: str, prompt: Any, n: int, validator: Any, args: argparse.Namespace
) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "prompt": prompt}
    try:
        ids = prompt_ids(lm.tokenizer, prompt)
    except PromptError as e:
        result.update(accepted=False, error=str(e))
        return result
    samples, stats = generate(
        lm,
        n,
        sampling_config(args),
        max_tokens=args.max_tokens,
        seed=args.seed + 1,
        batch_size=args.batch_size,
        prompt=ids,
    )
    checked = check_samples(samples, validator)
    parsed = checked.pop("parsed")
    respected = sum(d is not None and respects_prompt(d, prompt) for d in parsed)
    result.update(
        accepted=True,
        prompt_tokens=len(ids),
        **checked,
        respects_prompt=respected / n if n else None,
        tokens_per_s=stats.tokens_per_s,
        mask_us_per_token=stats.mask_us_per_token,
        example_yaml=to_yaml(parsed[0]) if parsed and parsed[0] is not None else None,
    )
    return result


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    return SamplingConfig(args.temperature, args.top_k, args.top_p)


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    # Options are checked in the order --help lists them: the checkpoint, --data, --schema,
    # then --threads; a wrong --data is reported before the schema is read or anything runs.
    lm = load_model(args.checkpoint, args.tokenizer, args.device, args.dtype)
    open_validation_shard(lm, args.data)
    validator = make_validator(Path(args.schema) if args.schema else lm.tokenizer)
    set_cpu_threads(args.threads)
    report: dict[str, Any] = {
        "checkpoint": str(lm.model_path),
        "step": lm.meta.get("step"),
        "model": {
            "parameters": lm.model.num_params(),
            "config": lm.meta.get("model_config"),
        },
        "tokenizer": {"name": lm.tokenizer.name, "hash": lm.tokenizer.hash},
        "device": str(lm.device),
        "machine": machine_name(lm.device),
        "schema": str(args.schema) if args.schema else f"embedded in {lm.tokenizer.name}",
        "sampling": {
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "max_tokens": args.max_tokens,
            "seed": args.seed,
            "batch_size": args.batch_size,
        },
    }
    report["validation"] = validation_loss(lm, args.data, args.eval_batch_size)

    samples, stats = generate(
        lm,
        args.samples,
        sampling_config(args),
        max_tokens=args.max_tokens,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    checked = check_samples(samples, validator)
    parsed = checked.pop("parsed")
    keys = [canonical(d) for d in parsed if d is not None]
    train_docs, train_note = training_documents(lm, args.train_data)
    report["samples"] = {
        **checked,
        "mean_tokens": float(np.mean([s.tokens for s in samples])) if samples else None,
        "distinct_documents": len(set(keys)) / len(samples) if samples else None,
        "distinct_1grams": distinct_ngrams([s.ids for s in samples], 1),
        "distinct_2grams": distinct_ngrams([s.ids for s in samples], 2),
        "distinct_4grams": distinct_ngrams([s.ids for s in samples], 4),
        "novel": (sum(k not in train_docs for k in keys) / len(keys))
        if train_docs is not None and keys
        else None,
        "novelty_reference": train_note,
        "lint": lint_report(
            [d if d is not None else s.document for d, s in zip(parsed, samples, strict=True)]
        ),
        "distortion": sample_distortion(lm, samples) if args.distortion else None,
        "generation": stats.summary(),
        "yaml_examples": [to_yaml(d) for d in parsed[: args.yaml_samples] if d is not None],
    }

    tests = [
        prompt_test(lm, "minimal", MINIMAL_PROMPT, args.prompt_samples, validator, args),
        prompt_test(lm, "complex", COMPLEX_PROMPT, args.prompt_samples, validator, args),
    ]
    real = real_prompt(lm, args.data)
    if real is None:
        tests.append(
            {
                "name": "real",
                "accepted": False,
                "error": "no validation document "
                "with a job of two or more steps that tct accepts as a prompt",
            }
        )
    else:
        tests.append(prompt_test(lm, "real", real, args.prompt_samples, validator, args))
    report["prompt_tests"] = tests
    report["reference"] = lint_report(reference_documents(lm, args.data, args.reference_docs))
    report["seconds"] = time.perf_counter() - t0
    return report


def real_prompt(lm: LoadedModel, val_spec: str) -> Any | None:
    """The first validation document whose cut (`cut_prompt`) tct accepts as a prompt."""
    shard = read_shard(val_spec)
    for i in range(len(shard)):
        text, _, _ = lm.tokenizer.decode(shard.doc(i))
        prompt = cut_prompt(json.loads(text))
        if prompt is None:
            continue
        try:
            prompt_ids(lm.tokenizer, prompt)
        except PromptError:
            continue
        return prompt
    return None


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def markdown(report: dict[str, Any]) -> str:
    v, s, g = report["validation"], report["samples"], report["samples"]["generation"]
    cfg = report["model"]["config"] or {}
    lines = [
        f"# Evaluation of `{report['checkpoint']}` (step {report['step']})",
        "",
        f"Model: {report['model']['parameters'] / 1e6:.2f}M parameters "
        f"({cfg.get('n_embd')} d x {cfg.get('n_layer')} layers x {cfg.get('n_head')} heads, "
        f"context {cfg.get('sequence_len')}); tokenizer `{report['tokenizer']['name']}` "
        f"({report['tokenizer']['hash']}); machine: {report['machine']}.",
        f"Sampling: {json.dumps(report['sampling'])}. Schema: `{report['schema']}`.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| validation loss (nats/token) | {_num(v['val_loss'])} |",
        f"| validation bits per byte | {_num(v['val_bpb'])} |",
        f"| validation documents / tokens | {v['val_docs']} / {v['val_tokens']} |",
        f"| samples | {s['samples']} |",
        f"| valid JSON (`json.loads`) | {_pct(s['valid_json'])} |",
        f"| schema-valid (jsonschema Draft7Validator) | {_pct(s['schema_valid'])} |",
        f"| complete before --max-tokens | {_pct(s['complete'])} |",
        f"| mean tokens per sample | {_num(s['mean_tokens'], '.1f')} |",
        f"| distinct documents | {_pct(s['distinct_documents'])} |",
        f"| distinct 1-/2-/4-grams of ids | {_pct(s['distinct_1grams'])} / "
        f"{_pct(s['distinct_2grams'])} / {_pct(s['distinct_4grams'])} |",
        f"| novel (not a training document) | {_pct(s['novel'])} ({s['novelty_reference']}) |",
        f"| generation tokens/s | {g['tokens_per_s']:,.0f} |",
        f"| matcher cost per token | {g['mask_us_per_token']:.1f} us |",
        "",
    ]
    lines += lint_lines(s["lint"], report.get("reference"))
    lines += distortion_lines(s.get("distortion"))
    if s["errors"]:
        lines += ["Failures (first few):", ""] + [f"- {e}" for e in s["errors"]] + [""]
    lines += [
        "## Prompt tests",
        "",
        "| prompt | accepted | samples | JSON | schema-valid | complete | respects prompt |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in report["prompt_tests"]:
        if t["accepted"]:
            lines.append(
                f"| {t['name']} | yes ({t['prompt_tokens']} ids) | {t['samples']} | "
                f"{_pct(t['valid_json'])} | {_pct(t['schema_valid'])} | {_pct(t['complete'])} | "
                f"{_pct(t['respects_prompt'])} |"
            )
        else:
            lines.append(f"| {t['name']} | no: {t['error']} | | | | | |")
    for t in report["prompt_tests"]:
        lines += ["", f"### {t['name']} prompt", "", "```json", json.dumps(t["prompt"]), "```"]
        if t.get("example_yaml"):
            lines += ["", "A sample:", "", "```yaml", t["example_yaml"].rstrip("\n"), "```"]
    lines += ["", "## Samples (from BOS)", ""]
    for y in s["yaml_examples"]:
        lines += ["```yaml", y.rstrip("\n"), "```", ""]
    return "\n".join(lines) + "\n"


def lint_lines(samples: dict[str, Any], reference: dict[str, Any] | None) -> list[str]:
    """The actionlint table: samples against real validation workflows."""
    cols = [("samples", samples)] + ([("real workflows", reference)] if reference else [])
    lines = ["## actionlint", ""]
    for name, r in cols:
        if r.get("error"):
            lines += [f"{name}: not linted ({r['error']})", ""]
    lines += [
        "| | " + " | ".join(name for name, _ in cols) + " |",
        "| --- |" + " --- |" * len(cols),
        "| documents | " + " | ".join(str(r["n"]) for _, r in cols) + " |",
        "| pass all checks | " + " | ".join(_pct(r["lint_all"]) for _, r in cols) + " |",
        "| pass the semantic checks | "
        + " | ".join(_pct(r["lint_semantic"]) for _, r in cols)
        + " |",
    ]
    kinds = sorted({k for _, r in cols for k in r.get("kinds", {})})
    for k in kinds:
        tag = "" if not lint.is_semantic(k) else " (semantic)"
        counts = " | ".join(
            _pct(r["kinds"].get(k, 0) / r["n"]) if r["n"] and "kinds" in r else "n/a"
            for _, r in cols
        )
        lines.append(f"| documents with `{k}`{tag} | {counts} |")
    return lines + [""]


def distortion_lines(d: dict[str, Any] | None) -> list[str]:
    if not d or not d.get("steps"):
        return []
    return [
        "## Distortion of masked sampling",
        "",
        f"Over {d['steps']} sampled steps, from the model's unmasked softmax:",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| probability mass on allowed ids, mean | {_num(d['feasible_mass_mean'], '.3f')} |",
        f"| probability mass on allowed ids, p10 | {_num(d['feasible_mass_p10'], '.3f')} |",
        f"| steps with allowed mass below 0.5 | {_pct(d['below_half'])} |",
        f"| steps whose unmasked argmax is forbidden | {_pct(d['argmax_forbidden'])} |",
        "",
    ]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer.eval",
        description="Validation loss/bpb and sample quality of a checkpoint (see the docstring).",
    )
    p.add_argument("--checkpoint", required=True, help="run directory or model_NNNNNN.pt")
    p.add_argument("--data", required=True, help="validation shard (tct-encode output)")
    p.add_argument("--samples", type=int, default=200, help="unconditional samples")
    p.add_argument("--prompt-samples", type=int, default=20, help="samples per prompt test")
    p.add_argument(
        "--schema", help="schema file for jsonschema validation (default: the tokenizer's own)"
    )
    p.add_argument(
        "--reference-docs",
        type=int,
        default=1000,
        help="validation documents linted as the real-workflow reference",
    )
    p.add_argument(
        "--no-distortion",
        dest="distortion",
        action="store_false",
        help="skip the replay of samples that measures the mask's distortion",
    )
    p.add_argument("--train-data", help="training shard(s) for novelty (default: the run's)")
    p.add_argument("--report-dir", help="where the reports go (default: beside the checkpoint)")
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="samples generated in parallel")
    p.add_argument("--eval-batch-size", type=int, default=8, help="windows per validation batch")
    p.add_argument("--yaml-samples", type=int, default=3, help="samples shown as YAML")
    p.add_argument("--tokenizer", help="tokenizer name or file (default: the checkpoint's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (trainer.generate)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run_eval(args)
    except (CheckpointError, DataError, ShardError, PromptError, tct.TctError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.report_dir) if args.report_dir else Path(report["checkpoint"]).parent
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "eval_report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    md = markdown(report)
    _write_atomic(out / "eval_report.md", md)
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(md.split("## Prompt tests")[0])
        print(f"reports: {out / 'eval_report.json'}, {out / 'eval_report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
