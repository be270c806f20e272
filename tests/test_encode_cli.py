"""`tct-encode`: the CLI end to end (python -m tct.cli_encode in a subprocess, like a user).

Fixtures are small trees and JSONL files written to tmp dirs, plus a few hundred real workflows
from ../shared/data (skipped when the data is not there). Most tests use the untrained base
tokenizer of the github-workflow schema (--schema): the codec paths are the same as the bundled
tokenizer's, and the ids are easy to check by hand.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import tct
from conftest import require_data
from tct.testing import same_json

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORPUS = DATA / "workflows" / "workflows.jsonl.gz"


def _schema_path() -> Path:
    """github-workflow.json from the data, else the copy the bundled tokenizer embeds (so the
    tests that need only the schema run on a fresh clone; the corpus tests skip there)."""
    path = DATA / "schemas" / "github-workflow.json"
    if path.is_file():
        return path
    path = Path(tempfile.gettempdir()) / f"tct-tests-github-workflow-{os.getuid()}.json"
    path.write_text(json.dumps(tct.load("github-workflow").schema), encoding="utf-8")
    return path


SCHEMA = _schema_path()


def run_cli(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None):
    """Run tct-encode with the same `tct` package this test imported."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(Path(tct.__file__).absolute().parents[1])
    full_env.pop("TCT_TEST_FAIL_AFTER_DOCS", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tct.cli_encode", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=300,
    )


def encode(src: Path | str, out: Path, *extra: str, **kw):
    return run_cli(str(src), str(out), "--schema", str(SCHEMA), "--quiet", *extra, **kw)


def compact_size(doc) -> int:
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())


@pytest.fixture(scope="module")
def tok():
    return tct.Tokenizer.from_schema(str(SCHEMA))


@pytest.fixture(scope="module")
def records():
    """300 real workflows (original YAML and the recorded JSON), spread over the corpus."""
    require_data()
    out = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i % 97 == 0:
                out.append(json.loads(line))
            if len(out) == 300:
                break
    return out


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory, records):
    """The records as a directory of .yml files (sorted walk order == record order)."""
    root = tmp_path_factory.mktemp("tree")
    for i, r in enumerate(records):
        p = root / f"r{i // 100}" / f"{i:04d}.yml"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(r["yaml"].encode())
    return root


def decoded_docs(tok, out: Path) -> list:
    shard = tct.read_shard(out)
    docs = []
    for i in range(len(shard)):
        ids = shard.ids[shard.offsets[i] : shard.offsets[i + 1]]
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        text, consumed, total = tok.decode([int(x) for x in ids])
        assert consumed == total == len(ids)
        docs.append(json.loads(text))
    return docs


def test_yaml_tree_decodes_back_to_the_sources(tok, real_tree, records, tmp_path):
    out = tmp_path / "tree.bin"
    r = encode(real_tree, out, "--threads", "2")
    assert r.returncode == 0, r.stderr.decode()
    shard = tct.read_shard(out)
    meta = shard.meta
    assert meta["counts"]["documents"] == len(records)
    assert meta["documents"]["source"][:2] == ["r0/0000.yml", "r0/0001.yml"]
    assert meta["tokenizer"]["vocab_size"] == tok.vocab_size
    docs = decoded_docs(tok, out)
    for rec, doc, size in zip(records, docs, meta["documents"]["json_bytes"], strict=True):
        assert same_json(doc, rec["json"]), rec["path"]
        assert size == rec["json_bytes"] == compact_size(rec["json"])
    assert meta["counts"]["json_bytes"] == sum(r["json_bytes"] for r in records)
    assert meta["counts"]["fallback_documents"] == sum(not r["schema_valid"] for r in records)


def test_jsonl_gz_and_stdin_decode_back(tok, records, tmp_path):
    lines = "".join(json.dumps(r["json"], ensure_ascii=False) + "\n" for r in records[:120])
    gz = tmp_path / "docs.jsonl.gz"
    gz.write_bytes(gzip.compress(lines.encode()))
    r1 = encode(gz, tmp_path / "gz.bin")
    r2 = encode("-", tmp_path / "stdin.bin", stdin=lines.encode())
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    for name, prefix in (("gz.bin", "docs.jsonl.gz"), ("stdin.bin", "<stdin>")):
        docs = decoded_docs(tok, tmp_path / name)
        assert all(same_json(d, r["json"]) for d, r in zip(docs, records[:120], strict=True))
        assert len(docs) == 120
        meta = tct.read_shard(tmp_path / name).meta
        assert meta["documents"]["source"][7] == f"{prefix}:8"
    assert (tmp_path / "gz.bin").read_bytes() == (tmp_path / "stdin.bin").read_bytes()


def test_one_and_two_threads_give_identical_files(real_tree, tmp_path):
    for t in ("1", "2"):
        r = encode(real_tree, tmp_path / f"t{t}.bin", "--threads", t, "--val-fraction", "0.25")
        assert r.returncode == 0, r.stderr.decode()
    for suffix in (".bin", ".idx", ".meta.json", ".val.bin", ".val.idx", ".val.meta.json"):
        a = (tmp_path / f"t1{suffix}").read_bytes()
        b = (tmp_path / f"t2{suffix}").read_bytes()
        assert a == b, suffix


PITFALLS = {
    "norway.yml": (
        "on: push\nyes: no\noff: y\nbools: [true, True, TRUE, false]\n",
        {"on": "push", "yes": "no", "off": "y", "bools": [True, True, True, False]},
    ),
    "numbers.yml": (
        "v: 3.10\noct: 0o17\ndec: 017\nhex: 0x1F\nbig: 123456789012345678901234567890\n"
        "exp: 1e3\nneg0: -0.0\ninf: .inf\nnan: .NaN\nstr: '3.10'\n",
        {
            "v": 3.1,
            "oct": 15,
            "dec": 17,
            "hex": 31,
            "big": 123456789012345678901234567890,
            "exp": 1000.0,
            "neg0": -0.0,
            "inf": "inf",
            "nan": "nan",
            "str": "3.10",
        },
    ),
    "anchors.yml": (
        "base: &b {runs-on: ubuntu-latest, env: {A: 1}}\n"
        "jobs:\n  x: *b\n  y:\n    <<: *b\n    runs-on: windows-latest\n",
        {
            "base": {"runs-on": "ubuntu-latest", "env": {"A": 1}},
            "jobs": {
                "x": {"runs-on": "ubuntu-latest", "env": {"A": 1}},
                "y": {"runs-on": "windows-latest", "env": {"A": 1}},
            },
        },
    ),
    "keys_and_dates.yml": (
        "1: one\ntrue: t\n~: n\nwhen: 2024-01-02\nat: 2001-12-14t21:59:43.10-05:00\n",
        {
            "1": "one",
            "true": "t",
            "null": "n",
            "when": "2024-01-02",
            "at": "2001-12-14t21:59:43.10-05:00",
        },
    ),
}


def test_yaml_pitfalls(tok, tmp_path):
    src = tmp_path / "pitfalls"
    src.mkdir()
    for name, (text, _) in PITFALLS.items():
        (src / name).write_text(text)
    (src / "zz_multi.yml").write_text("a: 1\n---\nb: 2\n")
    out = tmp_path / "p.bin"
    r = encode(src, out)
    assert r.returncode == 1, r.stderr.decode()
    meta = tct.read_shard(out).meta
    assert meta["documents"]["source"] == sorted(PITFALLS)
    for doc, name in zip(decoded_docs(tok, out), sorted(PITFALLS), strict=True):
        assert same_json(doc, PITFALLS[name][1]), name
    assert [x["source"] for x in meta["rejected"]] == ["zz_multi.yml"]
    assert "several YAML documents" in meta["rejected"][0]["reason"]


def test_directory_mixing_good_and_bad_files(tok, tmp_path):
    src = tmp_path / "mixed"
    (src / ".github" / "workflows").mkdir(parents=True)
    good = {"on": "push", "jobs": {"b": {"runs-on": "x", "steps": [{"run": "make"}]}}}
    (src / ".github" / "workflows" / "ci.yml").write_text(
        "on: push\njobs:\n  b:\n    runs-on: x\n    steps:\n      - run: make\n"
    )
    (src / "good.json").write_text(json.dumps(good))
    (src / "broken.json").write_text('{"on": ')
    (src / "broken.yml").write_text("on: [push\n")
    (src / "latin1.yml").write_bytes(b"name: caf\xe9\n")
    (src / "empty.yaml").write_text("# nothing here\n")
    (src / "dup.yml").write_text("on: push\non: pull_request\n")
    (src / "readme.md").write_text("not a document")
    out = tmp_path / "m.bin"
    r = encode(src, out)
    assert r.returncode == 1
    meta = tct.read_shard(out).meta
    assert meta["documents"]["source"] == [".github/workflows/ci.yml", "good.json"]
    assert all(same_json(d, good) for d in decoded_docs(tok, out))
    reasons = {x["source"]: x["reason"] for x in meta["rejected"]}
    assert set(reasons) == {"broken.json", "broken.yml", "dup.yml", "empty.yaml", "latin1.yml"}
    assert reasons["broken.json"].startswith("invalid JSON")
    assert reasons["broken.yml"].startswith("YAML error at line")
    assert reasons["latin1.yml"] == "invalid UTF-8 at byte 9"
    assert reasons["empty.yaml"] == "empty document"
    assert "duplicate key" in reasons["dup.yml"]
    assert meta["counts"]["rejected"] == 5
    # The summary names each bad file and its reason.
    r = run_cli(str(src), str(tmp_path / "m2.bin"), "--schema", str(SCHEMA))
    assert r.returncode == 1
    assert "latin1.yml: invalid UTF-8 at byte 9" in r.stderr.decode()


def test_nonconforming_documents_use_the_fallback(tok, tmp_path):
    docs = [{"on": "push", "jobs": {"a": {"strategy": {"max-parallel": 5}}}}, {"name": 12}]
    src = tmp_path / "nc.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    r = encode(src, tmp_path / "nc.bin")
    assert r.returncode == 0
    meta = tct.read_shard(tmp_path / "nc.bin").meta
    assert meta["counts"]["fallback_documents"] == 2
    assert all(
        same_json(a, b) for a, b in zip(decoded_docs(tok, tmp_path / "nc.bin"), docs, strict=True)
    )


def no_outputs(d: Path, stem: str) -> bool:
    return not any(p.name.startswith(stem + ".") for p in d.iterdir())


def test_injected_failure_leaves_nothing(records, tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(r["json"]) + "\n" for r in records))
    out = tmp_path / "crash.bin"
    r = encode(src, out, "--val-fraction", "0.5", env={"TCT_TEST_FAIL_AFTER_DOCS": "50"})
    assert r.returncode == 2
    assert "injected failure" in r.stderr.decode()
    assert no_outputs(tmp_path, "crash"), sorted(p.name for p in tmp_path.iterdir())


def test_killed_process_leaves_no_complete_looking_output(records, tmp_path):
    """SIGKILL mid-run: only temporaries may remain, never a .bin/.idx/.meta.json set."""
    env = dict(os.environ, PYTHONPATH=str(Path(tct.__file__).absolute().parents[1]))
    out = tmp_path / "killed.bin"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tct.cli_encode", "-", str(out), "--schema", str(SCHEMA), "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None
    for r in records[:100]:
        proc.stdin.write((json.dumps(r["json"]) + "\n").encode())
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    # Wait until the run has started writing (temporaries exist), then kill it mid-stream.
    while not any(".tmp-" in p.name for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    names = {p.name for p in tmp_path.iterdir()}
    assert not names & {"killed.bin", "killed.idx", "killed.meta.json"}, names
    with pytest.raises((tct.ShardError, OSError)):
        tct.read_shard(out)


def test_shard_slices_cover_the_corpus_exactly_once(real_tree, records, tmp_path):
    # One bad file too: its rejection must also be reported by exactly one slice.
    (real_tree / "r9").mkdir(exist_ok=True)
    (real_tree / "r9" / "bad.yml").write_text("a: [1\n")
    try:
        sources, rejected = [], []
        for i in range(3):
            out = tmp_path / f"s{i}.bin"
            r = encode(real_tree, out, "--num-shards", "3", "--shard-index", str(i))
            assert r.returncode in (0, 1)
            meta = tct.read_shard(out).meta
            assert meta["split"]["num_shards"] == 3 and meta["split"]["shard_index"] == i
            sources += meta["documents"]["source"]
            rejected += [x["source"] for x in meta["rejected"]]
        assert len(sources) == len(set(sources)) == len(records)
        assert rejected == ["r9/bad.yml"]
    finally:
        (real_tree / "r9" / "bad.yml").unlink()
        (real_tree / "r9").rmdir()


def test_val_split_is_by_repository_deterministic_and_partitions(records, tmp_path):
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    r = encode(src, tmp_path / "a.bin", "--field", "json", "--val-fraction", "0.2", "--seed", "5")
    assert r.returncode == 0, r.stderr
    train = tct.read_shard(tmp_path / "a.bin").meta
    val = tct.read_shard(tmp_path / "a.val.bin").meta
    assert train["split"]["kind"] == "train" and val["split"]["kind"] == "val"
    both = train["documents"]["source"] + val["documents"]["source"]
    assert sorted(both) == sorted(set(both)) and len(both) == len(records)
    assert 0.05 < len(val["documents"]["source"]) / len(records) < 0.4
    # Every repository lies wholly on one side (its `repo` field is the group).
    repo_of = {f"records.jsonl:{i + 1}": rec["repo"] for i, rec in enumerate(records)}
    val_repos = {repo_of[x] for x in val["documents"]["source"]}
    train_repos = {repo_of[x] for x in train["documents"]["source"]}
    assert val_repos and not (val_repos & train_repos)
    # A slice agrees with the whole.
    encode(
        src, tmp_path / "b.bin", "--field", "json", "--val-fraction", "0.2", "--seed", "5",
        "--num-shards", "2",
    )  # fmt: skip
    half = tct.read_shard(tmp_path / "b.val.bin").meta["documents"]["source"]
    assert half and set(half) <= set(val["documents"]["source"])
    # Another seed, another split; another group field, another split.
    for extra in (["--seed", "6"], ["--seed", "5", "--val-group", "path"]):
        encode(src, tmp_path / "c.bin", "--field", "json", "--val-fraction", "0.2", *extra)
        other = tct.read_shard(tmp_path / "c.val.bin").meta["documents"]["source"]
        assert other != val["documents"]["source"], extra


def test_val_split_of_a_tree_is_by_top_directory(tmp_path):
    doc = '{"on": "push", "jobs": {"b": {"runs-on": "x", "steps": [{"run": "y"}]}}}'
    for d in range(12):
        for f in range(3):
            p = tmp_path / "tree" / f"d{d:02d}" / "sub" / f"{f}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(doc)
    r = encode(tmp_path / "tree", tmp_path / "o.bin", "--val-fraction", "0.3", "--seed", "1")
    assert r.returncode == 0, r.stderr
    val = tct.read_shard(tmp_path / "o.val.bin").meta["documents"]["source"]
    train = tct.read_shard(tmp_path / "o.bin").meta["documents"]["source"]
    top = {x.split("/")[0] for x in val}
    assert top and not (top & {x.split("/")[0] for x in train})
    assert len(val) == 3 * len(top)
    bad = encode(tmp_path / "tree", tmp_path / "p.bin", "--val-group", "repo")
    assert bad.returncode == 2 and b"JSONL" in bad.stderr


def test_max_tokens_skips_and_counts(real_tree, records, tmp_path):
    out = tmp_path / "short.bin"
    r = encode(real_tree, out, "--max-tokens", "1000")
    assert r.returncode == 0
    shard = tct.read_shard(out)
    counts = shard.meta["counts"]
    assert counts["skipped_too_long"] > 0 and counts["documents"] > 0
    assert counts["documents"] + counts["skipped_too_long"] == len(records)
    assert max(shard.offsets[1:] - shard.offsets[:-1]) <= 1000


@pytest.mark.parametrize(
    "args",
    [
        ["--shard-index", "3", "--num-shards", "3"],
        ["--val-fraction", "1.5"],
        ["--threads", "0"],
        ["--max-tokens", "0"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    (tmp_path / "x.jsonl").write_text('{"on": "push"}\n')
    r = encode(tmp_path / "x.jsonl", tmp_path / "o.bin", *args)
    assert r.returncode == 2
    assert no_outputs(tmp_path, "o")


def test_fatal_errors_exit_2(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"on": "push"}\n')
    assert encode(tmp_path / "missing", tmp_path / "o.bin").returncode == 2
    assert encode(tmp_path / "x.jsonl", tmp_path / "o.tokens").returncode == 2
    # An output directory that cannot be created (its parent is a file).
    assert encode(tmp_path / "x.jsonl", tmp_path / "x.jsonl" / "o.bin").returncode == 2
    r = run_cli(str(tmp_path / "x.jsonl"), str(tmp_path / "o.bin"), "--tokenizer", "no-such-tok")
    assert r.returncode == 2
    assert no_outputs(tmp_path, "o")
    assert encode(tmp_path / "x.jsonl", tmp_path / "o.bin").returncode == 0


def test_progress_and_summary_on_stderr(tmp_path):
    doc = '{"on": "push", "jobs": {"b": {"runs-on": "x", "steps": [{"run": "y"}]}}}'
    (tmp_path / "x.jsonl").write_text(doc + "\n" * 1 + (doc + "\n") * 49)
    r = run_cli(str(tmp_path / "x.jsonl"), str(tmp_path / "o.bin"), "--schema", str(SCHEMA))
    assert r.returncode == 0 and r.stdout == b""
    err = r.stderr.decode()
    assert "docs/s" in err and "MB/s" in err and "ETA" in err
    assert "50 documents" in err
    q = run_cli(
        str(tmp_path / "x.jsonl"), str(tmp_path / "q.bin"), "--schema", str(SCHEMA), "--quiet"
    )
    assert q.returncode == 0 and q.stderr == b""


WORKFLOW = {"on": "push", "jobs": {"b": {"runs-on": "x", "steps": [{"run": "y"}]}}}


def write_records(path: Path, n: int = 10) -> None:
    """JSONL records like the development corpus': the document is the `json` field."""
    with path.open("w") as f:
        for i in range(n):
            rec = {"repo": f"o/r{i % 4}", "path": f"w{i}.yml", "yaml": "on: push", "json": WORKFLOW}
            f.write(json.dumps(rec) + "\n")


def test_records_encode_with_field_and_warn_without(tok, tmp_path):
    src = tmp_path / "records.jsonl"
    write_records(src)
    for field in ("json", "/json"):
        r = encode(src, tmp_path / "f.bin", "--field", field)
        assert r.returncode == 0 and b"WARNING" not in r.stderr, r.stderr
        assert decoded_docs(tok, tmp_path / "f.bin") == [WORKFLOW] * 10
        assert tct.read_shard(tmp_path / "f.bin").meta["counts"]["fallback_documents"] == 0
    # Whole records do not conform: a loud warning (even with --quiet) naming the commonest
    # fallback places, and the hint.
    r = encode(src, tmp_path / "w.bin")
    err = r.stderr.decode()
    assert r.returncode == 0
    assert "WARNING: 10 of 10 documents (100%)" in err and "--field" in err
    # A missing field is a rejected input, named.
    r = encode(src, tmp_path / "m.bin", "--field", "/nope/0")
    assert r.returncode == 1
    meta = json.loads((tmp_path / "m.meta.json").read_text())
    assert meta["rejected"][0]["source"] == "records.jsonl:1"
    assert "no field" in meta["rejected"][0]["reason"]


def test_empty_inputs_are_an_error_and_write_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a document")
    (tmp_path / "e.jsonl").write_text("\n\n")
    for src in ("empty", "notes", "e.jsonl"):
        r = encode(tmp_path / src, tmp_path / "out" / "o.bin")
        assert r.returncode == 2 and b"no input documents" in r.stderr, (src, r.stderr)
        assert not (tmp_path / "out").exists() or no_outputs(tmp_path / "out", "o")


def test_outputs_that_are_or_lie_inside_inputs_are_refused(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.json").write_text(json.dumps(WORKFLOW))
    meta = tmp_path / "x.meta.json"
    meta.write_text(json.dumps(WORKFLOW))
    before = meta.read_bytes()
    # The output's metadata file would replace the input.
    r = encode(meta, tmp_path / "x.bin")
    assert r.returncode == 2 and b"is the input" in r.stderr
    assert meta.read_bytes() == before and not (tmp_path / "x.bin").exists()
    # Outputs inside the input tree (directly or in a new subdirectory), also as val outputs.
    for out, extra in (
        (tree / "o.bin", []),
        (tree / "sub" / "o.bin", []),
        (tree / ".." / "tree" / "v.bin", ["--val-fraction", "0.5"]),
    ):
        r = encode(tree, out, *extra)
        assert r.returncode == 2 and b"lies inside the input" in r.stderr, (out, r.stderr)
    assert sorted(p.name for p in tree.rglob("*")) == ["a.json"]


def test_a_tree_never_reads_its_own_outputs(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.json").write_text(json.dumps(WORKFLOW))
    assert encode(tree, tmp_path / "o.bin").returncode == 0
    # Shards from elsewhere copied into the tree: the metadata is refused, not encoded.
    for name in ("o.bin", "o.idx", "o.meta.json"):
        (tree / name).write_bytes((tmp_path / name).read_bytes())
    r = encode(tree, tmp_path / "p.bin")
    assert r.returncode == 1
    meta = json.loads((tmp_path / "p.meta.json").read_text())
    assert meta["documents"]["source"] == ["a.json"]
    assert meta["rejected"][0]["source"] == "o.meta.json"
    assert "tct-encode output" in meta["rejected"][0]["reason"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symlinks (POSIX)")
def test_fifos_and_symlinks_out_of_the_tree_are_reported(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.json").write_text(json.dumps(WORKFLOW))
    os.mkfifo(tree / "pipe.yml")
    secret = tmp_path / "secret.yml"
    secret.write_text("on: push\njobs: {}\n")
    (tree / "link.yml").symlink_to(secret)
    (tree / "inner.json").symlink_to(tree / "a.json")
    r = encode(tree, tmp_path / "o.bin")
    assert r.returncode == 1, r.stderr
    meta = json.loads((tmp_path / "o.meta.json").read_text())
    assert meta["documents"]["source"] == ["a.json", "inner.json"]
    reasons = {x["source"]: x["reason"] for x in meta["rejected"]}
    assert set(reasons) == {"link.yml", "pipe.yml"}
    assert "outside the input tree" in reasons["link.yml"] and "FIFO" in reasons["pipe.yml"]
    r = encode(tree, tmp_path / "f.bin", "--follow-symlinks")
    meta = json.loads((tmp_path / "f.meta.json").read_text())
    assert "link.yml" in meta["documents"]["source"]


def test_the_trainer_takes_the_val_shard_written_beside_data(tmp_path):
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from trainer.data import load_data

    examples = Path(__file__).resolve().parents[1] / "examples" / "workflows"
    r = run_cli(str(examples), str(tmp_path / "x.bin"), "--val-fraction", "0.2", "--seed", "3")
    assert r.returncode == 0, r.stderr
    data = load_data(str(tmp_path / "x.bin"), None, 0.02)
    assert "x.val.bin, beside --data" in data.val_source
    n_val = len(tct.read_shard(tmp_path / "x.val.bin"))
    assert n_val > 0 and data.val is not None and data.val.num_docs == n_val
    assert data.train.num_docs == len(tct.read_shard(tmp_path / "x.bin"))


def test_tct_train_refuses_an_empty_corpus(tmp_path):
    (tmp_path / "empty").mkdir()
    full_env = dict(os.environ, PYTHONPATH=str(Path(tct.__file__).absolute().parents[1]))
    r = subprocess.run(
        [sys.executable, "-m", "tct.cli_train", str(SCHEMA), str(tmp_path / "empty"),
         str(tmp_path / "t.tct.json")],
        capture_output=True, env=full_env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and b"no documents" in r.stderr
    assert not (tmp_path / "t.tct.json").exists()


def test_sigterm_removes_the_temporaries_like_ctrl_c(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(tct.__file__).absolute().parents[1]))
    out = tmp_path / "t.bin"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tct.cli_encode", "-", str(out), "--schema", str(SCHEMA), "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    line = (json.dumps(WORKFLOW) + "\n").encode()
    proc.stdin.write(line * 300)
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not any(".tmp-" in p.name for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    proc.stdin.write(line * 10)
    proc.stdin.close()
    assert proc.wait(timeout=60) == 143
    assert b"terminated" in proc.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_corrupt_gzip_stream_is_reported_once_and_nothing_is_written(tmp_path):
    data = bytearray(gzip.compress(((json.dumps(WORKFLOW) + "\n") * 2000).encode()))
    data[len(data) // 2] ^= 0x10  # one bit flip inside the deflate data
    src = tmp_path / "c.jsonl.gz"
    src.write_bytes(bytes(data))
    r = encode(src, tmp_path / "out" / "o.bin")
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.count("tct-encode:") == 1 and "corrupt gzip stream" in err
    assert "cannot be trusted" in err
    assert "invalid JSON" not in err
    assert not (tmp_path / "out").exists() or no_outputs(tmp_path / "out", "o")


def test_a_signal_after_publishing_keeps_the_complete_outputs(tmp_path, tok):
    """The last progress call comes after the outputs are published: an interrupt seen there
    must not be reported as "nothing was written" while complete files exist."""
    from tct import _tct

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.json").write_text(json.dumps(WORKFLOW), encoding="utf-8")
    out = tmp_path / "o.bin"

    def progress(p):
        if p["finished"]:
            raise KeyboardInterrupt

    summary = _tct.encode_corpus(tok._core, str(src), str(out), progress=progress)
    assert summary["train"]["documents"] == 1
    assert out.is_file() and out.with_suffix(".meta.json").is_file()
