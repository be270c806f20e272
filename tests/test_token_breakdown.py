"""benches/token_breakdown.py: every id of a document is attributed once, to the right place."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import tct

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    if str(ROOT / "benches") not in sys.path:
        sys.path.insert(0, str(ROOT / "benches"))
    spec = importlib.util.spec_from_file_location(
        "token_breakdown", ROOT / "benches" / "token_breakdown.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DOC = {
    "name": "CI",
    "on": "push",
    "jobs": {
        "build": {
            "runs-on": "ubuntu-latest",
            "steps": [
                {"uses": "actions/checkout@v4"},
                {"name": "Test", "run": "make test && make lint --keep-going", "env": {"A": "1"}},
            ],
        }
    },
}


def test_paths_and_normalisation(bench) -> None:
    assert bench.last_path(DOC) == ["jobs", "build", "steps", "[]", "env", "A"]
    assert bench.normalize(["jobs", "build", "steps", "[]", "env", "A"]) == (
        "/jobs/*/steps/[]/env/*"
    )
    assert bench.normalize(["jobs", "b", "strategy", "matrix", "include"]) == (
        "/jobs/*/strategy/matrix/include"
    )
    assert bench.value_at(DOC, ["jobs", "build", "steps", "[]", "run"]).startswith("make")
    assert bench.content_kind(["jobs", "b", "steps", "[]", "run"], "x") == "run script"
    assert bench.content_kind(["x"], "${{ a }}") == "other, with ${{ }}"
    assert bench.content_kind(["timeout-minutes"], 5) == "number"


def test_every_id_is_attributed_once(bench) -> None:
    tok = tct.load("github-workflow")
    text = json.dumps(DOC, separators=(",", ":"))
    rows = bench.walk(tok, text)
    assert rows is not None and len(rows) == len(tok.encode(text))
    kinds = {k for _, k in rows}
    assert {"structure", "run script", "uses reference", "name", "env value"} <= kinds
    assert ("/jobs/*/steps/[]/run", "run script") in rows
    result = bench.breakdown(tok, [text, text])
    assert result["documents"] == 2 and result["ids"] == 2 * len(rows)
    assert sum(result["by_kind"].values()) == pytest.approx(1.0)
    # A document outside the schema needs the generic fallback: skipped, and counted.
    assert bench.walk(tok, '{"on": 5}') is None
    assert bench.breakdown(tok, ['{"on": 5}'])["skipped_fallback"] == 1
