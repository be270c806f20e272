"""tct.testing.same_json: the equality the round-trip guarantees are stated in."""

from __future__ import annotations

import json

import pytest

from tct.testing import same_json


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (1, True),
        (0, False),
        (0.0, -0.0),
        (None, False),
        ("1", 1),
        ([1, 2], [2, 1]),
        ([1], [1, 1]),
        ({"a": 1}, {"a": 1, "b": 2}),
        ({"a": [1.5]}, {"a": [1.25]}),
    ],
)
def test_different(a: object, b: object) -> None:
    assert not same_json(a, b)
    assert not same_json(b, a)


@pytest.mark.parametrize(
    "text",
    ['{"b": 1, "a": [1.0, -0.0, true, null, "x"]}', "1e400", "-0.0", "0.1", "[]", "{}"],
)
def test_same_as_its_own_parse(text: str) -> None:
    assert same_json(json.loads(text), json.loads(text))


def test_key_order_is_ignored() -> None:
    assert same_json({"a": 1, "b": [2.5]}, {"b": [2.5], "a": 1})
