"""tct.read_shard: the memory-mapped view, and a clear ShardError naming the file for each kind of
damage (docs/shard-format.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import tct
from tct.shard import ShardError, read_shard, shard_paths
from trainer_shards import BYTE_BOS, BYTE_EOS, BYTE_PAD, BYTE_VOCAB, build_test_shard, make_shard


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_shard(tmp_path_factory.mktemp("shard"), n_docs=40)


def copy_shard(src: Path, dst_dir: Path) -> tuple[Path, Path, Path]:
    out = []
    for p in shard_paths(src):
        shutil.copy(p, dst_dir / p.name)
        out.append(dst_dir / p.name)
    return out[0], out[1], out[2]


def test_reads_documents_as_written(good: Path) -> None:
    shard = read_shard(good)
    assert len(shard) == 40
    assert shard.ids.dtype == np.uint16 and shard.offsets.dtype == np.int64
    assert shard.offsets[0] == 0 and shard.offsets[-1] == len(shard.ids)
    tok = tct.load("github-workflow")  # the fixture shard is encoded with the bundled tokenizer
    assert shard.meta["tokenizer"]["vocab_size"] == tok.vocab_size == shard.vocab_size
    assert shard.meta["tokenizer"]["hash"] == tok.hash
    for i in range(len(shard)):
        d = shard.doc(i)
        assert d[0] == tok.bos_id and d[-1] == tok.eos_id
        text, consumed, _ = tok.decode(d)  # every document decodes (BOS and EOS consumed)
        assert consumed == len(d)
        assert len(text.encode()) == shard.meta["documents"]["json_bytes"][i]
    assert np.array_equal(shard.doc(-1), shard.doc(39))
    with pytest.raises(IndexError):
        shard.doc(40)


def test_any_of_the_three_names_opens_the_shard(good: Path) -> None:
    stem = good.with_name(good.name[: -len(".bin")])
    for name in (
        good,
        stem.with_name(stem.name + ".idx"),
        stem.with_name(stem.name + ".meta.json"),
        stem,
    ):
        assert len(read_shard(name)) == 40


def test_empty_shard_is_valid(tmp_path: Path) -> None:
    p = make_shard(
        tmp_path / "e.bin", [], BYTE_VOCAB, [], bos_id=BYTE_BOS, eos_id=BYTE_EOS, pad_id=BYTE_PAD
    )
    shard = read_shard(p)
    assert len(shard) == 0 and len(shard.ids) == 0


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _damage(kind: str, bin_p: Path, idx_p: Path, meta_p: Path) -> Path:
    """Apply one kind of damage; return the file the error must name."""
    if kind == "missing meta":
        meta_p.unlink()
        return meta_p
    if kind == "missing bin":
        bin_p.unlink()
        return bin_p
    if kind == "bad magic":
        _patch(idx_p, 0, b"NOTASHRD")
        return idx_p
    if kind == "bad version":
        _patch(idx_p, 8, (2).to_bytes(4, "little"))
        return idx_p
    if kind == "truncated index":
        idx_p.write_bytes(idx_p.read_bytes()[:-8])
        return idx_p
    if kind == "decreasing offsets":
        _patch(idx_p, 24 + 8 * 3, (1).to_bytes(8, "little"))
        return idx_p
    if kind == "truncated bin":
        bin_p.write_bytes(bin_p.read_bytes()[:-2])
        return idx_p  # the index and the .bin disagree; the index's last offset is named
    if kind == "id out of range":
        _patch(bin_p, 2 * 10, (tct.load("github-workflow").vocab_size + 5).to_bytes(2, "little"))
        return bin_p
    if kind == "missing BOS":
        _patch(bin_p, 0, (65).to_bytes(2, "little"))
        return bin_p
    if kind == "meta not json":
        meta_p.write_text("{not json", encoding="utf-8")
        return meta_p
    if kind == "meta vocab disagrees":
        meta = json.loads(meta_p.read_text())
        meta["tokenizer"]["vocab_size"] = 999
        meta_p.write_text(json.dumps(meta))
        return meta_p
    if kind == "meta counts disagree":
        meta = json.loads(meta_p.read_text())
        meta["documents"]["json_bytes"].pop()
        meta_p.write_text(json.dumps(meta))
        return meta_p
    raise AssertionError(kind)


DAMAGE = [
    "missing meta",
    "missing bin",
    "bad magic",
    "bad version",
    "truncated index",
    "decreasing offsets",
    "truncated bin",
    "id out of range",
    "missing BOS",
    "meta not json",
    "meta vocab disagrees",
    "meta counts disagree",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_corrupt_shard_raises_shard_error_naming_the_file(
    good: Path, tmp_path: Path, kind: str
) -> None:
    bin_p, idx_p, meta_p = copy_shard(good, tmp_path)
    culprit = _damage(kind, bin_p, idx_p, meta_p)
    with pytest.raises(ShardError) as err:
        read_shard(bin_p)
    assert str(culprit) in str(err.value)
    assert isinstance(err.value, ValueError)
