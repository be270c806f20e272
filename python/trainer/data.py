"""Training data from `tct-encode` shards: memory-mapped documents cut into context windows.

    data = load_data("out.bin", val_spec=None, val_fraction=0.02)
    loader = BatchLoader(data.train, data.tokenizer, sequence_len=512, batch_size=32, seed=1337)
    x, y = loader.next_batch()        # (B, T) int64 each, on the loader's device; y == -1: not scored

Documents. The chosen documents of one or more shards are laid end to end as one virtual stream
(a `DocumentSet`); a validation split by document is just another selection of the same shards.

Windows (`plan_windows`). Every window starts at a document's BOS where possible: a window starting
at `p` covers `[p, p + T]`; the next one starts at the last document start inside that span (the BOS
of the document the window cut off), or, if the window lies inside one long document, at `p + T`
(a continuation window, so long documents are trained on in full). Nothing is dropped; the price is
that the cut-off head of a document is seen twice (once as the tail of a window, once from its BOS).
`plan.redundancy` reports that factor (tokens in windows / tokens in the data).

Formats (`--window-format`):
- `plain`: x = s[p : p+T], y = s[p+1 : p+T+1] over the stream s.
- `position` (the proof of concept's): x = [position_id, s[p : p+T-1]], y = s[p : p+T], where
  position_id = position_range[0] + min(p - start of p's document, range size - 1): the model is told
  where in its document a continuation window begins.

Targets that are never scored (y = -1): BOS (it always follows EOS, and generation starts from it, so
it carries no information) and padding past the end of the stream. For evaluation (`count_once`), a
target already predicted by the next window (the doubly seen head above) is also skipped, so that
every token of every validation document except its BOS (its content and its EOS) is scored exactly
once. That is what makes bits per byte exact: sum of nats / ln 2 / sum of the documents' compact-JSON
bytes (`meta.documents.json_bytes`).

Order. Windows are visited in a permutation drawn from `numpy.random.default_rng([seed, epoch])`;
`rows_consumed` (one integer) is the whole loader state. With DDP, rank r takes rows
[r*B, (r+1)*B) of each group of world_size*B rows, so the global order is the same for any number of
processes, and 2 ranks x B rows equal 1 rank x 2 accumulation steps x B rows.
"""

from __future__ import annotations

import bisect
import glob
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tct.shard import Shard, read_shard, shard_paths

WINDOW_FORMATS = ("plain", "position")
_SPLIT_SEED = 0xD0C5  # the validation split does not depend on --seed: runs share a val set


class DataError(ValueError):
    """The training data cannot be used as asked; the message names the file or option."""


@dataclass(frozen=True)
class TokenizerInfo:
    name: str | None
    hash: str | None
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    position_range: tuple[int, int] | None

    @classmethod
    def from_shard(cls, shard: Shard) -> TokenizerInfo:
        tok = shard.meta["tokenizer"]
        missing = [k for k in ("pad_id", "bos_id", "eos_id") if k not in tok]
        if missing:
            raise DataError(f"{shard.path}: metadata /tokenizer lacks {', '.join(missing)}")
        pr = tok.get("position_range")
        return cls(
            name=tok.get("name"),
            hash=tok.get("hash"),
            vocab_size=int(tok["vocab_size"]),
            pad_id=int(tok["pad_id"]),
            bos_id=int(tok["bos_id"]),
            eos_id=int(tok["eos_id"]),
            position_range=(int(pr[0]), int(pr[1])) if pr is not None else None,
        )

    def identity(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["position_range"] = list(self.position_range) if self.position_range else None
        return d

    def model_vocab_size(self, window_format: str) -> int:
        """Embedding rows the model needs: the vocabulary, plus the position ids if they are used."""
        if window_format == "position":
            if self.position_range is None:
                raise DataError(
                    "--window-format position: the shard metadata has no /tokenizer/position_range"
                )
            return max(self.vocab_size, self.position_range[1])
        return self.vocab_size


def find_shards(spec: str) -> list[Path]:
    """A shard (any of its three file names or the stem), a directory of shards, or a glob."""
    p = Path(spec)
    if p.is_dir():
        found = sorted(p.glob("*.bin"))
    elif any(ch in spec for ch in "*?["):
        # A glob may match any of a shard's three files; each shard counts once.
        found = sorted({shard_paths(m)[0] for m in glob.glob(spec) if not Path(m).is_dir()})
    else:
        return [p]
    if not found:
        raise DataError(f"{spec}: no shards found (expected *.bin with .idx and .meta.json beside)")
    return found


def open_shards(paths: list[Path]) -> tuple[list[Shard], TokenizerInfo]:
    """Open and validate shards that share one tokenizer; returns them and that tokenizer."""
    shards = [read_shard(p) for p in paths]
    tok = TokenizerInfo.from_shard(shards[0])
    for s in shards[1:]:
        other = TokenizerInfo.from_shard(s)
        if other != tok:
            raise DataError(
                f"{s.path}: tokenizer {other.identity()} differs from {shards[0].path}'s "
                f"{tok.identity()}; shards of one run must share a tokenizer"
            )
    return shards, tok


class DocumentSet:
    """Selected documents of some shards, end to end as one virtual token stream.

    `selection[i]` holds sorted document indices of `shards[i]`. Runs of consecutive documents are
    stored as segments, so reading a window touches one or two memory-mapped slices.
    """

    def __init__(self, shards: list[Shard], selection: list[np.ndarray]) -> None:
        self.shards = shards
        self.selection = [np.asarray(s, dtype=np.int64) for s in selection]
        lengths, json_bytes = [], []
        seg_vstart: list[int] = []
        seg_len: list[int] = []
        seg_rstart: list[int] = []
        seg_shard: list[int] = []
        have_bytes = True
        vpos = 0
        for si, (shard, sel) in enumerate(zip(shards, self.selection, strict=True)):
            if len(sel) == 0:
                continue
            lens = shard.offsets[sel + 1] - shard.offsets[sel]
            lengths.append(lens)
            jb = shard.meta.get("documents", {}).get("json_bytes")
            if jb is None:
                have_bytes = False
            else:
                json_bytes.append(np.asarray(jb, dtype=np.int64)[sel])
            # A new segment wherever the selection skips a document.
            breaks = np.flatnonzero(np.diff(sel) != 1) + 1
            for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(sel)], strict=True):
                rstart = int(shard.offsets[sel[a]])
                rend = int(shard.offsets[sel[b - 1] + 1])
                seg_vstart.append(vpos)
                seg_len.append(rend - rstart)
                seg_rstart.append(rstart)
                seg_shard.append(si)
                vpos += rend - rstart
        all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        self.doc_starts = np.concatenate([[0], np.cumsum(all_lengths)]).astype(np.int64)
        self.json_bytes = np.concatenate(json_bytes) if have_bytes and json_bytes else None
        self._seg_vstart, self._seg_len = seg_vstart, seg_len
        self._seg_rstart, self._seg_shard = seg_rstart, seg_shard

    @property
    def num_docs(self) -> int:
        return len(self.doc_starts) - 1

    @property
    def total_tokens(self) -> int:
        return int(self.doc_starts[-1])

    @property
    def predicted_tokens(self) -> int:
        """Tokens scored once each by a count_once pass: all but each document's BOS."""
        return self.total_tokens - self.num_docs

    @property
    def total_json_bytes(self) -> int | None:
        return int(self.json_bytes.sum()) if self.json_bytes is not None else None

    def read(self, start: int, out: np.ndarray) -> int:
        """Copy stream tokens [start, start + len(out)) into `out`; returns how many existed."""
        k = bisect.bisect_right(self._seg_vstart, start) - 1
        filled, length = 0, len(out)
        while filled < length and k < len(self._seg_vstart):
            offset = start + filled - self._seg_vstart[k]
            take = min(length - filled, self._seg_len[k] - offset)
            r = self._seg_rstart[k] + offset
            out[filled : filled + take] = self.shards[self._seg_shard[k]].ids[r : r + take]
            filled += take
            k += 1
        return filled

    def head(self, max_tokens: int) -> DocumentSet:
        """The first documents whose tokens fit in `max_tokens` (at least one document)."""
        keep = max(1, int(np.searchsorted(self.doc_starts, max_tokens, side="right")) - 1)
        if keep >= self.num_docs:
            return self
        selection, left = [], keep
        for sel in self.selection:
            selection.append(sel[:left])
            left -= len(selection[-1])
        return DocumentSet(self.shards, selection)


@dataclass(frozen=True)
class WindowPlan:
    starts: np.ndarray  # (W,) int64 stream offset of each window's first token
    limits: np.ndarray  # (W,) int64 where the next window takes over (end of stream for the last)
    doc_pos: np.ndarray  # (W,) int64 offset of the window start inside its document
    redundancy: float  # tokens covered by windows / tokens in the stream


def plan_windows(doc_starts: np.ndarray, sequence_len: int, window_format: str) -> WindowPlan:
    """BOS-aligned windows over a stream whose documents start at `doc_starts` (last = total)."""
    if window_format not in WINDOW_FORMATS:
        raise DataError(f"--window-format {window_format!r}: expected one of {WINDOW_FORMATS}")
    total = int(doc_starts[-1])
    T = sequence_len
    span = T + 1 if window_format == "plain" else T  # stream tokens one window reads
    starts_list = doc_starts[:-1].tolist()
    out: list[int] = []
    p = 0
    while total > 0:
        out.append(p)
        if p + span >= total:
            break
        # The last document start in (p, p + T]: the BOS of the document this window cuts off (or,
        # exactly at p + T, of the one after it: then nothing is seen twice).
        q = starts_list[bisect.bisect_right(starts_list, p + T) - 1]
        p = q if q > p else p + T
    starts = np.asarray(out, dtype=np.int64)
    limits = np.append(starts[1:], total).astype(np.int64)
    doc_idx = np.searchsorted(doc_starts, starts, side="right") - 1
    doc_pos = starts - doc_starts[doc_idx]
    covered = int(np.minimum(starts + span, total).sum() - starts.sum())
    return WindowPlan(starts, limits, doc_pos, covered / total if total else 0.0)


class BatchLoader:
    """Batches of windows from a DocumentSet: shuffled (`next_batch`) or in order (`eval_batches`)."""

    def __init__(
        self,
        docs: DocumentSet,
        tokenizer: TokenizerInfo,
        *,
        sequence_len: int,
        batch_size: int,
        window_format: str = "plain",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        if docs.total_tokens == 0:
            raise DataError("no tokens to train on (the selected documents are empty)")
        self.docs = docs
        self.tok = tokenizer
        self.T = sequence_len
        self.B = batch_size
        self.window_format = window_format
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.plan = plan_windows(docs.doc_starts, sequence_len, window_format)
        if window_format == "position":
            tokenizer.model_vocab_size(window_format)  # raises if there is no position range
        self.rows_consumed = 0
        self._order_epoch = -1
        self._order = np.zeros(0, dtype=np.int64)

    @property
    def num_windows(self) -> int:
        return len(self.plan.starts)

    @property
    def epoch(self) -> float:
        return self.rows_consumed / self.num_windows

    # ---- state -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "rows_consumed": self.rows_consumed,
            "seed": self.seed,
            "num_windows": self.num_windows,
            "tokens": self.docs.total_tokens,
            "sequence_len": self.T,
            "window_format": self.window_format,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        mine = self.state()
        for key in ("seed", "num_windows", "tokens", "sequence_len", "window_format"):
            if state.get(key) != mine[key]:
                raise DataError(
                    f"cannot resume the data position: checkpoint has {key}={state.get(key)!r}, "
                    f"this run has {mine[key]!r} (different data or options)"
                )
        self.rows_consumed = int(state["rows_consumed"])

    # ---- batches ---------------------------------------------------------------------------
    def _window_at(self, row: int) -> int:
        epoch, i = divmod(row, self.num_windows)
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
            self._order_epoch = epoch
        return int(self._order[i])

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's B shuffled windows; advances the shared position by world_size * B rows."""
        first = self.rows_consumed + self.rank * self.B
        windows = [self._window_at(first + i) for i in range(self.B)]
        self.rows_consumed += self.world_size * self.B
        return self._to_device(*self.fill(windows, count_once=False))

    def eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every window once, in stream order, this rank's share (windows r, r + world, ...)."""
        mine = np.arange(self.rank, self.num_windows, self.world_size)
        for i in range(0, len(mine), self.B):
            yield self._to_device(*self.fill(mine[i : i + self.B].tolist(), count_once=True))

    def fill(self, windows: list[int], count_once: bool) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) int64 arrays of shape (len(windows), T); y is -1 where nothing is scored."""
        T, tok, n = self.T, self.tok, len(windows)
        plain = self.window_format == "plain"
        span = T + 1 if plain else T
        buf = np.full((n, span), tok.pad_id, dtype=np.int64)
        got = np.empty(n, dtype=np.int64)
        starts = self.plan.starts[windows]
        for r, p in enumerate(starts.tolist()):
            got[r] = self.docs.read(p, buf[r])
        j = np.arange(T)[None, :]  # (1, T) target index within the row
        if plain:
            x, y = buf[:, :-1], buf[:, 1:].copy()
            target_pos = starts[:, None] + 1 + j  # stream position of each target
            scored = j < (got - 1)[:, None]
            if count_once:  # the next window predicts positions > its start (limit)
                scored &= target_pos <= self.plan.limits[windows][:, None]
        else:
            lo, hi = tok.position_range  # type: ignore[misc]  # checked in __init__
            pos_ids = lo + np.minimum(self.plan.doc_pos[windows], hi - lo - 1)
            x = np.concatenate([pos_ids[:, None], buf[:, :-1]], axis=1)
            y = buf.copy()
            target_pos = starts[:, None] + j
            scored = j < got[:, None]
            if count_once:  # the next window predicts positions >= its start (limit)
                scored &= target_pos < self.plan.limits[windows][:, None]
        scored &= y != tok.bos_id
        y[~scored] = -1
        return np.ascontiguousarray(x), y

    def _to_device(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if self.device.type == "cuda":
            # Pinned host memory lets the copy run asynchronously while the GPU is busy; torch's
            # caching host allocator keeps a pinned block alive until its copy has finished.
            return (
                xt.pin_memory().to(self.device, non_blocking=True),
                yt.pin_memory().to(self.device, non_blocking=True),
            )
        return xt, yt


@dataclass
class TrainData:
    tokenizer: TokenizerInfo
    train: DocumentSet
    val: DocumentSet | None
    train_paths: list[Path]
    val_paths: list[Path]
    val_source: str  # where the validation documents come from, for the log


def split_by_document(
    shards: list[Shard], val_fraction: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A deterministic train/val split of every shard's documents (independent of --seed)."""
    train, val, draws = [], [], []
    for i, s in enumerate(shards):
        u = np.random.default_rng([_SPLIT_SEED, i]).random(len(s))
        draws.append(u)
        is_val = u < val_fraction
        train.append(np.flatnonzero(~is_val))
        val.append(np.flatnonzero(is_val))
    n_docs = sum(len(s) for s in shards)
    if val_fraction > 0 and sum(len(v) for v in val) == 0 and n_docs >= 2:
        # Too few documents for the fraction: take the one with the smallest draw.
        i = int(np.argmin([u.min() if len(u) else math.inf for u in draws]))
        d = int(np.argmin(draws[i]))
        val[i] = np.array([d])
        train[i] = train[i][train[i] != d]
    if sum(len(t) for t in train) == 0:
        raise DataError(f"--val-fraction {val_fraction} leaves no training documents")
    return train, val


def load_data(data_spec: str, val_spec: str | None, val_fraction: float) -> TrainData:
    """Resolve --data / --val-data into document sets.

    Validation documents come from, in order of preference: --val-data; shards in --data whose
    metadata says split.kind == "val" (tct-encode --val-fraction writes one next to the output);
    for `--data X.bin`, the `X.val.bin` tct-encode wrote beside it; a split of --data by
    document (`val_fraction`); none."""
    paths = find_shards(data_spec)
    shards, tok = open_shards(paths)
    train_shards = [s for s in shards if s.meta.get("split", {}).get("kind") != "val"]
    val_in_data = [s for s in shards if s.meta.get("split", {}).get("kind") == "val"]
    if not train_shards:
        raise DataError(f"--data {data_spec}: every shard is a validation shard")
    beside = None
    if val_spec is None and not val_in_data and data_spec.endswith(".bin"):
        candidate = Path(data_spec[: -len(".bin")] + ".val.bin")
        if candidate.is_file():
            beside = val_spec = str(candidate)
    if val_spec is not None:
        val_shards, val_tok = open_shards(find_shards(val_spec))
        if val_tok != tok:
            raise DataError(
                f"--val-data {val_spec}: tokenizer {val_tok.identity()} differs from the "
                f"training data's {tok.identity()}"
            )
        train = DocumentSet(train_shards, [np.arange(len(s)) for s in train_shards])
        val = DocumentSet(val_shards, [np.arange(len(s)) for s in val_shards])
        source = (
            f"{beside}, beside --data (written by tct-encode --val-fraction)"
            if beside
            else f"--val-data {val_spec}"
        )
    elif val_in_data:
        val_shards = val_in_data
        train = DocumentSet(train_shards, [np.arange(len(s)) for s in train_shards])
        val = DocumentSet(val_shards, [np.arange(len(s)) for s in val_shards])
        source = "validation shards found in --data"
    elif val_fraction > 0:
        val_shards = train_shards
        tr_sel, va_sel = split_by_document(train_shards, val_fraction)
        train = DocumentSet(train_shards, tr_sel)
        val = DocumentSet(train_shards, va_sel)
        source = f"{val.num_docs} documents split off --data (--val-fraction {val_fraction})"
    else:
        val_shards = []
        train = DocumentSet(train_shards, [np.arange(len(s)) for s in train_shards])
        val = None
        source = "none (--val-fraction 0 and no --val-data)"
    if train.total_tokens == 0:
        raise DataError(f"--data {data_spec}: the training shards hold no documents")
    if val is not None and val.num_docs == 0:
        val = None
        source = "none (the validation selection is empty)"
    return TrainData(
        tokenizer=tok,
        train=train,
        val=val,
        train_paths=[s.path for s in train_shards],
        val_paths=[s.path for s in val_shards],
        val_source=source,
    )
