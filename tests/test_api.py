"""The Python API's shape and contracts: names, types, argument forms,
round trips through every entry point, batch encoding and the matcher."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tct
from tct.testing import same_json

# A small schema that exercises the typed paths: required and optional properties, an enum, an
# integer, a nested array and a union.
SMALL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {"enum": ["a", "b", "c"]},
        "count": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "value": {"oneOf": [{"type": "string"}, {"type": "number"}]},
    },
    "required": ["name"],
    "additionalProperties": False,
}

SMALL_DOCS = [
    {"name": "x"},
    {"name": "", "kind": "b", "count": 3},
    {"name": "héllo ✓", "tags": ["a", "b"], "value": 2.5},
    {"name": "n", "value": "text", "count": -12345678901234567890},
]


@pytest.fixture(scope="module")
def small() -> tct.Tokenizer:
    return tct.Tokenizer.from_schema(SMALL_SCHEMA)


# -- module shape -----------------------------------------------------------------------------


def test_public_names() -> None:
    for name in ("Tokenizer", "Encoding", "Matcher", "TctError", "SchemaError", "EncodeError"):
        assert hasattr(tct, name), name
        assert name in tct.__all__
    assert isinstance(tct.__version__, str) and tct.__version__


def test_exception_hierarchy_and_attributes() -> None:
    assert issubclass(tct.TctError, ValueError)
    for cls in (tct.SchemaError, tct.EncodeError, tct.DecodeError):
        assert issubclass(cls, tct.TctError)
    e = tct.SchemaError("bad", pointer="/properties/x")
    assert (str(e), e.pointer) == ("bad", "/properties/x")
    e = tct.EncodeError("bad", pointer="/a", offset=7, index=2)
    assert (e.pointer, e.offset, e.index) == ("/a", 7, 2)
    assert tct.EncodeError("bad").offset is None
    e = tct.DecodeError("bad", position=3)
    assert e.position == 3


def test_tokenizer_cannot_be_built_from_nothing() -> None:
    with pytest.raises(TypeError):
        tct.Tokenizer(object())  # type: ignore[arg-type]


# -- from_schema --------------------------------------------------------------------------------


def test_vocabulary_properties(small: tct.Tokenizer) -> None:
    n = small.vocab_size
    assert isinstance(n, int) and 0 < n <= 65536  # shards store ids as uint16
    special = [small.bos_id, small.eos_id, small.pad_id]
    assert all(isinstance(i, int) and 0 <= i < n for i in special)
    assert len(set(special)) == 3
    assert isinstance(small.name, str) and small.name
    assert isinstance(small.hash, str) and small.hash
    assert isinstance(small.warnings, list) and all(isinstance(w, str) for w in small.warnings)


def test_name_is_the_schema_id() -> None:
    tok = tct.Tokenizer.from_schema({"$id": "https://example.com/thing.json", "type": "string"})
    assert tok.name == "https://example.com/thing.json"
    other = tct.Tokenizer.from_schema({"$id": "https://example.com/thing.json", "type": "integer"})
    assert other.hash != tok.hash  # the hash covers the schema, not just the name


def test_schema_forms_agree(tmp_path: Path) -> None:
    """Path (str and PathLike), JSON text (str and bytes) and dict give the same tokenizer."""
    path = tmp_path / "small.json"
    text = json.dumps(SMALL_SCHEMA)
    path.write_text(text, encoding="utf-8")
    forms = [SMALL_SCHEMA, text, text.encode(), str(path), path, "  \n" + text]
    toks = [tct.Tokenizer.from_schema(f) for f in forms]
    expected = toks[0].encode(SMALL_DOCS[2])
    for form, tok in zip(forms, toks, strict=True):
        assert tok.vocab_size == toks[0].vocab_size, form
        assert tok.encode(SMALL_DOCS[2]) == expected, form


def test_boolean_schema_true_accepts_anything() -> None:
    tok = tct.Tokenizer.from_schema(True)
    doc = {"any": [1, 2.5, None, True, "x", {"deep": []}]}
    text, _, _ = tok.decode(tok.encode(doc))
    assert same_json(json.loads(text), doc)


def test_schema_errors() -> None:
    with pytest.raises(tct.SchemaError):
        tct.Tokenizer.from_schema('{"type": "object",')  # not JSON
    with pytest.raises(tct.SchemaError, match=r"no/such/schema\.json"):
        tct.Tokenizer.from_schema("no/such/schema.json")
    with pytest.raises(TypeError):
        tct.Tokenizer.from_schema(42)  # type: ignore[arg-type]


def test_invalid_json_schema_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"type": ', encoding="utf-8")
    with pytest.raises(tct.SchemaError, match="broken.json"):
        tct.Tokenizer.from_schema(path)


def test_repeated_key_in_schema_text_is_a_schema_error(tmp_path: Path) -> None:
    # json.loads would keep the last "type"; the schema is refused, naming the key.
    text = '{"type": "string", "type": "integer"}'
    with pytest.raises(tct.SchemaError, match='repeats the key "type"') as info:
        tct.Tokenizer.from_schema(text)
    assert info.value.pointer == "/type"
    path = tmp_path / "repeated.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(tct.SchemaError, match="repeated.json"):
        tct.Tokenizer.from_schema(path)


def test_schema_error_carries_the_pointer() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/definitions/missing"}}}
    with pytest.raises(tct.SchemaError) as info:
        tct.Tokenizer.from_schema(schema)
    assert info.value.pointer.startswith("/properties/a"), info.value.pointer
    assert info.value.pointer in str(info.value)


REMOTE = "https://example.com/schemas/name.json"
REMOTE_USER = {"type": "object", "properties": {"name": {"$ref": REMOTE}}, "required": ["name"]}
REMOTE_NAME = {"$id": REMOTE, "type": "string", "maxLength": 20}


def test_remote_ref_without_registry_is_a_schema_error() -> None:
    with pytest.raises(tct.SchemaError) as info:
        tct.Tokenizer.from_schema(REMOTE_USER)
    assert REMOTE in str(info.value)


@pytest.mark.parametrize("form", ["dict", "text", "path", "list"])
def test_registry_forms(tmp_path: Path, form: str) -> None:
    path = tmp_path / "name.json"
    path.write_text(json.dumps(REMOTE_NAME), encoding="utf-8")
    registry = {
        "dict": {REMOTE: REMOTE_NAME},
        "text": {REMOTE: json.dumps(REMOTE_NAME)},
        "path": {REMOTE: path},
        "list": [path],  # registered under its $id
    }[form]
    tok = tct.Tokenizer.from_schema(REMOTE_USER, registry=registry)
    text, _, _ = tok.decode(tok.encode({"name": "ok"}))
    assert json.loads(text) == {"name": "ok"}


def test_registry_list_needs_an_id(tmp_path: Path) -> None:
    path = tmp_path / "anonymous.json"
    path.write_text('{"type": "string"}', encoding="utf-8")
    with pytest.raises(tct.SchemaError, match="anonymous.json"):
        tct.Tokenizer.from_schema(REMOTE_USER, registry=[path])


def test_bad_registry_entry_names_the_uri() -> None:
    with pytest.raises(tct.SchemaError, match="example.com"):
        tct.Tokenizer.from_schema(REMOTE_USER, registry={REMOTE: "{not json"})


def test_schemastore_files_by_path(data_dir: Path) -> None:
    """package.json refers to its neighbours by relative name (ava.json) and by the other host
    (https://www.schemastore.org/prettierrc.json); a plain list of the files resolves both."""
    refs = sorted((data_dir / "schemas" / "refs").glob("*.json"))
    refs.append(data_dir / "schemas" / "eslintrc.json")
    tok = tct.Tokenizer.from_schema(data_dir / "schemas" / "package.json", registry=refs)
    doc = {"name": "demo", "version": "1.0.0", "prettier": {"semi": False}}
    text, _, _ = tok.decode(tok.encode(doc))
    assert same_json(json.loads(text), doc)


# -- encode / decode ----------------------------------------------------------------------------


def test_encode_forms_agree(small: tct.Tokenizer) -> None:
    for doc in SMALL_DOCS:
        text = json.dumps(doc, ensure_ascii=False)
        ids = small.encode(doc)
        assert isinstance(ids, list) and all(type(i) is int for i in ids)
        assert all(0 <= i < small.vocab_size for i in ids)
        assert small.encode(text) == ids
        assert small.encode(text.encode("utf-8")) == ids
        assert small.encode(json.dumps(doc, indent=2)) == ids  # whitespace is not content


def test_round_trip_is_value_and_type_exact(small: tct.Tokenizer) -> None:
    for doc in SMALL_DOCS:
        ids = small.encode(doc)
        text, consumed, total = small.decode(ids)
        assert isinstance(text, str)
        assert same_json(json.loads(text), doc)
        assert consumed == total == len(ids)
        # The decoder emits compact JSON.
        assert text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def test_decode_with_bos_eos_and_trailing_ids(small: tct.Tokenizer) -> None:
    ids = small.encode(SMALL_DOCS[1])
    text, consumed, total = small.decode([small.bos_id, *ids, small.eos_id])
    assert json.loads(text) == SMALL_DOCS[1]
    assert consumed == total == len(ids) + 2
    # Only the first document is decoded; what follows is reported as not consumed.
    tail = small.encode(SMALL_DOCS[0])
    text, consumed, total = small.decode([*ids, small.eos_id, *tail])
    assert json.loads(text) == SMALL_DOCS[1]
    assert consumed == len(ids) + 1 and total == len(ids) + 1 + len(tail)


@pytest.mark.parametrize(
    "convert",
    [
        tuple,
        iter,
        lambda ids: np.array(ids, dtype=np.uint16),
        lambda ids: np.array(ids, dtype=np.int64),
        lambda ids: np.array(ids, dtype=np.int32),
        lambda ids: np.array(ids, dtype=np.uint32),
        lambda ids: np.repeat(np.array(ids, dtype=np.int64), 2)[::2],  # strided view
        lambda ids: [np.int64(i) for i in ids],
    ],
)
def test_decode_accepts_int_sequences(small: tct.Tokenizer, convert) -> None:
    ids = small.encode(SMALL_DOCS[2])
    assert small.decode(convert(ids)) == small.decode(ids)


def test_decode_rejects_non_int_sequences(small: tct.Tokenizer) -> None:
    with pytest.raises(TypeError):
        small.decode("123")
    with pytest.raises(TypeError):
        small.decode([1.5])
    with pytest.raises(TypeError):
        small.decode(None)  # type: ignore[arg-type]


def test_encode_detailed(small: tct.Tokenizer) -> None:
    enc = small.encode_detailed(SMALL_DOCS[2])
    assert isinstance(enc, tct.Encoding)
    assert enc.ids == small.encode(SMALL_DOCS[2])
    assert enc.fallbacks == []
    assert len(enc) == len(enc.ids)


def test_fallback_pointer_and_lossless_round_trip(small: tct.Tokenizer) -> None:
    """A document that does not conform still round-trips, and the encoder says where it left
    the schema: here only `/count` (a string where an integer is required)."""
    doc = {"name": "x", "count": "three"}
    enc = small.encode_detailed(doc)
    assert enc.fallbacks == ["/count"]
    text, _, _ = small.decode(enc.ids)
    assert same_json(json.loads(text), doc)


def test_nonconforming_root_round_trips(small: tct.Tokenizer) -> None:
    for doc in [[1, 2], "just a string", None, {"unknown": 1}, {}]:
        enc = small.encode_detailed(json.dumps(doc))  # a str document is JSON text
        assert enc.fallbacks, doc
        text, _, _ = small.decode(enc.ids)
        assert same_json(json.loads(text), doc)


def test_python_values_follow_json_dumps(small: tct.Tokenizer) -> None:
    # Tuples are arrays, as in json.dumps.
    assert small.encode({"name": "t", "tags": ("a", "b")}) == small.encode(
        {"name": "t", "tags": ["a", "b"]}
    )


# -- encode_batch -------------------------------------------------------------------------------


def test_encode_batch_matches_encode(small: tct.Tokenizer) -> None:
    docs = SMALL_DOCS * 5 + [{"name": "x", "count": "fallback"}]
    ids, offsets = small.encode_batch(docs)
    assert ids.dtype == np.uint16 and ids.ndim == 1
    assert offsets.dtype == np.int64 and offsets.shape == (len(docs) + 1,)
    assert offsets[0] == 0 and offsets[-1] == len(ids)
    assert np.all(np.diff(offsets) >= 0)
    for i, doc in enumerate(docs):
        assert ids[offsets[i] : offsets[i + 1]].tolist() == small.encode(doc)


def test_encode_batch_mixed_input_forms(small: tct.Tokenizer) -> None:
    doc = SMALL_DOCS[2]
    text = json.dumps(doc, ensure_ascii=False)
    ids, offsets = small.encode_batch([doc, text, text.encode("utf-8")])
    parts = [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(3)]
    assert parts[0] == parts[1] == parts[2] == small.encode(doc)


def test_encode_batch_is_independent_of_threads(small: tct.Tokenizer) -> None:
    docs = [{"name": f"doc {i}", "count": i, "tags": ["t"] * (i % 7)} for i in range(500)]
    one = small.encode_batch(docs, num_threads=1)
    two = small.encode_batch(docs, num_threads=2)
    default = small.encode_batch(docs)
    for other in (two, default):
        assert np.array_equal(one[0], other[0]) and np.array_equal(one[1], other[1])


def test_encode_batch_empty(small: tct.Tokenizer) -> None:
    ids, offsets = small.encode_batch([])
    assert ids.dtype == np.uint16 and len(ids) == 0
    assert offsets.tolist() == [0]


def test_encode_batch_arguments(small: tct.Tokenizer) -> None:
    with pytest.raises(ValueError):
        small.encode_batch(SMALL_DOCS, num_threads=0)
    with pytest.raises(TypeError):
        small.encode_batch(SMALL_DOCS, num_threads=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        small.encode_batch('{"name": "x"}')  # a single document, not a list


def test_encode_batch_error_names_the_document(small: tct.Tokenizer) -> None:
    docs = [SMALL_DOCS[0], SMALL_DOCS[1], '{"name": ', SMALL_DOCS[2]]
    with pytest.raises(tct.EncodeError) as info:
        small.encode_batch(docs)
    assert info.value.index == 2
    assert "document 2" in str(info.value)


def test_encode_batch_releases_the_gil(any_tokenizer: tct.Tokenizer) -> None:
    """While one thread is inside encode_batch, another Python thread keeps running."""
    docs = [json.dumps({"k": list(range(300)), "s": "x" * 3000})] * 8000  # ~32 MB of JSON
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        # The counter's speed when it has the interpreter to itself.
        start, t0 = ticks, time.perf_counter()
        time.sleep(0.2)
        rate = (ticks - start) / (time.perf_counter() - t0)
        start, t0 = ticks, time.perf_counter()
        any_tokenizer.encode_batch(docs, num_threads=1)
        elapsed = time.perf_counter() - t0
        during = ticks - start
    finally:
        done.set()
        counter.join()
    assert elapsed > 0.05, "batch too small to tell"
    # Holding the GIL for the whole call would leave the counter at most a couple of 5 ms
    # switch intervals; released, it runs for (a good part of) the whole call.
    assert during > 0.2 * rate * elapsed, (during, rate, elapsed)


# -- matcher ------------------------------------------------------------------------------------


def test_matcher_accepts_the_canonical_encoding(small: tct.Tokenizer) -> None:
    for doc in SMALL_DOCS:
        ids = small.encode(doc)
        m = small.matcher()
        assert isinstance(m, tct.Matcher)
        for k, i in enumerate(ids):
            mask = m.allowed()
            assert mask.dtype == np.bool_ and mask.shape == (small.vocab_size,)
            assert mask[i], f"id {i} at position {k} not allowed for {doc}"
            assert not mask[small.pad_id]
            m.advance(i)
        assert m.is_complete()
        assert m.position == len(ids)
        assert json.loads(m.document()) == doc
        assert json.loads(m.document(complete=False)) == doc


def test_matcher_empty_prefix_completes_to_a_valid_document(
    small: tct.Tokenizer, make_validator
) -> None:
    m = small.matcher()
    assert not m.is_complete()  # "name" is required
    doc = json.loads(m.document(complete=True))
    make_validator(SMALL_SCHEMA).validate(doc)


def test_matcher_rejects_disallowed_ids(small: tct.Tokenizer) -> None:
    m = small.matcher()
    mask = m.allowed()
    bad = int(np.flatnonzero(~mask)[0])
    with pytest.raises(tct.DecodeError) as info:
        m.advance(bad)
    assert info.value.position == 0
    # The state is unchanged: the canonical encoding still goes through.
    for i in small.encode(SMALL_DOCS[0]):
        m.advance(i)
    assert m.is_complete()
    for bad_id in (-1, small.vocab_size, 2**64):
        with pytest.raises(tct.DecodeError):
            m.advance(bad_id)
    with pytest.raises(TypeError):
        m.advance("1")  # type: ignore[arg-type]


def test_matcher_copy_is_independent(small: tct.Tokenizer) -> None:
    ids = small.encode(SMALL_DOCS[1])
    m = small.matcher()
    m.advance(ids[0])
    c = copy.copy(m)
    for i in ids[1:]:
        c.advance(i)
    assert c.is_complete() and m.position == 1 and not m.is_complete()
    assert copy.deepcopy(m).position == 1


# -- what a new user reaches first ------------------------------------------------------------


def test_the_bundled_tokenizer_hands_out_its_schema() -> None:
    tok = tct.load("github-workflow")
    schema = tok.schema
    assert isinstance(schema, dict) and "jobs" in schema["properties"]
    schema["properties"].clear()  # a copy: the tokenizer is unchanged
    assert "jobs" in tok.schema["properties"]
    # The schema compiles to the same base tokenizer the bundled one was trained over.
    base = tct.Tokenizer.from_schema(tok.schema)
    doc = {"on": "push", "jobs": {"b": {"runs-on": "x", "steps": [{"run": "make"}]}}}
    assert json.loads(base.decode(base.encode(doc)).json) == doc
    assert tct.Tokenizer.from_schema({"type": "integer"}).schema == {"type": "integer"}


def test_unreadable_schema_files_are_schema_errors_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(tct.SchemaError, match=r"nope\.json: cannot read the schema file"):
        tct.Tokenizer.from_schema("nope.json")
    with pytest.raises(tct.SchemaError, match=r"missing\.json: cannot read the registry file"):
        tct.Tokenizer.from_schema({}, registry=[tmp_path / "missing.json"])
    with pytest.raises(tct.SchemaError, match="cannot read the tokenizer file"):
        tct.Tokenizer.from_file(tmp_path)  # a directory


def test_decode_returns_a_named_result_that_still_unpacks() -> None:
    tok = tct.Tokenizer.from_schema({"type": "array", "items": {"type": "integer"}})
    ids = tok.encode([1, 2])
    d = tok.decode(ids + [tok.eos_id])
    assert isinstance(d, tct.Decoded)
    assert (d.json, d.consumed, d.total) == ("[1,2]", len(ids) + 1, len(ids) + 1)
    text, consumed, total = d
    assert (text, consumed, total) == tuple(d)
    assert tct.decode(tct.encode({"on": "push"})).json.startswith("{")


def test_read_yaml_follows_yaml_1_2_as_tct_encode_does() -> None:
    doc = tct.read_yaml("on: push\nyes: no\nn: 017\nbig: 1e5\nsep: 1_000\nbin: 0b101\ninf: .inf\n")
    assert doc["on"] == "push" and doc["yes"] == "no"  # PyYAML: True: ...
    # The corpus conversion's rules: floats as Python spells them, infinities as strings.
    assert (doc["n"], doc["big"], doc["sep"], doc["bin"]) == (17, 100000.0, 1000, 5)
    assert doc["inf"] == "inf"
    with pytest.raises(tct.CorpusError, match="line 2"):
        tct.read_yaml("a: [1\nb: ]\n")
    with pytest.raises(TypeError):
        tct.read_yaml(b"on: push")  # type: ignore[arg-type]


def test_read_corpus_and_tct_encode_read_the_same_documents(tmp_path: Path) -> None:
    """The four scalars the YAML readers used to disagree on give the same ids whether a
    document goes through tct.read_corpus + encode (tct-train's path) or tct-encode."""
    import subprocess
    import sys

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.yml").write_text("on: push\nenv: {A: 1e5, B: 1_000, C: 0b101, D: .inf}\n")
    (tree / "sub" / "b.json").write_text('{"on": "push", "env": {"X": 1.50}}')
    (tree / "bad.yml").write_text("a: [\n")
    tok = tct.load("github-workflow")
    with pytest.raises(tct.CorpusError, match=r"bad\.yml"):
        list(tct.read_corpus(tree))
    texts = list(tct.read_corpus(tree, text=True, skip_rejected=True))
    values = list(tct.read_corpus(tree, skip_rejected=True))
    assert values == [json.loads(t) for t in texts] and values[0]["on"] == "push"
    out = tmp_path / "o.bin"
    env = {"PYTHONPATH": str(Path(tct.__file__).absolute().parents[1]), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-m", "tct.cli_encode", str(tree), str(out), "--quiet"],
        capture_output=True,
        env=env,
    )
    assert r.returncode == 1, r.stderr  # bad.yml rejected
    shard = tct.read_shard(out)
    encoded = [
        [int(x) for x in shard.ids[shard.offsets[i] + 1 : shard.offsets[i + 1] - 1]]
        for i in range(len(shard))
    ]
    assert encoded == [tok.encode(t) for t in texts]
    # Records: the document is a field; a null field holds none and is skipped.
    jl = tmp_path / "r.jsonl"
    jl.write_text('{"repo": "a", "json": {"on": "push"}}\n{"repo": "b", "json": null}\n')
    assert list(tct.read_corpus(jl, field="json")) == [{"on": "push"}]
    assert list(tct.read_corpus(jl, field="/json/on", skip_rejected=True)) == ["push"]
    with pytest.raises(tct.CorpusError, match=r"r\.jsonl:1: no field"):
        list(tct.read_corpus(jl, field="yaml"))
    with pytest.raises(tct.CorpusError, match="nothing-here"):
        list(tct.read_corpus(tmp_path / "nothing-here"))


def test_read_corpus_raises_on_a_corrupt_gzip_stream_even_when_skipping(tmp_path: Path) -> None:
    import gzip

    data = bytearray(gzip.compress(('{"on": "push", "jobs": {}}\n' * 3000).encode()))
    data[len(data) // 2] ^= 0x10  # one bit flip inside the deflate data
    src = tmp_path / "c.jsonl.gz"
    src.write_bytes(bytes(data))
    for skip in (False, True):
        with pytest.raises(tct.CorpusError, match="corrupt gzip stream"):
            list(tct.read_corpus(src, skip_rejected=skip))
