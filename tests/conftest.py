"""Shared fixtures: the data directory, the workflow corpus, schema registries, tokenizers.

The data lives in `../shared/data` beside the repository (never copied into it; see its
README.md). Without it, tests that need it are skipped, unless `TCT_REQUIRE_DATA=1` (set by
`.ci/run`), which turns the skip into a failure so CI cannot pass by skipping.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tct

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()
SCHEMASTORE_HOSTS = ("https://json.schemastore.org/", "https://www.schemastore.org/")


# ---------------------------------------------------------------------------------------------
# Plain helpers (importable from tests: `from conftest import iter_jsonl_gz`)
# ---------------------------------------------------------------------------------------------


#: A two-property schema for tests of the API's edges (errors, threads, forks), not of schemas.
SMALL_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["name"],
}


def run_isolated(code: str, timeout: float = 300) -> str:
    """Run `code` in a fresh interpreter; fail unless it exits 0 within `timeout` seconds.
    Returns its stdout. A session of its own, so a hung forked grandchild is killed with it."""
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"did not finish within {timeout} s (hang)\nstdout:\n{stdout}")
    assert proc.returncode == 0, (
        f"exit status {proc.returncode}\nstdout:\n{stdout[-2000:]}\nstderr:\n{stderr[-4000:]}"
    )
    return stdout


def require_data() -> Path:
    """The data directory, or skip (fail under TCT_REQUIRE_DATA=1) when it is missing."""
    if not (DATA_DIR / "schemas").is_dir():
        message = f"data directory {DATA_DIR} not found (expected ../shared/data beside the repo)"
        if os.environ.get("TCT_REQUIRE_DATA"):
            pytest.fail(message)
        pytest.skip(message)
    return DATA_DIR


def iter_jsonl_gz(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a gzip JSONL file, one at a time."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def schema_files(data_dir: Path) -> list[Path]:
    """Every schema in schemas/ and schemas/refs/."""
    return sorted((data_dir / "schemas").glob("*.json")) + sorted(
        (data_dir / "schemas" / "refs").glob("*.json")
    )


def schema_uris(path: Path, schema: Any) -> list[str]:
    """Where a data schema is registered: https://json.schemastore.org/NAME and
    https://www.schemastore.org/NAME (as the data README prescribes), plus its own `$id`/`id`
    when that is an absolute URI (tsconfig.json's draft-04 `id` has no `.json`)."""
    uris = [host + path.name for host in SCHEMASTORE_HOSTS]
    if isinstance(schema, dict):
        for key in ("$id", "id"):
            value = schema.get(key)
            if isinstance(value, str) and "://" in value:
                uris.append(value.split("#", 1)[0])
    return list(dict.fromkeys(uris))


def compact_json(value: Any) -> str:
    """Compact JSON as the corpus measures it (`json_bytes`): no spaces, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# YAML 1.2 core schema for PyYAML (the corpus was converted with a YAML 1.2 loader; PyYAML is
# YAML 1.1, where `on:` is the boolean true and `017` is octal). Only the schema-tests/ YAML
# files need this: the corpus itself ships its JSON.
_YAML12_RESOLVERS = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
]


def load_yaml(text: str) -> Any:
    """Parse YAML with the 1.2 core schema; timestamps stay strings, keys become strings."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {}
    for tag, pattern, first in _YAML12_RESOLVERS:
        Loader.add_implicit_resolver(tag, re.compile(pattern), list(first))

    def construct_int(loader: Any, node: Any) -> int:
        value = loader.construct_scalar(node)
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value, 10)

    def construct_float(loader: Any, node: Any) -> Any:
        value = loader.construct_scalar(node)
        if value.lstrip("+-").lower() in (".inf", ".nan"):
            return value  # JSON has no Infinity/NaN; the corpus keeps them as strings.
        return float(value)

    def construct_mapping(loader: Any, node: Any) -> dict[str, Any]:
        loader.flatten_mapping(node)
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, bool):
                key = "true" if key else "false"
            elif key is None:
                key = "null"
            out[str(key)] = loader.construct_object(value_node, deep=True)
        return out

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    Loader.add_constructor("tag:yaml.org,2002:float", construct_float)
    Loader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> tct.Tokenizer:
    """The base tokenizer of `SMALL_SCHEMA`."""
    return tct.Tokenizer.from_schema(SMALL_SCHEMA)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test (tiny models: threads only add noise on 2 cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_data()


@pytest.fixture(scope="session")
def schemas_dir(data_dir: Path) -> Path:
    return data_dir / "schemas"


@pytest.fixture(scope="session")
def workflow_schema_path(schemas_dir: Path) -> Path:
    return schemas_dir / "github-workflow.json"


@pytest.fixture(scope="session")
def workflow_schema(workflow_schema_path: Path) -> dict[str, Any]:
    return json.loads(workflow_schema_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def data_schemas(data_dir: Path) -> dict[Path, Any]:
    """Every schema file in schemas/ and schemas/refs/, parsed."""
    return {p: json.loads(p.read_text(encoding="utf-8")) for p in schema_files(data_dir)}


@pytest.fixture(scope="session")
def tct_registry(data_schemas: dict[Path, Any]) -> dict[str, Any]:
    """URI -> schema for every data schema: the form `tct.Tokenizer.from_schema(registry=)`
    takes."""
    registry: dict[str, Any] = {}
    for path, schema in data_schemas.items():
        for uri in schema_uris(path, schema):
            registry[uri] = schema
    return registry


@pytest.fixture(scope="session")
def schema_registry(data_schemas: dict[Path, Any]) -> Any:
    """The same schemas as a `referencing.Registry`, so python-jsonschema never downloads."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4, DRAFT7

    resources = []
    for path, schema in data_schemas.items():
        # `$schema` picks the draft; SchemaStore's tsconfig.json is draft-04, the rest draft-07.
        default = DRAFT4 if "draft-04" in str(schema.get("$schema", "")) else DRAFT7
        resource = Resource.from_contents(schema, default_specification=default)
        resources.extend((uri, resource) for uri in schema_uris(path, schema))
    return Registry().with_resources(resources)


@pytest.fixture(scope="session")
def make_validator(schema_registry: Any) -> Callable[[Any], Any]:
    """`make_validator(schema)`: a python-jsonschema validator for the schema's draft that
    resolves remote refs through `schema_registry` (format keywords are not checked, as in the
    corpus' `schema_valid`)."""
    import jsonschema

    def make(schema: Any) -> Any:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        return cls(schema, registry=schema_registry)

    return make


@pytest.fixture(scope="session")
def workflow_validator(make_validator: Callable[[Any], Any], workflow_schema: Any) -> Any:
    return make_validator(workflow_schema)


@pytest.fixture(scope="session")
def workflow_corpus(data_dir: Path) -> list[dict[str, Any]]:
    """Every development workflow record (`repo`, `path`, `blob`, `schema_valid`, `json`, ...;
    the `yaml` text is dropped to halve the memory). About 5 s and 650 MB."""
    records = []
    for record in iter_jsonl_gz(data_dir / "workflows" / "workflows.jsonl.gz"):
        record.pop("yaml", None)
        records.append(record)
    return records


@pytest.fixture(scope="session")
def workflow_tokenizer(workflow_schema_path: Path, tct_registry: dict[str, Any]) -> tct.Tokenizer:
    return tct.Tokenizer.from_schema(workflow_schema_path, registry=tct_registry)


@pytest.fixture(scope="session")
def any_tokenizer() -> tct.Tokenizer:
    """The `{}` schema: any JSON document, all through the generic path."""
    return tct.Tokenizer.from_schema({})
