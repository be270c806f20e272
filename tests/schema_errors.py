"""Relating python-jsonschema errors to the keywords a tokenizer says it does not enforce.

`tok.warnings` lists, by schema location, the `not`/`oneOf`/`if` combinations the matcher does
not enforce exactly. A document drawn under the mask that python-jsonschema rejects is a matcher
bug unless the rejection comes from one of those places; `unexplained_errors` tells the two
apart, so a test can fail on the bugs and mark only the documented gaps as expected failures.

The error's location is found by following `error.absolute_schema_path` through the schema,
resolving `$ref`s on the way (python-jsonschema leaves `$ref` and `if` out of the path, and in
draft-07 a `$ref` replaces its siblings), into the registered schemas for remote refs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

_WARNING = re.compile(r"^(\S+): ")


def _unescape(token: str) -> str:
    return unquote(token).replace("~1", "/").replace("~0", "~")


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _resolve_pointer(document: Any, fragment: str) -> Any:
    node = document
    for token in fragment.lstrip("/").split("/") if fragment.strip("/") else []:
        key = _unescape(token)
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _file(uri: str) -> str:
    """The file name part of a schema URI (SchemaStore serves each file under two hosts)."""
    return urlsplit(uri).path.rsplit("/", 1)[-1]


def schema_location(
    root: Any, root_uri: str, registry: Mapping[str, Any], path: Sequence[str | int]
) -> tuple[str, str]:
    """(file name, JSON pointer) of the keyword at the end of `path` (an
    `absolute_schema_path`), with every `$ref` on the way followed."""
    node, base, pointer = root, root_uri, ""
    for step in path:
        for _ in range(64):  # `$ref` chains; a cycle of pure refs would not validate anyway
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                break
            target = urljoin(base, node["$ref"])
            uri, _, fragment = target.partition("#")
            document = root if uri == root_uri or not uri else registry[uri]
            base = uri or base
            node, pointer = _resolve_pointer(document, fragment), fragment.rstrip("/")
        node = node[step]
        pointer = f"{pointer}/{_escape(step)}"
    return _file(base), pointer


def warning_locations(warnings: Iterable[str], root_file: str) -> list[tuple[str, str]]:
    """(file name, JSON pointer) of each `tok.warnings` entry (`/ptr: message` for the root
    schema, `URI#/ptr: message` for a registered one)."""
    out = []
    for warning in warnings:
        match = _WARNING.match(warning)
        if not match:
            continue
        where = match.group(1)
        if "#" in where:
            uri, _, fragment = where.partition("#")
            out.append((_file(uri), fragment))
        else:
            out.append((root_file, where))
    return out


def explained(location: tuple[str, str], warned: Sequence[tuple[str, str]]) -> bool:
    """Whether a failing keyword at `location` is one of the gaps `warned` lists:
    - a `oneOf`/`anyOf`/`not` keyword with a warning at or below it (an exclusion or a branch
      that is not enforced);
    - a keyword inside the `then`/`else` of an `if` whose `if` (or something below it) is warned
      about (the condition is not decided exactly)."""
    file, pointer = location
    tokens = pointer.split("/")
    candidates = []
    if tokens[-1] in ("oneOf", "anyOf", "not"):
        candidates.append(pointer)
    for i in range(len(tokens) - 1, 0, -1):
        if tokens[i] in ("then", "else"):
            candidates.append("/".join(tokens[:i]) + "/if")
    return any(
        f == file and (p == c or p.startswith(c + "/")) for f, p in warned for c in candidates
    )


def unexplained_errors(
    validator: Any,
    document: Any,
    root_uri: str,
    registry: Mapping[str, Any],
    warnings: Sequence[str],
) -> tuple[list[str], list[str]]:
    """(unexplained, explained) descriptions of every top-level validation error of
    `document`: `json_path: message [keyword at file#pointer]`."""
    root_file = _file(root_uri)
    warned = warning_locations(warnings, root_file)
    unexplained, known = [], []
    for error in validator.iter_errors(document):
        try:
            location = schema_location(
                validator.schema, root_uri, registry, list(error.absolute_schema_path)
            )
        except (KeyError, IndexError, TypeError) as e:
            location = ("?", f"(unresolvable schema path {list(error.absolute_schema_path)}: {e})")
        text = f"{error.json_path}: {error.message[:200]} [{location[0]}#{location[1]}]"
        (known if explained(location, warned) else unexplained).append(text)
    return unexplained, known


# ---------------------------------------------------------------------------------------------
# ECMA-262 regular expressions for python-jsonschema
# ---------------------------------------------------------------------------------------------
# JSON Schema's `pattern` and `patternProperties` are ECMA-262 regular expressions, and tct
# implements them so; python-jsonschema runs them with Python's `re`, which differs on exactly
# the strings random walks are full of: `.` also matches `\r`, `\u2028`, `\u2029`; `$` also
# matches before a final `\n`; `\d`, `\w` match non-ASCII digits and letters; `\s` matches
# `\x1c`-`\x1f` and `\x85` but not `\ufeff`. `ecma_validator` is the stock validator of the
# schema's draft with those three keywords running translated patterns.

_ECMA_SPACE = (
    "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
)
_ECMA_CLASS_ESCAPES = {
    "d": ("[0-9]", "0-9"),
    "D": ("[^0-9]", "\\x00-/:-\\U0010ffff"),
    "w": ("[0-9A-Za-z_]", "0-9A-Za-z_"),
    "W": ("[^0-9A-Za-z_]", "\\x00-/:-@\\[-\\^`{-\\U0010ffff"),
    "s": (f"[{_ECMA_SPACE}]", _ECMA_SPACE),
}


def ecma_to_python(pattern: str) -> str:
    """A Python `re` pattern with the ECMA-262 meaning of `pattern` for `.`, `$`, `\\d`,
    `\\D`, `\\w`, `\\W` and `\\s` (everything else is passed through)."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            n = pattern[i + 1]
            if n in _ECMA_CLASS_ESCAPES:
                out.append(_ECMA_CLASS_ESCAPES[n][1 if in_class else 0])
            elif n == "S" and not in_class:
                out.append(f"[^{_ECMA_SPACE}]")
            else:
                out.append(c + n)
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
        elif c == ".":
            out.append("[^\\n\\r\\u2028\\u2029]")
        elif c == "$":
            out.append("\\Z")
        else:
            out.append(c)
        i += 1
    return "".join(out)


_compiled: dict[str, re.Pattern[str]] = {}


def ecma_search(pattern: str, text: str) -> bool:
    compiled = _compiled.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(ecma_to_python(pattern))
        except re.error:
            compiled = re.compile(pattern)  # as python-jsonschema would
        _compiled[pattern] = compiled
    return compiled.search(text) is not None


def ecma_validator(schema: Any, registry: Any) -> Any:
    """The python-jsonschema validator for `schema`'s draft (default draft-07), resolving remote
    refs through `registry`, with ECMA-262 `pattern`/`patternProperties` semantics."""
    import jsonschema
    from jsonschema.exceptions import ValidationError

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not ecma_search(patrn, instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in patterns.items():
            for key, value in instance.items():
                if ecma_search(patrn, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    def additional_properties(validator: Any, ap: Any, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        properties = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        extras = [
            k
            for k in instance
            if k not in properties and not any(ecma_search(p, k) for p in patterns)
        ]
        if validator.is_type(ap, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], ap, path=extra)
        elif not ap and extras:
            yield ValidationError(f"Additional properties are not allowed ({extras!r} unexpected)")

    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls = jsonschema.validators.extend(
        base,
        {
            "pattern": pattern,
            "patternProperties": pattern_properties,
            "additionalProperties": additional_properties,
        },
    )
    return cls(schema, registry=registry)
