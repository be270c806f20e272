"""`tct-train`: train a TCT vocabulary (dictionary + BPE merges) for a schema on a corpus.

    tct-train SCHEMA.json CORPUS OUT.tct.json [--vocab-size 8192] [--name NAME]

CORPUS is a directory (searched recursively for .json, .yml and .yaml files) or a .jsonl /
.jsonl.gz file (one JSON value per line; with ``--field json`` each line is a record and the
document is its ``json`` field, as in the development corpus). The result is one versioned
tokenizer file that ``tct.load(OUT.tct.json)`` reads back. Training runs in Rust, in parallel,
and is deterministic: the same schema, documents and options give the same file (same content
hash).

Example, a workflow tokenizer from records of {repo, path, yaml, json}, with repetition inside
one repository weighed down::

    tct-train github-workflow.json workflows.jsonl.gz my-workflows.tct.json \\
        --field json --group-field repo --name my-workflows

Reading is the same Rust code as ``tct-encode`` (``tct.read_corpus``): the same walk order,
YAML 1.2 rules (``on:`` stays a string) and number texts, so a corpus is trained on exactly as
it is encoded. An input that is not a document is an error naming it; a corpus with no
documents is an error (exit 2, nothing written).
"""

from __future__ import annotations

# (This module is `tct.cli_train`, not `tct.train`: importing a submodule named `train` would
# replace the `tct.train()` function on the package.)
import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tct import CorpusError

__all__ = ["CorpusError", "iter_documents", "main"]


def iter_documents(
    corpus: Path,
    field: str | None = None,
    group_field: str | None = None,
    groups: list[str | None] | None = None,
) -> Iterator[str]:
    """Documents of a corpus as compact JSON text, in `tct-encode`'s order (see
    `tct.read_corpus`). With `group_field` (a .jsonl corpus of records), the record's value of
    that field is appended to `groups` for each document yielded."""
    import tct

    name = str(corpus)
    if group_field is not None and not name.endswith((".jsonl", ".jsonl.gz")):
        raise CorpusError(f"{corpus}: --group-field needs a .jsonl(.gz) corpus of records")
    for doc, group in tct._corpus_entries(corpus, field, group_field):
        if group_field is not None:
            if group is None:
                raise CorpusError(f"{corpus}: a record has no field {group_field!r}")
            if groups is not None:
                groups.append(group)
        yield doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="tct-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("schema", type=Path, help="the JSON Schema (a .json file)")
    ap.add_argument("corpus", type=Path, help="a directory of .json/.yml/.yaml or a .jsonl(.gz)")
    ap.add_argument("out", type=Path, help="where to write the tokenizer file")
    ap.add_argument("--field", help="in a .jsonl corpus, the record field holding the document")
    ap.add_argument(
        "--vocab-size",
        type=int,
        default=8192,
        help="ids in all: base ids, dictionary, merges and PAD/BOS/EOS (default: 8192)",
    )
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
        docs = []
        groups: list[str | None] | None = [] if args.group_field else None
        for i, d in enumerate(iter_documents(args.corpus, args.field, args.group_field, groups), 1):
            docs.append(d)
            if not args.quiet and i % 5000 == 0:
                print(f"tct-train: read {i} documents", file=sys.stderr)
    except (OSError, CorpusError) as e:
        print(f"tct-train: error: {e}", file=sys.stderr)
        return 2
    if not docs:
        print(
            f"tct-train: error: {args.corpus}: no documents (a directory needs "
            ".json/.yml/.yaml files; a JSONL file one JSON value per line); nothing written",
            file=sys.stderr,
        )
        return 2
    if not args.quiet:
        print(
            f"tct-train: {len(docs)} documents read in {time.perf_counter() - t:.1f}s",
            file=sys.stderr,
        )
    try:
        tok = tct.train(
            args.schema,
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
