"""The rules layer: a generic overlay (a compose-like fixture) and the bundled workflow rules.

Ids are the same with and without rules; masked random walks keep the rules; forward
references are met before their object closes; cycles are impossible.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import tct

SERVICES_SCHEMA = {
    "type": "object",
    "required": ["services"],
    "additionalProperties": False,
    "properties": {
        "services": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "patternProperties": {
                "^[a-z][a-z0-9]*$": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "image": {"type": "string"},
                        "depends_on": {"type": "array", "items": {"type": "string"}},
                        "extends": {"type": "string"},
                    },
                }
            },
        }
    },
}

SERVICES_RULES = {
    "x-tct-rules": 1,
    "at": {
        "/services/*/depends_on/*": {
            "x-tct-ref": {
                "keys-of": "/services",
                "forward": True,
                "acyclic": True,
                "name": {"first": "a-z", "rest": "a-z0-9"},
            }
        },
        "/services/*/extends": {"x-tct-ref": {"keys-of": "/services"}},
        "/services/*/image": {"x-tct-no-control": True},
    },
}


def walk(tok: tct.Tokenizer, seed: int, max_steps: int = 400, rules: object = True):
    """A masked random walk; returns (document or None, ids). `None` too for a walk where
    the rules hit a dead end and the schema's mask was kept (`rules_fallbacks`)."""
    rng = random.Random(seed)
    m = tok.matcher(rules=rules)
    ids: list[int] = []
    for _ in range(max_steps):
        mask = m.allowed()
        if m.is_complete():
            if m.rules_fallbacks:
                return None, ids
            return json.loads(m.document()), ids
        choices = np.flatnonzero(mask)
        assert len(choices) > 0, "dead end"
        # Structure (ids from 256: string ends, closes, choices) is preferred so that walks
        # end within the budget; bytes still come often enough for names to vary.
        structural = [c for c in choices if c >= 256]
        pool = structural if structural and rng.random() < 0.6 else choices
        i = int(rng.choice(list(pool)))
        m.advance(i)
        ids.append(i)
    return None, ids


def has_cycle(services: dict) -> bool:
    state: dict[str, int] = {}

    def visit(n: str) -> bool:
        if state.get(n) == 1:
            return True
        if state.get(n) == 2:
            return False
        state[n] = 1
        for d in services.get(n, {}).get("depends_on", []):
            if visit(d):
                return True
        state[n] = 2
        return False

    return any(visit(n) for n in services)


@pytest.fixture(scope="module")
def services() -> tct.Tokenizer:
    return tct.Tokenizer.from_schema(SERVICES_SCHEMA, rules=SERVICES_RULES)


def test_rules_are_listed(services: tct.Tokenizer) -> None:
    assert any("x-tct-ref" in r for r in services.rules)
    assert tct.Tokenizer.from_schema(SERVICES_SCHEMA).rules == []


def test_bad_overlay_says_where() -> None:
    bad = {"x-tct-rules": 1, "at": {"/services/*/x": {"x-tct-format": "nope"}}}
    with pytest.raises(tct.SchemaError) as e:
        tct.Tokenizer.from_schema(SERVICES_SCHEMA, rules=bad)
    assert "x-tct-format" in str(e.value) or "x-tct-format" in e.value.pointer


def test_ids_equal_with_and_without_rules(services: tct.Tokenizer) -> None:
    plain = tct.Tokenizer.from_schema(SERVICES_SCHEMA)
    doc = {"services": {"db": {"image": "pg"}, "web": {"depends_on": ["db"], "extends": "db"}}}
    assert services.encode(doc) == plain.encode(doc)
    m = services.matcher(rules=True)
    for i in services.encode(doc):
        m.advance(i)
    assert m.is_complete()


def test_forward_reference_is_met_and_cycles_are_impossible(services: tct.Tokenizer) -> None:
    finished = 0
    for seed in range(60):
        doc, _ = walk(services, seed)
        if doc is None:
            continue
        finished += 1
        svc = doc["services"]
        for name, s in svc.items():
            for d in s.get("depends_on", []):
                assert d in svc and d != name, doc
            if "extends" in s:
                assert s["extends"] in svc and s["extends"] != name, doc
        assert not has_cycle(svc), doc
    assert finished >= 5


def test_a_cycle_is_refused_id_by_id(services: tct.Tokenizer) -> None:
    ok = {"services": {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["c"]}, "c": {}}}
    bad = {"services": {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}}}
    for doc, accepted in ((ok, True), (bad, False)):
        m = services.matcher(rules=True)
        try:
            for i in services.encode(doc):
                m.advance(i)
            result = m.is_complete()
        except tct.DecodeError:
            result = False
        assert result is accepted
        # Without rules the schema alone accepts both.
        m = services.matcher(rules=False)
        for i in services.encode(doc):
            m.advance(i)
        assert m.is_complete()


def test_a_forward_reference_blocks_closing(services: tct.Tokenizer) -> None:
    pending = {"services": {"a": {"depends_on": ["zz"]}}}
    m = services.matcher(rules=True)
    with pytest.raises(tct.DecodeError):
        for i in services.encode(pending):
            m.advance(i)


def test_bundled_workflow_rules_are_opt_in() -> None:
    tok = tct.load("github-workflow")
    assert any("ref-glob" in r for r in tok.rules)
    doc = {
        "on": {"push": {"branches": ["main"]}},
        "jobs": {
            "build": {"runs-on": "ubuntu-latest", "steps": [{"run": "echo ${{ github.sha }}"}]},
            "test": {
                "needs": ["build"],
                "runs-on": "ubuntu-latest",
                "steps": [{"id": "t", "run": "make test"}],
            },
        },
    }
    ids = tok.encode(doc)
    m = tok.matcher(rules=True)
    for i in ids:
        m.advance(i)
    assert m.is_complete()
    broken = json.loads(json.dumps(doc))
    broken["jobs"]["test"]["needs"] = ["nope"]
    broken["on"]["push"]["branches"] = ["my branch"]
    m = tok.matcher(rules=True)
    with pytest.raises(tct.DecodeError):
        for i in tok.encode(broken):
            m.advance(i)
    for m in (tok.matcher(), tok.matcher(rules=False)):  # the default is the schema alone
        for i in tok.encode(broken):
            m.advance(i)
        assert m.is_complete()
