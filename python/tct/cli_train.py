"""`tct-train`: train a TCT vocabulary (dictionary + BPE merges) for a schema on a corpus.

(This module is `tct.cli_train`, not `tct.train`: importing a submodule named `train` would
replace the `tct.train()` function on the package.)

    tct-train SCHEMA.json CORPUS OUT.json [--vocab-size 8192] [--name NAME]

CORPUS is a directory (searched recursively for .json, .yml and .yaml files) or a .jsonl /
.jsonl.gz file (one JSON value per line; with ``--field json`` each line is a record and the
document is its ``json`` field, as in the development corpus). The result is one versioned
tokenizer file that ``tct.load(OUT.json)`` reads back. Training runs in Rust, in parallel, and
is deterministic: the same schema, documents and options give the same file (same content hash).

Example, the bundled workflow tokenizer::

    tct-train ../shared/data/schemas/github-workflow.json \\
        ../shared/data/workflows/workflows.jsonl.gz github-workflow.json \\
        --field json --name github-workflow

YAML is read with YAML 1.2 booleans (only ``true``/``false``), as GitHub reads workflows: with
PyYAML's default YAML 1.1 rules the key ``on`` would become the boolean ``True``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DOC_SUFFIXES = (".json", ".yml", ".yaml")


class CorpusError(ValueError):
    """A corpus file could not be read; the message names the file (and line)."""


_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"


def _yaml_loader() -> Any:
    """A PyYAML SafeLoader with YAML 1.2 core booleans and integers, as the development corpus
    was converted: `on`, `yes`, `off` stay strings; `017` is 17, `0o17` is 15; `1:20` is a
    string (PyYAML's YAML 1.1 rules give True, 15 and 80)."""
    import yaml

    class Yaml12Loader(yaml.SafeLoader):
        pass

    Yaml12Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Yaml12Loader.add_implicit_resolver(
        _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    Yaml12Loader.add_implicit_resolver(
        _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
    )

    def construct_int(loader: Any, node: Any) -> int:
        text = loader.construct_scalar(node)
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)

    Yaml12Loader.add_constructor(_INT, construct_int)
    return Yaml12Loader


def _load_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}: line {e.lineno} column {e.colno}: {e.msg}") from None
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise CorpusError(f"{path}: {e}") from None


def iter_documents(
    corpus: Path,
    field: str | None = None,
    group_field: str | None = None,
    groups: list[Any] | None = None,
) -> Iterator[Any]:
    """Documents of a directory or a .jsonl(.gz) file, in a deterministic order. With
    `group_field` (a .jsonl corpus of records), the record's value of that field is appended to
    `groups` for each document yielded."""
    if group_field is not None and not (
        corpus.name.endswith(".jsonl") or corpus.name.endswith(".jsonl.gz")
    ):
        raise CorpusError(f"{corpus}: --group-field needs a .jsonl(.gz) corpus of records")
    if corpus.is_dir():
        for path in sorted(p for p in corpus.rglob("*") if p.suffix in DOC_SUFFIXES):
            yield _load_file(path)
        return
    name = corpus.name
    if not (name.endswith(".jsonl") or name.endswith(".jsonl.gz")):
        if corpus.suffix in DOC_SUFFIXES:
            yield _load_file(corpus)
            return
        raise CorpusError(
            f"{corpus}: expected a directory, a .jsonl(.gz) file or a .json/.yml file"
        )
    opener = gzip.open if name.endswith(".gz") else open
    with opener(corpus, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{corpus}: line {lineno} column {e.colno}: {e.msg}") from None
            record = value
            if field is not None:
                if not isinstance(value, dict) or field not in value:
                    raise CorpusError(f"{corpus}: line {lineno}: no field {field!r}")
                value = value[field]
                if value is None:  # e.g. a negative example whose YAML did not load
                    continue
            if group_field is not None and groups is not None:
                if not isinstance(record, dict) or group_field not in record:
                    raise CorpusError(f"{corpus}: line {lineno}: no field {group_field!r}")
                groups.append(json.dumps(record[group_field], sort_keys=True))
            yield value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="tct-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("schema", type=Path, help="the JSON Schema (a .json file)")
    ap.add_argument("corpus", type=Path, help="a directory of .json/.yml/.yaml or a .jsonl(.gz)")
    ap.add_argument("out", type=Path, help="where to write the tokenizer file")
    ap.add_argument("--field", help="in a .jsonl corpus, the record field holding the document")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument(
        "--dictionary-size", type=int, help="dictionary entries (default: the library's)"
    )
    ap.add_argument(
        "--group-field",
        help="in a .jsonl corpus, the record field naming each document's group (e.g. repo): "
        "repetition inside a group is weighed down in training",
    )
    ap.add_argument(
        "--merge-scope",
        choices=("strings", "structure-runs", "across", "spans", "document"),
        default="across",
        help="which neighbouring base tokens merges may join (see the vocab module docs)",
    )
    ap.add_argument("--name", help="the tokenizer's name (default: the output file's stem)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)

    import tct

    t = time.perf_counter()
    try:
        schema = json.loads(args.schema.read_text(encoding="utf-8"))
        docs = []
        groups: list[Any] | None = [] if args.group_field else None
        for i, d in enumerate(iter_documents(args.corpus, args.field, args.group_field, groups), 1):
            docs.append(d)
            if not args.quiet and i % 5000 == 0:
                print(f"tct-train: read {i} documents", file=sys.stderr)
    except (OSError, CorpusError, json.JSONDecodeError) as e:
        print(f"tct-train: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"tct-train: {len(docs)} documents read in {time.perf_counter() - t:.1f}s",
            file=sys.stderr,
        )
    try:
        tok = tct.train(
            schema,
            docs,
            vocab_size=args.vocab_size,
            dictionary_size=args.dictionary_size,
            merge_scope=args.merge_scope,
            name=args.name or args.out.name.split(".")[0],
            progress=not args.quiet,
            groups=groups,
        )
        tok.save(args.out)
    except tct.TctError as e:
        print(f"tct-train: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"tct-train: wrote {args.out} (vocab_size {tok.vocab_size}) "
            f"in {time.perf_counter() - t:.1f}s",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
