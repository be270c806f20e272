"""Inputs and usage patterns that used to hang, exhaust the machine or give a misleading error:
forked children after the parent used the thread pool, self-referential Python values, huge
thread counts, one matcher shared by two threads, bools used as ids.

Anything that used to hang runs in a subprocess with a timeout, so a regression fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tct
from conftest import SMALL_SCHEMA, run_isolated

REPO_ROOT = Path(__file__).resolve().parents[1]

# -- fork safety -------------------------------------------------------------------------------

_FORK_PRELUDE = """
    import os, sys, tct
    tok = tct.Tokenizer.from_schema({"type": "object", "properties": {"name": {"type": "string"}}})
    docs = [{"name": f"doc {i}"} for i in range(64)]
    # The parent starts the worker pool with every core (the default), as a training script
    # does before its DataLoader forks.
    ids, offsets = tok.encode_batch(docs)
    assert len(offsets) == 65
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_can_encode_batch_and_train() -> None:
    out = run_isolated(
        _FORK_PRELUDE
        + """
    pid = os.fork()
    if pid == 0:
        try:
            child_ids, child_offsets = tok.encode_batch(docs)
            assert (child_ids == ids).all() and (child_offsets == offsets).all()
            tok.encode_batch(docs, num_threads=2)
            trained = tct.train(
                {"type": "object", "properties": {"name": {"type": "string"}}},
                docs * 4,
                vocab_size=tok.base_size + 20,
            )
            assert trained.decode(trained.encode(docs[3]))[0] == '{"name":"doc 3"}'
        except BaseException as e:
            print("child failed:", repr(e), flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("child status", os.waitstatus_to_exitcode(status))
    # And the parent's own pool still works after the fork.
    assert (tok.encode_batch(docs)[0] == ids).all()
    """,
        timeout=120,
    )
    assert "child status 0" in out, out


class _EncodingDataset:
    """A map-style dataset whose items are encoded in the worker (as a trainer would)."""

    def __init__(self, tok: tct.Tokenizer) -> None:
        self.tok = tok

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> int:
        ids, offsets = self.tok.encode_batch([{"name": f"item {i}"}, {"name": "x" * i}])
        return int(offsets[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_dataloader_fork_workers_encode() -> None:
    pytest.importorskip("torch")
    out = run_isolated(
        _FORK_PRELUDE
        + """
    import torch.utils.data as tud
    sys.path.insert(0, TESTS_DIR)
    from test_hostile import _EncodingDataset
    loader = tud.DataLoader(
        _EncodingDataset(tok), batch_size=2, num_workers=2, multiprocessing_context="fork"
    )
    lengths = [int(x) for batch in loader for x in batch]
    expected = [_EncodingDataset(tok)[i] for i in range(8)]
    assert lengths == expected, (lengths, expected)
    print("ok", lengths)
    """.replace("TESTS_DIR", repr(str(Path(__file__).parent))),
        timeout=180,
    )
    assert out.startswith("ok"), out


# -- self-referential values -------------------------------------------------------------------


def _cycles() -> list[tuple[object, str]]:
    lst: list[object] = []
    lst.append(lst)
    d: dict[str, object] = {}
    d["a"] = d
    deep: dict[str, object] = {"x": [1, {"y": None}]}
    deep["x"][1]["y"] = deep  # type: ignore[index]
    pair_a: list[object] = [0]
    pair_b: list[object] = [pair_a]
    pair_a.append(pair_b)
    return [(lst, "/0"), (d, "/a"), (deep, "/x/1/y"), (pair_a, "/1/0")]


def test_self_referential_values_are_refused_at_once() -> None:
    # In a subprocess: on failure this used to loop forever.
    run_isolated(
        """
        import sys, time, tct
        sys.path.insert(0, TESTS_DIR)
        from test_hostile import SMALL_SCHEMA, _cycles
        tok = tct.Tokenizer.from_schema(SMALL_SCHEMA)
        calls = [
            ("encode", tok.encode),
            ("encode_detailed", tok.encode_detailed),
            ("encode_prefix", tok.encode_prefix),
            ("encode_batch", lambda v: tok.encode_batch([{"name": "ok"}, v])),
            ("train", lambda v: tct.train(SMALL_SCHEMA, [{"name": "ok"}, v], vocab_size=400)),
        ]
        for value, pointer in _cycles():
            for name, call in calls:
                t = time.perf_counter()
                try:
                    call(value)
                except tct.EncodeError as e:
                    assert e.pointer == pointer, (name, e.pointer, pointer, str(e))
                    assert "circular" in str(e), str(e)
                    if name in ("encode_batch", "train"):
                        assert e.index == 1, (name, e.index)
                else:
                    raise AssertionError(f"{name} accepted a self-referential value")
                assert time.perf_counter() - t < 5, name
        print("ok")
        """.replace("TESTS_DIR", repr(str(Path(__file__).parent))),
        timeout=60,
    )


def test_shared_but_acyclic_values_still_encode(small: tct.Tokenizer) -> None:
    # The same object twice is not a cycle: json.dumps accepts it, and so does tct.
    shared = {"name": "s"}
    assert small.encode([shared, shared]) == small.encode([{"name": "s"}, {"name": "s"}])
    # A shared value beside an unserialisable one: the pointer names the bad one.
    with pytest.raises(tct.EncodeError) as info:
        small.encode({"a": shared, "b": shared, "c": [1, object()]})
    assert info.value.pointer == "/c/1"


# -- thread counts -----------------------------------------------------------------------------


def test_huge_num_threads_is_capped_fast() -> None:
    # Used to spawn threads until it failed: 117 s and 1 GB for 10**9.
    out = run_isolated(
        """
        import sys, time, tct
        sys.path.insert(0, TESTS_DIR)
        from test_hostile import SMALL_SCHEMA
        tok = tct.Tokenizer.from_schema(SMALL_SCHEMA)
        docs = [{"name": str(i)} for i in range(100)]
        expected = tok.encode_batch(docs, num_threads=1)
        t = time.perf_counter()
        for n in (10**9, 2**63 - 1):
            ids, offsets = tok.encode_batch(docs, num_threads=n)
            assert (ids == expected[0]).all() and (offsets == expected[1]).all()
        tct.train(SMALL_SCHEMA, docs, vocab_size=tok.base_size + 10, num_threads=10**9)
        print(f"elapsed {time.perf_counter() - t:.3f}")
        """.replace("TESTS_DIR", repr(str(Path(__file__).parent))),
        timeout=60,
    )
    assert float(out.split()[-1]) < 20, out


def test_train_num_threads_is_validated(small: tct.Tokenizer) -> None:
    for bad, error in ((0, ValueError), (-3, ValueError), (True, TypeError), (2.0, TypeError)):
        with pytest.raises(error):
            tct.train(SMALL_SCHEMA, [{"name": "a"}], vocab_size=400, num_threads=bad)


def test_tct_encode_huge_thread_count_is_capped(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(5):
        (corpus / f"{i}.json").write_text(f'{{"name": "doc {i}"}}')
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "properties": {"name": {"type": "string"}}}')
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "python"))
    for args, extra_env in (
        (["--threads", "100000"], {}),
        ([], {"TCT_THREADS": "1000000"}),
    ):
        out = tmp_path / f"out{len(extra_env)}.bin"
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "tct.cli_encode", str(corpus), str(out)]
            + ["--schema", str(schema), "--quiet", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**env, **extra_env},
        )
        assert proc.returncode == 0, proc.stderr
        assert time.perf_counter() - t < 60
        assert out.stat().st_size > 0


# -- one matcher, two threads ------------------------------------------------------------------


def test_matcher_used_from_two_threads_raises_a_typed_error() -> None:
    tok = tct.Tokenizer.from_schema({"type": "string"})
    m = tok.matcher()
    letter = tok.encode('"a"')[0]  # the string's first byte
    for _ in range(200_000):
        m.advance(letter)
    errors: list[BaseException] = []
    stop = threading.Event()

    def document_loop() -> None:
        # `document` releases the GIL while it builds the text (long here).
        while not stop.is_set():
            try:
                m.document(complete=True)
            except BaseException as e:  # noqa: BLE001 - recorded and checked below
                errors.append(e)

    other = threading.Thread(target=document_loop)
    other.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not errors:
            try:
                m.allowed()
                m.advance(letter)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
    finally:
        stop.set()
        other.join()
    assert errors, "the two threads never overlapped (test did not exercise the case)"
    for e in errors:
        assert isinstance(e, tct.MatcherBusyError), repr(e)
        assert isinstance(e, tct.TctError)
        assert "another thread" in str(e)
    # The matcher is still usable afterwards.
    m.advance(letter)
    assert m.document(complete=True).startswith('"aaa')


# -- small ones --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids", [[True], [0, False], (True,), np.array([True, False]), [np.bool_(True)]]
)
def test_bools_are_not_ids(small: tct.Tokenizer, ids: object) -> None:
    with pytest.raises(TypeError, match="bool"):
        small.decode(ids)
    with pytest.raises(TypeError, match="bool"):
        small.matcher_accepts(ids)


def test_matcher_advance_refuses_bools(small: tct.Tokenizer) -> None:
    m = small.matcher()
    for value in (True, False, np.bool_(True)):
        with pytest.raises(TypeError, match="bool"):
            m.advance(value)
    assert m.position == 0


def test_extract_window_position_ids_stay_in_range() -> None:
    tok = tct.load()
    first, end = tok.position_range
    ids = [5] * 50_000
    for start in (0, 1, 2047, 2048, 4095, 4096, 5000, 34_815, 34_816, 49_999):
        window = tok.extract_window(ids, start, start + 1)
        assert first <= window[0] < end, (start, window[0], (first, end))
    with pytest.raises(ValueError, match="window"):
        tok.extract_window(ids, 5000, 5001 + len(ids))
    with pytest.raises(ValueError, match="window"):
        tok.extract_window(ids, 10, 5)


# -- string constraints that used to stall masks and completions ------------------------------


def test_long_min_length_masks_and_completes() -> None:
    # minLength 150,000: each mask took ~22 s (a breadth-first search one level per character),
    # and from about 200,000 compilation failed with "admits no finite document".
    out = run_isolated(
        """
        import json, time, tct
        t = time.perf_counter()
        for n in (150_000, 300_000):
            tok = tct.Tokenizer.from_schema({"type": "string", "minLength": n})
            m = tok.matcher()
            for _ in range(20):
                m.advance(int(m.allowed().nonzero()[0][100]))
            doc = json.loads(m.document(complete=True))
            assert isinstance(doc, str) and len(doc) == n, len(doc)
        print(f"elapsed {time.perf_counter() - t:.3f}")
        """,
        timeout=120,
    )
    assert float(out.split()[-1]) < 60, out


def test_many_patterns_mask_fast() -> None:
    # allOf of 12 patterns: the first mask took ~13 s (one breadth-first search per next state).
    out = run_isolated(
        """
        import json, re, time, tct
        pats = list("abcdefghijkl")
        tok = tct.Tokenizer.from_schema({"type": "string", "allOf": [{"pattern": p} for p in pats]})
        t = time.perf_counter()
        m = tok.matcher()
        m.allowed()
        print(f"mask {time.perf_counter() - t:.3f}")
        doc = json.loads(m.document(complete=True))
        assert all(re.search(p, doc) for p in pats), doc
        """,
        timeout=120,
    )
    assert float(out.split()[-1]) < 5, out
