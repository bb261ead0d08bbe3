"""Reading the glossary's YAML: one file parsed safely and validated (every problem with its file, line and
field), then files merged onto a glossary with their cross-checks: unique ids, resolvable links, and, given a
graph, selectors that select something in it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

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

_Item = TypeVar("_Item", bound=GlossaryEntry | Annotation)
_Kind = TypeVar("_Kind", GlossaryEntry, Annotation)

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
        found_entries: list[GlossaryEntry | None] = list(data.glossary)
        found_notes: list[Annotation | None] = list(data.annotations)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems += [located.problem(e["loc"], _message(e)) for e in errors]
        bad = {tuple(e["loc"][:2]) for e in errors}
        sections = raw if isinstance(raw, dict) else {}
        found_entries = _valid(sections.get("glossary"), "glossary", GlossaryEntry, bad)
        found_notes = _valid(sections.get("annotations"), "annotations", Annotation, bad)
    entries = tuple((("glossary", i), e) for i, e in enumerate(found_entries) if e is not None)
    annotations = tuple((("annotations", i), a) for i, a in enumerate(found_notes) if a is not None)
    return replace(located, entries=entries, annotations=annotations), tuple(problems)


def _valid(value: object, section: str, model: type[_Kind], bad: set[tuple[Any, ...]]) -> list[_Kind | None]:
    """The items of a section that validate on their own (None where one has a problem)."""
    items = value if isinstance(value, list) else []
    return [None if (section, i) in bad else model.model_validate(item) for i, item in enumerate(items)]


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
    return str(error["msg"])


# ---- several files on top of a glossary: cross-checks and merge ---------------------------------------
def extend(
    base: Glossary,
    files: Sequence[tuple[str, str]],
    graph: Graph | None = None,
) -> tuple[Glossary, list[str]]:
    """``base`` plus the (source, text) ``files``, and every problem found in them (the result is only
    meaningful when there are none). A given graph also has every selector checked against it."""
    problems: list[str] = []
    parsed: list[_ParsedFile] = []
    for source, text in files:
        p, found = parse(source, text)
        parsed.append(p)
        problems += found
    origins = dict(base.origins)
    entries: dict[str, GlossaryEntry] = dict(base)
    annotations = {a.id: a for a in base.annotations}
    problems += _merge("glossary", [(f, at, e) for f in parsed for at, e in f.entries], entries, origins)
    problems += _merge("annotations", [(f, at, a) for f in parsed for at, a in f.annotations], annotations, origins)
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


def _merge(
    section: str,
    found: list[tuple[_ParsedFile, KeyPath, _Item]],
    table: dict[str, _Item],
    origins: dict[tuple[str, str], str],
) -> list[str]:
    """Add the items ``found`` in one section of the files to ``table`` by id, in order; the problems with
    their ids (duplicates, overrides of nothing, redefinitions without override)."""
    problems = []
    first_here: dict[str, str] = {}
    for f, path, item in found:
        at_id = (*path, "id")
        where = f.at(at_id)
        problem = _id_problem(section, item, first_here, table, origins)
        if problem:
            problems.append(f.problem(at_id, problem))
        else:
            table[item.id] = item
            origins[(section, item.id)] = where
        first_here.setdefault(item.id, where)
    return problems


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
    items: list[tuple[KeyPath, GlossaryEntry | Annotation]] = [*f.entries, *f.annotations]
    for path, item in items:
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
