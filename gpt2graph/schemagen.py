"""Generate the JSON Schemas in ``schema/`` from the pydantic models, deterministically.

The models are the source of truth; the checked-in schemas let editors validate YAML as people type
(``# yaml-language-server: $schema=...``) and let other tools read graph exports. Output is byte-stable
for a given pydantic version (sorted keys, two-space indent, trailing newline), so ``gpt2graph schema
--check`` and the test suite can tell when a checked-in file is stale.

The schemas ship with the package (a wheel carries them as ``gpt2graph/schemas``). ``gpt2graph schema``
rewrites them only in a checkout; an installed package is never written to: give it a directory instead
(``gpt2graph schema DIR``), for instance the one holding your annotation files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from .corpus import CorpusHeader
from .errors import Gpt2GraphError, InputFileError
from .files import checkout, read_bounded
from .glossary import DataFile
from .schema import Edge, GraphHeader, OperationNode, ParameterNode, VectorNode
from .storage import atomic_write

__all__ = [
    "SCHEMA_DIR",
    "SCHEMAS",
    "graph_schema",
    "data_schema",
    "corpus_schema",
    "render",
    "stale",
    "write",
    "cli_schema",
]

#: the schemas this gpt2graph carries: ``schema/`` of the checkout it runs from, else the installed copy
_CHECKOUT = checkout()
SCHEMA_DIR = _CHECKOUT / "schema" if _CHECKOUT else Path(__file__).resolve().parent / "schemas"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def graph_schema() -> dict[str, Any]:
    """Schema of ``graph.json`` (the saved header), with the node and edge records of exports under ``$defs``."""
    schema = GraphHeader.model_json_schema()
    _, extra = models_json_schema([(m, "validation") for m in (VectorNode, ParameterNode, OperationNode, Edge)])
    defs = schema.setdefault("$defs", {})
    for name, definition in extra["$defs"].items():
        if defs.setdefault(name, definition) != definition:
            raise RuntimeError(f"two different schemas named {name!r}")
    return _headed(
        schema,
        "urn:gpt2graph:schema:graph",
        "gpt2graph saved graph",
        "The header of a saved graph (graph.json). Nodes are derived from it rather than stored; "
        "their records, as exported by Graph.nodes() and to_networkx(), are under $defs: VectorNode, "
        "ParameterNode, OperationNode and Edge.",
    )


def data_schema() -> dict[str, Any]:
    """Schema of a glossary/annotation YAML file (built-in under data/, or the user's)."""
    return _headed(
        DataFile.model_json_schema(),
        "urn:gpt2graph:schema:data",
        "gpt2graph glossary and annotations",
        "A YAML file of glossary entries and annotations: the built-in ones under data/, or a user's "
        "added with `gpt2graph build --annotations FILE` or graph.annotate(FILE).",
    )


def corpus_schema() -> dict[str, Any]:
    """Schema of ``corpus.json``, the header of corpus statistics (``gpt2graph corpus``, a ``.ggc`` directory)."""
    return _headed(
        CorpusHeader.model_json_schema(),
        "urn:gpt2graph:schema:corpus",
        "gpt2graph corpus statistics",
        "The header of corpus statistics (corpus.json in a .ggc directory): the model, the prompts, what was "
        "counted and skipped; the statistics themselves are arrays in stats.safetensors.",
    )


def _headed(schema: dict[str, Any], schema_id: str, title: str, description: str) -> dict[str, Any]:
    return {**schema, "$schema": _DIALECT, "$id": schema_id, "title": title, "description": description}


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "graph.schema.json": graph_schema,
    "data.schema.json": data_schema,
    "corpus.schema.json": corpus_schema,
}


def render(schema: dict[str, Any]) -> bytes:
    """The one byte-exact form of a schema file."""
    return (json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def stale(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Schema files in ``directory`` that are missing or differ from a fresh generation."""
    out = []
    for name, make in SCHEMAS.items():
        path, expected = directory / name, render(make())
        try:
            current = read_bounded(path, len(expected))
        except InputFileError:  # missing, not a regular file, or longer than the schema
            current = None
        if current != expected:
            out.append(path)
    return out


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema into ``directory`` (atomically, each file); return the files that changed."""
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise Gpt2GraphError(f"cannot write the schemas into {directory}: {exc.strerror or exc}") from None
    changed = stale(directory)
    for path in changed:
        atomic_write(path, render(SCHEMAS[path.name]()))
    return changed


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cli_schema(check: bool, directory: Path | None = None) -> int:
    """``gpt2graph schema [DIR] [--check]``: regenerate the schemas (in a checkout's ``schema/`` or in ``DIR``),
    or exit 1 listing the stale ones (the schemas this gpt2graph carries, or those in ``DIR``)."""
    if directory is None:
        if not check and checkout() is None:
            raise Gpt2GraphError(
                f"gpt2graph is installed, not run from a checkout: its schemas in {SCHEMA_DIR} belong to the "
                "installation and are not rewritten; give a directory to write them into: gpt2graph schema DIR"
            )
        directory = SCHEMA_DIR
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise Gpt2GraphError(f"{directory}: not a directory")
    if check:
        outdated = stale(directory)
        for path in outdated:
            print(f"stale: {_show(path)} (run `gpt2graph schema`)")
        if not outdated:
            print(f"up to date: {', '.join(SCHEMAS)} in {_show(directory)}")
        return 1 if outdated else 0
    changed = write(directory)
    for path in changed:
        print(f"wrote {_show(path)}")
    if not changed:
        print(f"up to date: {', '.join(SCHEMAS)} in {_show(directory)}")
    return 0
