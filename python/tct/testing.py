"""Helpers for testing code that uses tct (and for tct's own tests and benchmarks).

`same_json` is the one equality the round-trip guarantees are stated in: a decoded document is
`same_json` to the document that was encoded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["same_json"]


def same_json(a: Any, b: Any) -> bool:
    """Value- *and* type-exact equality of parsed JSON values.

    ``1 != 1.0 != True``; object key order is ignored; floats compare bit for bit
    (``float.hex``), so ``-0.0 != 0.0``.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return bool(a.keys() == b.keys()) and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return bool(a.hex() == b.hex())
    return bool(a == b)
