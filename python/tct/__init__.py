"""TCT: type-constrained tokenization of JSON documents against their JSON Schema.

    >>> import tct
    >>> tok = tct.load("github-workflow")                 # bundled; or Tokenizer.from_schema(path)
    >>> ids = tok.encode({"on": "push", "jobs": {"build": {"runs-on": "ubuntu-latest", "steps": []}}})
    >>> json_text, consumed, total = tok.decode(ids)      # a `Decoded` named tuple
    >>> ids, offsets = tok.encode_batch([doc, doc])       # numpy uint16 / int64, in parallel
    >>> m = tok.matcher(); m.advance(ids[0]); m.allowed()  # bool mask of length tok.vocab_size

This module is a thin layer over the Rust extension `tct._tct`. It normalises inputs (schema
paths, JSON text or dicts; documents as text, bytes or Python values) and defines the exception
classes; all the work happens in Rust, with the GIL released for the heavy calls.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple


class TctError(ValueError):
    """Base class of every error that tct raises for bad input."""


class SchemaError(TctError):
    """A schema (or a registered schema, or serialised tokenizer bytes) could not be compiled.

    `pointer` is the JSON pointer into the schema where the problem is (`""` for the root).
    """

    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.pointer = pointer


class EncodeError(TctError):
    """A document could not be encoded because it is not JSON (a document that merely does not
    conform to the schema is *not* an error: it is encoded through the generic path).

    `pointer`: JSON pointer into the document (`""` for the root or when unknown).
    `offset`: byte offset into the UTF-8 input text, when the input was text (else `None`).
    `index`: the document's position in the batch for `encode_batch` (else `None`).
    """

    def __init__(
        self,
        message: str,
        pointer: str = "",
        offset: int | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.pointer = pointer
        self.offset = offset
        self.index = index


class CorpusError(TctError):
    """A corpus (`tct.read_corpus`, `tct-train`) cannot be read, or one of its inputs is not a
    document. `source` names the input (`path` inside a tree, `FILE:LINE` of a JSONL file)."""

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class Decoded(NamedTuple):
    """What `Tokenizer.decode` returns; unpacks as `(json, consumed, total)`."""

    #: Compact JSON text of the first complete document.
    json: str
    #: Ids used: a leading BOS, the document's ids and the EOS after it.
    consumed: int
    #: `len(ids)`.
    total: int


class DecodeError(TctError):
    """An id sequence does not decode (or an id is not allowed by a `Matcher`).

    `position` is the index of the offending id, or the length of the sequence when it ended
    before a document was complete.
    """

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.position = position


class MatcherBusyError(TctError):
    """A `Matcher` was used from a second thread while another call on it was running.

    A matcher is a mutable state (like an iterator): share it between threads only with a lock
    of your own, or give each thread its own `matcher.copy()`. The call that raised did
    nothing; the matcher is unchanged and stays usable.
    """


# The extension looks the exception classes up in this module, so they are defined first.
from tct import _tct  # noqa: E402
from tct._tct import Encoding, Matcher  # noqa: E402
from tct.shard import Shard, ShardError, read_shard  # noqa: E402

__version__: str = _tct.__version__

__all__ = [
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "fill_next_token_bitmask_batch",
    "decode",
    "encode",
    "read_corpus",
    "read_yaml",
    "extract_window",
    "load",
    "train",
    "vocab_size",
    "CorpusError",
    "DecodeError",
    "Decoded",
    "EncodeError",
    "Encoding",
    "Matcher",
    "MatcherBusyError",
    "SchemaError",
    "Shard",
    "ShardError",
    "TctError",
    "Tokenizer",
    "read_shard",
]

#: What `from_schema` accepts as a schema: a path, JSON text (str or bytes) or a parsed value.
SchemaSource = str | bytes | os.PathLike[str] | Mapping[str, Any] | bool
#: A registry: URI -> schema, or a list of schema files registered under their `$id`.
RegistrySource = Mapping[str, SchemaSource] | Sequence[str | os.PathLike[str]]

# SchemaStore serves each schema under both hosts, and schemas refer to each other through
# either (package.json -> https://www.schemastore.org/prettierrc.json, ava.json relative to
# https://json.schemastore.org/package.json).
_SCHEMASTORE_HOSTS = ("https://json.schemastore.org/", "https://www.schemastore.org/")


# ---------------------------------------------------------------------------------------------
# Input normalisation
# ---------------------------------------------------------------------------------------------


def _looks_like_json_text(text: str) -> bool:
    """A schema given as a str is JSON text if it is an object or a boolean, else a path."""
    stripped = text.strip()
    return stripped.startswith("{") or stripped in ("true", "false")


def _dump_schema(value: Any, source: str) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise SchemaError(f"{source}: the schema is not JSON-serialisable: {e}") from e


def _schema_bytes(schema: Any, what: str) -> tuple[bytes, str | None]:
    """(UTF-8 JSON bytes, the file name for error messages, if it came from a file)."""
    if isinstance(schema, os.PathLike) or (
        isinstance(schema, str) and not _looks_like_json_text(schema)
    ):
        path = Path(schema)
        return _read_schema_file(path, what), str(path)
    if isinstance(schema, (bytes, bytearray, memoryview)):
        return bytes(schema), None
    if isinstance(schema, str):
        try:
            return schema.encode("utf-8"), None
        except UnicodeEncodeError as e:
            raise SchemaError(f"{what}: the JSON text is not valid Unicode ({e.reason})") from e
    if isinstance(schema, (Mapping, bool)):
        return _dump_schema(dict(schema) if isinstance(schema, Mapping) else schema, what), None
    raise TypeError(f"{what} must be a path, JSON text or a dict, not {type(schema).__name__}")


def _read_schema_file(path: Path, what: str) -> bytes:
    """A schema file's bytes; a file that cannot be read is a `SchemaError` naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise SchemaError(f"{path}: cannot read the {what} file: {e.strerror or e}") from e


def _schemastore_uris(schema_id: str, filename: str) -> list[str]:
    """The URIs a SchemaStore file is served under (both hosts, by `$id` name and file name)."""
    for host in _SCHEMASTORE_HOSTS:
        if schema_id.startswith(host):
            name = schema_id[len(host) :].split("#", 1)[0]
            return [h + n for h in _SCHEMASTORE_HOSTS for n in dict.fromkeys((name, filename))]
    return []


def _registry_entries(registry: Any) -> list[tuple[str, bytes]]:
    """Normalise `registry` to a list of (uri, JSON bytes)."""
    if registry is None:
        return []
    entries: list[tuple[str, bytes]] = []
    if isinstance(registry, Mapping):
        for uri, schema in registry.items():
            if not isinstance(uri, str):
                raise TypeError(f"registry keys must be URI strings, not {type(uri).__name__}")
            data, _ = _schema_bytes(schema, f"registry entry {uri}")
            entries.append((uri, data))
        return entries
    if isinstance(registry, (str, bytes, os.PathLike)) or not isinstance(registry, Iterable):
        raise TypeError("registry must be a mapping URI -> schema or a list of schema file paths")
    for item in registry:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"registry list items must be paths, not {type(item).__name__}")
        path = Path(item)
        data = _read_schema_file(path, "registry")
        try:
            parsed = json.loads(data)
        except ValueError as e:
            raise SchemaError(f"{path}: not valid JSON: {e}") from e
        uris: list[str] = []
        if isinstance(parsed, dict):
            # `$id` (draft-06+) or `id` (draft-04, e.g. SchemaStore's tsconfig.json).
            for key in ("$id", "id"):
                value = parsed.get(key)
                if isinstance(value, str) and value:
                    uris.append(value.split("#", 1)[0])
                    uris.extend(_schemastore_uris(value, path.name))
        if not uris:
            raise SchemaError(
                f"{path}: a registry file needs an `$id` to be registered under; "
                "pass a mapping {uri: path} instead"
            )
        entries.extend((uri, data) for uri in dict.fromkeys(uris))
    return entries


def _unserialisable_pointer(value: Any) -> tuple[str, str | None]:
    """`(pointer, reason)` of the first value `json.dumps` rejects (NaN/Infinity, a non-JSON
    type, a string with a lone surrogate, a container that contains itself). `reason` is
    `"circular reference"` for the last, else `None`; `("", None)` if nothing is found.

    Iterative, so it also works on very deep documents. Containers on the current path are
    tracked by identity: a value that contains itself is reported where it reappears (instead
    of being walked forever), while one object used twice side by side is no cycle and is
    checked once.
    """
    on_path: set[int] = set()
    done: set[int] = set()
    # Items are (value, pointer) to visit, or (None, id) markers: leaving that container.
    stack: list[tuple[Any, Any]] = [(value, "")]
    while stack:
        v, pointer = stack.pop()
        if v is None and isinstance(pointer, int):
            on_path.discard(pointer)
            done.add(pointer)
            continue
        if isinstance(v, float) and not math.isfinite(v):
            return pointer, None
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return pointer, None
        elif isinstance(v, (Mapping, list, tuple)):
            key = id(v)
            if key in on_path:
                return pointer, "circular reference"
            if key in done:
                continue
            on_path.add(key)
            stack.append((None, key))
            if isinstance(v, Mapping):
                children = []
                for k, child in v.items():
                    if not isinstance(k, (str, int, float, bool)) and k is not None:
                        return pointer, None
                    token = str(k).replace("~", "~0").replace("/", "~1")
                    children.append((child, f"{pointer}/{token}"))
                stack.extend(reversed(children))
            else:
                stack.extend((c, f"{pointer}/{i}") for i, c in reversed(list(enumerate(v))))
        elif v is not None and not isinstance(v, (bool, int, float)):
            return pointer, None
    return "", None


def _check_num_threads(num_threads: Any) -> int | None:
    """`num_threads` if it is None or a positive int. The core caps it at 4 threads per core
    (docs/limits.md); clamping here first keeps any Python int inside the core's integer."""
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, int):
        raise TypeError("num_threads must be an int or None")
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, not {num_threads}")
    return min(num_threads, 1 << 16)


def _document_bytes(doc: Any) -> bytes:
    """UTF-8 JSON bytes for a document given as text, bytes or a Python value."""
    if isinstance(doc, bytes):
        return doc
    if isinstance(doc, (bytearray, memoryview)):
        return bytes(doc)
    if isinstance(doc, str):
        text = doc
        is_text = True
    else:
        is_text = False
        try:
            text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except RecursionError as e:
            raise EncodeError(
                "the document nests too deeply to serialise (Python recursion limit)"
            ) from e
        except (TypeError, ValueError) as e:
            pointer, reason = _unserialisable_pointer(doc)
            where = f" at {pointer or 'the root'}" if pointer or reason else ""
            if reason is not None:
                raise EncodeError(
                    f"encode error{where}: not JSON: a {reason} (the value contains itself)",
                    pointer=pointer,
                ) from None
            raise EncodeError(f"encode error{where}: not JSON: {e}", pointer=pointer) from e
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        # Lone surrogates are valid in a Python str but have no UTF-8 (or JSON) form.
        offset = len(text[: e.start].encode("utf-8", "surrogatepass"))
        code = ord(text[e.start])
        if is_text:
            raise EncodeError(
                f"encode error at byte {offset}: lone surrogate U+{code:04X} is not valid Unicode",
                offset=offset,
            ) from None
        pointer, _ = _unserialisable_pointer(doc)
        raise EncodeError(
            f"encode error at {pointer or 'the root'}: a string holds the lone surrogate "
            f"U+{code:04X}, which is not valid Unicode",
            pointer=pointer,
        ) from None


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def _tokenizer_from_bytes(data: bytes) -> Tokenizer:
    """Unpickling entry point (module-level so pickles name a stable function)."""
    return Tokenizer(_tct.Tokenizer.from_bytes(data))


class Tokenizer:
    """A JSON Schema compiled into a codec: encoder, total decoder and generation matcher.

    Build one with `Tokenizer.from_schema(...)`. Tokenizers are immutable, thread-safe and pickle
    (so they can be shipped to DataLoader workers, Ray or Spark).
    """

    __slots__ = ("_core", "_rules")

    def __init__(self, core: _tct.Tokenizer) -> None:
        if not isinstance(core, _tct.Tokenizer):
            raise TypeError("use Tokenizer.from_schema(...) or Tokenizer.from_bytes(...)")
        self._core = core
        # The rules overlay its matchers enforce by default (see `matcher`).
        self._rules: _tct.Rules | None = None

    @classmethod
    def from_schema(
        cls,
        schema: SchemaSource,
        registry: RegistrySource | None = None,
        rules: Any = None,
    ) -> Tokenizer:
        """Compile a JSON Schema.

        `rules`: a rules overlay (dict, JSON text or bytes; see the README's "Rules") that its
        matchers enforce beyond the schema. Encoding ignores it.

        `schema`: a path (str or os.PathLike) to a `.json` file, JSON text, or a parsed schema
        (dict, or a boolean schema). A str is JSON text if it starts with `{` (or is `true` /
        `false`), otherwise a path.

        `registry`: schemas that remote `$ref`s resolve against (nothing is ever fetched). Either
        a mapping URI -> schema (any form above), or a list of schema file paths, each registered
        under its `$id` and, for SchemaStore schemas, also under
        `https://json.schemastore.org/NAME` and `https://www.schemastore.org/NAME`.

        Raises `SchemaError` (with `.pointer`) if the schema does not compile or a schema file
        cannot be read (the message names the file).
        """
        data, source = _schema_bytes(schema, "schema")
        entries = _registry_entries(registry)
        tok = cls(_tct.Tokenizer.compile(data, entries, source))
        if rules is not None:
            tok._rules = _compile_rules(tok._core, rules)
        return tok

    @classmethod
    def from_bytes(cls, data: bytes) -> Tokenizer:
        """Restore a tokenizer saved with `to_bytes()`. Bad data raises `SchemaError`."""
        return cls(_tct.Tokenizer.from_bytes(bytes(data)))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load a tokenizer file (written by `save` or by vocabulary training). A file that
        cannot be read or is not a tokenizer raises `SchemaError` naming it."""
        path = Path(path)
        return cls(_tct.Tokenizer.from_bytes(_read_schema_file(path, "tokenizer"), str(path)))

    def to_bytes(self) -> bytes:
        """The tokenizer, serialised (what pickling stores). Deterministic."""
        return self._core.to_bytes()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write `to_bytes()` to `path` atomically: a temporary file beside it, fsynced, then
        renamed over it, so the file is whole or absent even after a crash. `OSError` names the
        path."""
        self._core.save(path)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (_tokenizer_from_bytes, (self._core.to_bytes(),))

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, doc: Any) -> list[int]:
        """Token ids of one document (no BOS/EOS).

        `doc`: JSON text (str or UTF-8 bytes) or a Python value (dict, list, str, int, float,
        bool, None), which is serialised with `json.dumps` (so non-str dict keys become strings).
        A document that does not conform to the schema is still encoded, losslessly, through the
        generic path (see `encode_detailed`). Not-JSON input raises `EncodeError`.
        """
        return self._core.encode(_document_bytes(doc))

    def encode_prefix(self, doc: Any) -> list[int]:
        """Ids of a *partial document* used as a generation prompt (no BOS).

        The prompt is encoded in full, then the arrays and maps on its last path (the root's
        last value, that value's last value, ...) are left open, so generation continues inside
        the innermost of them. `{"name": "CI", "on": "push", "jobs": {}}` means "write the jobs".
        The prompt must conform to the schema, else `EncodeError` says where it does not.
        """
        return self._core.encode_prefix(_document_bytes(doc))

    def encode_detailed(self, doc: Any) -> Encoding:
        """Like `encode`, plus `.fallbacks`: the JSON pointers where the document did not
        conform to the schema and the generic path was used."""
        return self._core.encode_detailed(_document_bytes(doc))

    def encode_batch(self, docs: Iterable[Any], num_threads: int | None = None) -> tuple[Any, Any]:
        """Encode many documents in parallel in Rust, with the GIL released.

        Returns `(ids, offsets)`: numpy `uint16` ids of all documents back to back (no BOS/EOS)
        and `int64` offsets of length `len(docs) + 1`; document `i` is
        `ids[offsets[i]:offsets[i + 1]]`. `num_threads=None` uses every core; larger counts are
        capped at 4 threads per available core (docs/limits.md). The result does not depend on
        `num_threads`. The first bad document raises `EncodeError` with `.index`.
        """
        num_threads = _check_num_threads(num_threads)
        if isinstance(docs, (str, bytes, Mapping)):
            raise TypeError("encode_batch takes a list of documents; use encode() for one")
        data = []
        for i, doc in enumerate(docs):
            try:
                data.append(_document_bytes(doc))
            except EncodeError as e:
                raise EncodeError(
                    f"document {i}: {e}", pointer=e.pointer, offset=e.offset, index=i
                ) from e
        return self._core.encode_batch(data, num_threads)

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> Decoded:
        """Decode the first complete document: `Decoded(json, consumed, total)`.

        `ids`: a list, tuple, numpy integer array or any iterable of ints. A leading BOS and the
        EOS after the document count as consumed; `total` is `len(ids)`. Any input gives either a
        document or `DecodeError` (with `.position`); ids outside the vocabulary included.
        """
        return Decoded(*self._core.decode(ids))

    def matcher(self, rules: Any = False) -> Matcher:
        """A fresh constrained-generation state at the start of a document (no BOS).

        By default the mask is the schema's alone. `rules=True` also enforces this tokenizer's
        rules overlay (see `rules`; the bundled github-workflow tokenizer ships one), and an
        overlay given here (a dict, JSON text or bytes) is enforced instead. Rules only narrow
        the mask: the ids of a document are the same with and without them. They are opt-in
        because a masked step with rules costs milliseconds today, against about a microsecond
        without (see the README's "Rules" section).
        """
        if rules is False or rules is None:
            return self._core.matcher()
        if rules is True:
            if self._rules is None:
                raise ValueError(
                    "this tokenizer has no rules overlay: pass one (matcher(rules=overlay)) "
                    "or attach one with with_rules()"
                )
            compiled = self._rules
        else:
            compiled = _compile_rules(self._core, rules)
        return self._core.matcher(compiled)

    @property
    def rules(self) -> list[str]:
        """What `matcher(rules=True)` enforces beyond the schema (one line per rule, then what
        is not enforced exactly); empty without a rules overlay."""
        return [] if self._rules is None else list(self._rules.report)

    def with_rules(self, rules: Any) -> Tokenizer:
        """The same tokenizer with `rules` as its overlay (a dict, JSON text or bytes; `None`
        for none), enforced by `matcher(rules=True)`. Encoding is unchanged."""
        t = Tokenizer(self._core)
        t._rules = None if rules is None else _compile_rules(self._core, rules)
        return t

    # -- vocabulary -------------------------------------------------------------------------

    @property
    def schema(self) -> Any:
        """The JSON Schema this tokenizer was compiled from (a tokenizer file embeds it), parsed,
        key order kept. A fresh copy on each access: changing it changes nothing here."""
        schema: Any = json.loads(self._core.to_bytes())["schema"]
        return schema

    @property
    def name(self) -> str:
        """The schema's `$id` (or the name the vocabulary was trained under)."""
        return self._core.name

    @property
    def hash(self) -> str:
        """Content hash of `to_bytes()`: identifies the tokenizer in shards and checkpoints."""
        return self._core.hash

    @property
    def warnings(self) -> list[str]:
        """Schema keywords or combinations the matcher does not enforce exactly (ideally none)."""
        return self._core.warnings

    @property
    def registry(self) -> dict[str, Any]:
        """The registered schemas that remote `$ref`s resolve against: URI -> schema."""
        return {
            e["uri"]: e["schema"] for e in json.loads(self._core.to_bytes()).get("registry", [])
        }

    @property
    def vocab_size(self) -> int:
        """Number of ids; every id is in `range(vocab_size)` (fits uint16)."""
        return self._core.vocab_size

    @property
    def bos_id(self) -> int:
        return self._core.bos_id

    @property
    def eos_id(self) -> int:
        return self._core.eos_id

    @property
    def pad_id(self) -> int:
        return self._core.pad_id

    @property
    def base_size(self) -> int:
        """Number of base ids (bytes, structure, choices); trained ids follow them."""
        return self._core.base_size

    @property
    def position_range(self) -> tuple[int, int]:
        """`(first, end)` of the position ids of the window format, above `vocab_size`."""
        return self._core.position_range

    def extract_window(self, ids: Iterable[int], start: int, end: int) -> list[int]:
        """The seed's window format: `[position_id(start)] + ids[start:end]`."""
        return self._core.extract_window(list(ids), start, end)

    # -- testing the matcher ----------------------------------------------------------------

    def random_document(self, seed: int, max_tokens: int = 512) -> tuple[list[int], str]:
        """A random document drawn under the matcher's mask, `(ids, json_text)`: uniformly
        random allowed ids, closed by the smallest valid completion after `max_tokens`. Every
        result validates against the schema; use it to fuzz or to make synthetic documents."""
        return self._core.random_document(seed, max_tokens)

    def matcher_accepts(self, ids: Iterable[int], check_every: int = 0) -> None:
        """Raise `DecodeError` unless the matcher accepts `ids` id by id and ends complete
        (checking that each id is in the allowed mask every `check_every` steps)."""
        self._core.matcher_accepts(list(ids), check_every)

    def __repr__(self) -> str:
        return f"<tct.Tokenizer {self.name!r} vocab_size={self.vocab_size}>"


# ---------------------------------------------------------------------------------------------
# Training, loading, the bundled tokenizer and the seed's module-level API
# ---------------------------------------------------------------------------------------------

#: Tokenizers shipped inside the package, by name.
_BUNDLED = {"github-workflow": "github-workflow.tct.json"}


def train(
    schema: SchemaSource,
    docs: Iterable[Any],
    vocab_size: int = 8192,
    *,
    registry: RegistrySource | None = None,
    dictionary_size: int | None = None,
    merge_scope: str | None = None,
    name: str | None = None,
    progress: bool = False,
    num_threads: int | None = None,
    groups: Sequence[Hashable] | None = None,
) -> Tokenizer:
    """Train a vocabulary (a dictionary of whole values and ranked BPE merges over base tokens)
    for `schema` on `docs` (JSON text, bytes or Python values). The work runs in Rust, in
    parallel, with the GIL released; the same inputs always give the same tokenizer.

    `vocab_size` counts every id (base ids, dictionary, merges and PAD/BOS/EOS); position ids
    of the window format come on top. Save the result with `tok.save(path)`; `tct.load(path)`
    reads it back.

    `groups` gives each document a group label (any hashable, e.g. its repository), one per
    document: repetition inside a group (many versions of one repository's files) is weighed
    down, so the vocabulary is spent on what recurs across groups. Without it every occurrence
    counts 1.
    """
    num_threads = _check_num_threads(num_threads)
    data, source = _schema_bytes(schema, "schema")
    entries = _registry_entries(registry)
    payload = []
    for i, doc in enumerate(docs):
        try:
            payload.append(_document_bytes(doc))
        except EncodeError as e:
            raise EncodeError(
                f"document {i}: {e}", pointer=e.pointer, offset=e.offset, index=i
            ) from e
    group_ids: list[int] | None = None
    if groups is not None:
        labels: dict[Hashable, int] = {}
        group_ids = [labels.setdefault(g, len(labels)) for g in groups]
        if len(group_ids) != len(payload):
            raise TctError(
                f"groups has {len(group_ids)} labels for {len(payload)} documents "
                "(one per document)"
            )
    if name is None:
        name = Path(source).stem if source else "tokenizer"
    core = _tct.Tokenizer.train(
        data,
        entries,
        payload,
        vocab_size,
        dictionary_size=dictionary_size,
        merge_scope=merge_scope,
        name=name,
        progress=progress,
        num_threads=num_threads,
        groups=group_ids,
    )
    return Tokenizer(core)


_loaded: dict[str, Tokenizer] = {}


def _compile_rules(core: _tct.Tokenizer, rules: Any) -> _tct.Rules:
    if isinstance(rules, _tct.Rules):
        return rules
    if isinstance(rules, (bytes, bytearray)):
        data = bytes(rules)
    elif isinstance(rules, str):
        data = rules.encode()
    elif isinstance(rules, os.PathLike):
        data = Path(rules).read_bytes()
    else:
        data = json.dumps(rules).encode()
    return _tct.Rules(core, data)


def load(name_or_path: str | os.PathLike[str] = "github-workflow") -> Tokenizer:
    """Load a tokenizer: a bundled one by name (`"github-workflow"`) or a tokenizer file."""
    key = os.fspath(name_or_path)
    if key in _BUNDLED:
        if key not in _loaded:
            path = Path(__file__).with_name("data") / _BUNDLED[key]
            if not path.exists():
                raise TctError(
                    f"the bundled tokenizer {key!r} is missing from the package ({path})"
                )
            tok = Tokenizer.from_file(path)
            overlay = path.with_name(_BUNDLED[key].replace(".tct.json", ".rules.json"))
            if overlay.exists():
                tok._rules = _compile_rules(tok._core, overlay.read_bytes())
            _loaded[key] = tok
        return _loaded[key]
    path = Path(key)
    if not path.exists():
        raise TctError(
            f"no tokenizer named {key!r}: not a bundled name ({', '.join(_BUNDLED)}) and no such file"
        )
    return Tokenizer.from_file(path)


def encode(doc: Any) -> list[int]:
    """The seed's API: encode with the bundled `github-workflow` tokenizer."""
    return load().encode(doc)


def decode(ids: Iterable[int]) -> Decoded:
    """The seed's API: decode with the bundled `github-workflow` tokenizer."""
    return load().decode(ids)


def vocab_size() -> int:
    """The seed's API: the bundled tokenizer's vocabulary size (8192)."""
    return load().vocab_size


def extract_window(ids: Iterable[int], start: int, end: int) -> list[int]:
    """The seed's API: `[position_id(start)] + ids[start:end]` with the bundled tokenizer."""
    return load().extract_window(ids, start, end)


def read_yaml(text: str) -> Any:
    """Parse one YAML document with the YAML 1.2 rules `tct-encode` and `tct-train` use (the
    corpus' conversion rules): `on:`/`yes`/`no` stay strings (PyYAML reads `on:` as the key
    `True`), `017` is 17, `1e5` is 100000.0, `1_000` is 1000, `0b101` is 5, and `.inf` becomes
    the string `"inf"` (JSON has no infinity).
    Returns Python values (`dict`, `list`, `str`, `int`, `float`, `bool`, `None`). A parse
    error raises `CorpusError` with the line and column."""
    if not isinstance(text, str):
        raise TypeError(f"read_yaml takes YAML text (str), not {type(text).__name__}")
    try:
        return json.loads(_tct.read_yaml(text))
    except ValueError as e:
        if isinstance(e, json.JSONDecodeError):
            raise
        raise CorpusError(str(e)) from e


def read_corpus(
    path: str | os.PathLike[str],
    field: str | None = None,
    *,
    follow_symlinks: bool = False,
    skip_rejected: bool = False,
    text: bool = False,
) -> Iterator[Any]:
    """Yield the documents of a corpus, read by the same Rust code as `tct-encode`, in its
    order: a directory tree of `.json`/`.yml`/`.yaml` files (sorted walk), one such file, or a
    `.jsonl`/`.jsonl.gz` file (one JSON value per line).

    `field`: the document inside each input, a top-level key (`"json"`) or a JSON pointer
    (`"/payload/doc"`), for records like `{"repo", "path", "yaml", "json"}`; a record whose
    field is null holds no document and is skipped. An input that is
    not a document (bad JSON/YAML, missing field, a symlink out of the tree) raises
    `CorpusError` naming it, or is skipped with `skip_rejected=True`. A damaged `.jsonl.gz`
    stream always raises `CorpusError`.

    `text=True` yields each document as compact JSON text instead of Python values: exactly
    what `tct-encode` encodes (a JSON input's number texts such as `1.50` are kept as written;
    Python floats would respell them `1.5`). `tct.train` and `Tokenizer.encode` accept either."""
    for doc, _group in _corpus_entries(path, field, None, follow_symlinks, skip_rejected):
        yield doc if text else json.loads(doc)


def _corpus_entries(
    path: str | os.PathLike[str],
    field: str | None,
    group_field: str | None,
    follow_symlinks: bool = False,
    skip_rejected: bool = False,
) -> Iterator[tuple[str, str | None]]:
    """(compact JSON text, group) of each document of a corpus (see `read_corpus`); `tct-train`
    uses the groups."""
    try:
        reader = _tct.CorpusReader(os.fspath(path), field, follow_symlinks, group_field)
    except ValueError as e:
        raise CorpusError(str(e), source=os.fspath(path)) from e
    entries = iter(reader)
    while True:
        try:
            source, doc, error, group = next(entries)
        except StopIteration:
            return
        except ValueError as e:
            # A damaged stream (corrupt gzip): raised even with `skip_rejected`, since what
            # follows the damage cannot be read and what precedes it cannot be trusted.
            raise CorpusError(str(e), source=os.fspath(path)) from e
        if doc is not None:
            yield doc, group
        elif error is not None and not skip_rejected:
            raise CorpusError(f"{source}: {error}", source=source)


# ---------------------------------------------------------------------------------------------
# The token-bitmask interface (llguidance / XGrammar layout and names)
# ---------------------------------------------------------------------------------------------


def allocate_token_bitmask(batch_size: int, vocab_size: int) -> Any:
    """An int32 bitmask of shape (batch_size, ceil(vocab_size / 32)), every bit set (all ids
    allowed): id i is bit i % 32 of word i // 32. A CPU torch tensor when torch is installed
    (what engines pass around), a numpy array otherwise. Fill rows with
    `Matcher.fill_next_token_bitmask(bitmask, index)` or `fill_next_token_bitmask_batch`."""
    if batch_size < 1 or vocab_size < 1:
        raise ValueError(
            f"batch_size and vocab_size must be positive, got {batch_size}, {vocab_size}"
        )
    shape = (batch_size, (vocab_size + 31) // 32)
    try:
        import torch
    except ImportError:
        import numpy as np

        return np.full(shape, -1, dtype=np.int32)
    return torch.full(shape, -1, dtype=torch.int32)


def fill_next_token_bitmask_batch(
    matchers: Sequence[Matcher], bitmask: Any, num_threads: int | None = None
) -> None:
    """Row i of `bitmask` gets matcher i's mask, filled in parallel with the GIL released (a
    matcher may appear only once). `num_threads=None`: rayon's global pool."""
    _tct.fill_next_token_bitmask_batch(list(matchers), bitmask, num_threads)


_BIT_CACHE: dict[Any, Any] = {}


def apply_token_bitmask_inplace(logits: Any, bitmask: Any) -> None:
    """Set the logits of disallowed ids to -inf, in place. `logits`: (batch, vocab) or (vocab,)
    float, a torch tensor (CPU or CUDA; the bitmask is moved to its device) or a numpy array;
    `bitmask`: (batch, W) int32 from `allocate_token_bitmask`. Ids past 32 * W are disallowed; bits
    past the logits' width are ignored."""
    if hasattr(logits, "masked_fill_"):
        import torch

        squeeze = logits.dim() == 1
        lg = logits[None] if squeeze else logits
        bm = torch.as_tensor(bitmask).to(lg.device, non_blocking=True)
        if bm.dim() == 1:
            bm = bm[None]
        if bm.size(0) != lg.size(0):
            raise ValueError(f"bitmask has {bm.size(0)} rows, logits {lg.size(0)}")
        key = ("torch", lg.device)
        shifts = _BIT_CACHE.get(key)
        if shifts is None:
            shifts = _BIT_CACHE[key] = torch.arange(32, device=lg.device, dtype=torch.int32)
        bits = ((bm[:, :, None] >> shifts) & 1).bool().reshape(bm.size(0), -1)  # (B, 32 W)
        V = lg.size(-1)
        if bits.size(1) < V:
            pad = torch.zeros(bits.size(0), V - bits.size(1), dtype=torch.bool, device=lg.device)
            bits = torch.cat([bits, pad], dim=1)
        lg.masked_fill_(~bits[:, :V], float("-inf"))
        return
    import numpy as np

    lg = np.asarray(logits)
    if not lg.flags.writeable:
        raise ValueError("logits must be writable")
    lg2 = lg[None] if lg.ndim == 1 else lg
    words = np.ascontiguousarray(np.asarray(bitmask, dtype=np.int32))
    if words.ndim == 1:
        words = words[None]
    if words.shape[0] != lg2.shape[0]:
        raise ValueError(f"bitmask has {words.shape[0]} rows, logits {lg2.shape[0]}")
    flags = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little").astype(bool)
    V = lg2.shape[1]
    allowed = np.zeros((words.shape[0], V), dtype=bool)
    n = min(V, flags.shape[1])
    allowed[:, :n] = flags[:, :n]
    lg2[~allowed] = -np.inf
