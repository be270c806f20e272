"""Fuzzing the decoder and the matcher, for the base tokenizer
of `github-workflow.json` and the bundled trained one:

- decode fuzz: 100,000 id sequences per tokenizer (random lengths, in-range and out-of-range ids,
  ids drawn from real encodings, mutations and splices of real encodings) into `decode`. Every
  call must return a JSON document or raise `tct.DecodeError` with a sane position; nothing
  else, and never a crash. It runs in subprocesses, so an abort or a segfault is a test
  failure that names the sequence instead of taking pytest down;
- masked random walks (`random_document`): 10,000 documents drawn under the mask for
  `github-workflow.json` (6,000 base, 4,000 trained) and a few hundred for every other schema
  in the data, all validated with python-jsonschema. A document the validator rejects is a
  matcher bug, unless the failing keyword is one `tok.warnings` lists (then, and only then,
  the case is an expected failure, with the reason).

Each walk is also cross-checked against the encoder: the walk's document encodes without
fallback (the encoder and the matcher agree on what conforms), and decodes back to itself.

Run the decode fuzz worker by hand (it prints a JSON summary):
    python tests/test_fuzz.py base 0 100 0      # kind, seed, number of blocks, first block
"""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tct
from conftest import DATA_DIR, schema_files, schema_uris
from schema_errors import ecma_validator, unexplained_errors
from tct.testing import same_json

HERE = Path(__file__).resolve()
BLOCK = 1000  # decode-fuzz cases per block; a block has its own seeded generator
FUZZ_CASES = 100_000  # per tokenizer
# Masked walks of github-workflow.json: (walks, max_tokens cycle) per tokenizer. The trained
# tokenizer's walks cost more per step (its mask covers 8,192 ids), so they are shorter.
WORKFLOW_WALKS = {"base": (7000, (12, 40, 120, 400)), "trained": (3000, (8, 16, 48, 128))}
OTHER_WALKS = 300  # per other schema in schemas/ (and 100 per schema in schemas/refs/)
OTHER_MAX_TOKENS = (8, 32, 128, 512)
SCHEMASTORE = "https://json.schemastore.org/"


# ---------------------------------------------------------------------------------------------
# Tokenizers by kind
# ---------------------------------------------------------------------------------------------


def registry_from_data() -> dict[str, Any]:
    registry: dict[str, Any] = {}
    for path in schema_files(DATA_DIR):
        schema = json.loads(path.read_text(encoding="utf-8"))
        for uri in schema_uris(path, schema):
            registry[uri] = schema
    return registry


def tokenizer_of(kind: str) -> tct.Tokenizer:
    if kind == "trained":
        return tct.load("github-workflow")
    return tct.Tokenizer.from_schema(
        DATA_DIR / "schemas" / "github-workflow.json", registry=registry_from_data()
    )


# ---------------------------------------------------------------------------------------------
# Decode fuzz (the worker runs in a subprocess)
# ---------------------------------------------------------------------------------------------


def real_encodings(tok: tct.Tokenizer, count: int = 400) -> list[list[int]]:
    """Canonical encodings of the first corpus documents (small ones, so mutations reach the
    end) plus complete masked walks: the raw material for mutations."""
    out: list[list[int]] = []
    with gzip.open(DATA_DIR / "workflows" / "workflows.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in itertools.islice(f, 3000):
            record = json.loads(line)
            if record["json_bytes"] <= 3000:
                out.append(tok.encode(record["json"]))
            if len(out) >= count:
                break
    for seed in range(count // 4):
        ids, _ = tok.random_document(seed, 64)
        if len(ids) < 64:  # ended on its own: a complete sequence
            out.append(ids)
    return out


class CaseGenerator:
    """Deterministic id sequences for one block of the decode fuzz."""

    def __init__(self, tok: tct.Tokenizer, seeds: list[list[int]], rng: random.Random) -> None:
        self.tok = tok
        self.seeds = seeds
        self.rng = rng
        self.alphabet = sorted({i for ids in seeds for i in ids})
        self.specials = [tok.bos_id, tok.eos_id, tok.pad_id]
        # Structure, fallback, generic and choice ids: where the decoder's branches are.
        self.structural = list(range(256, min(tok.base_size, 300)))
        self.out_of_range = [
            tok.vocab_size,
            tok.vocab_size + 1,
            tok.position_range[0],
            tok.position_range[1] - 1,
            65535,
            65536,
            2**31,
            2**63 - 1,
            2**64,
            2**80,
            -1,
            -(2**63),
        ]

    def length(self) -> int:
        r = self.rng.random()
        if r < 0.5:
            return self.rng.randrange(0, 12)
        if r < 0.97:
            return self.rng.randrange(12, 120)
        return self.rng.randrange(120, 2000)

    def in_range(self) -> int:
        r = self.rng.random()
        if r < 0.05:
            return self.rng.choice(self.specials)
        if r < 0.35:
            return self.rng.choice(self.structural)
        if r < 0.8:
            return self.rng.choice(self.alphabet)
        return self.rng.randrange(self.tok.vocab_size)

    def mutate(self, ids: list[int]) -> list[int]:
        rng = self.rng
        ids = list(ids)
        for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
            k = rng.randrange(len(ids) + 1)
            op = rng.randrange(8)
            if op == 0 and k < len(ids):
                del ids[k]
            elif op == 1:
                ids.insert(k, self.in_range())
            elif op == 2 and k < len(ids):
                ids[k] = self.in_range()
            elif op == 3:
                ids = ids[:k]  # truncation
            elif op == 4 and ids:
                j = rng.randrange(len(ids))
                a, b = sorted((k, j))
                ids[a:a] = ids[a:b]  # duplicate a slice
            elif op == 5 and ids:
                j = rng.randrange(len(ids))
                if k < len(ids):
                    ids[k], ids[j] = ids[j], ids[k]
            elif op == 6:
                other = rng.choice(self.seeds)
                ids = ids[:k] + other[rng.randrange(len(other) + 1) :]  # splice
            else:
                ids.insert(k, rng.choice(self.specials))
        return ids

    def case(self) -> tuple[str, list[int]]:
        r = self.rng.random()
        if r < 0.15:
            return "uniform", [
                self.rng.randrange(self.tok.vocab_size) for _ in range(self.length())
            ]
        if r < 0.4:
            # Start like a real document so the decoder gets past the first id.
            start = self.rng.choice(self.seeds)[: self.rng.randrange(1, 4)]
            return "drawn", start + [self.in_range() for _ in range(self.length())]
        if r < 0.5:
            ids = self.mutate(self.rng.choice(self.seeds))
            for _ in range(self.rng.randrange(1, 3)):
                ids.insert(self.rng.randrange(len(ids) + 1), self.rng.choice(self.out_of_range))
            return "out-of-range", ids
        if r < 0.55:
            # A real encoding with framing: BOS before, EOS and trailing ids after.
            ids = self.rng.choice(self.seeds)
            tail = [self.in_range() for _ in range(self.rng.randrange(0, 5))]
            return "framed", [self.tok.bos_id, *ids, self.tok.eos_id, *tail]
        return "mutated", self.mutate(self.rng.choice(self.seeds))


def fuzz_decode(kind: str, seed: int, blocks: int, first_block: int, trace: bool) -> dict[str, Any]:
    """Run `blocks` blocks of BLOCK cases; returns counts and any contract violation. With
    `trace`, each case is written to stderr before it is decoded (to find a crashing one)."""
    tok = tokenizer_of(kind)
    seeds = real_encodings(tok)
    vocab_size = tok.vocab_size
    counts: dict[str, int] = {}
    violations: list[dict[str, Any]] = []
    decoded = errors = 0
    for block in range(first_block, first_block + blocks):
        if not trace:
            print(f"block {block}", file=sys.stderr, flush=True)
        gen = CaseGenerator(tok, seeds, random.Random(f"{kind}-{seed}-{block}"))
        for index in range(BLOCK):
            what, ids = gen.case()
            counts[what] = counts.get(what, 0) + 1
            if trace:
                print(
                    json.dumps({"block": block, "index": index, "ids": ids}),
                    file=sys.stderr,
                    flush=True,
                )
            # Some cases go in as numpy arrays (the decoder reads their buffer directly).
            arg: Any = ids
            if index % 7 == 0 and all(0 <= i < 2**63 for i in ids):
                arg = np.array(ids, dtype=np.uint64 if index % 2 else np.int64)
            problem = None
            try:
                text, consumed, total = tok.decode(arg)
            except tct.DecodeError as e:
                errors += 1
                bad = [p for p, i in enumerate(ids) if not 0 <= i < vocab_size]
                if not 0 <= e.position <= len(ids):
                    problem = f"DecodeError position {e.position} outside 0..{len(ids)}"
                elif bad and e.position != bad[0]:
                    problem = f"out-of-range id at {bad[0]} reported at {e.position}: {e}"
            except BaseException as e:  # noqa: BLE001 (the contract: nothing but DecodeError)
                problem = f"{type(e).__module__}.{type(e).__name__}: {e}"
            else:
                decoded += 1
                try:
                    value = json.loads(text)
                    if not 0 < consumed <= total == len(ids):
                        problem = f"consumed {consumed}, total {total} for {len(ids)} ids"
                    else:
                        # What the decoder produced is a document the codec round-trips.
                        again, _, _ = tok.decode(tok.encode(text))
                        if not same_json(json.loads(again), value):
                            problem = f"decoded document does not round-trip: {text[:200]}"
                except BaseException as e:  # noqa: BLE001
                    problem = f"decoded {text[:200]!r}, then {type(e).__name__}: {e}"
            if problem is not None and len(violations) < 10:
                violations.append(
                    {"block": block, "index": index, "ids": ids[:400], "problem": problem}
                )
    return {"counts": counts, "decoded": decoded, "errors": errors, "violations": violations}


def run_worker(
    kind: str, seed: int, blocks: int, first_block: int, trace: bool = False
) -> subprocess.Popen[str]:
    args = [sys.executable, str(HERE), kind, str(seed), str(blocks), str(first_block)]
    if trace:
        args.append("--trace")
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_decode_fuzz_never_crashes(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """100,000 sequences per tokenizer, base and trained in two parallel subprocesses."""
    blocks = FUZZ_CASES // BLOCK
    workers = {kind: run_worker(kind, 2024, blocks, 0) for kind in ("base", "trained")}
    outputs = {kind: p.communicate(timeout=900) for kind, p in workers.items()}
    for kind, p in workers.items():
        stdout, stderr = outputs[kind]
        if p.returncode != 0:
            # Find the crashing case: rerun the block it died in, tracing every case.
            lines = [ln for ln in stderr.splitlines() if ln.startswith("block ")]
            block = int(lines[-1].split()[1]) if lines else 0
            tracer = run_worker(kind, 2024, 1, block, trace=True)
            _, trace = tracer.communicate(timeout=600)
            cases = [ln for ln in trace.splitlines() if ln.startswith("{")]
            pytest.fail(
                f"{kind}: the decode fuzz worker died (exit {p.returncode}) in block {block}; "
                f"last case traced: {cases[-1][:2000] if cases else '(none)'}\n"
                f"stderr tail:\n{stderr[-3000:]}"
            )
        summary = json.loads(stdout)
        total = sum(summary["counts"].values())
        with capsys.disabled():
            print(
                f"\n[decode fuzz, {kind}] {total} sequences: {summary['decoded']} decoded, "
                f"{summary['errors']} DecodeError; cases {summary['counts']}"
            )
        assert total >= FUZZ_CASES
        assert not summary["violations"], json.dumps(summary["violations"], indent=1)[:5000]
        # A fuzz where (almost) nothing decodes explores nothing past the first error.
        assert summary["decoded"] > total // 50, summary["decoded"]


# ---------------------------------------------------------------------------------------------
# Masked random walks
# ---------------------------------------------------------------------------------------------


def noting_duplicates(duplicates: list[str], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads that records repeated keys (and keeps the last)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            duplicates.append(key)
        out[key] = value
    return out


def walk_and_check(
    tok: tct.Tokenizer,
    validator: Any,
    ecma: Any,
    root_uri: str,
    registry: dict[str, Any],
    seeds: range,
    max_tokens: Callable[[int], int],
) -> tuple[dict[str, list[str]], list[str], dict[str, int]]:
    """Draw a walk per seed (on two threads: `random_document` releases the GIL) and check
    each document with `validator` (stock python-jsonschema) and, where that rejects it, with
    `ecma` (the same with ECMA-262 regexes, as JSON Schema specifies). Returns (bug reports by
    kind of bug, documented-gap reports, counts: walks that ended on their own, documents only
    Python's regex dialect rejects)."""

    def draw(seed: int) -> tuple[int, list[int] | None, str]:
        try:
            ids, text = tok.random_document(seed, max_tokens(seed))
        except tct.DecodeError as e:
            return seed, None, f"random_document raised {e}"
        return seed, ids, text

    with ThreadPoolExecutor(max_workers=2) as pool:
        walks = list(pool.map(draw, seeds, chunksize=64))
    bugs: dict[str, list[str]] = {}
    gaps: list[str] = []
    counts = {"ended": 0, "regex dialect": 0}
    for seed, ids, text in walks:
        where = f"seed {seed}, max_tokens {max_tokens(seed)}"

        def bug(kind: str, detail: str) -> None:
            bugs.setdefault(kind, []).append(f"{where}: {detail}")  # noqa: B023

        if ids is None:
            bug("random_document failed", text)
            continue
        duplicates: list[str] = []
        try:
            doc = json.loads(
                text, object_pairs_hook=functools.partial(noting_duplicates, duplicates)
            )
        except ValueError as e:
            bug("not JSON", f"{e}: {text[:300]}")
            continue
        if duplicates:
            # JSON objects with repeated keys are ambiguous (parsers keep the first or the
            # last) and do not round-trip: the mask must not allow a used key again. The
            # checks below go on with the last value of each key, as python's json does.
            bug("repeated key", f"{duplicates[0]!r} in {text[:300]}")
        unexplained, known = unexplained_errors(validator, doc, root_uri, registry, tok.warnings)
        if unexplained or known:
            unexplained, known = unexplained_errors(ecma, doc, root_uri, registry, tok.warnings)
            if not unexplained and not known:
                counts["regex dialect"] += 1
        if unexplained:
            bug("invalid", f"{unexplained[:3]}\n    document: {text[:600]}")
            continue
        if known:
            gaps.append(f"{where}: {known[0]}")
            continue
        # The encoder agrees that the document conforms, and the codec reproduces it. (Compared
        # as values: the encoder spells exponents `e+`, while the mask also allows `E` and
        # `e` without a sign, so the text may differ there.)
        enc = tok.encode_detailed(text)
        if enc.fallbacks:
            bug("encoder falls back", f"at {enc.fallbacks[:3]}: {text[:300]}")
            continue
        again, _, _ = tok.decode(enc.ids)
        if not duplicates and not same_json(json.loads(again), doc):
            bug("no round trip", f"decode(encode(doc)) = {again[:200]} != {text[:200]}")
            continue
        if len(ids) < max_tokens(seed):  # the walk ended on its own: ids are a whole document
            counts["ended"] += 1
            decoded = tok.decode(ids)
            if decoded != (text, len(ids), len(ids)):
                bug("decoder disagrees", f"decode(walk ids) = {decoded[0][:200]} != {text[:200]}")
    return bugs, gaps, counts


def report_walks(
    name: str, tok: tct.Tokenizer, n: int, bugs: dict[str, list[str]], gaps: list[str]
) -> None:
    if bugs:
        lines = [
            f"{name}: masked walks that break the contract (of {n}; warnings: {tok.warnings}):"
        ]
        for kind, reports in sorted(bugs.items()):
            lines.append(f"  {kind}: {len(reports)} walks, e.g.")
            lines.extend(f"    {r}" for r in reports[:3])
        pytest.fail("\n".join(lines), pytrace=False)
    if gaps:
        pytest.xfail(
            f"{name}: {len(gaps)} of {n} walks are invalid only at keywords tok.warnings lists "
            f"as not enforced; e.g. {gaps[0]}"
        )


@pytest.mark.parametrize("kind", ["base", "trained"])
def test_workflow_walks_validate(
    kind: str,
    workflow_validator: Any,
    workflow_schema: Any,
    schema_registry: Any,
    tct_registry: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tok = tokenizer_of(kind)
    n, cycle = WORKFLOW_WALKS[kind]

    def max_tokens(seed: int) -> int:
        return cycle[seed % len(cycle)]

    bugs, gaps, counts = walk_and_check(
        tok,
        workflow_validator,
        ecma_validator(workflow_schema, schema_registry),
        SCHEMASTORE + "github-workflow.json",
        tct_registry,
        range(n),
        max_tokens,
    )
    with capsys.disabled():
        print(f"\n[walks, github-workflow {kind}] {n} documents checked; {counts}")
    assert tok.warnings == [], "github-workflow.json is meant to be enforced exactly"
    report_walks(f"github-workflow ({kind})", tok, n, bugs, gaps)


OTHER_SCHEMAS = (
    sorted(
        p.relative_to(DATA_DIR / "schemas").as_posix()
        for p in schema_files(DATA_DIR)
        if p.name != "github-workflow.json"
    )
    if (DATA_DIR / "schemas").is_dir()
    else []
)


@pytest.mark.parametrize("name", OTHER_SCHEMAS)
def test_other_schema_walks_validate(
    name: str,
    schemas_dir: Path,
    tct_registry: dict[str, Any],
    make_validator: Callable[[Any], Any],
    schema_registry: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = schemas_dir / name
    schema = json.loads(path.read_text(encoding="utf-8"))
    tok = tct.Tokenizer.from_schema(path, registry=tct_registry)
    n = OTHER_WALKS if "/" not in name else OTHER_WALKS // 3

    def max_tokens(seed: int) -> int:
        return OTHER_MAX_TOKENS[seed % len(OTHER_MAX_TOKENS)]

    bugs, gaps, counts = walk_and_check(
        tok,
        make_validator(schema),
        ecma_validator(schema, schema_registry),
        SCHEMASTORE + path.name,
        tct_registry,
        range(n),
        max_tokens,
    )
    with capsys.disabled():
        print(f"\n[walks, {name}] {n} documents checked; {counts}")
    report_walks(name, tok, n, bugs, gaps)


if __name__ == "__main__":
    # The decode fuzz worker: kind seed blocks first_block [--trace]; prints a JSON summary.
    argv = sys.argv[1:]
    result = fuzz_decode(argv[0], int(argv[1]), int(argv[2]), int(argv[3]), "--trace" in argv)
    print(json.dumps(result))
