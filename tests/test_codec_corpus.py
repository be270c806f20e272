"""The whole development corpus through the codec and the matcher, for the base tokenizer
compiled from `github-workflow.json` and for the bundled trained one (`tct.load("github-workflow")`):

- every document (the schema-invalid ones too, through the fallback) decodes back to the same
  value with the same types (1, 1.0 and True are three different things);
- the encoder falls back exactly where the schema says the document is invalid: a document
  with `schema_valid` has no fallback, every other one has at least one;
- the canonical encoding of every document without fallback is accepted id by id by the
  matcher and leaves it complete, with the allowed mask checked at every step on a sample.

About 4.5 minutes of wall time on the shared 2-core dev box under a load of ~7 (the slowest
test, the base matcher over 100M ids, took 99 s), so nothing here is marked `slow`. The heavy
calls (decode, matcher_accepts, encode_detailed) release the GIL, so they run on two threads.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

import tct
from conftest import compact_json
from tct.testing import same_json

T = TypeVar("T")
R = TypeVar("R")

# How many documents get the allowed mask checked at every step (the rest: every id must be
# accepted by `advance`, which is the completeness property; the mask check makes sure
# `allowed()` agrees with `advance`). A full mask costs ~3 ms per document for the base
# tokenizer and ~15 ms for the trained one (8,192 ids).
MASK_SAMPLE = {"base": 1000, "trained": 300}
# The trained tokenizer's `encode_detailed` is checked on every invalid document and this many
# valid ones (the base one on every document).
TRAINED_DETAILED_VALID_SAMPLE = 2000
THREADS = 2


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fn` over `items` on two threads (the Rust calls inside release the GIL)."""
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(fn, items, chunksize=256))


def where(record: dict[str, Any]) -> str:
    return f"{record['repo']}:{record['path']}"


@pytest.fixture(scope="module", params=["base", "trained"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which tokenizer: the base one compiled from the schema, or the bundled trained one."""
    return str(request.param)


@pytest.fixture(scope="module")
def corpus_tokenizer(kind: str, workflow_tokenizer: tct.Tokenizer) -> tct.Tokenizer:
    return workflow_tokenizer if kind == "base" else tct.load("github-workflow")


@pytest.fixture(scope="module")
def corpus_texts(workflow_corpus: list[dict[str, Any]]) -> list[str]:
    """Compact JSON of every document, as the corpus measures it."""
    return [compact_json(record["json"]) for record in workflow_corpus]


@pytest.fixture(scope="module")
def corpus_encoding(
    corpus_tokenizer: tct.Tokenizer, corpus_texts: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, offsets) of the whole corpus, encoded in parallel."""
    ids, offsets = corpus_tokenizer.encode_batch(corpus_texts, num_threads=THREADS)
    assert offsets.shape == (len(corpus_texts) + 1,)
    assert offsets[0] == 0 and offsets[-1] == len(ids)
    assert (np.diff(offsets) > 0).all(), "a document encoded to no ids"
    assert int(ids.max()) < corpus_tokenizer.vocab_size
    return ids, offsets


def test_corpus_round_trip_is_value_and_type_exact(
    kind: str,
    corpus_tokenizer: tct.Tokenizer,
    corpus_encoding: tuple[np.ndarray, np.ndarray],
    workflow_corpus: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tok = corpus_tokenizer
    ids, offsets = corpus_encoding
    bounds = offsets.tolist()

    def decode(i: int) -> tuple[str, int, int]:
        return tok.decode(ids[bounds[i] : bounds[i + 1]])

    failures = []
    for i, (text, consumed, total) in enumerate(parallel_map(decode, range(len(workflow_corpus)))):
        record = workflow_corpus[i]
        n = bounds[i + 1] - bounds[i]
        if consumed != n or total != n:
            failures.append(f"{where(record)}: consumed {consumed} of {total}, expected {n}")
        elif not same_json(json.loads(text), record["json"]):
            failures.append(f"{where(record)}: decodes to a different value: {text[:300]}")
    with capsys.disabled():
        print(
            f"\n[corpus round trip, {kind}] {len(workflow_corpus)} documents, "
            f"{len(ids)} ids ({len(ids) / len(workflow_corpus):.0f} per document), "
            f"{len(failures)} failures"
        )
    assert not failures, f"{len(failures)} documents do not round-trip:\n" + "\n".join(
        failures[:10]
    )


def test_fallbacks_are_exactly_the_schema_invalid_documents(
    kind: str,
    corpus_tokenizer: tct.Tokenizer,
    corpus_encoding: tuple[np.ndarray, np.ndarray],
    corpus_texts: list[str],
    workflow_corpus: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`encode_detailed` agrees with `encode_batch`, and the fallback pointers are non-empty
    exactly for the documents python-jsonschema rejects (the corpus' `schema_valid`)."""
    tok = corpus_tokenizer
    ids, offsets = corpus_encoding
    bounds = offsets.tolist()
    indices = list(range(len(workflow_corpus)))
    if kind == "trained":
        invalid = [i for i in indices if not workflow_corpus[i]["schema_valid"]]
        valid = [i for i in indices if workflow_corpus[i]["schema_valid"]]
        indices = sorted(
            invalid + random.Random(7).sample(valid, min(TRAINED_DETAILED_VALID_SAMPLE, len(valid)))
        )

    def detailed(i: int) -> tct.Encoding:
        return tok.encode_detailed(corpus_texts[i])

    failures = []
    fallback_docs = 0
    reasons: dict[str, int] = {}
    for i, enc in zip(indices, parallel_map(detailed, indices), strict=True):
        record = workflow_corpus[i]
        if enc.ids != ids[bounds[i] : bounds[i + 1]].tolist():
            failures.append(f"{where(record)}: encode_detailed and encode_batch disagree")
        if enc.fallbacks:
            fallback_docs += 1
            # The generalised place (array indices and map keys vary) of the first fallback.
            first = "/".join(p if not p.isdigit() else "#" for p in enc.fallbacks[0].split("/"))
            reasons[first] = reasons.get(first, 0) + 1
        if record["schema_valid"] and enc.fallbacks:
            failures.append(f"{where(record)}: schema-valid but falls back at {enc.fallbacks}")
        if not record["schema_valid"] and not enc.fallbacks:
            failures.append(
                f"{where(record)}: schema-invalid ({record['schema_error']}) but has no fallback"
            )
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:5]
    with capsys.disabled():
        print(
            f"\n[fallbacks, {kind}] {len(indices)} documents checked, {fallback_docs} with a "
            f"fallback; commonest first fallbacks: {top}"
        )
    assert not failures, f"{len(failures)} documents:\n" + "\n".join(failures[:10])


def test_matcher_accepts_every_conforming_document(
    kind: str,
    corpus_tokenizer: tct.Tokenizer,
    corpus_encoding: tuple[np.ndarray, np.ndarray],
    workflow_corpus: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Completeness of the matcher: the canonical encoding of every document without fallback
    (= every schema-valid one, see above) is accepted id by id and ends complete; on a sample,
    every id is also checked to be in `allowed()` at its step."""
    tok = corpus_tokenizer
    ids, offsets = corpus_encoding
    bounds = offsets.tolist()
    conforming = [i for i, r in enumerate(workflow_corpus) if r["schema_valid"]]
    masked = set(random.Random(11).sample(conforming, min(MASK_SAMPLE[kind], len(conforming))))

    def check(i: int) -> str | None:
        try:
            tok.matcher_accepts(ids[bounds[i] : bounds[i + 1]].tolist(), 1 if i in masked else 0)
        except tct.DecodeError as e:
            return f"{where(workflow_corpus[i])}: {e} (mask checked: {i in masked})"
        return None

    failures = [f for f in parallel_map(check, conforming) if f is not None]
    with capsys.disabled():
        print(
            f"\n[matcher, {kind}] {len(conforming)} conforming documents accepted id by id, "
            f"{len(masked)} of them with the mask checked at every step; "
            f"{len(failures)} failures"
        )
    assert not failures, f"{len(failures)} documents rejected:\n" + "\n".join(failures[:10])


def test_corpus_file_is_the_expected_one(data_dir: Path, workflow_corpus: list[Any]) -> None:
    """Guards the counts above against a truncated or swapped data file (see its README)."""
    assert len(workflow_corpus) == 33145
    assert sum(r["schema_valid"] for r in workflow_corpus) > 0.9 * len(workflow_corpus)
    assert (data_dir / "workflows" / "workflows.jsonl.gz").stat().st_size > 20_000_000
