"""The generated JSON Schemas: current, deterministic, referenced by every data file, and in agreement with the
pydantic models about the data and about saved graphs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from gpt2graph.glossary import data_dir
from gpt2graph.schemagen import SCHEMA_DIR, SCHEMAS, cli_schema, render, stale

ROOT = Path(__file__).resolve().parent.parent
DATA_FILES = sorted(data_dir().rglob("*.yaml")) + sorted((ROOT / "tests" / "data").rglob("*.yaml"))
#: invalid examples whose problem is visible to the JSON Schema alone (the rest need the cross-checks)
SCHEMA_LEVEL_INVALID = [
    "unknown-field",
    "wrong-type",
    "missing-field",
    "bad-id",
    "bad-url",
    "unknown-kind",
    "unknown-stage",
    "unknown-category",
    "negative-layer",
    "empty-selector",
    "unknown-top-level",
    "not-a-mapping",
]


def load_schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


def validator(name: str, definition: str | None = None) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    if definition:
        schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_checked_in_schemas_are_current():
    assert stale() == [], "run `gpt2graph schema` and commit schema/"


def test_generation_is_deterministic():
    for make in SCHEMAS.values():
        assert render(make()) == render(make())
        assert render(make()).endswith(b"}\n")


def test_schema_check_reports_stale_files(tmp_path, capsys):
    assert cli_schema(check=True, directory=tmp_path) == 1
    assert cli_schema(check=False, directory=tmp_path) == 0
    assert cli_schema(check=True, directory=tmp_path) == 0
    (tmp_path / "data.schema.json").write_text("{}\n")
    assert cli_schema(check=True, directory=tmp_path) == 1
    assert "stale: " in capsys.readouterr().out


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_data_file_names_its_schema_on_line_one(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    target = os.path.relpath(SCHEMA_DIR / "data.schema.json", path.parent)
    assert first == f"# yaml-language-server: $schema={target}"


@pytest.mark.parametrize(
    "path", [p for p in DATA_FILES if "invalid" not in p.parts], ids=lambda p: str(p.relative_to(ROOT))
)
def test_data_file_satisfies_the_json_schema(path):
    errors = [e.message for e in validator("data.schema.json").iter_errors(yaml.safe_load(path.read_text()) or {})]
    assert errors == []


@pytest.mark.parametrize("name", SCHEMA_LEVEL_INVALID)
def test_json_schema_rejects_invalid_examples(name):
    data = yaml.safe_load((ROOT / "tests" / "data" / "invalid" / f"{name}.yaml").read_text())
    assert not validator("data.schema.json").is_valid(data)


def test_saved_graph_satisfies_the_graph_schema(saved_graph, tiny_graph):
    header = json.loads((saved_graph / "graph.json").read_text(encoding="utf-8"))
    assert list(validator("graph.schema.json").iter_errors(header)) == []
    for node_type, definition in (
        ("vector", "VectorNode"),
        ("parameter", "ParameterNode"),
        ("operation", "OperationNode"),
    ):
        record = tiny_graph.nodes(layer=1, head=2, node_type=node_type)[0].model_dump(mode="json")
        assert list(validator("graph.schema.json", definition).iter_errors(record)) == []
    edge = tiny_graph.edges("blocks.1.attn.hook_z[0,2]")[0].model_dump(mode="json")
    assert list(validator("graph.schema.json", "Edge").iter_errors(edge)) == []
