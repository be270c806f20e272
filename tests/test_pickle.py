"""Tokenizers pickle, so they ship to DataLoader workers, Ray or Spark:
the unpickled tokenizer gives the same ids, decodes the same and builds the same matcher."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

import tct

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {"enum": ["x", "y"]},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["name"],
}
DOCS = [
    {"name": "a"},
    {"name": "ü", "kind": "y", "items": [1, 2, 3]},
    {"name": "fallback", "items": ["not an int"]},
]


@pytest.fixture(scope="module")
def tok() -> tct.Tokenizer:
    return tct.Tokenizer.from_schema(SCHEMA)


def assert_same_tokenizer(a: tct.Tokenizer, b: tct.Tokenizer, docs: list) -> None:
    assert (a.vocab_size, a.bos_id, a.eos_id, a.pad_id) == (
        b.vocab_size,
        b.bos_id,
        b.eos_id,
        b.pad_id,
    )
    for doc in docs:
        ids = a.encode(doc)
        assert b.encode(doc) == ids
        assert b.encode_detailed(doc) == a.encode_detailed(doc)
        assert b.decode(ids) == a.decode(ids)
    m = b.matcher()
    assert np.array_equal(m.allowed(), a.matcher().allowed())


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(tok: tct.Tokenizer, protocol: int) -> None:
    clone = pickle.loads(pickle.dumps(tok, protocol=protocol))
    assert isinstance(clone, tct.Tokenizer)
    assert (clone.name, clone.hash) == (tok.name, tok.hash)
    assert_same_tokenizer(tok, clone, DOCS)


def test_to_bytes_round_trip(tok: tct.Tokenizer) -> None:
    data = tok.to_bytes()
    assert isinstance(data, bytes) and data
    clone = tct.Tokenizer.from_bytes(data)
    assert_same_tokenizer(tok, clone, DOCS)
    # Serialising is deterministic, so pickles can be compared and cached.
    assert clone.to_bytes() == data


def test_save_and_from_file(tok: tct.Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tok.json"
    tok.save(path)
    assert path.read_bytes() == tok.to_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temporary file left
    clone = tct.Tokenizer.from_file(path)
    assert clone.hash == tok.hash and clone.name == tok.name
    assert_same_tokenizer(tok, clone, DOCS)
    path.write_bytes(b"{broken")
    with pytest.raises(tct.SchemaError, match="tok.json"):
        tct.Tokenizer.from_file(path)


def test_save_errors_name_the_path_and_leave_nothing(tok: tct.Tokenizer, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "tok.json"
    with pytest.raises(FileNotFoundError) as err:
        tok.save(missing)
    assert err.value.filename == str(missing)
    # Replacing an existing file: the old one stays until the new one is whole.
    path = tmp_path / "tok.json"
    path.write_bytes(b"old")
    tok.save(str(path))
    assert path.read_bytes() == tok.to_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok.json"]
    with pytest.raises(IsADirectoryError):
        tok.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok.json"]


def test_workflow_tokenizer_pickles(workflow_tokenizer: tct.Tokenizer, workflow_corpus) -> None:
    clone = pickle.loads(pickle.dumps(workflow_tokenizer))
    docs = [r["json"] for r in workflow_corpus[:200]]
    assert_same_tokenizer(workflow_tokenizer, clone, docs)


def test_corrupt_bytes_are_a_schema_error(tok: tct.Tokenizer) -> None:
    data = tok.to_bytes()
    # Truncations that cut into the content (a trailing newline may legitimately be optional).
    truncated = [data[:k] for k in (len(data) // 2, len(data.rstrip()) - 1)]
    for bad in (b"", b"garbage", b"\x00" * 64, *truncated):
        with pytest.raises(tct.SchemaError):
            tct.Tokenizer.from_bytes(bad)


def test_exceptions_pickle_with_their_attributes() -> None:
    for e in (
        tct.SchemaError("s", pointer="/a"),
        tct.EncodeError("e", pointer="/b", offset=3, index=4),
        tct.DecodeError("d", position=5),
    ):
        clone = pickle.loads(pickle.dumps(e))
        assert type(clone) is type(e) and str(clone) == str(e)
        assert vars(clone) == vars(e)


def test_encoding_pickles(tok: tct.Tokenizer) -> None:
    enc = tok.encode_detailed(DOCS[2])
    assert enc.fallbacks  # it has both fields populated
    clone = pickle.loads(pickle.dumps(enc))
    assert clone == enc and clone.ids == enc.ids and clone.fallbacks == enc.fallbacks


def _encode_in_worker(args: tuple[tct.Tokenizer, list]) -> list[list[int]]:
    tokenizer, docs = args
    return [tokenizer.encode(d) for d in docs]


def test_ships_to_spawned_workers(tok: tct.Tokenizer) -> None:
    """The DataLoader/multiprocessing case: a fresh interpreter (spawn) rebuilds the tokenizer
    from the pickle and produces the same ids."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_encode_in_worker, [(tok, DOCS), (tok, DOCS[::-1])])
    assert results[0] == [tok.encode(d) for d in DOCS]
    assert results[1] == [tok.encode(d) for d in DOCS[::-1]]


class _DocDataset:
    """A map-style dataset holding a tokenizer, as a training pipeline would."""

    def __init__(self, tokenizer: tct.Tokenizer, docs: list) -> None:
        self.tokenizer, self.docs = tokenizer, docs

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, i: int) -> list[int]:
        return self.tokenizer.encode(self.docs[i])


def test_torch_dataloader_workers(tok: tct.Tokenizer) -> None:
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    docs = [{"name": f"doc {i}", "items": list(range(i % 5))} for i in range(16)]
    loader = DataLoader(
        _DocDataset(tok, docs),
        batch_size=None,
        num_workers=2,
        multiprocessing_context="spawn",
    )
    got = [[int(i) for i in ids] for ids in loader]
    assert got == [tok.encode(d) for d in docs]
