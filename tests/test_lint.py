"""trainer.lint: actionlint over many documents in one process, kinds split semantic/knowledge."""

from __future__ import annotations

import os
import subprocess

import pytest

from trainer import lint

GOOD = {
    "name": "ci",
    "on": {"push": {"branches": ["main"]}},
    "jobs": {
        "build": {"runs-on": "ubuntu-latest", "steps": [{"run": "make"}]},
        "test": {"needs": ["build"], "runs-on": "ubuntu-latest", "steps": [{"run": "make test"}]},
    },
}


def bad(**job: object) -> dict:
    base = {"runs-on": "ubuntu-latest", "steps": [{"run": "make"}]}
    return {"on": "push", "jobs": {"build": {**base, **job}}}


@pytest.fixture(scope="module")
def binary() -> str:
    try:
        return lint.find_actionlint()
    except lint.ActionlintNotFoundError as exc:
        # CI installs the eval extra: there a missing binary is a failure, not a skip.
        if os.environ.get("TCT_REQUIRE_DATA"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def test_every_installed_kind_is_classified(binary: str) -> None:
    kinds = lint.installed_kinds(binary)
    assert "syntax-check" in kinds and "job-needs" in kinds
    unknown = set(kinds) - lint.SEMANTIC_KINDS - lint.KNOWLEDGE_KINDS
    assert not unknown, f"classify these actionlint kinds in trainer/lint.py: {sorted(unknown)}"
    assert not lint.SEMANTIC_KINDS & lint.KNOWLEDGE_KINDS


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        (bad(needs=["nope"]), "job-needs"),
        (bad(steps=[{"run": "echo ${{ github.sha( }}"}]), "expression"),
        (bad(env={"BAD NAME": "1"}), "env-var"),
        (bad(steps=[{"id": "has space", "run": "x"}]), "id"),
        (bad(steps=[{"run": "x", "shell": "fish-shell"}]), "shell-name"),
        ({"on": {"push": {"branches": ["bad branch name"]}}, "jobs": GOOD["jobs"]}, "glob"),
        ({"on": "not_an_event", "jobs": GOOD["jobs"]}, "events"),
        (bad(permissions={"contents": "admin"}), "permissions"),
        (bad(**{"runs-on": "ubuntu-no-such-label"}), "runner-label"),
        (bad(steps=[{"uses": "actions/checkout@v1"}]), "action"),
        ("on: push\njobs: [\n", "syntax-check"),
    ],
)
def test_known_bad_documents_get_their_kind(binary: str, doc: object, kind: str) -> None:
    (result,) = lint.lint_documents([doc], binary=binary)
    assert kind in result.kinds, result.to_json()
    assert not result.passes_all
    assert result.passes_semantic == (
        kind in lint.KNOWLEDGE_KINDS and result.kinds <= lint.KNOWLEDGE_KINDS
    )
    finding = next(f for f in result.findings if f.kind == kind)
    assert finding.message and finding.line >= 1


def test_known_good_documents_pass(binary: str) -> None:
    text = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n"
    results = lint.lint_documents([GOOD, text], binary=binary)
    assert [r.passes_all for r in results] == [True, True], [r.to_json() for r in results]


def test_many_documents_one_process_in_order(binary: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_run = subprocess.run

    def counting_run(*args, **kwargs):
        calls.append(args[0])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(lint.subprocess, "run", counting_run)
    docs = [GOOD if i % 3 else bad(needs=[f"missing{i}"]) for i in range(60)]
    results = lint.lint_documents(docs, binary=binary)
    assert len(calls) == 1
    for i, r in enumerate(results):
        if i % 3:
            assert r.passes_all, (i, r.to_json())
        else:
            assert r.kinds == {"job-needs"} and f"missing{i}" in r.findings[0].message
    summary = lint.summarize(results)
    assert summary["n"] == 60 and summary["kinds"] == {"job-needs": 20}
    assert summary["lint_all"] == pytest.approx(40 / 60) == summary["lint_semantic"]


def test_batches_split_processes(binary: str) -> None:
    docs = [bad(needs=["x"]), GOOD, GOOD, bad(needs=["y"]), GOOD]
    assert [r.passes_all for r in lint.lint_documents(docs, binary=binary, batch_size=2)] == [
        False,
        True,
        True,
        False,
        True,
    ]


def test_undumpable_document_is_reported_not_raised(binary: str) -> None:
    docs = [{"on": "push", "x": float("nan")}, {"on": {1, 2}}, "\ud800 lone surrogate", GOOD]
    results = lint.lint_documents(docs, binary=binary)
    for r in results[:3]:
        assert r.error and lint.UNLINTABLE in r.kinds and not r.passes_semantic
    assert results[3].passes_all
    summary = lint.summarize(results)
    assert summary["unlintable"] == 3 and summary["lint_all"] == 0.25


def test_knowledge_only_errors_pass_semantic(binary: str) -> None:
    (r,) = lint.lint_documents([bad(**{"runs-on": "ubuntu-no-such-label"})], binary=binary)
    assert r.kinds == {"runner-label"} and r.passes_semantic and not r.passes_all


def test_unknown_kinds_count_as_semantic() -> None:
    r = lint.DocLint(findings=[lint.Finding("brand-new-rule", "m")])
    assert not r.passes_semantic
    assert lint.summarize([r])["unclassified_kinds"] == ["brand-new-rule"]


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TCT_ACTIONLINT", str(tmp_path / "nope"))
    with pytest.raises(lint.ActionlintNotFoundError, match="TCT_ACTIONLINT"):
        lint.find_actionlint()
    with pytest.raises(lint.ActionlintNotFoundError, match="cannot be run"):
        lint.lint_documents([GOOD], binary=str(tmp_path / "nope"))
    assert issubclass(lint.LintError, ValueError)


def test_empty_input(binary: str) -> None:
    assert lint.lint_documents([], binary=binary) == []
    assert lint.summarize([])["lint_all"] is None


def test_a_crash_on_a_batch_is_split_down_to_single_documents(tmp_path) -> None:
    """actionlint panics on some pairs of documents it lints fine one by one: a fake binary that
    crashes on any batch of several files, and on a file holding CRASH even alone."""
    fake = tmp_path / "actionlint"
    fake.write_text(
        "#!/bin/sh\n"
        'n=0; for a in "$@"; do case "$a" in *.yml) n=$((n+1)); f="$a";; esac; done\n'
        'if [ "$n" -gt 1 ] || grep -q CRASH "$f"; then\n'
        '  echo "panic: assignment to entry in nil map" >&2; exit 2; fi\n'
        "echo '[]'\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    docs = [GOOD, {**GOOD, "name": "CRASH"}, GOOD, GOOD, GOOD]
    results = lint.lint_documents(docs, binary=str(fake))
    assert [r.passes_all for r in results] == [True, False, True, True, True]
    assert results[1].kinds == {lint.CRASHED} and not results[1].passes_semantic
    assert "crashed" in (results[1].error or "")
    summary = lint.summarize(results)
    assert summary["unclassified_kinds"] == [] and summary["lint_all"] == 0.8
