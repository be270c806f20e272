"""Read a token shard written by `tct-encode` (format: docs/shard-format.md, version 1).

    >>> shard = tct.read_shard("out.bin")        # or "out.idx", "out.meta.json", "out"
    >>> len(shard), shard.ids.dtype, shard.offsets[-1] == len(shard.ids)
    >>> shard.doc(0)                             # numpy uint16 view: BOS ids... EOS
    >>> shard.meta["tokenizer"]["vocab_size"]

A shard is three files and a reader needs all three. `read_shard` checks everything that can be
checked cheaply and raises `ShardError` (a `ValueError`) naming the file and the field at fault:
missing files, the magic and version, the index size, offsets that start at 0, never decrease and end
at the `.bin` length, every id below the vocabulary size, every document framed `BOS ... EOS`, and a
metadata file that agrees with the index. The id scan touches every token once (about 0.1 s per
100M tokens); `check_ids=False` skips it for callers that validated the shard before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Shard", "ShardError", "read_shard", "shard_paths", "MAGIC", "VERSION"]

MAGIC = b"TCTSHRD\0"
VERSION = 1
_HEADER_BYTES = 24  # magic (8) + version u32 + vocab u32 + document count u64
_SCAN_CHUNK = 1 << 24  # ids scanned per chunk when checking the vocabulary bound (32 MiB of uint16)


class ShardError(ValueError):
    """A token shard is missing, truncated or inconsistent. The message names the file."""


class Shard:
    """A memory-mapped token shard.

    `ids`: the `.bin` file as a read-only numpy uint16 memmap (empty array for an empty shard).
    `offsets`: int64 array of `len(self) + 1` token offsets; document `i` is
    `ids[offsets[i]:offsets[i + 1]]`. `meta`: the parsed `.meta.json`. `vocab_size`: from the index.
    """

    def __init__(
        self,
        path: Path,
        ids: np.ndarray,
        offsets: np.ndarray,
        meta: dict[str, Any],
        vocab_size: int,
    ) -> None:
        self.path = path
        self.ids = ids
        self.offsets = offsets
        self.meta = meta
        self.vocab_size = vocab_size

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        """Document `i` as a uint16 view, `BOS ids... EOS`."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: document {i} out of range (shard has {n})")
        i %= n
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def tokens(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        tok = self.meta.get("tokenizer", {})
        return (
            f"Shard({str(self.path)!r}, documents={len(self)}, tokens={self.tokens}, "
            f"vocab_size={self.vocab_size}, tokenizer={tok.get('name')!r})"
        )


def shard_paths(path: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """(`.bin`, `.idx`, `.meta.json`) for any of the three names or their common stem."""
    p = Path(path)
    name = p.name
    for suffix in (".meta.json", ".bin", ".idx"):
        if name.endswith(suffix):
            stem = p.with_name(name[: -len(suffix)])
            break
    else:
        stem = p
    return (
        stem.with_name(stem.name + ".bin"),
        stem.with_name(stem.name + ".idx"),
        stem.with_name(stem.name + ".meta.json"),
    )


def read_shard(path: str | os.PathLike[str], *, check_ids: bool = True) -> Shard:
    """Open and validate a shard; see the module docstring. Raises `ShardError`."""
    bin_path, idx_path, meta_path = shard_paths(path)
    for p in (bin_path, idx_path, meta_path):
        if not p.is_file():
            raise ShardError(
                f"{p}: missing (a shard is {bin_path.name}, {idx_path.name} and {meta_path.name}; "
                "tct-encode writes the metadata last, so a missing file means an unfinished write)"
            )

    vocab_size, offsets = _read_index(idx_path)
    n_docs = len(offsets) - 1

    bin_bytes = bin_path.stat().st_size
    if bin_bytes % 2:
        raise ShardError(f"{bin_path}: size {bin_bytes} is odd; it must hold whole uint16 ids")
    n_tokens = bin_bytes // 2
    if offsets[-1] != n_tokens:
        raise ShardError(
            f"{idx_path}: last offset is {int(offsets[-1])} but {bin_path.name} holds "
            f"{n_tokens} ids (the files do not belong together or one is truncated)"
        )
    # np.memmap cannot map an empty file; an empty shard is legal (every input rejected).
    ids = np.memmap(bin_path, dtype="<u2", mode="r") if n_tokens else np.zeros(0, dtype=np.uint16)

    meta = _read_meta(meta_path, vocab_size, n_docs, n_tokens)

    if check_ids and n_tokens:
        _check_ids(ids, offsets, vocab_size, bin_path)
    tok = meta["tokenizer"]
    if n_docs and "bos_id" in tok and "eos_id" in tok:
        _check_framing(ids, offsets, int(tok["bos_id"]), int(tok["eos_id"]), bin_path)
    return Shard(bin_path, ids, offsets, meta, vocab_size)


def _read_index(idx_path: Path) -> tuple[int, np.ndarray]:
    size = idx_path.stat().st_size
    with open(idx_path, "rb") as f:
        header = f.read(_HEADER_BYTES)
    if len(header) < _HEADER_BYTES:
        raise ShardError(f"{idx_path}: {size} bytes, shorter than the {_HEADER_BYTES}-byte header")
    if header[:8] != MAGIC:
        raise ShardError(f"{idx_path}: bad magic {header[:8]!r} at byte 0, expected {MAGIC!r}")
    version = int.from_bytes(header[8:12], "little")
    if version != VERSION:
        raise ShardError(
            f"{idx_path}: format version {version} at byte 8; this reader knows version {VERSION}"
        )
    vocab_size = int.from_bytes(header[12:16], "little")
    if not 0 < vocab_size <= 1 << 16:
        raise ShardError(f"{idx_path}: vocabulary size {vocab_size} at byte 12 is not in 1..65536")
    n_docs = int.from_bytes(header[16:24], "little")
    expected = _HEADER_BYTES + 8 * (n_docs + 1)
    if size != expected:
        raise ShardError(
            f"{idx_path}: {size} bytes, but a header announcing {n_docs} documents needs {expected}"
        )
    raw = np.fromfile(idx_path, dtype="<u8", count=n_docs + 1, offset=_HEADER_BYTES)
    if raw[0] != 0:
        raise ShardError(f"{idx_path}: offsets[0] is {int(raw[0])}, must be 0 (byte 24)")
    if raw[-1] >= 1 << 62:
        raise ShardError(f"{idx_path}: last offset {int(raw[-1])} is implausibly large")
    offsets = raw.astype(np.int64)
    steps = np.diff(offsets)
    if n_docs and steps.min() < 0:
        i = int(np.argmax(steps < 0))
        raise ShardError(
            f"{idx_path}: offsets decrease at document {i} "
            f"({int(offsets[i])} -> {int(offsets[i + 1])}, byte {_HEADER_BYTES + 8 * (i + 1)})"
        )
    return vocab_size, offsets


def _read_meta(meta_path: Path, vocab_size: int, n_docs: int, n_tokens: int) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(f"{meta_path}: not readable JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ShardError(f"{meta_path}: top level must be an object")
    if meta.get("format") != "tct-shard":
        raise ShardError(f"{meta_path}: /format is {meta.get('format')!r}, expected 'tct-shard'")
    if meta.get("version") != VERSION:
        raise ShardError(f"{meta_path}: /version is {meta.get('version')!r}, expected {VERSION}")
    tok = meta.get("tokenizer")
    if not isinstance(tok, dict):
        raise ShardError(f"{meta_path}: /tokenizer missing or not an object")
    if tok.get("vocab_size") != vocab_size:
        raise ShardError(
            f"{meta_path}: /tokenizer/vocab_size is {tok.get('vocab_size')!r} but the index says "
            f"{vocab_size}"
        )
    for key in ("pad_id", "bos_id", "eos_id"):
        if key in tok and not (isinstance(tok[key], int) and 0 <= tok[key] < vocab_size):
            raise ShardError(f"{meta_path}: /tokenizer/{key} {tok[key]!r} is not a valid id")
    counts = meta.get("counts", {})
    for key, actual in (("documents", n_docs), ("tokens", n_tokens)):
        if key in counts and counts[key] != actual:
            raise ShardError(
                f"{meta_path}: /counts/{key} is {counts[key]!r} but the shard holds {actual}"
            )
    docs = meta.get("documents", {})
    for key in ("json_bytes", "source"):
        if key in docs and len(docs[key]) != n_docs:
            raise ShardError(
                f"{meta_path}: /documents/{key} has {len(docs[key])} entries for {n_docs} documents"
            )
    return meta


def _check_ids(ids: np.ndarray, offsets: np.ndarray, vocab_size: int, bin_path: Path) -> None:
    if vocab_size >= 1 << 16:
        return  # every uint16 is in range
    for start in range(0, len(ids), _SCAN_CHUNK):
        chunk = ids[start : start + _SCAN_CHUNK]
        if int(chunk.max()) >= vocab_size:
            pos = start + int(np.argmax(chunk >= vocab_size))
            doc = int(np.searchsorted(offsets, pos, side="right")) - 1
            raise ShardError(
                f"{bin_path}: id {int(ids[pos])} at token {pos} (byte {2 * pos}, document {doc}) "
                f"is not below the vocabulary size {vocab_size}"
            )


def _check_framing(
    ids: np.ndarray, offsets: np.ndarray, bos: int, eos: int, bin_path: Path
) -> None:
    lengths = np.diff(offsets)
    if lengths.min() < 2:
        i = int(np.argmax(lengths < 2))
        raise ShardError(
            f"{bin_path}: document {i} has {int(lengths[i])} ids; every document is BOS ... EOS"
        )
    firsts = ids[offsets[:-1]]
    if (firsts != bos).any():
        i = int(np.argmax(firsts != bos))
        raise ShardError(
            f"{bin_path}: document {i} starts with id {int(firsts[i])} at token "
            f"{int(offsets[i])}, expected BOS {bos}"
        )
    lasts = ids[offsets[1:] - 1]
    if (lasts != eos).any():
        i = int(np.argmax(lasts != eos))
        raise ShardError(
            f"{bin_path}: document {i} ends with id {int(lasts[i])} at token "
            f"{int(offsets[i + 1]) - 1}, expected EOS {eos}"
        )
