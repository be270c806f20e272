"""The token-bitmask interface (llguidance / XGrammar layout): the bitmask equals `allowed()` at
every step of real workflows, accept / rollback / fork / reset are equivalent to replaying, the
batch fill equals the per-matcher fill, the budget ends every walk by EOS within it, and the
partial documents of a stream extend each other.

On a bare clone (no ../shared/data) the documents are random walks of the matcher instead.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest

import tct
from conftest import DATA_DIR

torch = pytest.importorskip("torch")

TOK = tct.load("github-workflow")
V = TOK.vocab_size


def corpus_ids(n: int) -> list[list[int]]:
    """Ids of n real workflows (encoded; those that conform to the schema, so the matcher accepts
    them), or of random matcher walks without the data."""
    if (DATA_DIR / "workflows").is_dir():
        from trainer_shards import read_workflows

        out = []
        for text, _ in read_workflows(2 * n):
            enc = TOK.encode_detailed(json.loads(text))
            if not enc.fallbacks:
                out.append(list(enc.ids))
            if len(out) == n:
                break
        return out
    if os.environ.get("TCT_REQUIRE_DATA"):
        pytest.fail(f"data directory {DATA_DIR} not found")
    # The walk's own ids stop where it was cut; its closed document (the smallest valid
    # completion) is the whole document to walk.
    return [TOK.encode(TOK.random_document(seed, 200)[1]) for seed in range(min(n, 30))]


def unpack(bitmask: Any, vocab: int) -> np.ndarray:
    bm = np.asarray(bitmask, dtype=np.int32)
    return np.unpackbits(bm.view(np.uint8), axis=-1, bitorder="little").astype(bool)[..., :vocab]


def test_bitmask_equals_allowed_at_every_step_of_300_workflows() -> None:
    docs = corpus_ids(300)
    bm = tct.allocate_token_bitmask(1, V)
    assert bm.shape == (1, (V + 31) // 32) and bm.dtype == torch.int32
    steps = 0
    for ids in docs:
        m = TOK.matcher()
        for i, t in enumerate([*ids, TOK.eos_id]):
            m.fill_next_token_bitmask(bm, 0)
            bits = unpack(bm, V + 64)  # bits past the vocabulary stay clear
            assert not bits[0, V:].any()
            assert np.array_equal(bits[0, :V], m.allowed()), (i, t)
            assert bits[0, t], (i, t)
            assert m.accept_token(t)
            steps += 1
        assert m.is_terminated() and not m.accept_token(TOK.eos_id)
    assert steps > 1000


def test_accept_token_refuses_without_changing_state() -> None:
    ids = corpus_ids(3)[0]
    m = TOK.matcher()
    for t in ids[:10]:
        m.accept_token(t)
    before, doc = m.allowed(), m.document(False)
    forbidden = int(np.flatnonzero(~before)[0])
    for bad in (forbidden, -1, V, 2**40):
        assert m.accept_token(bad) is False
    assert np.array_equal(m.allowed(), before) and m.document(False) == doc
    with pytest.raises(TypeError):
        m.accept_token(True)


def test_rollback_fork_reset_equal_a_replay() -> None:
    for ids in corpus_ids(20)[:20]:
        m = TOK.matcher()
        for t in ids:
            assert m.accept_token(t)
        for n in (1, 3, len(ids) // 2, len(ids)):
            f = m.fork()
            f.rollback(n)
            fresh = TOK.matcher()
            for t in ids[: len(ids) - n]:
                fresh.accept_token(t)
            assert np.array_equal(f.allowed(), fresh.allowed())
            assert f.document(False) == fresh.document(False) and f.position == fresh.position
            # and forward again to the same end state
            for t in ids[len(ids) - n :]:
                assert f.accept_token(t)
            assert f.document(False) == m.document(False)
        with pytest.raises(tct.DecodeError):
            m.fork().rollback(len(ids) + 1)
        m.reset()
        assert m.position == 0 and np.array_equal(m.allowed(), TOK.matcher().allowed())


def test_forked_matchers_are_independent_and_forced_ids_are_the_only_choice() -> None:
    ids = corpus_ids(2)[1]
    m = TOK.matcher()
    for t in ids:
        m.accept_token(t)
    assert m.is_complete()
    assert m.forced_ids() == [TOK.eos_id]  # only EOS is left
    f = m.fork()
    f.accept_token(TOK.eos_id)
    assert f.is_terminated() and not m.is_terminated() and f.forced_ids() == []
    # forced ids from anywhere: each one is the only allowed id at its step
    for k in range(0, len(ids), 7):
        g = TOK.matcher()
        for t in ids[:k]:
            g.accept_token(t)
        for t in g.forced_ids():
            allowed = np.flatnonzero(g.allowed())
            assert allowed.tolist() == [t]
            g.accept_token(t)
        assert g.is_terminated() or np.count_nonzero(g.allowed()) > 1


def test_batch_fill_equals_the_per_matcher_fill() -> None:
    docs = corpus_ids(64)
    matchers = []
    for j, ids in enumerate(docs):
        m = TOK.matcher()
        for t in ids[: (j * 7) % (len(ids) + 1)]:
            m.accept_token(t)
        matchers.append(m)
    for n in (1, 16, len(matchers)):
        batch = tct.allocate_token_bitmask(n, V)
        for threads in (None, 1, 2):
            batch.fill_(0)
            tct.fill_next_token_bitmask_batch(matchers[:n], batch, num_threads=threads)
            one = tct.allocate_token_bitmask(n, V)
            for i, m in enumerate(matchers[:n]):
                m.fill_next_token_bitmask(one, i)
            assert torch.equal(batch, one)
    with pytest.raises(ValueError, match="rows"):
        tct.fill_next_token_bitmask_batch(matchers[:3], tct.allocate_token_bitmask(2, V))
    with pytest.raises(ValueError, match="words"):
        matchers[0].fill_next_token_bitmask(np.zeros((1, 3), np.int32))
    with pytest.raises(TypeError):
        matchers[0].fill_next_token_bitmask(np.zeros((1, 256), np.int64))
    with pytest.raises(ValueError, match=r"matchers\[2\] is the same Matcher"):
        tct.fill_next_token_bitmask_batch([matchers[0], matchers[1], matchers[0]], batch)
    with pytest.raises(TypeError):
        tct.fill_next_token_bitmask_batch([matchers[0], "not a matcher"], batch)
    npmask = np.zeros((2, (V + 31) // 32), np.int32)
    matchers[5].fill_next_token_bitmask(npmask, 1)
    assert np.array_equal(unpack(npmask, V)[1], matchers[5].allowed()) and not npmask[0].any()


def test_apply_token_bitmask_inplace_torch_and_numpy() -> None:
    rng = np.random.default_rng(0)
    allowed = rng.random((3, V + 5)) < 0.3
    allowed[:, V:] = False
    bm = np.packbits(allowed[:, :V], axis=1, bitorder="little")
    words = np.zeros((3, (V + 31) // 32 * 4), np.uint8)
    words[:, : bm.shape[1]] = bm
    bitmask = words.view(np.int32)
    logits = rng.standard_normal((3, V + 5)).astype(np.float32)
    expect = np.where(allowed, logits, -np.inf)
    t = torch.from_numpy(logits.copy())
    tct.apply_token_bitmask_inplace(t, torch.from_numpy(bitmask))
    assert np.array_equal(t.numpy(), expect)
    a = logits.copy()
    tct.apply_token_bitmask_inplace(a, bitmask)
    assert np.array_equal(a, expect)
    one = torch.from_numpy(logits[1].copy())
    tct.apply_token_bitmask_inplace(one, torch.from_numpy(bitmask[1]))
    assert np.array_equal(one.numpy(), expect[1])
    if torch.cuda.is_available():
        c = torch.from_numpy(logits.copy()).cuda()
        tct.apply_token_bitmask_inplace(c, torch.from_numpy(bitmask))
        assert np.array_equal(c.cpu().numpy(), expect)
        with pytest.raises(ValueError, match="CUDA"):
            TOK.matcher().fill_next_token_bitmask(torch.from_numpy(bitmask).cuda())


def budget_walk(seed: int, budget: int) -> tuple[list[int], tct.Matcher]:
    """A random walk under the bitmask of a budgeted matcher (closing ids preferred half the time
    so walks vary in length)."""
    rng = np.random.default_rng(seed)
    m = TOK.matcher()
    m.set_budget(budget)
    bm = tct.allocate_token_bitmask(1, V)
    ids: list[int] = []
    while not m.is_terminated():
        m.fill_next_token_bitmask(bm)
        choices = np.flatnonzero(unpack(bm, V)[0])
        assert len(choices), (seed, len(ids))
        t = int(rng.choice(choices))
        assert m.accept_token(t)
        ids.append(t)
        assert len(ids) <= budget
    return ids, m


def test_budgeted_walks_end_by_eos_within_the_budget(workflow_validator: Any) -> None:
    cuts = 0
    for seed in range(3):  # a budgeted fill near the end costs up to seconds: see bitmask.rs
        ids, m = budget_walk(seed, 64)
        assert ids[-1] == TOK.eos_id and len(ids) <= 64
        doc = json.loads(m.document(True))
        assert not list(workflow_validator.iter_errors(doc)), seed
        cuts += m.budget_cuts > 0
    assert cuts > 0  # uniform random walks would not end on their own: the budget did it
    m = TOK.matcher()
    with pytest.raises(tct.DecodeError, match="budget"):
        m.set_budget(1)  # the smallest workflow needs more than one id


def test_rollback_restores_the_budget() -> None:
    ids, m = budget_walk(3, 64)
    left = [m.budget]
    f = m.fork()
    f.rollback(5)
    assert f.budget == left[0] + 5 and not f.is_terminated()
    f.reset()
    assert f.budget == 64 and f.position == 0


def test_partial_documents_extend_each_other() -> None:
    for ids in corpus_ids(20)[:20]:
        m = TOK.matcher()
        prev = ""
        for t in ids:
            m.accept_token(t)
            snap = m.partial_document()
            json.loads(snap)  # always a JSON document
            body = snap.rstrip('}]"')
            assert body.startswith(prev.rstrip('}]"')), (prev, snap)
            prev = snap
        assert json.loads(prev) == json.loads(m.document(True))
