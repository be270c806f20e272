"""Where a TCT tokenizer spends its ids: by schema location and by kind.

Each document is walked id by id with the tokenizer's matcher. An id is *content* when the
text of the document's string and number values grows with it (the vocabulary merges a
decision and the text after it into one id, so such an id counts as content), *map key* when it
spells the key of a free-form map, and *structure* when it only decides (which optional fields
are present, which union branch or enum value, a container's end). Its location is the path of
the value that the id adds to `Matcher.partial_document()`: ids that do not change the partial
document yet (the characters of a map key, say) count for the value they lead to.
Array indices become `[]`, and the keys of free-form maps (job ids, env names, `with` inputs)
become `*`, so that locations add up over documents. Content ids are further split by the kind
of value they spell: `run` scripts, `uses` references, names, `if` conditions, env values,
action inputs, other strings with `${{ }}` expressions, other strings, numbers.

Run (held-out repositories of the development corpus, the bundled tokenizer)::

    python benches/token_breakdown.py --docs 300
    python benches/compression.py --breakdown 300     # the same, beside the compression table

The walk costs ~0.1 ms per id (a partial document per id), so a few hundred documents take
about half a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# Maps of github-workflow whose keys are the author's names, not schema properties.
WORKFLOW_MAP_KEYS = frozenset(
    {"jobs", "env", "with", "secrets", "outputs", "inputs", "services", "matrix", "volumes"}
)
# Keys that stay as they are under those maps (the schema names them).
FIXED_UNDER_MAPS = frozenset({"include", "exclude"})
# Top kinds of the matcher that mean "inside or at the start of a scalar's text".
CONTENT_KINDS = frozenset({"string", "value:string", "number", "value:number"})


def last_path(value: Any) -> list[str]:
    """Path of the last leaf of a JSON value (the last key or item at every level)."""
    path: list[str] = []
    while isinstance(value, (dict, list)) and value:
        if isinstance(value, dict):
            key = next(reversed(value))
            path.append(str(key))
            value = value[key]
        else:
            path.append("[]")
            value = value[-1]
    return path


def normalize(path: Sequence[str], map_keys: frozenset[str] = WORKFLOW_MAP_KEYS) -> str:
    """`/jobs/*/steps/[]/run` for `['jobs', 'build', 'steps', '[]', 'run']`."""
    out: list[str] = []
    for i, part in enumerate(path):
        parent = path[i - 1] if i else None
        if parent in map_keys and part != "[]" and part not in FIXED_UNDER_MAPS:
            part = "*"
        out.append(part)
    return "/" + "/".join(out)


def value_at(doc: Any, path: Sequence[str]) -> Any:
    """The value at a `last_path` (indices written `[]` mean the last item)."""
    for part in path:
        if isinstance(doc, list):
            doc = doc[-1] if doc else None
        elif isinstance(doc, dict):
            doc = doc.get(part)
        else:
            return None
    return doc


def content_kind(path: Sequence[str], value: Any) -> str:
    """The kind of scalar a content id spells, from its location and final value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number"
    leaf = path[-1] if path else ""
    parents = set(path[:-1])
    if leaf == "run":
        return "run script"
    if leaf == "uses":
        return "uses reference"
    if leaf == "name":
        return "name"
    if leaf == "if":
        return "if condition"
    if "env" in parents:
        return "env value"
    if "with" in parents:
        return "action input"
    if isinstance(value, str) and "${{" in value:
        return "other, with ${{ }}"
    return "other string"


def scalar_size(value: Any) -> int:
    """Characters of string and number values in a JSON value (keys and booleans excluded:
    a schema's keys and a boolean are decisions, not text)."""
    if isinstance(value, dict):
        return sum(scalar_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(scalar_size(v) for v in value)
    if isinstance(value, str):
        return len(value) + 1  # an empty string is content too
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return len(repr(value))
    return 0


def walk(tok: Any, doc_text: str) -> list[tuple[str, str]] | None:
    """(location, kind) of every id of one document; None when it needs the generic fallback
    (the matcher cannot walk it).

    The vocabulary merges decisions and text into one id (a union branch and the string that
    follows it, say), so an id counts as content when the text of the document's values grows
    with it, and as structure when it only decides. Ids inside a string leave the partial document
    unchanged until the string ends; they count for what it turns out to be: a value's text, or
    the key of a free-form map (a job id, an env name) when no value text came with it."""
    enc = tok.encode_detailed(doc_text)
    if enc.fallbacks:
        return None
    final = json.loads(doc_text)
    m = tok.matcher()
    out: list[tuple[str, str]] = []
    pending: list[bool] = []  # ids not attributed yet: were they inside a string?
    previous, previous_size = None, 0
    for i in enc.ids:
        in_text = m.top_kind() in CONTENT_KINDS
        m.advance(i)
        snapshot = m.partial_document()
        if snapshot == previous:
            # Inside a string the partial document shows nothing until the string ends.
            pending.append(in_text)
            continue
        previous = snapshot
        value = json.loads(snapshot)
        size = scalar_size(value)
        path = last_path(value)
        where = normalize(path)
        grew = size > previous_size
        kind = content_kind(path, value_at(final, path)) if grew else "structure"
        previous_size = size
        # Text that ends without growing the values' text was a key of a free-form map.
        text_kind = kind if grew else "map key"
        out.extend((where, text_kind if t else "structure") for t in pending)
        out.append((where, kind))
        pending.clear()
    # Ids after the last change (closing ids) are structure of the root.
    out.extend(("/", "structure") for _ in pending)
    return out


def breakdown(tok: Any, doc_texts: Iterable[str], top: int = 20) -> dict[str, Any]:
    """Shares of ids by kind and by location over documents (compact JSON texts)."""
    by_kind: Counter[str] = Counter()
    by_location: Counter[str] = Counter()
    structure_at: Counter[str] = Counter()
    total = docs = fallback = 0
    for text in doc_texts:
        rows = walk(tok, text)
        if rows is None:
            fallback += 1
            continue
        docs += 1
        total += len(rows)
        by_kind.update(kind for _, kind in rows)
        by_location.update(where for where, _ in rows)
        structure_at.update(where for where, kind in rows if kind == "structure")
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    return {
        "documents": docs,
        "skipped_fallback": fallback,
        "ids": total,
        "ids_per_document": total / docs if docs else 0.0,
        "by_kind": {k: share(n) for k, n in by_kind.most_common()},
        "by_location": {k: share(n) for k, n in by_location.most_common(top)},
        "structure_by_location": {k: share(n) for k, n in structure_at.most_common(top)},
    }


def print_breakdown(result: dict[str, Any]) -> None:
    print(
        f"\nWhere the ids go: {result['documents']} documents "
        f"({result['skipped_fallback']} with fallback skipped), "
        f"{result['ids_per_document']:.1f} ids per document\n"
    )
    print("| kind | share of ids |\n| --- | ---: |")
    for k, s in result["by_kind"].items():
        print(f"| {k} | {100 * s:.1f}% |")
    print("\n| location | share of ids | of which structure |\n| --- | ---: | ---: |")
    structure = result["structure_by_location"]
    for k, s in result["by_location"].items():
        print(f"| `{k}` | {100 * s:.1f}% | {100 * structure.get(k, 0.0):.1f}% |")


def main(argv: Sequence[str] | None = None) -> int:
    import tct
    from bench_common import compact
    from compression import DEFAULT_CORPUS, SPLIT_SEED, load_corpus, split_by_repo

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--tct", default="github-workflow", help="tokenizer name or file")
    ap.add_argument("--docs", type=int, default=300, help="held-out documents walked")
    ap.add_argument("--seed", type=int, default=SPLIT_SEED)
    ap.add_argument("--json", type=Path, help="also write the result as JSON")
    args = ap.parse_args(argv)
    tok = tct.load(args.tct)
    _, held = split_by_repo(load_corpus(args.corpus), args.seed)
    step = max(1, len(held) // max(1, args.docs))
    texts = [compact(r["json"]) for r in held[::step][: args.docs] if r.get("json") is not None]
    result = breakdown(tok, texts)
    print_breakdown(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
