"""JSON documents as block-style YAML, for people to read (`trainer.generate --format yaml`).

`to_yaml(doc)` uses PyYAML when it is installed and a small emitter of its own otherwise; both
write output that reads back to the same JSON value under YAML 1.2 (GitHub's reading) *and* YAML
1.1 (PyYAML's). The hazards are strings that a YAML reader would take for something else: `on`,
`yes` and `off` are booleans in YAML 1.1, `0o17` is an integer in YAML 1.2 only, `1e3` a number in
1.2 only. Such strings are always double-quoted. Multi-line strings (the `run:` scripts) are
written as literal blocks (`|`) when that round-trips exactly, else double-quoted with escapes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A string may go unquoted only if it matches this (ASCII words, paths, action refs, ${{ }}
# expressions after the first character) and is not a YAML 1.1 boolean or null word.
_PLAIN = re.compile(r"[A-Za-z_/$][\w./@+=$(){}\-]*(?: [\w./@+=$(){}\-]+)*", re.ASCII)
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"}
# Characters a YAML reader may treat as line breaks or drop (NEL, LS, PS, BOM): always escaped.
_YAML_SPECIAL = {"\u0085", "\u2028", "\u2029", "\ufeff"}


def is_plain_safe(s: str) -> bool:
    """True if `s` reads back as the same string, unquoted, in YAML 1.1 and 1.2."""
    return bool(_PLAIN.fullmatch(s)) and s.lower() not in _RESERVED


def double_quoted(s: str) -> str:
    """A YAML double-quoted scalar (escapes that YAML 1.1 and 1.2 share)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch.isprintable() and ch not in _YAML_SPECIAL:
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def literal_lines(s: str) -> tuple[str, list[str]] | None:
    """(header like `|-`, content lines) if `s` can be a literal block scalar, else None."""
    if "\n" not in s or "\r" in s:
        return None
    lines = s.split("\n")
    body = s.rstrip("\n")
    trailing = len(s) - len(body)
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    content = body.split("\n")
    first = next((line for line in content if line), "")
    # A leading space would change the detected indentation; a whitespace-only line would be
    # read as (part of) the indentation; other unprintable characters cannot appear raw.
    if not first or first[0] in " \t":
        return None
    for line in lines:
        if line and not line.strip(" \t"):
            return None
        if any(not (c.isprintable() or c == "\t") or c in _YAML_SPECIAL for c in line):
            return None
    return "|" + chomp, content + [""] * (trailing - 1 if trailing > 1 else 0)


def scalar(value: Any) -> str:
    """One-line YAML for a JSON scalar (strings as plain or double-quoted)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        text = repr(value)
        # YAML 1.1 floats need a dot ("1e+20" would be a string there).
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
        return text
    if isinstance(value, str):
        return value if is_plain_safe(value) else double_quoted(value)
    raise TypeError(f"not a JSON scalar: {type(value).__name__}")


def _is_block(value: Any) -> bool:
    return isinstance(value, (dict, list)) and len(value) > 0


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def _entry(head: str, value: Any, indent: int) -> list[str]:
    """Lines for `head` (like `key:` or `-`) followed by `value`, head at column `indent`."""
    pad = " " * indent
    if _is_block(value):
        if isinstance(value, dict) and head == "-":
            # "- key: v" with the item's other keys aligned under the first one.
            sub = _block(value, indent + 2)
            return [pad + "- " + sub[0][indent + 2 :]] + sub[1:]
        return [pad + head] + _block(value, indent + 2)
    if isinstance(value, str):
        lit = literal_lines(value)
        if lit is not None:
            header, content = lit
            inner = " " * (indent + 2)
            return [f"{pad}{head} {header}"] + [inner + line if line else "" for line in content]
    return [f"{pad}{head} {_inline(value)}"]


def _block(value: Any, indent: int) -> list[str]:
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            lines.extend(_entry(scalar(str(k)) + ":", v, indent))
    else:
        for item in value:
            lines.extend(_entry("-", item, indent))
    return lines


def to_yaml_builtin(doc: Any) -> str:
    """The emitter of this module (no PyYAML)."""
    if not _is_block(doc):
        return _inline(doc) + "\n"
    return "\n".join(_block(doc, 0)) + "\n"


def to_yaml_pyyaml(doc: Any) -> str:
    """PyYAML's emitter, with this module's quoting and literal-block rules for strings."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
        if literal_lines(s) is not None:
            return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")
        style = None if is_plain_safe(s) else '"'
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)

    def represent_float(dumper: yaml.SafeDumper, f: float) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:float", scalar(f))

    Dumper.add_representer(str, represent_str)
    Dumper.add_representer(float, represent_float)
    return yaml.dump(
        doc,
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1 << 30,  # never fold long lines: folding is where round trips break
    )


def to_yaml(doc: Any) -> str:
    """Block-style YAML of a JSON value: PyYAML if installed, else the built-in emitter."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        return to_yaml_builtin(doc)
    return to_yaml_pyyaml(doc)


def to_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
