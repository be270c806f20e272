"""Bad input gives a typed error that says where, and never takes the interpreter down
(invalid JSON, invalid UTF-8, lone surrogates, NaN/Infinity, 100k-deep
nesting, 100 MB strings, ids out of range).

Inputs that could crash the process (stack overflow, abort) run in a subprocess, so a crash is
reported as this test failing rather than as pytest dying.
"""

from __future__ import annotations

import json
import random
import sys
from decimal import Decimal

import numpy as np
import pytest

import tct
from conftest import run_isolated
from tct.testing import same_json

# -- invalid JSON text: EncodeError with the byte offset ----------------------------------------


@pytest.mark.parametrize(
    "text, offset",
    [
        ("", 0),
        ("   ", 3),
        ('{"a": }', 6),
        ("[1, 2", 5),
        ('{"a" 1}', 5),
        ("nul", 3),
        ("[1,]", 3),
        ("{} x", 3),
        ('{"a": 01}', 7),
        ("{'a': 1}", 1),
        ('"\x01"', 1),
        ('"abc', 4),
        ('{\n  "a": ,\n}', 9),
        ('["é", ]', 7),  # offsets count UTF-8 bytes, not characters
    ],
)
def test_invalid_json_text(any_tokenizer: tct.Tokenizer, text: str, offset: int) -> None:
    for doc in (text, text.encode("utf-8")):
        with pytest.raises(tct.EncodeError) as info:
            any_tokenizer.encode(doc)
        e = info.value
        assert e.offset is not None, str(e)
        # Parsers differ on whether they point at the bad byte or just past it.
        assert abs(e.offset - offset) <= 1, (text, e.offset, str(e))
        assert str(e.offset) in str(e)


def test_repeated_keys_are_errors(any_tokenizer: tct.Tokenizer) -> None:
    """A key repeated in one object is ambiguous JSON: an error at the repeated key, never a
    silently dropped value."""
    for text, offset in [('{"a": 1, "a": 2}', 9), ('{"x": {"b": [], "b": {}}}', 16)]:
        with pytest.raises(tct.EncodeError) as info:
            any_tokenizer.encode(text)
        assert info.value.offset == offset, (text, str(info.value))
        assert "repeated key" in str(info.value)
    # Python dicts cannot repeat a key, but json.dumps of int and str keys can.
    with pytest.raises(tct.EncodeError):
        any_tokenizer.encode({1: "a", "1": "b"})


def test_syntax_errors_name_the_enclosing_value(any_tokenizer: tct.Tokenizer) -> None:
    with pytest.raises(tct.EncodeError) as info:
        any_tokenizer.encode('{"jobs": {"build": {"steps": [1, tru]}}}')
    assert info.value.pointer == "/jobs/build/steps/1"
    assert info.value.offset == 36  # the `]` where `true` was expected


def test_numbers_keep_their_text(any_tokenizer: tct.Tokenizer) -> None:
    for text in ("1.0", "[1.50, 2E+3, -0]", '{"a": 1e5}'):
        back, _, _ = any_tokenizer.decode(any_tokenizer.encode(text))
        assert json.loads(back) == json.loads(text)
        assert back.replace(" ", "") == text.replace(" ", ""), (text, back)


def test_invalid_json_with_a_schema(small: tct.Tokenizer) -> None:
    with pytest.raises(tct.EncodeError):
        small.encode('{"name": "x",}')


# -- invalid UTF-8 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'"\xff"',
        b'"\xc3("',  # bad continuation byte
        b'"\xc0\xaf"',  # overlong encoding of "/"
        b'"\xed\xa0\x80"',  # UTF-8-encoded surrogate U+D800
        b'"\xf4\x90\x80\x80"',  # above U+10FFFF
        b'"\xe2\x82"',  # truncated sequence
        b'{"\xff": 1}',  # in a key
        b"\xff",  # outside any string
        b"\xef\xbb\xbf{}",  # a BOM is not JSON either
    ],
)
def test_invalid_utf8(any_tokenizer: tct.Tokenizer, data: bytes) -> None:
    with pytest.raises(tct.EncodeError) as info:
        any_tokenizer.encode(data)
    assert info.value.offset is not None


def test_invalid_utf8_offset_points_into_the_string(any_tokenizer: tct.Tokenizer) -> None:
    data = b'{"a": "ok", "b": "\xff"}'
    assert data.index(b"\xff") == 18
    with pytest.raises(tct.EncodeError) as info:
        any_tokenizer.encode(data)
    assert 17 <= info.value.offset <= 20, info.value.offset  # the string token is bytes 17..19


def test_invalid_utf8_in_a_batch_names_the_document(any_tokenizer: tct.Tokenizer) -> None:
    with pytest.raises(tct.EncodeError) as info:
        any_tokenizer.encode_batch([b"{}", b"[]", b'"\xff"', b"1"], num_threads=2)
    assert info.value.index == 2 and "document 2" in str(info.value)


# -- lone surrogates ----------------------------------------------------------------------------


def test_lone_surrogate_in_text(any_tokenizer: tct.Tokenizer) -> None:
    for text, offset in [('"\ud800"', 1), ('["ok", "\udfff"]', 8), ('{"é": "\ud83d"}', 8)]:
        with pytest.raises(tct.EncodeError) as info:
            any_tokenizer.encode(text)
        assert info.value.offset == offset, (text, info.value.offset)


def test_lone_surrogate_in_a_value(any_tokenizer: tct.Tokenizer) -> None:
    with pytest.raises(tct.EncodeError) as info:
        any_tokenizer.encode({"a": ["x", "\ud800"]})
    assert info.value.pointer == "/a/1"
    assert "/a/1" in str(info.value)
    with pytest.raises(tct.EncodeError):
        any_tokenizer.encode({"\udc00": 1})


@pytest.mark.parametrize("text", [r'"\ud800"', r'"\udc00"', r'"\ud800\u0041"', r'["\ud800x"]'])
def test_lone_surrogate_escape(any_tokenizer: tct.Tokenizer, text: str) -> None:
    """Escapes that name half a surrogate pair have no UTF-8 form: rejected, never decoded
    into invalid UTF-8."""
    with pytest.raises(tct.EncodeError):
        any_tokenizer.encode(text)


def test_surrogate_pair_escape_is_fine(any_tokenizer: tct.Tokenizer) -> None:
    text, _, _ = any_tokenizer.decode(any_tokenizer.encode(r'"\ud83d\ude00"'))
    assert json.loads(text) == "\U0001f600"


# -- NaN, Infinity and other non-JSON values ----------------------------------------------------


@pytest.mark.parametrize(
    "text", ["NaN", "[Infinity]", '{"a": -Infinity}', "[nan]", "[inf]", "+1", "0x10", ".5"]
)
def test_non_json_numbers_in_text(any_tokenizer: tct.Tokenizer, text: str) -> None:
    with pytest.raises(tct.EncodeError):
        any_tokenizer.encode(text)


@pytest.mark.parametrize(
    "value, pointer",
    [
        (float("nan"), ""),
        ({"x": [1, float("inf")]}, "/x/1"),
        ({"a/b": {"c~d": -float("inf")}}, "/a~1b/c~0d"),
        ({"a": object()}, "/a"),
        ({"s": {1, 2}}, "/s"),
        ({"b": b"bytes"}, "/b"),
        ([Decimal("1.5")], "/0"),
        ({(1, 2): 3}, ""),
    ],
)
def test_non_json_python_values(any_tokenizer: tct.Tokenizer, value, pointer: str) -> None:
    with pytest.raises(tct.EncodeError) as info:
        any_tokenizer.encode(value)
    assert info.value.pointer == pointer
    with pytest.raises(tct.EncodeError) as info:
        any_tokenizer.encode_batch([{}, value])
    assert info.value.index == 1 and info.value.pointer == pointer


def test_numbers_at_the_edges_round_trip(any_tokenizer: tct.Tokenizer) -> None:
    big = "1" + "0" * 5000  # beyond Python's default int<->str digit limit
    for text in [big, "-" + big]:
        decoded, _, _ = any_tokenizer.decode(any_tokenizer.encode(text))
        assert decoded == text
    for text in ["1e308", "-0.0", "5e-324", "1.7976931348623157e308", "-0", "2.5E-3", "1E2"]:
        decoded, _, _ = any_tokenizer.decode(any_tokenizer.encode(text))
        assert same_json(json.loads(decoded), json.loads(text)), (text, decoded)


def test_huge_python_int_is_an_encode_error(any_tokenizer: tct.Tokenizer) -> None:
    # json.dumps refuses ints over sys.get_int_max_str_digits() digits: typed, not a crash.
    if not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("no int digit limit before Python 3.11")
    with pytest.raises(tct.EncodeError):
        any_tokenizer.encode([10**5000])


# -- deep nesting and huge strings (isolated) ---------------------------------------------------

_PRELUDE = """
import json, sys
import numpy as np
import tct
tok = tct.Tokenizer.from_schema({})
small = tct.Tokenizer.from_schema({"type": "object", "properties": {"a": {"type": "array"}}})
"""


def test_deep_nesting_text() -> None:
    out = run_isolated(
        _PRELUDE
        + """
for t in (tok, small):
    for text in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000,
                 '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        try:
            t.encode(text)
            print("encoded")
        except tct.EncodeError as e:
            print("EncodeError", e.offset)
        try:
            t.encode_batch([text, text], num_threads=2)  # rayon threads: small stacks
            print("encoded")
        except tct.EncodeError as e:
            assert e.index == 0, e.index
            print("EncodeError", e.offset)
"""
    )
    assert out.count("EncodeError") == 12, out


def test_deep_nesting_python_value() -> None:
    out = run_isolated(
        _PRELUDE
        + """
v = []
for _ in range(100_000):
    v = [v]
try:
    tok.encode(v)
except tct.EncodeError as e:
    print("EncodeError")
"""
    )
    assert "EncodeError" in out


def test_deep_nesting_ids() -> None:
    """Decode and matcher walks over 100k-deep id sequences (derived from how the encoder
    nests arrays) return a document or a DecodeError, without blowing the stack."""
    out = run_isolated(
        _PRELUDE
        + """
a, b, c = (tok.encode("[" * k + "]" * k) for k in (1, 2, 3))
for k in range(len(b) - len(a) + 1):
    if b[k:k + len(a)] == a:
        pre, post = b[:k], b[k + len(a):]
        if pre + pre + a + post + post == c:
            break
else:
    raise SystemExit("nesting is not periodic in the encoding")
depth = 100_000
deep = pre * depth + a + post * depth
try:
    text, consumed, total = tok.decode(deep)
    assert text == "[" * (depth + 1) + "]" * (depth + 1) and consumed == total
    print("decoded")
except tct.DecodeError as e:
    assert 0 <= e.position <= len(deep), e.position
    print("DecodeError")
try:
    tok.decode(pre * depth)  # never closed
    raise SystemExit("an unclosed prefix decoded")
except tct.DecodeError as e:
    assert 0 <= e.position <= depth * len(pre), e.position
m = tok.matcher()
try:
    for i in pre * depth:
        m.advance(i)
except tct.DecodeError:
    pass
try:
    # Not json.loads: Python's own parser would hit its recursion limit on this.
    assert m.document(complete=True).startswith("[")
except tct.DecodeError:
    pass
m.allowed()
print("survived")
"""
    )
    assert "survived" in out


def test_100mb_string() -> None:
    out = run_isolated(
        _PRELUDE
        + """
s = "aé✓😀" * 10_000_000  # 100 MB of UTF-8, every sequence length
doc = json.dumps(s, ensure_ascii=False)
try:
    ids, offsets = tok.encode_batch([doc])
except tct.EncodeError as e:
    print("EncodeError", e)
else:
    assert offsets.tolist() == [0, len(ids)]
    text, consumed, total = tok.decode(ids)
    assert consumed == total == len(ids)
    assert text == doc, "100 MB string did not round-trip"
    print("round-trip")
"""
    )
    assert "round-trip" in out or "EncodeError" in out


# -- ids out of range ---------------------------------------------------------------------------


def test_ids_out_of_range(small: tct.Tokenizer) -> None:
    n, bos = small.vocab_size, small.bos_id
    cases = [
        ([n], 0),
        ([bos, -1], 1),
        ([bos, 2**70], 1),
        ([bos, -(2**70)], 1),
        (np.array([bos, 70000], dtype=np.uint32), 1),
        (np.array([bos, -5], dtype=np.int64), 1),
        (np.array([bos, bos, 2**40], dtype=np.int64), 2),
        (np.array([n], dtype=np.uint64), 0),
    ]
    for ids, position in cases:
        with pytest.raises(tct.DecodeError) as info:
            small.decode(ids)
        assert info.value.position == position, (ids, info.value.position)
        assert f"position {position}" in str(info.value)


def test_empty_and_truncated_sequences(small: tct.Tokenizer) -> None:
    with pytest.raises(tct.DecodeError) as info:
        small.decode([])
    assert info.value.position == 0
    ids = small.encode({"name": "abc", "n": 5})
    for cut in range(len(ids)):
        with pytest.raises(tct.DecodeError) as info:
            small.decode(ids[:cut])
        assert 0 <= info.value.position <= cut


FUZZ_SEEDS = [
    None,
    True,
    False,
    0,
    -1.5e300,
    '""',  # a str document is JSON text
    '"é✓"',
    [],
    [1, [None]],
    {},
    {"name": "x"},
    {"name": "y", "n": 12},
    {"k": {"name": "z", "extra": [True, "s"]}},
]


@pytest.mark.parametrize("which", ["any", "small"])
def test_random_ids_never_crash(any_tokenizer: tct.Tokenizer, small: tct.Tokenizer, which) -> None:
    """A light fuzz (the heavy one is elsewhere): mutated real encodings and random draws from
    the ids real encodings use, plus the special ids and uniformly random ids."""
    tok = any_tokenizer if which == "any" else small
    rng = random.Random(1234)
    seeds = [tok.encode(doc) for doc in FUZZ_SEEDS]
    alphabet = sorted({i for ids in seeds for i in ids})
    specials = [tok.bos_id, tok.eos_id, tok.pad_id]

    def draw() -> int:
        r = rng.random()
        if r < 0.1:
            return rng.choice(specials)
        if r < 0.8:
            return rng.choice(alphabet)
        return rng.randrange(tok.vocab_size)

    decoded = 0
    for _ in range(3000):
        if rng.random() < 0.5:
            ids = list(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                k = rng.randrange(len(ids) + 1)
                op = rng.randrange(3)
                if op == 0 and k < len(ids):
                    del ids[k]
                elif op == 1:
                    ids.insert(k, draw())
                elif k < len(ids):
                    ids[k] = draw()
        else:
            # Start like a real document so the decoder gets past the first id.
            ids = [rng.choice(seeds)[0]] + [draw() for _ in range(rng.randrange(0, 40))]
        try:
            text, consumed, total = tok.decode(ids)
        except tct.DecodeError as e:
            assert 0 <= e.position <= len(ids)
            continue
        json.loads(text)
        assert 0 < consumed <= total == len(ids)
        decoded += 1
    # If (almost) nothing decodes, the fuzz explores nothing past the first error.
    assert decoded > 30, decoded
