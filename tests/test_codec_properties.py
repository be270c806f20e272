"""Property tests (hypothesis) of the codec's round trip:

- arbitrary JSON (nested objects and arrays; strings with control characters and non-BMP
  characters; integers far beyond 64 bits; floats including subnormals and -0.0) round-trips
  value- and type-exactly through the `{}` schema, and its canonical encoding is a fixed point
  (encode(decode(ids)) == ids);
- against small typed schemas (required/optional properties, enums, oneOf, bounded arrays,
  maps, numeric and string bounds), every document round-trips, conforming or not; the encoder
  falls back exactly when python-jsonschema says the document is invalid; and the canonical
  encoding of a conforming document is accepted id by id by the matcher, with the mask checked
  at every step.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tct
from conftest import compact_json
from tct.testing import same_json

# Every code point except the surrogates (a lone surrogate is not Unicode and is rejected by
# `encode`, tested in test_bad_input.py); control characters and the astral planes included.
characters = st.characters(blacklist_categories=("Cs",))
text = st.text(characters, max_size=20)
integers = st.one_of(
    st.integers(-1000, 1000),
    st.integers(-(2**64), 2**64),
    st.integers(-(10**60), 10**60),
)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True, width=64).filter(
        lambda f: f == 0 or abs(f) < 2.3e-308
    ),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324, 1.7976931348623157e308, 0.1, 1e16]),
)
scalars = st.one_of(text, integers, floats, st.booleans(), st.none())
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(text, children, max_size=6),
    ),
    max_leaves=30,
)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_round_trip(tok: tct.Tokenizer, doc: Any) -> tct.Encoding:
    # As JSON text: a Python str given to `encode` is read as JSON text, not as a string value.
    enc = tok.encode_detailed(compact_json(doc))
    out, consumed, total = tok.decode(enc.ids)
    assert consumed == total == len(enc.ids)
    assert same_json(json.loads(out), doc), (doc, out)
    # The decoded text is canonical: encoding it again gives the same ids.
    assert tok.encode(out) == enc.ids
    return enc


@pytest.fixture(scope="module")
def any_tok() -> tct.Tokenizer:
    return tct.Tokenizer.from_schema({})


@SETTINGS
@given(doc=json_values)
def test_any_json_round_trips_exactly(any_tok: tct.Tokenizer, doc: Any) -> None:
    enc = assert_round_trip(any_tok, doc)
    # Everything conforms to `{}`; only numbers the matcher cannot generate (3-digit exponents)
    # take the fallback path, and still round-trip.
    if not _has_big_exponent(doc):
        assert enc.fallbacks == []
        # What is encoded without fallback, the matcher accepts (the mask checked at every step).
        any_tok.matcher_accepts(enc.ids, check_every=1)
    else:
        assert enc.fallbacks == [""]


def _has_big_exponent(doc: Any) -> bool:
    if isinstance(doc, float):
        text = json.dumps(doc)
        return "e" in text and len(text.split("e")[1].lstrip("+-")) > 2
    if isinstance(doc, list):
        return any(_has_big_exponent(x) for x in doc)
    if isinstance(doc, dict):
        return any(_has_big_exponent(x) for x in doc.values())
    return False


@SETTINGS
@given(doc=json_values)
def test_json_text_and_python_value_encode_alike(any_tok: tct.Tokenizer, doc: Any) -> None:
    """JSON text (compact or indented, as str or UTF-8 bytes) and the Python value give the same
    ids: the encoding depends on the document, not on its spelling."""
    ids = any_tok.encode(compact_json(doc))
    if not isinstance(doc, str):  # a str given to `encode` is JSON text
        assert any_tok.encode(doc) == ids
    assert any_tok.encode(json.dumps(doc, indent=2).encode("utf-8")) == ids


@pytest.mark.parametrize(
    "text_form",
    ["1E5", "1e5", "-0", "-0.0", "0.10", "1.5e-7", "1e400", "123456789012345678901234567890123"],
)
def test_number_text_is_kept_as_a_value(any_tok: tct.Tokenizer, text_form: str) -> None:
    """Numbers keep their type and value (`-0` stays an int 0, `-0.0` a negative-zero float,
    `1e400` the text that Python reads as inf), whatever their spelling."""
    out, _, _ = any_tok.decode(any_tok.encode(text_form))
    assert same_json(json.loads(out), json.loads(text_form)) or (
        math.isinf(json.loads(text_form)) and math.isinf(json.loads(out))
    )


# ---------------------------------------------------------------------------------------------
# Small typed schemas
# ---------------------------------------------------------------------------------------------

TYPED_SCHEMAS: dict[str, dict[str, Any]] = {
    "object": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string", "maxLength": 5},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "flag": {"type": "boolean"},
            "nested": {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "null"}},
                "required": ["x"],
                "additionalProperties": False,
            },
        },
        "required": ["id"],
        "additionalProperties": False,
    },
    "enum": {"enum": ["push", "pull_request", 1, 2.5, True, None, [1, "a"], {"k": "v"}]},
    "oneOf": {
        "oneOf": [
            {"type": "string", "pattern": "^[a-z]+$"},
            {"type": "integer", "minimum": 0},
            {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
        ]
    },
    "array": {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "minItems": 2,
        "maxItems": 4,
    },
    "map": {
        "type": "object",
        "patternProperties": {"^x-": {}},
        "additionalProperties": {"type": ["integer", "string"]},
        "maxProperties": 4,
    },
    "tuple": {
        "type": "array",
        "items": [{"type": "string"}, {"enum": ["a", "b"]}],
        "additionalItems": {"type": "number"},
    },
}


def conforming(name: str) -> st.SearchStrategy[Any]:
    """Documents that validate against TYPED_SCHEMAS[name] (most of the time: the bounds are
    filtered by the test, not here)."""
    small_text = st.text(characters, max_size=5)
    if name == "object":
        nested = st.fixed_dictionaries({"x": integers}, optional={"y": st.none()})
        return st.fixed_dictionaries(
            {"id": integers},
            optional={
                "name": small_text,
                "ratio": st.floats(0, 1),
                "flag": st.booleans(),
                "nested": nested,
            },
        )
    if name == "enum":
        return st.sampled_from(TYPED_SCHEMAS["enum"]["enum"])
    if name == "oneOf":
        return st.one_of(
            st.from_regex(r"\A[a-z]+\Z"),
            st.integers(0, 2**70),
            st.lists(st.booleans(), max_size=3),
        )
    if name == "array":
        return st.lists(st.text(characters, min_size=1, max_size=8), min_size=2, max_size=4)
    if name == "map":
        return st.dictionaries(
            st.one_of(text, text.map(lambda t: "x-" + t)),
            st.one_of(integers, text, json_values),
            max_size=4,
        )
    if name == "tuple":
        return st.tuples(
            text, st.sampled_from(["a", "b"]), st.lists(st.one_of(integers, floats))
        ).map(lambda t: [t[0], t[1], *t[2]])
    raise KeyError(name)


def type_exact_validator(schema: Any) -> Any:
    """Draft-07 as tct reads it: type-exact, so an integral float (1.0) is not an `integer` and
    does not equal the enum value 1 (draft-06+ say both are; tct keeps 1.0 a float, so such a
    value goes through the fallback, losslessly)."""
    from jsonschema.exceptions import ValidationError

    def enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Any:
        if not any(same_json(instance, e) for e in enums):
            yield ValidationError(f"{instance!r} is not one of {enums!r}")

    def const(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        if not same_json(instance, value):
            yield ValidationError(f"{value!r} was expected")

    base = jsonschema.Draft7Validator
    checker = base.TYPE_CHECKER.redefine("integer", lambda _, x: type(x) is int)
    cls = jsonschema.validators.extend(base, {"enum": enum, "const": const}, type_checker=checker)
    return cls(schema)


def outside_generation_grammar(doc: Any) -> bool:
    """Whether `doc` may hold a number the matcher's bounded number grammar cannot produce (an
    exponent of more than two digits, as in 1e+100 or 5e-324, or any exponent on a number with
    bounds): such a number conforms but is encoded through the generic path (documented in
    rust/src/encode.rs and the README)."""
    if isinstance(doc, dict):
        return any(outside_generation_grammar(v) for v in doc.values())
    if isinstance(doc, list):
        return any(outside_generation_grammar(v) for v in doc)
    if isinstance(doc, float):
        # Numbers with bounds (minimum/maximum) are generated without exponents at all; this
        # helper does not know the schema, so any exponent counts.
        return "e" in repr(doc)
    return False


class Typed(NamedTuple):
    name: str
    tok: tct.Tokenizer
    validator: Any

    def __repr__(self) -> str:  # hypothesis prints it with every falsifying example
        return f"Typed({self.name!r})"


@pytest.fixture(scope="module", params=sorted(TYPED_SCHEMAS))
def typed(request: pytest.FixtureRequest) -> Typed:
    name = str(request.param)
    schema = TYPED_SCHEMAS[name]
    tok = tct.Tokenizer.from_schema(schema)
    assert tok.warnings == [], f"{name}: small schemas are meant to be enforced exactly"
    return Typed(name, tok, type_exact_validator(schema))


def check_typed(typed: Typed, doc: Any) -> None:
    """The document round-trips; an invalid one falls back; a valid one does not (unless it
    holds a number outside the generation grammar); and whatever is encoded without fallback
    is accepted by the matcher, with the mask checked at every step (the encoder and the matcher
    agree on what conforms)."""
    name, tok, validator = typed
    enc = assert_round_trip(tok, doc)
    if validator.is_valid(doc):
        assert enc.fallbacks == [] or outside_generation_grammar(doc), (
            f"{name}: a valid document falls back at {enc.fallbacks}"
        )
    else:
        assert enc.fallbacks, f"{name}: an invalid document has no fallback: {doc!r}"
    if not enc.fallbacks:
        tok.matcher_accepts(enc.ids, check_every=1)


@SETTINGS
@given(data=st.data())
def test_typed_schema_conforming_documents(typed: Typed, data: st.DataObject) -> None:
    doc = data.draw(conforming(typed[0]))
    check_typed(typed, doc)


@settings(SETTINGS, max_examples=150)
@given(doc=json_values)
def test_typed_schema_arbitrary_documents(typed: Typed, doc: Any) -> None:
    """Mostly non-conforming documents: they round-trip through the fallback."""
    check_typed(typed, doc)


def test_typed_enum_distinguishes_types() -> None:
    """An enum holding 1 must not take 1.0 or True for it (python-jsonschema would say 1 ==
    1.0 is in the enum, so this is checked by hand): the round trip keeps the type."""
    tok = tct.Tokenizer.from_schema({"enum": [1, "1", [True]]})
    for doc in (1, 1.0, True, "1", [True], [1], [1.0]):
        enc = tok.encode_detailed(compact_json(doc))
        out, _, _ = tok.decode(enc.ids)
        assert same_json(json.loads(out), doc), (doc, out)
    assert tok.encode_detailed(1).fallbacks == []
    assert tok.encode_detailed(True).fallbacks != []


@SETTINGS
@given(doc=json_values)
def test_fallback_inside_a_typed_container(doc: Any) -> None:
    """A non-conforming value deep inside a conforming document falls back *there* (the pointer
    says where) and the rest keeps its typed encoding."""
    tok = _deep_tok()
    wrapper = {"items": [{"v": 1}, {"v": doc}]}
    enc = assert_round_trip(tok, wrapper)
    if type(doc) is int:
        assert enc.fallbacks == []
    else:
        # At the value, or at the item holding it (`v` is required, and the encoder falls back
        # at the object when a required property does not conform); never above the item.
        assert enc.fallbacks in (["/items/1/v"], ["/items/1"]), enc.fallbacks


_DEEP: list[tct.Tokenizer] = []


def _deep_tok() -> tct.Tokenizer:
    if not _DEEP:
        _DEEP.append(
            tct.Tokenizer.from_schema(
                {
                    "type": "object",
                    "properties": {
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"v": {"type": "integer"}},
                                "required": ["v"],
                                "additionalProperties": False,
                            },
                        }
                    },
                    "required": ["items"],
                    "additionalProperties": False,
                }
            )
        )
    return _DEEP[0]
