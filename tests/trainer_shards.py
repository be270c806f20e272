"""Token shards for the trainer tests, written in the documented format (docs/shard-format.md).

`build_test_shard(directory)` is the ONE place that decides where the trainer tests' data comes
from. Today it turns real workflows from ../shared/data into ids with a byte-level mapping (UTF-8 byte
value -> id, PAD/BOS/EOS at the top of a 260-id vocabulary), because the project's tokenizer and
`tct-encode` are not ready yet. When they are, replace its body with a `tct-encode` run over the same
documents; every test goes through this function, so nothing else changes.

`make_shard` writes the three files exactly as the format document says, with numpy only, so that
tests can also build deliberately broken shards.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WORKFLOWS = DATA / "workflows" / "workflows.jsonl.gz"

# Byte-level test tokenizer: ids 0..255 are bytes, 256 is unused, then PAD, BOS, EOS.
BYTE_VOCAB = 260
BYTE_PAD, BYTE_BOS, BYTE_EOS = 257, 258, 259
# Position ids for `--window-format position` sit above the vocabulary, as in the real tokenizer.
BYTE_POSITION_RANGE = (260, 260 + 2048)


def make_shard(
    path: str | Path,
    docs_ids: Sequence[Sequence[int] | np.ndarray],
    vocab_size: int,
    json_bytes: Sequence[int],
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    tokenizer_name: str = "test-bytes",
    tokenizer_hash: str = "0" * 16,
    position_range: tuple[int, int] | None = None,
    sources: Sequence[str] | None = None,
    split_kind: str = "train",
) -> Path:
    """Write `path` (.bin), its .idx and .meta.json. Each of `docs_ids` is a document's content ids
    WITHOUT BOS/EOS; they are framed here. Returns the .bin path."""
    path = Path(path)
    assert path.name.endswith(".bin"), path
    stem = path.with_name(path.name[: -len(".bin")])
    framed = [np.concatenate([[bos_id], np.asarray(d, dtype=np.int64), [eos_id]]) for d in docs_ids]
    lengths = np.array([len(d) for d in framed], dtype=np.uint64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype("<u8")
    ids = np.concatenate(framed).astype("<u2") if framed else np.zeros(0, "<u2")
    assert len(json_bytes) == len(docs_ids)

    ids.tofile(path)
    with open(stem.with_name(stem.name + ".idx"), "wb") as f:
        f.write(b"TCTSHRD\0")
        f.write((1).to_bytes(4, "little"))
        f.write(int(vocab_size).to_bytes(4, "little"))
        f.write(len(framed).to_bytes(8, "little"))
        f.write(offsets.tobytes())
    tokenizer = {
        "name": tokenizer_name,
        "hash": tokenizer_hash,
        "vocab_size": vocab_size,
        "pad_id": pad_id,
        "bos_id": bos_id,
        "eos_id": eos_id,
    }
    if position_range is not None:
        tokenizer["position_range"] = list(position_range)
    meta = {
        "format": "tct-shard",
        "version": 1,
        "tokenizer": tokenizer,
        "counts": {
            "documents": len(framed),
            "tokens": int(len(ids)),
            "json_bytes": int(sum(json_bytes)),
            "fallback_documents": 0,
            "rejected": 0,
            "skipped_too_long": 0,
        },
        "documents": {
            "json_bytes": [int(b) for b in json_bytes],
            "source": list(sources)
            if sources is not None
            else [f"doc:{i + 1}" for i in range(len(framed))],
        },
        "rejected": [],
        "split": {
            "kind": split_kind,
            "val_fraction": 0.0,
            "seed": 0,
            "num_shards": 1,
            "shard_index": 0,
        },
    }
    stem.with_name(stem.name + ".meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return path


def read_workflows(n: int, skip: int = 0) -> list[tuple[bytes, str]]:
    """The compact-JSON bytes and source of `n` development workflows (after `skip`)."""
    out: list[tuple[bytes, str]] = []
    with gzip.open(WORKFLOWS, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if line_no <= skip:
                continue
            rec = json.loads(line)
            text = json.dumps(rec["json"], separators=(",", ":"), ensure_ascii=False).encode()
            out.append((text, f"workflows.jsonl.gz:{line_no}"))
            if len(out) == n:
                break
    return out


def build_test_shard(directory: str | Path, n_docs: int = 300, name: str = "train") -> Path:
    """A small shard of real workflows in `directory`, encoded by `tct-encode` with the bundled
    `github-workflow` tokenizer; returns its .bin path.

    Without ../shared/data the calling test is skipped (a failure under TCT_REQUIRE_DATA=1)."""
    import subprocess
    import sys

    from conftest import require_data  # imported here: the benchmark uses make_shard without pytest

    require_data()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"{name}-source.jsonl"
    with source.open("wb") as f:
        for text, _ in read_workflows(n_docs):
            f.write(text + b"\n")
    out = directory / f"{name}.bin"
    subprocess.run(
        [sys.executable, "-m", "tct.cli_encode", str(source), str(out), "--quiet"],
        check=True,
    )
    return out
