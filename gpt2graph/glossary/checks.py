"""Reading the glossary's YAML: one file parsed safely and validated (every problem with its file, line and
field), then files merged onto a glossary with their cross-checks: unique ids, resolvable links, and, given a
graph, selectors that select something in it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..errors import NodeNotFoundError
from ..schema import Category
from ..topology import PARAM_SPECS, VECTOR_SPECS
from ..yamlsafe import KeyPath, MarkedLoader, format_path
from .mapping import Glossary
from .models import KINDS, Annotation, DataFile, GlossaryEntry, Selector, Source, did_you_mean, selector_field

if TYPE_CHECKING:
    from ..graph import Graph

__all__ = ["MAX_BYTES", "parse", "extend"]

MAX_BYTES = 1 << 20  # one data file; the largest built-in is about 22 kB


# ---- one file: parse and validate ---------------------------------------------------------------------
_ITEM_MODELS: dict[str, type[BaseModel]] = {"glossary": GlossaryEntry, "annotations": Annotation}
_SECTION_MODELS: dict[str, type[BaseModel]] = {
    **_ITEM_MODELS,
    "sources": Source,
    "applies_to": Selector,
    "targets": Selector,
}


@dataclass(frozen=True)
class _ParsedFile:
    """The valid entries and annotations of one file, with the position of every key for messages."""

    source: str
    marks: Mapping[KeyPath, tuple[int, int]]
    entries: tuple[tuple[KeyPath, GlossaryEntry], ...] = ()
    annotations: tuple[tuple[KeyPath, Annotation], ...] = ()

    def at(self, path: KeyPath) -> str:
        """``FILE:LINE:COL`` of ``path``, or of its closest enclosing key or item."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.marks:
                line, col = self.marks[path[:n]]
                return f"{self.source}:{line}:{col}"
        return f"{self.source}:1:1"

    def problem(self, path: KeyPath, message: str) -> str:
        where = format_path(path)
        return f"{self.at(path)}: {where}: {message}" if where else f"{self.at(path)}: {message}"


@lru_cache(maxsize=32)
def parse(source: str, text: str) -> tuple[_ParsedFile, tuple[str, ...]]:
    """Parse and validate one file (memoised: every validation reads the built-in files again); the valid
    entries are kept even when others have problems, so that they are cross-checked too."""
    if len(text) > MAX_BYTES:
        return _ParsedFile(source, {}), (
            f"{source}: refused: {len(text):,} characters, more than the limit of {MAX_BYTES:,}",
        )
    loader = MarkedLoader(text, source)
    raw, ok = loader.load_marked()
    located = _ParsedFile(source, loader.key_marks)
    problems = loader.problems
    if not ok:
        return located, tuple(problems)
    try:
        data = DataFile.model_validate(raw)
        items = {"glossary": data.glossary, "annotations": data.annotations}
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems += [located.problem(e["loc"], _message(e)) for e in errors]
        bad = {tuple(e["loc"][:2]) for e in errors}
        raw_items = {section: raw.get(section) if isinstance(raw, dict) else None for section in _ITEM_MODELS}
        items = {
            section: [
                None if (section, i) in bad else _ITEM_MODELS[section].model_validate(item)
                for i, item in enumerate(value if isinstance(value, list) else [])
            ]
            for section, value in raw_items.items()
        }
    entries, annotations = (
        tuple(((section, i), item) for i, item in enumerate(items[section]) if item is not None)
        for section in ("glossary", "annotations")
    )
    return replace(located, entries=entries, annotations=annotations), tuple(problems)


def _message(error: Mapping[str, Any]) -> str:
    """A pydantic error as a sentence about the YAML the user wrote."""
    loc, kind = error["loc"], error["type"]
    if kind == "extra_forbidden":
        owner = next((_SECTION_MODELS[p] for p in reversed(loc[:-1]) if p in _SECTION_MODELS), DataFile)
        return (
            f"unknown field{did_you_mean(str(loc[-1]), owner.model_fields)}; allowed: {', '.join(owner.model_fields)}"
        )
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "model_type":
        return "expected a mapping of fields"
    return error["msg"]


# ---- several files on top of a glossary: cross-checks and merge ---------------------------------------
def extend(
    base: Glossary,
    files: Sequence[tuple[str, str]],
    graph: Graph | None = None,
) -> tuple[Glossary, list[str]]:
    """``base`` plus the (source, text) ``files``, and every problem found in them (the result is only
    meaningful when there are none). A given graph also has every selector checked against it."""
    problems: list[str] = []
    parsed = []
    for source, text in files:
        p, found = parse(source, text)
        parsed.append(p)
        problems += found
    entries, annotations, origins = dict(base), {a.id: a for a in base.annotations}, dict(base.origins)
    for section, table in (("glossary", entries), ("annotations", annotations)):
        first_here: dict[str, str] = {}
        for f in parsed:
            for path, item in f.entries if section == "glossary" else f.annotations:
                where = f.at((*path, "id"))
                problem = _id_problem(section, item, first_here, table, origins)
                if problem:
                    problems.append(f.problem((*path, "id"), problem))
                else:
                    table[item.id] = item
                    origins[(section, item.id)] = where
                first_here.setdefault(item.id, where)
    for f in parsed:
        for path, entry in f.entries:
            problems += [
                f.problem((*path, "see_also", i), _link_problem(ref, entries))
                for i, ref in enumerate(entry.see_also)
                if ref not in entries
            ]
        for path, note in f.annotations:
            problems += [
                f.problem((*path, "glossary", i), _link_problem(ref, entries))
                for i, ref in enumerate(note.glossary)
                if ref not in entries
            ]
        if graph is not None:
            problems += _selector_problems(f, graph)
    return Glossary(entries.values(), annotations.values(), origins), problems


def _id_problem(
    section: str,
    item: GlossaryEntry | Annotation,
    first_here: dict[str, str],
    table: Mapping[str, Any],
    origins: Mapping[tuple[str, str], str],
) -> str | None:
    what = "glossary id" if section == "glossary" else "annotation id"
    if item.id in first_here:
        return f"duplicate {what} {item.id!r}: already defined at {first_here[item.id]}"
    if item.id in table and not item.override:
        return (
            f"{what} {item.id!r} is already defined at {origins[(section, item.id)]}; add 'override: true' "
            f"to replace it"
        )
    if item.id not in table and item.override:
        return f"override: true, but there is no {what} {item.id!r} to override"
    return None


def _link_problem(ref: str, entries: Mapping[str, GlossaryEntry]) -> str:
    return f"unknown glossary id {ref!r}{did_you_mean(ref, entries)}"


def _kind_places() -> dict[str, set[tuple[str, str | None]]]:
    """The (stage, category) pairs each kind occurs with, read from the topology's specs, so a selector's
    stage and category narrow its kinds before the graph is asked."""
    places: dict[str, set[tuple[str, str | None]]] = {k: {(s.stage, s.category)} for k, s in VECTOR_SPECS.items()}
    for spec in VECTOR_SPECS.values():
        places.setdefault(spec.op, set()).add((spec.op_stage, Category.operation))
    places.update({k: {(s.stage, Category.parameter)} for k, s in PARAM_SPECS.items()})
    return places


_PLACES = _kind_places()


def _selector_problems(f: _ParsedFile, graph: Graph) -> list[str]:
    problems = []
    for path, item in (*f.entries, *f.annotations):
        field = selector_field(item)
        for i, sel in enumerate(getattr(item, field)):
            found = _selector_problem(sel, graph)
            if found:
                sub, message = found
                problems.append(f.problem((*path, field, i, *sub), message))
    return problems


def _selector_problem(sel: Selector, graph: Graph) -> tuple[KeyPath, str] | None:
    """Why ``sel`` selects nothing in ``graph`` (with the field to blame), or None when it selects a node.
    Only the first match is looked for, with the kind, layer, head and position filters of the graph, so a
    long run is never enumerated."""
    d = graph.dims
    for name, value, limit in (
        ("layer", sel.layer, d.n_layer),
        ("head", sel.head, d.n_head),
        ("position", sel.position, graph.n_tokens),
    ):
        if value is not None and value >= limit:
            return (name,), f"{name} {value} is out of range: this graph has {name}s 0..{limit - 1}"
    if sel.id is not None:
        try:
            node = graph.node(sel.id)
        except NodeNotFoundError as exc:
            return ("id",), str(exc)
        return (
            None
            if sel.matches(node)
            else ((), f"node {sel.id} does not have the other fields given ({sel.describe()})")
        )
    kinds = [
        k
        for k in (sel.kind or KINDS)
        if any(sel.stage in (None, stage) and sel.category in (None, category) for stage, category in _PLACES[k])
    ]
    first = (
        next(
            (
                n
                for n in graph.iter_nodes(kind=kinds, layer=sel.layer, head=sel.head, position=sel.position)
                if sel.matches(n)
            ),
            None,
        )
        if kinds
        else None
    )
    return None if first is not None else ((), f"selects no node of this graph ({sel.describe()})")
