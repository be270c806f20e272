"""`tct-encode INPUT OUTPUT.bin`: encode a corpus into uint16 token shards.

    tct-encode corpus/ out.bin                      # a tree of .json/.yml/.yaml files
    tct-encode workflows.jsonl.gz out.bin --val-fraction 0.01 --seed 1
    cat docs.jsonl | tct-encode - out.bin --schema schema.json
    tct-encode corpus/ part3.bin --num-shards 8 --shard-index 3

Reading, parsing (JSON, YAML 1.2), encoding and writing run in Rust on `--threads` threads with
the GIL released (`tct._tct.encode_corpus`); this module only parses arguments, loads the
tokenizer and draws the progress bar. The output format is docs/shard-format.md; the options and
exit statuses are documented in docs/tct-encode.md.

Exit status: 0 all inputs encoded; 1 some inputs rejected (the output is still valid and
complete for the others, the meta lists them); 2 usage or fatal error (nothing is written);
130 interrupted (Ctrl-C; nothing is written); 143 terminated (SIGTERM; nothing is written).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any, TextIO

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_FATAL = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process it killed


class _Terminated(Exception):
    """Raised by the SIGTERM handler inside the run's progress check, so that the Rust side
    stops and removes its temporary files exactly as for Ctrl-C."""


DEFAULT_TOKENIZER = "github-workflow"


def _default_threads() -> int:
    env = os.environ.get("TCT_THREADS")
    if env:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _is_jsonl(path: str) -> bool:
    return path.endswith((".jsonl", ".jsonl.gz"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tct-encode",
        description="Encode a corpus (directory of .json/.yml/.yaml files, .jsonl, .jsonl.gz, "
        "or '-' for JSONL on stdin) into token shards OUTPUT.bin/.idx/.meta.json.",
        epilog="Exit status: 0 all encoded, 1 some inputs rejected (output valid), "
        "2 usage or fatal error, 130 interrupted.",
    )
    p.add_argument("input", help="directory, FILE.jsonl[.gz], FILE.json/.yml/.yaml, or '-'")
    p.add_argument("output", help="OUTPUT.bin (OUTPUT.idx and OUTPUT.meta.json go beside it)")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument(
        "--tokenizer",
        default=None,
        help=f"bundled tokenizer name or tokenizer file (default: {DEFAULT_TOKENIZER})",
    )
    tok.add_argument("--schema", default=None, help="JSON Schema: untrained base tokenizer")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="worker threads (default: $TCT_THREADS, else all cores)",
    )
    p.add_argument(
        "--field",
        default=None,
        metavar="NAME",
        help="the document inside each input: a top-level key (json) or a JSON pointer "
        "(/payload/doc); for JSONL records such as {repo, path, yaml, json}",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="share of documents for OUTPUT-stem.val.bin, split by group: a hash of (seed, "
        "group), the group being a JSONL record's --val-group field (repo by default, when "
        "present), a tree's top directory, else the document",
    )
    p.add_argument(
        "--val-group",
        "--group-field",
        dest="val_group",
        default=None,
        metavar="FIELD",
        help="JSONL record field naming each document's group for the split (default: repo)",
    )
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="read symlinks to files outside an input tree (refused and reported by default)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split hash")
    p.add_argument("--num-shards", type=int, default=1, help="number of slices of the corpus")
    p.add_argument(
        "--shard-index", type=int, default=0, help="this slice: inputs whose ordinal %% K == I"
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="skip (and count) documents with more ids than this, BOS/EOS included",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def load_tokenizer(args: argparse.Namespace) -> Any:
    """The `tct.Tokenizer` selected by --schema / --tokenizer."""
    import tct

    if args.schema is not None:
        return tct.Tokenizer.from_schema(args.schema)
    name = args.tokenizer or DEFAULT_TOKENIZER
    if os.path.isfile(name):
        return tct.Tokenizer.from_file(name)
    load = getattr(tct, "load", None)
    if load is None:
        raise RuntimeError(
            f"no bundled tokenizer {name!r} in this tct build (tct.load is not available); "
            "pass a tokenizer file with --tokenizer FILE or a schema with --schema PATH"
        )
    return load(name)


class ProgressBar:
    """One self-overwriting stderr line: documents, docs/s, MB/s, percentage and ETA."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_line = 0.0

    def __call__(self, p: dict[str, Any]) -> None:
        now = time.monotonic()
        # Off a terminal (logs, CI) one line every 10 s is plenty.
        if not self.tty and not p["finished"] and now - self.last_line < 10.0:
            return
        self.last_line = now
        el = max(p["elapsed_s"], 1e-9)
        text = (
            f"{p['documents']:,} docs  {p['rejected']:,} rejected  "
            f"{p['documents'] / el:,.0f} docs/s  {p['input_bytes'] / el / 1e6:,.1f} MB/s"
        )
        frac = p["fraction"]
        if frac is not None:
            eta = el * (1 - frac) / frac if frac > 0 else float("inf")
            bar = "#" * int(frac * 20)
            text = f"[{bar:<20}] {frac * 100:5.1f}%  " + text + f"  ETA {_fmt_time(eta)}"
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            if p["finished"]:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _fmt_time(s: float) -> str:
    if s == float("inf"):
        return "?"
    s = int(s + 0.5)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def print_summary(summary: dict[str, Any], stream: TextIO) -> None:
    el = max(summary["elapsed_s"], 1e-9)
    w = stream.write
    w(
        f"tct-encode: {summary['items']:,} inputs, {summary['input_bytes'] / 1e6:,.1f} MB in "
        f"{summary['elapsed_s']:.1f} s ({summary['items'] / el:,.0f} inputs/s, "
        f"{summary['input_bytes'] / el / 1e6:,.1f} MB/s)\n"
    )
    for (bin_path, _, _), key in zip(summary["outputs"], ("train", "val"), strict=False):
        c = summary[key]
        w(
            f"  {bin_path}: {c['documents']:,} documents, {c['tokens']:,} tokens, "
            f"{c['json_bytes']:,} JSON bytes, {c['fallback_documents']:,} with fallback, "
            f"{c['rejected']:,} rejected, {c['skipped_too_long']:,} too long\n"
        )
    warn_fallbacks(summary, stream)
    rejected = summary["train"]["rejected"] + (summary["val"] or {}).get("rejected", 0)
    if rejected:
        w(f"  {rejected:,} rejected inputs (all listed in the .meta.json files):\n")
        for source, reason in summary["rejected_sample"]:
            w(f"    {source}: {reason}\n")
        if rejected > len(summary["rejected_sample"]):
            w(f"    ... and {rejected - len(summary['rejected_sample']):,} more\n")


def fallback_share(summary: dict[str, Any]) -> tuple[int, int]:
    """(documents that left the schema somewhere, documents) over both outputs."""
    parts = [summary["train"], summary["val"] or {}]
    fallback = sum(c.get("fallback_documents", 0) for c in parts)
    return fallback, sum(c.get("documents", 0) for c in parts)


def warn_fallbacks(summary: dict[str, Any], stream: TextIO) -> None:
    """A loud warning when most documents fell back: the wrong schema, or records whose
    document is one field (--field). Printed even with --quiet."""
    fallback, documents = fallback_share(summary)
    if documents == 0 or fallback * 2 <= documents:
        return
    w = stream.write
    w(
        f"tct-encode: WARNING: {fallback:,} of {documents:,} documents "
        f"({fallback / documents:.0%}) do not conform to the tokenizer's schema and were encoded "
        "through the generic fallback path (long sequences, no schema guidance). "
        "Commonest places:\n"
    )
    for pointer, n in summary.get("fallback_pointers", []):
        w(f"    {pointer or '(the whole document)'}: {n:,} documents\n")
    w(
        "  hint: is this the right schema (--schema / --tokenizer)? If each input is a record "
        "that holds the document in one field, pass --field NAME (e.g. --field json).\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    err = sys.stderr
    threads = args.threads
    try:
        if threads is None:
            threads = _default_threads()
    except ValueError:
        parser.print_usage(err)
        err.write(f"tct-encode: error: TCT_THREADS={os.environ['TCT_THREADS']!r} is not a number\n")
        return EXIT_FATAL
    checks = [
        (threads >= 1, "--threads must be at least 1"),
        (0.0 <= args.val_fraction < 1.0, "--val-fraction must be in [0, 1)"),
        (args.num_shards >= 1, "--num-shards must be at least 1"),
        (0 <= args.shard_index < args.num_shards, "--shard-index must be in [0, --num-shards)"),
        (args.max_tokens is None or args.max_tokens > 0, "--max-tokens must be positive"),
        (args.seed >= 0, "--seed must be non-negative"),
        (args.output.endswith(".bin"), "OUTPUT must end in .bin"),
        (args.field is None or args.field != "", "--field must not be empty"),
        (
            args.val_group is None or args.input == "-" or _is_jsonl(args.input),
            "--val-group applies to JSONL records (a tree splits by its top directory)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            parser.print_usage(err)
            err.write(f"tct-encode: error: {message}\n")
            return EXIT_FATAL

    try:
        from tct import _tct

        tokenizer = load_tokenizer(args)
    except (OSError, ValueError, RuntimeError) as e:
        err.write(f"tct-encode: cannot load the tokenizer: {e}\n")
        return EXIT_FATAL

    progress = None if args.quiet else ProgressBar(err)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary = _tct.encode_corpus(
            tokenizer._core,
            args.input,
            args.output,
            threads=threads,
            val_fraction=args.val_fraction,
            seed=args.seed,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
            max_tokens=args.max_tokens,
            progress=progress,
            field=args.field,
            val_group=args.val_group,
            follow_symlinks=args.follow_symlinks,
        )
    except KeyboardInterrupt:
        err.write("\ntct-encode: interrupted; nothing was written\n")
        return EXIT_INTERRUPTED
    except _Terminated:
        err.write("\ntct-encode: terminated (SIGTERM); nothing was written\n")
        return EXIT_TERMINATED
    except (ValueError, OSError) as e:
        err.write(f"tct-encode: {e}; nothing was written\n")
        return EXIT_FATAL
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not args.quiet:
        print_summary(summary, err)
    else:
        warn_fallbacks(summary, err)
    rejected = summary["train"]["rejected"] + (summary["val"] or {}).get("rejected", 0)
    return EXIT_REJECTED if rejected else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
