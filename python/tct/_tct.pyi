# Hand-written stubs for the Rust extension `tct._tct` (rust/src/python.rs).
# Users import `tct`; `tct.Tokenizer` wraps `_tct.Tokenizer` and normalises inputs, while
# `Encoding` and `Matcher` are re-exported as they are.

import os
from collections.abc import Callable, Iterable
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "Tokenizer",
    "Encoding",
    "Matcher",
    "Rules",
    "encode_corpus",
    "read_yaml",
    "CorpusReader",
    "fill_next_token_bitmask_batch",
    "__version__",
]

@final
class Encoding:
    """Token ids of one document plus the JSON pointers where the generic path was used."""

    @property
    def ids(self) -> list[int]: ...
    @property
    def fallbacks(self) -> list[str]: ...
    def __new__(cls, ids: list[int], fallbacks: list[str]) -> Encoding: ...
    def __len__(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __reduce__(self) -> tuple[type[Encoding], tuple[list[int], list[str]]]: ...

@final
class Matcher:
    """Constrained-generation state: which ids may come next so the document stays valid."""

    def advance(self, id: int) -> None:
        """Feed one id; raises `tct.DecodeError` (state unchanged) if it is not allowed."""
    def allowed(self) -> npt.NDArray[np.bool_]:
        """Mask of length `vocab_size`: True for every id that keeps the sequence valid."""
    def allowed_into(self, out: npt.NDArray[np.bool_]) -> None:
        """Write the mask into `out` (writable, contiguous, bool, length `vocab_size`); raises
        `ValueError` otherwise. For sampling loops that reuse one buffer."""
    def is_complete(self) -> bool: ...
    @property
    def rules_fallbacks(self) -> int: ...
    def top_kind(self) -> str:
        """What the matcher waits for next (for profiling)."""
    def document(self, complete: bool = True) -> str:
        """Compact JSON of the valid document nearest the current prefix."""
    @property
    def position(self) -> int:
        """Number of ids accepted so far."""
    def copy(self) -> Matcher: ...
    def __copy__(self) -> Matcher: ...
    # The token-bitmask interface (llguidance / XGrammar names).
    def accept_token(self, id: int) -> bool:
        """Accept one id; False (state unchanged) when the schema or the budget forbids it."""
    def fill_next_token_bitmask(self, bitmask: Any, index: int = 0) -> None:
        """Write the next id's mask into row `index` of an int32 (batch, ceil(vocab/32)) bitmask
        (numpy or CPU torch), GIL released."""
    def rollback(self, n: int) -> None:
        """Undo the last `n` accepted ids (budget included); `DecodeError` if fewer were accepted."""
    def fork(self) -> Matcher: ...
    def reset(self) -> None: ...
    def is_terminated(self) -> bool:
        """True once EOS was accepted."""
    def forced_ids(self, limit: int = 4096) -> list[int]:
        """The ids that are the only choice from here, in order (jump-forward)."""
    def set_budget(self, n: int | None) -> None:
        """At most `n` more ids, EOS included; ids after which the smallest completion no longer
        fits are forbidden. `DecodeError` when even the smallest completion does not fit."""
    @property
    def budget(self) -> int | None: ...
    @property
    def budget_cuts(self) -> int:
        """Steps at which the budget forbade ids the schema allowed."""
    def partial_document(self) -> str:
        """The document so far as JSON, open containers and strings closed, unfinished keys and
        values dropped: each snapshot extends the previous one."""
    def __deepcopy__(self, memo: Any) -> Matcher: ...

@final
class Rules:
    """A rules overlay compiled for one tokenizer's matchers."""

    def __new__(cls, tokenizer: Tokenizer, overlay: bytes) -> Rules: ...
    @property
    def report(self) -> list[str]: ...

@final
class Tokenizer:
    """The compiled core. Takes UTF-8 JSON bytes only; see `tct.Tokenizer` for the public API."""

    @staticmethod
    def compile(
        schema: bytes, registry: list[tuple[str, bytes]], source: str | None = None
    ) -> Tokenizer: ...
    @staticmethod
    def from_bytes(data: bytes, source: str | None = None) -> Tokenizer: ...
    def to_bytes(self) -> bytes: ...
    def save(self, path: str | os.PathLike[str]) -> None: ...
    def encode(self, doc: bytes) -> list[int]: ...
    def encode_detailed(self, doc: bytes) -> Encoding: ...
    def encode_batch(
        self, docs: list[bytes], num_threads: int | None = None
    ) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.int64]]: ...
    def decode(self, ids: Iterable[int]) -> tuple[str, int, int]: ...
    def matcher(self, rules: Rules | None = None) -> Matcher: ...
    @staticmethod
    def train(
        schema: bytes,
        registry: list[tuple[str, bytes]],
        docs: list[bytes],
        vocab_size: int,
        dictionary_size: int | None = None,
        merge_scope: str | None = None,
        name: str = ...,
        progress: bool = False,
        num_threads: int | None = None,
        groups: list[int] | None = None,
    ) -> Tokenizer:
        """Train a vocabulary in Rust, in parallel, with the GIL released. `merge_scope` is
        `"strings"`, `"structure-runs"` or `"across"`; `groups` is one group id per document."""
    def encode_prefix(self, doc: bytes) -> list[int]:
        """Ids of a partial document used as a generation prompt (its last path left open)."""
    def random_document(self, seed: int, max_tokens: int = 512) -> tuple[list[int], str]:
        """A document drawn under the matcher's mask: `(ids, json_text)`; `ids` stops at
        `max_tokens`, and the text is closed by the smallest valid completion."""
    def matcher_accepts(self, ids: Iterable[int], check_every: int = 0) -> None:
        """Raise `tct.DecodeError` unless the matcher accepts `ids` id by id and ends complete,
        checking the allowed mask every `check_every` steps (0: never)."""
    def extract_window(self, ids: Iterable[int], start: int, end: int) -> list[int]:
        """`[position_id(start)] + ids[start:end]`; `ValueError` if the window is not inside."""
    @property
    def position_range(self) -> tuple[int, int]:
        """`(first, end)` of the window format's position ids, above `vocab_size`."""
    @property
    def base_size(self) -> int:
        """Number of base ids (bytes, structure, choices) before the trained ids."""
    @property
    def name(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def pad_id(self) -> int: ...
    @property
    def bos_id(self) -> int: ...
    @property
    def eos_id(self) -> int: ...

def encode_corpus(
    tokenizer: Tokenizer,
    input: str,
    output: str,
    *,
    threads: int = 1,
    val_fraction: float = 0.0,
    seed: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
    max_tokens: int | None = None,
    progress: Callable[[dict[str, Any]], object] | None = None,
    field: str | None = None,
    val_group: str | None = None,
    follow_symlinks: bool = False,
) -> dict[str, Any]:
    """Encode a corpus into token shards (docs/shard-format.md) with the GIL released.

    `progress` is called with a dict (`items`, `documents`, `rejected`, `skipped_too_long`,
    `tokens`, `input_bytes`, `elapsed_s`, `fraction`, `finished`) about every 200 ms. Returns
    `{"train": counts, "val": counts | None, "outputs": [[bin, idx, meta], ...], "items",
    "input_bytes", "elapsed_s", "rejected_sample", "fallback_pointers": [(pointer, documents)],
    "tokenizer": (name, hash, vocab_size)}`,
    where counts has `documents`, `tokens`, `json_bytes`, `fallback_documents`, `rejected` and
    `skipped_too_long`. Usage errors raise `ValueError`, run errors `tct.TctError`.
    """

def read_yaml(text: str) -> str:
    """One YAML 1.2 document (tct-encode's rules) as compact JSON text; `ValueError` if it
    does not parse."""

@final
class CorpusReader:
    """The inputs of a corpus in tct-encode's order: `(source, json_text, error, group)` each,
    at most one of `json_text` and `error` not `None` (neither: the record's `field` is null);
    `group` is the record's `group_field`. A damaged stream (corrupt gzip) raises `ValueError`."""

    def __new__(
        cls,
        input: str,
        field: str | None = None,
        follow_symlinks: bool = False,
        group_field: str | None = None,
    ) -> CorpusReader: ...
    def __iter__(self) -> CorpusReader: ...
    def __next__(self) -> tuple[str, str | None, str | None, str | None]: ...

def fill_next_token_bitmask_batch(
    matchers: list[Matcher], bitmask: Any, num_threads: int | None = None
) -> None: ...
