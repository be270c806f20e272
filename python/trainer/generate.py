"""Sample documents from a trained model, constrained by the tokenizer's matcher: every sample is a
valid document.

    # 20 workflows from scratch (BOS), printed as YAML, saved as JSON lines:
    python -m trainer.generate --checkpoint runs/tiny --num-samples 20 --format yaml --out samples.jsonl
    # continue a partial workflow: "write the jobs of this workflow"
    python -m trainer.generate --checkpoint runs/tiny --prompt '{"name": "CI", "on": "push", "jobs": {}}'
    python -m trainer.generate --checkpoint runs/tiny/model_000200.pt --prompt-file partial.json \\
        --temperature 0.8 --top-k 50 --top-p 0.95 --seed 7 --max-tokens 512

How a sample is made. The model reads BOS (plus the prompt's ids, if any). At every step the logits
of the ids the matcher does not allow are set to -inf, then temperature, top-k and top-p apply
(sampling.py), so the drawn id always keeps the document valid. EOS is allowed only once the
document is complete, and drawing it ends the sample. A sample that reaches `--max-tokens` (ids
drawn after the prompt, EOS included) is closed with the smallest valid completion
(`Matcher.document(complete=True)`) and flagged `truncated`. Samples run in batches of
`--batch-size` in lockstep with a KV cache (kv_cache.py); finished rows leave the batch.

The prompt rule. A prompt is a *partial document* (JSON) that conforms to the schema. It is kept
exactly as given, and the arrays and maps on its last path (the root's last value, that value's last
value, ...) stay open, so the model continues inside the innermost of them (`Tokenizer.
encode_prefix`). Keys are in the schema's canonical order, so "last" means last in that order: in
a workflow, `jobs` comes last, so `{"name": "CI", "on": "push", "jobs": {...}}` leaves `jobs` open
and the model writes (more) jobs. Objects with named properties are decided up front, so the model
cannot add properties to an object the prompt spells out; it can add entries to open maps and items
to open arrays. A prompt that does not conform to the schema is an error that names where.

Output. `--out FILE` gets one JSON object per line: `document` (the JSON value), `truncated`
(closed at --max-tokens), `tokens` (ids drawn after the prompt, EOS included), `ids` (those ids,
EOS excluded). It is written atomically. The documents also go to stdout as `--format json` or
`yaml` (unless --quiet), and the speed to stderr: tokens/s (all of generation: forward passes,
masking, sampling) and the matcher's cost per drawn id (`allowed()` to build the mask plus
`advance()`), in microseconds.

`--checkpoint` takes a training output directory (its latest complete checkpoint) or one
`model_NNNNNN.pt` (its `meta_NNNNNN.json` must sit beside it). The tokenizer is the one the
checkpoint names (bundled) or `--tokenizer NAME_OR_FILE`; its hash must equal the checkpoint's.
Exit status 2 for a missing, corrupt or mismatched checkpoint and for a bad prompt or option.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import tct

# Checkpoint loading lives in checkpoint.py; its names stay importable from here.
from .checkpoint import (  # noqa: F401
    CheckpointError,
    LoadedModel,
    TokenizerMismatchError,
    load_model,
    load_tokenizer_for,
    resolve_checkpoint,
)
from .kv_cache import KVCache
from .sampling import SamplingConfig, sample_masked
from .yaml_output import to_json, to_yaml

# ---- prompts -------------------------------------------------------------------------------------


class PromptError(ValueError):
    """A prompt that is not JSON or does not conform to the schema; the message says where."""


def prompt_ids(tok: tct.Tokenizer, prompt: Any) -> list[int]:
    """Ids of a partial document (see the module docstring); `prompt` is JSON text or a value."""
    if isinstance(prompt, str):
        if len(prompt) > MAX_PROMPT_BYTES:
            raise PromptError(
                f"prompt: {len(prompt):,} characters, more than the {MAX_PROMPT_BYTES:,} accepted"
            )
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError as e:
            raise PromptError(f"prompt: not JSON: {e}") from e
    try:
        return tok.encode_prefix(prompt)
    except tct.EncodeError as e:
        where = e.pointer or "/ (the root)"
        raise PromptError(f"prompt: at {where}: {e}") from e


# ---- generation ----------------------------------------------------------------------------------


@dataclass
class Sample:
    document: str  # JSON text from the matcher
    truncated: bool  # reached max_tokens and was closed by the smallest completion
    ids: list[int]  # ids drawn after the prompt, EOS excluded

    @property
    def tokens(self) -> int:
        return len(self.ids) + (0 if self.truncated else 1)

    def record(self) -> dict[str, Any]:
        try:
            doc: Any = json.loads(self.document)
        except json.JSONDecodeError as e:  # cannot happen for matcher output; say so if it does
            return {
                "document": None,
                "error": f"not JSON: {e}",
                "text": self.document,
                "truncated": self.truncated,
                "tokens": self.tokens,
                "ids": self.ids,
            }
        return {
            "document": doc,
            "truncated": self.truncated,
            "tokens": self.tokens,
            "ids": self.ids,
        }


@dataclass
class GenerationStats:
    samples: int = 0
    tokens: int = 0  # ids drawn (EOS included)
    seconds: float = 0.0  # wall time of the whole generation
    mask_seconds: float = 0.0  # matcher: allowed() + mask assembly + advance()
    truncated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def mask_us_per_token(self) -> float:
        return 1e6 * self.mask_seconds / self.tokens if self.tokens else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
            "mask_us_per_token": self.mask_us_per_token,
            "truncated": self.truncated,
        }


class NonFiniteLogitsError(ValueError):
    """The model produced NaN logits (a diverged or corrupt checkpoint); the message names it."""


#: The longest prompt accepted, in ids (the matcher consumes all of it; the model reads only the
#: last context window). Past it, PromptError: a 10 MB prompt took minutes and 1.65 GB before.
MAX_PROMPT_IDS = 1 << 20
#: The longest prompt text accepted, in bytes (checked before parsing).
MAX_PROMPT_BYTES = 8 << 20


@torch.no_grad()
def generate(
    lm: LoadedModel,
    num_samples: int,
    sampling: SamplingConfig,
    *,
    max_tokens: int,
    seed: int,
    batch_size: int = 64,
    prompt: list[int] | None = None,
    rules: bool = False,
    budget: bool = False,
    stream: Callable[[int, str], None] | None = None,
) -> tuple[list[Sample], GenerationStats]:
    """`num_samples` documents, in batches; the same arguments give the same samples on the same
    device.

    With `budget`, every matcher gets the token budget `max_tokens`
    (`Matcher.set_budget`): ids after which the smallest valid completion no longer fits are
    masked, so a sample ends by EOS within `max_tokens` whenever a document fits at all (else it
    is closed by the smallest completion and flagged truncated, as without a budget).
    `stream(step, partial_json)` is called for the first sample after each of its ids with
    `Matcher.partial_document()`."""
    if num_samples < 0 or max_tokens < 1 or batch_size < 1:
        raise ValueError("num_samples >= 0, max_tokens >= 1 and batch_size >= 1 are required")
    tok, model, dev = lm.tokenizer, lm.model, lm.device
    prompt = list(prompt or [])
    if len(prompt) > MAX_PROMPT_IDS:
        raise PromptError(f"prompt: {len(prompt):,} ids, more than the {MAX_PROMPT_IDS:,} accepted")
    # `rules=True`: the tokenizer's rules overlay narrows the schema's mask (see Tokenizer.rules).
    base = tok.matcher(rules=True) if rules else tok.matcher(rules=False)
    for i, t in enumerate(prompt):
        if not base.accept_token(t):
            raise PromptError(f"prompt id {t} at {i} is not accepted by the matcher")
    budgeted = False
    if budget:
        try:
            base.set_budget(max_tokens)
            budgeted = True
        except tct.DecodeError:
            pass  # no valid completion fits: sample unbounded, close at max_tokens (truncated)
    # The model reads only the last context window of a long prompt (the matcher has all of it).
    prefix = (lm.start_ids + prompt)[-model.config.sequence_len :]
    V_tok, eos = tok.vocab_size, tok.eos_id
    generator = torch.Generator(device=dev).manual_seed(seed)
    stats = GenerationStats()
    stats.extra["budget"] = budgeted
    stats.extra["budget_cut_steps"] = 0
    samples: list[Sample] = []
    t_start = time.perf_counter()
    for first in range(0, num_samples, batch_size):
        b = min(batch_size, num_samples - first)
        matchers = [base.fork() for _ in range(b)]
        ids: list[list[int]] = [[] for _ in range(b)]
        finished = [False] * b
        cache = KVCache(model.config, b, dev, lm.dtype)
        x = torch.tensor([prefix] * b, dtype=torch.long, device=dev)  # (b, P)
        chunk = max(1, cache.capacity // 2)  # a prompt longer than the context goes in pieces
        with lm.autocast():
            for s in range(0, x.size(1), chunk):
                logits = model(x[:, s : s + chunk], cache=cache)[:, -1]  # (b, V)
        rows = list(range(b))  # sample index of each row still in the batch
        bitmask = tct.allocate_token_bitmask(b, V_tok)  # (b, ceil(V_tok / 32)) int32, CPU
        for step in range(max_tokens):
            t0 = time.perf_counter()
            R = len(rows)
            # The mask of every row, filled in parallel in Rust with the GIL released.
            tct.fill_next_token_bitmask_batch([matchers[s] for s in rows], bitmask[:R])
            masked = logits.float()
            if torch.isnan(masked).any():
                raise NonFiniteLogitsError(
                    f"{lm.model_path}: the model produced NaN logits at step {step} (a diverged "
                    "or corrupt checkpoint); nothing valid can be sampled from it"
                )
            tct.apply_token_bitmask_inplace(masked, bitmask[:R])  # -inf where not allowed
            stats.mask_seconds += time.perf_counter() - t0
            nxt = sample_masked(masked, sampling, generator)  # (R,)
            drawn = nxt.tolist()
            t0 = time.perf_counter()
            keep = []
            for r, s in enumerate(rows):
                if drawn[r] == eos:
                    finished[s] = True
                else:
                    if not matchers[s].accept_token(drawn[r]):  # cannot happen: masked above
                        raise RuntimeError(
                            f"sample {first + s}: drew id {drawn[r]} the mask forbids"
                        )
                    ids[s].append(drawn[r])
                    keep.append(r)
                if stream is not None and first + s == 0:
                    stream(
                        step,
                        matchers[s].document(True)
                        if finished[s]
                        else matchers[s].partial_document(),
                    )
            stats.mask_seconds += time.perf_counter() - t0
            stats.tokens += len(rows)
            if not keep or step == max_tokens - 1:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=dev)
                cache.keep(index)
                nxt = nxt.index_select(0, index)
                rows = [rows[r] for r in keep]
            with lm.autocast():
                logits = model(nxt[:, None], cache=cache)[:, -1]  # (R, V)
        for s in range(b):
            samples.append(Sample(matchers[s].document(True), not finished[s], ids[s]))
            stats.truncated += not finished[s]
            stats.extra["budget_cut_steps"] += matchers[s].budget_cuts
    if dev.type == "cuda":
        torch.cuda.synchronize()
    stats.seconds = time.perf_counter() - t_start
    stats.samples = len(samples)
    return samples, stats


# ---- output --------------------------------------------------------------------------------------


def write_jsonl(path: str | os.PathLike[str], records: list[dict[str, Any]]) -> None:
    """One JSON object per line, written to a temporary sibling and renamed into place."""
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer.generate",
        description="Sample schema-valid documents from a trained model (see the module docstring).",
    )
    p.add_argument(
        "--checkpoint", required=True, help="run directory (latest checkpoint) or model_NNNNNN.pt"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="a partial document as JSON text")
    src.add_argument("--prompt-file", help="a file holding a partial document as JSON")
    p.add_argument("--num-samples", type=int, default=10)
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="0: off (default)")
    p.add_argument("--top-p", type=float, default=1.0, help="1.0: off (default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-tokens", type=int, default=1024, help="ids drawn per sample, EOS included"
    )
    p.add_argument("--batch-size", type=int, default=64, help="samples generated in parallel")
    p.add_argument(
        "--budget",
        action="store_true",
        help="make samples end by EOS within --max-tokens (Matcher.set_budget); slower: the "
        "last ids of a sample check the completion of every structural candidate",
    )
    p.add_argument(
        "--stream", action="store_true", help="print the growing YAML of the first sample"
    )
    p.add_argument("--out", help="write samples here as JSON lines")
    p.add_argument("--format", choices=("json", "yaml"), default="json", help="stdout format")
    p.add_argument("--quiet", action="store_true", help="do not print the documents")
    p.add_argument("--tokenizer", help="tokenizer name or file (default: the checkpoint's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    p.add_argument(
        "--rules",
        action="store_true",
        help="also enforce the tokenizer's rules overlay (needs, globs, expressions, names); "
        "slow today: milliseconds per id",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: one token per step is many tiny ops, where more "
        "threads spin rather than work; raise it for big models and batches on idle cores)",
    )
    return p


def set_cpu_threads(threads: int) -> None:
    """Generation feeds the model one token per step: many tiny ops, where OpenMP threads spin
    more than they work. Measured on the shared 2-core box (tiny model, 2 samples x 300 ids):
    1.8 s with 1 thread, 34 s with 2. Raise --threads for big models and batches on idle cores."""
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def stream_printer(fmt: str) -> Callable[[int, str], None]:
    """Print each new snapshot of the first sample (on a terminal, in place), to stderr so that
    stdout keeps only the final documents."""
    last = [""]
    tty = sys.stderr.isatty()

    def show(step: int, partial: str) -> None:
        if partial == last[0]:
            return
        last[0] = partial
        doc = json.loads(partial)
        text = to_yaml(doc) if fmt == "yaml" else to_json(doc)
        if tty:
            sys.stderr.write("\x1b[H\x1b[J" + text)
        else:
            sys.stderr.write(f"# after id {step + 1}\n{text}")
        sys.stderr.flush()

    return show


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
        set_cpu_threads(args.threads)
        if args.num_samples < 0 or args.max_tokens < 1 or args.batch_size < 1:
            raise ValueError("--num-samples >= 0, --max-tokens >= 1, --batch-size >= 1")
        lm = load_model(args.checkpoint, args.tokenizer, args.device, args.dtype)
        prompt = None
        if args.prompt_file is not None:
            try:
                size = Path(args.prompt_file).stat().st_size
                if size > MAX_PROMPT_BYTES:
                    raise PromptError(
                        f"--prompt-file {args.prompt_file}: {size:,} bytes, more than the "
                        f"{MAX_PROMPT_BYTES:,} accepted"
                    )
                text = Path(args.prompt_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise PromptError(f"--prompt-file {args.prompt_file}: {e}") from e
            prompt = prompt_ids(lm.tokenizer, text)
        elif args.prompt is not None:
            prompt = prompt_ids(lm.tokenizer, args.prompt)
        samples, stats = generate(
            lm,
            args.num_samples,
            sampling,
            max_tokens=args.max_tokens,
            seed=args.seed,
            batch_size=args.batch_size,
            prompt=prompt,
            rules=args.rules,
            budget=args.budget,
            stream=stream_printer(args.format) if args.stream else None,
        )
    except (CheckpointError, PromptError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = [s.record() for s in samples]
    if args.out:
        write_jsonl(args.out, records)
    if not args.quiet:
        for rec in records:
            doc = rec["document"]
            if args.format == "yaml":
                sys.stdout.write("---\n" + to_yaml(doc))
            else:
                sys.stdout.write(to_json(doc))
    print(
        f"{stats.samples} samples from {lm.model_path} ({lm.model.num_params() / 1e6:.2f}M "
        f"parameters, {lm.device}), {stats.truncated} truncated at --max-tokens {args.max_tokens}; "
        f"{stats.tokens:,} tokens in {stats.seconds:.2f} s: {stats.tokens_per_s:,.0f} tokens/s, "
        f"mask {stats.mask_us_per_token:.1f} us/token; budget "
        + (
            f"on: it forbade ids at {stats.extra['budget_cut_steps']:,} steps"
            if stats.extra.get("budget")
            else "off"
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
