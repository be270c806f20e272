"""The matcher's contract for constrained generation, for the
base tokenizer of `github-workflow.json` and the bundled trained one:

- `allowed()` is a fresh numpy bool array of length `vocab_size`;
- `advance` accepts exactly the ids the mask allows (BOS before the document aside, which is
  documented as accepted and ignored); a refused id raises `DecodeError` at the current
  position and leaves the state as it was;
- EOS is allowed exactly when the document is complete; BOS, PAD and the fallback never are;
- `document(complete=True)` of any prefix is a document that validates; `document(False)` is a
  prefix of the final text;
- `encode_prefix` of a partial workflow gives a prompt the matcher accepts, leaves the document
  open, and every completion keeps what the prompt said.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tct
from conftest import iter_jsonl_gz

FALLBACK = 260  # docs/token-format.md: a base id, the same in every tokenizer


@pytest.fixture(scope="module", params=["base", "trained"])
def tok(request: pytest.FixtureRequest, workflow_tokenizer: tct.Tokenizer) -> tct.Tokenizer:
    return workflow_tokenizer if request.param == "base" else tct.load("github-workflow")


@pytest.fixture(scope="module")
def small_workflows(data_dir: Path) -> list[Any]:
    """Schema-valid corpus documents of at most 2 KB (the first 40 of the file)."""
    records = iter_jsonl_gz(data_dir / "workflows" / "workflows.jsonl.gz")
    chosen = (r["json"] for r in records if r["schema_valid"] and r["json_bytes"] <= 2000)
    return list(itertools.islice(chosen, 40))


def state(m: tct.Matcher) -> tuple[int, bool, bytes, str]:
    return m.position, m.is_complete(), m.allowed().tobytes(), m.document(complete=False)


def test_allowed_is_a_fresh_bool_mask(tok: tct.Tokenizer) -> None:
    m = tok.matcher()
    mask = m.allowed()
    assert isinstance(mask, np.ndarray)
    assert mask.dtype == np.bool_ and mask.shape == (tok.vocab_size,)
    assert mask.any() and not mask.all()
    mask[:] = True  # the caller owns the array: changing it changes nothing in the matcher
    assert not m.allowed().all()


def test_allowed_into_writes_the_same_mask(tok: tct.Tokenizer, small_workflows: list[Any]) -> None:
    buf = np.ones(tok.vocab_size, dtype=np.bool_)
    for doc in small_workflows[:3]:
        m = tok.matcher()
        for id_ in [*tok.encode(doc), tok.eos_id]:
            m.allowed_into(buf)
            assert np.array_equal(buf, m.allowed())
            m.advance(id_)
    m = tok.matcher()
    with pytest.raises(ValueError, match="length"):
        m.allowed_into(np.zeros(tok.vocab_size + 1, dtype=np.bool_))
    with pytest.raises(ValueError, match="contiguous"):
        m.allowed_into(np.zeros(2 * tok.vocab_size, dtype=np.bool_)[::2])
    frozen = np.zeros(tok.vocab_size, dtype=np.bool_)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        m.allowed_into(frozen)
    with pytest.raises(TypeError):
        m.allowed_into(np.zeros(tok.vocab_size, dtype=np.uint8))  # type: ignore[arg-type]


def test_refused_ids_raise_and_leave_the_state(
    tok: tct.Tokenizer, small_workflows: list[Any]
) -> None:
    rng = random.Random(5)
    for doc in small_workflows[:10]:
        ids = tok.encode(doc)
        m = tok.matcher()
        for step, good in enumerate(ids):
            if step % 7 == 0 or step == len(ids) - 1:
                mask = m.allowed()
                refused = np.flatnonzero(~mask).tolist()
                candidates = rng.sample(refused, min(5, len(refused))) + [
                    tok.vocab_size,
                    tok.vocab_size + 5,
                    -1,
                    tok.pad_id,
                ]
                if not m.is_complete():
                    candidates.append(tok.eos_id)
                before = state(m)
                for bad in candidates:
                    if 0 <= bad < tok.vocab_size:
                        assert not mask[bad]
                    with pytest.raises(tct.DecodeError) as info:
                        m.advance(bad)
                    assert info.value.position == step
                    assert state(m) == before, f"refusing id {bad} changed the state"
            m.advance(good)
        assert m.is_complete()


@pytest.mark.parametrize("seed", range(3))
def test_mask_agrees_with_advance(tok: tct.Tokenizer, seed: int) -> None:
    """At every step, try ids from all over the vocabulary: `advance` accepts one exactly when
    the mask allows it. Keep going with allowed ids until the document completes."""
    rng = random.Random(seed)
    m = tok.matcher()
    steps = 0
    while not m.is_complete() and steps < 150:
        mask = m.allowed()
        allowed = np.flatnonzero(mask).tolist()
        assert allowed, "empty mask before the document is complete"
        probes = [rng.randrange(tok.vocab_size) for _ in range(6)]
        for probe in probes:
            if probe == tok.bos_id and m.position == 0:
                continue  # documented: BOS before the document is accepted and ignored
            trial = m.copy()
            try:
                trial.advance(probe)
                accepted = True
            except tct.DecodeError:
                accepted = False
            assert accepted == bool(mask[probe]), f"step {steps}: id {probe}, mask {mask[probe]}"
        # Prefer closing ids sometimes so documents finish.
        m.advance(rng.choice(allowed))
        steps += 1


def test_eos_exactly_when_complete(tok: tct.Tokenizer, small_workflows: list[Any]) -> None:
    for doc in small_workflows[:15]:
        ids = tok.encode(doc)
        m = tok.matcher()
        for good in ids:
            mask = m.allowed()
            assert mask[tok.eos_id] == m.is_complete()
            assert not mask[tok.bos_id] and not mask[tok.pad_id]
            if tok.base_size > FALLBACK:
                assert not mask[FALLBACK]
            m.advance(good)
        assert m.is_complete() and m.allowed()[tok.eos_id]
        text = m.document(complete=False)
        m.advance(tok.eos_id)
        assert not m.allowed().any(), "nothing may follow EOS"
        with pytest.raises(tct.DecodeError):
            m.advance(ids[0])
        assert m.document() == text == tok.decode(ids)[0]


def test_document_of_every_prefix_validates(
    tok: tct.Tokenizer, small_workflows: list[Any], workflow_validator: Any
) -> None:
    rng = random.Random(9)
    checked = 0
    for doc in small_workflows:
        ids = tok.encode(doc)
        full = tok.decode(ids)[0]
        cuts = sorted(rng.sample(range(len(ids) + 1), min(8, len(ids) + 1)))
        m = tok.matcher()
        done = 0
        for cut in cuts:
            for good in ids[done:cut]:
                m.advance(good)
            done = cut
            partial = m.document(complete=False)
            assert full.startswith(partial), (partial[-80:], full[: len(partial) + 20])
            completed = m.document(complete=True)
            errors = [e.message for e in workflow_validator.iter_errors(json.loads(completed))]
            assert not errors, f"prefix of {cut} ids completes to an invalid document: {errors}"
            # The completion extends the prefix.
            assert completed.startswith(partial.rstrip(",")) or cut == 0, (partial, completed)
            checked += 1
    assert checked >= 100


PROMPT = {"name": "CI", "on": "push", "jobs": {}}


def test_encode_prefix_leaves_the_jobs_open(tok: tct.Tokenizer, workflow_validator: Any) -> None:
    prompt = tok.encode_prefix(PROMPT)
    m = tok.matcher()
    for i in prompt:
        m.advance(i)
    assert not m.is_complete(), "an empty `jobs` map is not a workflow: it must stay open"
    for completed in [m.document(complete=True)] + [
        # Random continuations under the mask, then the nearest completion.
        _continue(tok, m, random.Random(seed), 40)
        for seed in range(5)
    ]:
        value = json.loads(completed)
        errors = [e.message for e in workflow_validator.iter_errors(value)]
        assert not errors, (completed, errors)
        assert value["name"] == "CI" and value["on"] == "push"
        assert isinstance(value["jobs"], dict) and value["jobs"]


def _continue(tok: tct.Tokenizer, m: tct.Matcher, rng: random.Random, steps: int) -> str:
    m = m.copy()
    for _ in range(steps):
        if m.is_complete():
            break
        m.advance(rng.choice(np.flatnonzero(m.allowed()).tolist()))
    return m.document(complete=True)


def test_encode_prefix_of_a_complete_document_is_its_encoding_minus_open_tails(
    tok: tct.Tokenizer, small_workflows: list[Any]
) -> None:
    """A prompt that is a whole document: its prefix encoding is accepted by the matcher and is a
    prefix of the document's own encoding (only closing ids at the end are dropped)."""
    for doc in small_workflows[:10]:
        ids = tok.encode(doc)
        prefix = tok.encode_prefix(doc)
        m = tok.matcher()
        for i in prefix:
            m.advance(i)
        if tok is tct.load("github-workflow"):
            # Trained ids may merge across the dropped closings: compare the decoded texts.
            assert tok.decode(ids)[0].startswith(m.document(complete=False))
        else:
            assert ids[: len(prefix)] == prefix


def _control_escapes(json_text: str) -> list[str]:
    """The control characters (as JSON escapes or raw) in a piece of JSON text."""
    found = []
    i = 0
    while i < len(json_text):
        c = json_text[i]
        if c == "\\" and i + 1 < len(json_text):
            nxt = json_text[i + 1]
            if nxt in "nrtbf":
                found.append(json_text[i : i + 2])
            elif nxt == "u":
                code = int(json_text[i + 2 : i + 6], 16)
                if code < 0x20 or code == 0x7F:
                    found.append(json_text[i : i + 6])
            i += 2
            continue
        if ord(c) < 0x20 or ord(c) == 0x7F:
            found.append(repr(c))
        i += 1
    return found


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(c if 0x20 <= ord(c) != 0x7F else " " for c in value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def test_completions_are_readable_text(workflow_validator: Any) -> None:
    """The smallest completion adds no NUL or control characters where printable text is
    allowed (required strings, map keys), and still validates."""
    tok = tct.load("github-workflow")
    root = Path(__file__).resolve().parents[1]
    docs = [
        tct.read_yaml(p.read_text()) for p in sorted((root / "examples/workflows").glob("*.y*ml"))
    ]
    # Control characters in the documents themselves (newlines in scripts) are replaced, so any
    # left in a completion came from the completion.
    docs = [_printable(d) for d in docs] + [{"name": "CI", "on": "push", "jobs": {}}]
    rng = random.Random(5)
    checked = 0
    for doc in docs[:6]:
        ids = tok.encode_prefix(doc) if doc.get("jobs") == {} else tok.encode(doc)[:-1]
        for cut in sorted({0, len(ids), *rng.sample(range(len(ids) + 1), min(6, len(ids) + 1))}):
            m = tok.matcher()
            for i in ids[:cut]:
                m.advance(i)
            partial = m.document(complete=False).rstrip(",")
            completed = m.document(complete=True)
            assert completed.startswith(partial), (partial[-60:], completed[-60:])
            assert not _control_escapes(completed), (cut, completed[len(partial) - 40 :])
            errors = [e.message for e in workflow_validator.iter_errors(json.loads(completed))]
            assert not errors, (cut, completed[-200:], errors)
            checked += 1
    assert checked >= 20
