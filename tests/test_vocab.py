"""Vocabulary training from Python: the `tct-train` corpus reader, the compression report's split,
and (once `tct.train` is bound) training, saving and loading a tokenizer file.

The Rust side (layout, apply/expand, training, file format) is tested by `cargo test` in
rust/src/vocab/tests.rs.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tct.cli_train import CorpusError, iter_documents

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
SCHEMA = DATA / "schemas" / "github-workflow.json"
CORPUS = DATA / "workflows" / "workflows.jsonl.gz"


def _bench_module():
    # The bench scripts import their shared helpers from beside them, as `python benches/x.py`
    # allows.
    if str(ROOT / "benches") not in sys.path:
        sys.path.insert(0, str(ROOT / "benches"))
    spec = importlib.util.spec_from_file_location(
        "compression", ROOT / "benches" / "compression.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_directory_corpus_reads_json_and_yaml_with_yaml12_booleans(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.json").write_text('{"on": "push", "jobs": {}}')
    (tmp_path / "b" / "c.yml").write_text(
        "on: [push]\nyes: no\nflag: true\nn: 017\no: 0o17\nt: 1:20\nf: 3.10\n"
    )
    (tmp_path / "notes.txt").write_text("not a document")
    docs = [json.loads(d) for d in iter_documents(tmp_path)]
    assert docs == [
        {"on": "push", "jobs": {}},
        # YAML 1.2: `on`, `yes`, `no` are strings; only true/false are booleans.
        {"on": ["push"], "yes": "no", "flag": True, "n": 17, "o": 15, "t": "1:20", "f": 3.1},
    ]


def test_bad_documents_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"on": ')
    with pytest.raises(CorpusError, match=r"bad\.json: invalid JSON at byte 7"):
        list(iter_documents(tmp_path))
    bad_yaml = tmp_path / "y" / "bad.yaml"
    bad_yaml.parent.mkdir()
    bad_yaml.write_text("a: [1, 2\n")
    with pytest.raises(CorpusError, match=r"bad\.yaml"):
        list(iter_documents(bad_yaml.parent))
    with pytest.raises(CorpusError, match=r"x\.csv: No such file"):
        list(iter_documents(tmp_path / "x.csv"))


def test_jsonl_corpus_with_record_field(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"repo": "a/b", "json": {"on": "push"}}) + "\n\n")
        f.write(json.dumps({"repo": "a/c", "json": None}) + "\n")
        f.write(json.dumps({"repo": "a/d", "json": [1]}) + "\n")
    assert list(iter_documents(path, "json")) == ['{"on":"push"}', "[1]"]
    assert len(list(iter_documents(path))) == 3
    with pytest.raises(CorpusError, match='c.jsonl.gz:1: no field "yaml"'):
        list(iter_documents(path, "yaml"))
    plain = tmp_path / "p.jsonl"
    plain.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(CorpusError, match="p.jsonl:2: invalid JSON"):
        list(iter_documents(plain))


def test_compression_split_is_by_repository_and_seeded() -> None:
    bench = _bench_module()
    records = [{"repo": f"r{i % 40}", "json": {"i": i}} for i in range(400)]
    train, held = bench.split_by_repo(records, seed=1)
    assert len(train) + len(held) == 400
    held_repos = {r["repo"] for r in held}
    assert len(held_repos) == 4
    assert not held_repos & {r["repo"] for r in train}
    again, _ = bench.split_by_repo(records, seed=1)
    assert again == train
    other, _ = bench.split_by_repo(records, seed=2)
    assert other != train


def test_compression_summary() -> None:
    bench = _bench_module()
    s = bench.summarize([100, 600, 2000, 300, 1024, 50, 70, 80, 90, 5000])
    assert s["mean"] == pytest.approx(931.4)
    assert s["median"] == 200
    assert s["p90"] == 5000
    assert s["le512"] == pytest.approx(0.6)
    assert s["le1024"] == pytest.approx(0.8)


needs_train = pytest.mark.skipif(
    not hasattr(__import__("tct"), "train"), reason="tct.train is not bound in this build"
)


def _small_corpus(n: int = 300) -> list:
    from conftest import require_data

    require_data()
    docs = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["schema_valid"]:
                docs.append(rec["json"])
            if len(docs) == n:
                break
    return docs


@needs_train
def test_train_save_load_round_trip(tmp_path: Path) -> None:
    import tct

    docs = _small_corpus()  # skips first without the data (the schema is there too)
    schema = json.loads(SCHEMA.read_text())
    tok = tct.train(schema, docs[:250], vocab_size=2048)
    assert tok.vocab_size <= 2048
    path = tmp_path / "tok.json"
    tok.save(path)
    back = tct.load(path)
    assert back.vocab_size == tok.vocab_size
    for d in docs[250:]:
        ids = tok.encode(json.dumps(d))
        assert back.encode(json.dumps(d)) == ids
        assert all(i < tok.vocab_size - 3 for i in ids)
        assert json.loads(back.decode(ids)[0]) == d
    # Deterministic: the same input gives the same file, byte for byte.
    again = tct.train(schema, docs[:250], vocab_size=2048)
    path2 = tmp_path / "tok2.json"
    again.save(path2)
    assert path2.read_bytes() == path.read_bytes()


@needs_train
def test_cli_writes_a_loadable_file(tmp_path: Path) -> None:
    import tct
    from tct.cli_train import main

    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i, d in enumerate(_small_corpus(60)):
        (corpus / f"{i:03}.json").write_text(json.dumps(d))
    out = tmp_path / "wf.json"
    assert main([str(SCHEMA), str(corpus), str(out), "--vocab-size", "1024", "--quiet"]) == 0
    tok = tct.load(out)
    assert tok.vocab_size <= 1024
