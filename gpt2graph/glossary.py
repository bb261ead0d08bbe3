"""Glossary entries and annotations: validated data under ``data/``, extensible with the user's YAML files.

A glossary entry explains a concept; an annotation is a callout pinned to parts of a graph by selectors,
whose text may use template fields (``{n_tokens} x {d_model}``) filled in from the live run. Both come from
YAML that is parsed safely (plain data only: no Python object tags) and boundedly (a size limit and a limit
on nodes, so a document of nested aliases cannot expand into a huge structure), validated against the
pydantic models below (the source of ``schema/data.schema.json``) and cross-checked: unique ids, resolvable
links, known template fields, and, given a graph, selectors that select something in it. Every problem is
reported at once, as ``FILE:LINE:COL: field.path: message``. Text is kept as written; renderers escape it.

Example::

    g = gpt2graph.build("When Mary and John went to the store, John gave a drink to")
    g.glossary["residual-stream"].summary
    g.annotate("my-heads.yaml")               # raises DataValidationError listing every problem
    g.annotations_for("blocks.5.attn.hook_pattern[1,12]")
"""

from __future__ import annotations

import difflib
import os
import shutil
import string
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator, model_validator

from .errors import DataValidationError, InputFileError, NodeNotFoundError
from .files import read_bounded
from .schema import (
    Category,
    OperationNode,
    OpKind,
    ParameterNode,
    ParamKind,
    Stage,
    UserDataFile,
    VectorKind,
    VectorNode,
)
from .topology import PARAM_SPECS, VECTOR_SPECS
from .yamlsafe import MAX_NODES, KeyPath, MarkedLoader, format_path

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "DATA_ENV",
    "KINDS",
    "TEMPLATE_FIELDS",
    "MAX_BYTES",
    "MAX_NODES",
    "Source",
    "Selector",
    "GlossaryEntry",
    "Annotation",
    "DataFile",
    "ResolvedAnnotation",
    "Glossary",
    "data_dir",
    "builtin_glossary",
    "load_glossary",
    "read_user_file",
    "validate_files",
    "template_values",
    "format_entry",
    "cli_glossary",
    "cli_validate",
]

DATA_ENV = "GPT2GRAPH_DATA"

#: Every kind a selector may name: vector, operation and parameter kinds.
KINDS: tuple[str, ...] = (*map(str, VectorKind), *map(str, OpKind), *map(str, ParamKind))

#: Template fields an annotation's title, body and caption may use, e.g. "{n_tokens} x {d_model}".
TEMPLATE_FIELDS: tuple[str, ...] = (
    "n_tokens",
    "n_layer",
    "n_head",
    "d_model",
    "d_head",
    "d_mlp",
    "n_ctx",
    "n_vocab",
    "n_params",
    "model",
)

MAX_BYTES = 1 << 20  # one data file; the largest built-in is about 22 kB

_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
Id = Annotated[str, Field(pattern=_ID_PATTERN)]
_KIND_SCHEMA = {
    "anyOf": [
        {"enum": list(KINDS), "type": "string"},
        {"items": {"enum": list(KINDS), "type": "string"}, "minItems": 1, "type": "array"},
    ]
}


# ---- models -------------------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, use_enum_values=True)


class Source(_Model):
    """A reference a glossary entry rests on."""

    title: str = Field(min_length=1, description="Title of the work, with authors and year where known.")
    url: str = Field(pattern=r"^https?://\S+$", description="Where to read it (http or https).")


class Selector(_Model):
    """Which nodes an entry or annotation is about: every given field must match (an empty selector is an error).

    ``kind: [q, k]`` selects nodes of either kind; ``layer: 5, head: 1`` selects that head's nodes only, so
    a node with no layer (an embedding) never matches a selector that gives one.
    """

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    id: str | None = Field(
        default=None,
        description="A node id, e.g. blocks.5.attn.hook_pattern[1,12] or "
        "blocks.5.attn.W_Q[1]; TransformerLens aliases of a node match too.",
    )
    kind: Annotated[list[str] | None, WithJsonSchema(_KIND_SCHEMA)] = Field(
        default=None, description="A vector, operation or parameter kind, or a list of them (any one matches)."
    )
    stage: Stage | None = Field(default=None, strict=False, description="Stage of the forward pass.")
    category: Category | None = Field(default=None, strict=False, description="Legend category.")
    layer: int | None = Field(default=None, ge=0, description="Block index, from 0.")
    head: int | None = Field(default=None, ge=0, description="Head index within the block, from 0.")
    position: int | None = Field(default=None, ge=0, description="Token position, from 0.")

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        """Accept one kind or a list; name the unknown ones with close matches."""
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(k, str) for k in value):
            raise ValueError("kind must be a kind name or a non-empty list of kind names")
        unknown = [k for k in value if k not in KINDS]
        if unknown:
            raise ValueError("; ".join(f"unknown kind {k!r}{_did_you_mean(k, KINDS)}" for k in unknown))
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Selector:
        if all(value is None for _, value in self):
            raise ValueError(
                f"an empty selector would select everything: give at least one of {', '.join(type(self).model_fields)}"
            )
        return self

    def matches(self, node: VectorNode | ParameterNode | OperationNode) -> bool:
        """True when every field given here equals the node's (a node's None layer/head/position never matches)."""
        if self.id is not None and self.id != node.id and self.id not in getattr(node, "aliases", ()):
            return False
        if self.kind is not None and node.kind not in self.kind:
            return False
        return all(
            want is None or want == getattr(node, name)
            for name, want in (
                ("stage", self.stage),
                ("category", self.category),
                ("layer", self.layer),
                ("head", self.head),
                ("position", self.position),
            )
        )

    def describe(self) -> str:
        """The selector as compact text, e.g. ``kind attn_pattern, layer 5, head 1``."""
        parts = []
        for name, value in self:
            if value is not None:
                parts.append(f"{name} {'/'.join(value) if isinstance(value, list) else value}")
        return ", ".join(parts)


class GlossaryEntry(_Model):
    """One concept: what it is in a sentence, then in depth, with sources and the graph parts it explains."""

    id: Id = Field(description="Kebab-case identifier, unique across all data, e.g. residual-stream.")
    term: str = Field(min_length=1, description="The term as a reader would write it.")
    aliases: list[str] = Field(
        default_factory=list,
        description="Other names, abbreviations and hook or "
        "weight names that mean the same thing; `gpt2graph glossary ALIAS` finds the entry.",
    )
    summary: str = Field(min_length=1, description="One sentence.")
    body: str = Field(min_length=1, description="Markdown; several paragraphs where the concept deserves it.")
    sources: list[Source] = Field(default_factory=list, description="References (every built-in entry has one).")
    see_also: list[Id] = Field(default_factory=list, description="Ids of related glossary entries.")
    applies_to: list[Selector] = Field(default_factory=list, description="The nodes this entry explains.")
    override: bool = Field(
        default=False,
        description="Replace the entry already defined with this id (for "
        "example a built-in one) instead of being reported as a duplicate.",
    )


class Annotation(_Model):
    """A callout on parts of the graph; title, body and caption may use template fields like {n_tokens}."""

    id: Id = Field(description="Kebab-case identifier, unique among annotations.")
    title: str = Field(min_length=1, description="Heading of the callout.")
    body: str = Field(min_length=1, description="Markdown text of the callout.")
    caption: str | None = Field(default=None, description='Short line of numbers, e.g. "{n_tokens} x {d_model}".')
    glossary: list[Id] = Field(default_factory=list, description="Ids of the glossary entries the callout uses.")
    targets: list[Selector] = Field(min_length=1, description="The nodes the callout is attached to.")
    override: bool = Field(
        default=False,
        description="Replace the annotation already defined with this id "
        "(for example a built-in one) instead of being reported as a duplicate.",
    )

    @field_validator("title", "body", "caption")
    @classmethod
    def _known_template_fields(cls, text: str | None) -> str | None:
        if text is not None:
            _check_template(text)
        return text

    def resolve(self, values: Mapping[str, str]) -> ResolvedAnnotation:
        """This annotation with its template fields filled in from :func:`template_values` of a graph."""
        return ResolvedAnnotation(
            self.id,
            self.title.format_map(values),
            self.body.format_map(values),
            None if self.caption is None else self.caption.format_map(values),
            tuple(self.glossary),
        )


class DataFile(_Model):
    """A glossary/annotation YAML file; built-in ones live under data/, users add theirs with --annotations."""

    glossary: list[GlossaryEntry] = Field(default_factory=list, description="Glossary entries.")
    annotations: list[Annotation] = Field(default_factory=list, description="Callouts attached to graph nodes.")


@dataclass(frozen=True)
class ResolvedAnnotation:
    """An annotation with its template fields filled in from one graph (text still unescaped)."""

    id: str
    title: str
    body: str
    caption: str | None
    glossary: tuple[str, ...]


def _check_template(text: str) -> None:
    """Raise ValueError for a malformed template or a field that is not a TEMPLATE_FIELD, so that filling
    it in later (``str.format_map``) can neither fail nor reach anything but the plain values given."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"malformed template ({exc}); write {{{{ and }}}} for literal braces") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            raise ValueError(
                f"unknown template field {{{name}}}{_did_you_mean(name, TEMPLATE_FIELDS)}; known: "
                f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
        if spec or conversion:
            raise ValueError(f"template field {{{name}}} takes no format spec or conversion")


def template_values(graph: Graph) -> dict[str, str]:
    """The value of every template field for ``graph``: counts from the run, dims from the model's config."""
    d = graph.dims
    return {
        "n_tokens": str(graph.n_tokens),
        "n_layer": str(d.n_layer),
        "n_head": str(d.n_head),
        "d_model": str(d.d_model),
        "d_head": str(d.d_head),
        "d_mlp": str(d.d_mlp),
        "n_ctx": str(d.n_ctx),
        "n_vocab": str(d.n_vocab),
        "n_params": f"{graph.model.total_parameters:,}",
        "model": graph.model.name,
    }


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


# ---- one file: parse and validate ---------------------------------------------------------------------
_ITEM_MODELS: dict[str, type[_Model]] = {"glossary": GlossaryEntry, "annotations": Annotation}
_SECTION_MODELS: dict[str, type[_Model]] = {
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
def _parse(source: str, text: str) -> tuple[_ParsedFile, tuple[str, ...]]:
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
            f"unknown field{_did_you_mean(str(loc[-1]), owner.model_fields)}; allowed: {', '.join(owner.model_fields)}"
        )
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "model_type":
        return "expected a mapping of fields"
    return error["msg"]


# ---- several files on top of a glossary: cross-checks and merge ---------------------------------------
def _extend(
    base: Glossary,
    files: Sequence[tuple[str, str]],
    graph: Graph | None = None,
) -> tuple[Glossary, list[str]]:
    """``base`` plus the (source, text) ``files``, and every problem found in them (the result is only
    meaningful when there are none). A given graph also has every selector checked against it."""
    problems: list[str] = []
    parsed = []
    for source, text in files:
        p, found = _parse(source, text)
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
    return f"unknown glossary id {ref!r}{_did_you_mean(ref, entries)}"


def _kind_places() -> dict[str, set[tuple[str, str | None]]]:
    """The (stage, category) pairs each kind occurs with, read from the topology's specs, so a selector's
    stage and category narrow its kinds before the graph is asked."""
    places: dict[str, set[tuple[str, str | None]]] = {k: {(s.stage, s.category)} for k, s in VECTOR_SPECS.items()}
    for spec in VECTOR_SPECS.values():
        places.setdefault(spec.op, set()).add((spec.op_stage, Category.operation))
    places.update({k: {(s.stage, Category.parameter)} for k, s in PARAM_SPECS.items()})
    return places


_PLACES = _kind_places()


def _selector_field(item: GlossaryEntry | Annotation) -> str:
    return "applies_to" if isinstance(item, GlossaryEntry) else "targets"


def _selector_problems(f: _ParsedFile, graph: Graph) -> list[str]:
    problems = []
    for path, item in (*f.entries, *f.annotations):
        field = _selector_field(item)
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


# ---- the glossary ---------------------------------------------------------------------------------------
class Glossary(Mapping[str, GlossaryEntry]):
    """Glossary entries by id (in the order they were defined) plus the annotations, built-in and user's.

    ``glossary["residual-stream"]`` is one entry; ``lookup`` also finds entries by term or alias; nodes
    get their entries and callouts with ``entries_for`` and ``annotations_for``.
    """

    def __init__(
        self,
        entries: Iterable[GlossaryEntry] = (),
        annotations: Iterable[Annotation] = (),
        origins: Mapping[tuple[str, str], str] | None = None,
    ):
        self._entries = {e.id: e for e in entries}
        self.annotations: tuple[Annotation, ...] = tuple(annotations)
        #: ("glossary" | "annotations", id) -> FILE:LINE:COL where it was defined
        self.origins: dict[tuple[str, str], str] = dict(origins or {})
        self._names: dict[str, str] | None = None
        self._by_kind: dict[tuple[str, str], tuple] = {}

    def __getitem__(self, key: str) -> GlossaryEntry:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(f"no glossary entry {key!r}{self._suggestion(key)}") from None

    def __contains__(self, key: object) -> bool:  # Mapping's default would build a suggestion for every miss
        return key in self._entries

    def get(self, key: str, default: GlossaryEntry | None = None) -> GlossaryEntry | None:
        return self._entries.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Glossary {len(self)} entries, {len(self.annotations)} annotations>"

    def lookup(self, term: str) -> GlossaryEntry | None:
        """The entry whose id, term or one of whose aliases is ``term``, ignoring case (ids win over terms,
        terms over aliases)."""
        entry_id = self._name_index().get(term.strip().casefold())
        return self._entries[entry_id] if entry_id else None

    def suggest(self, term: str, n: int = 5) -> list[str]:
        """Ids of entries whose id, term or an alias is close to ``term`` (contains it, or is spelled alike)."""
        names = self._name_index()
        key = term.strip().casefold()
        close = [name for name in names if key and key in name]
        close += difflib.get_close_matches(key, list(names), n=n, cutoff=0.6)
        return list(dict.fromkeys(names[name] for name in close))[:n]

    def entries_for(self, node: VectorNode | ParameterNode | OperationNode) -> list[GlossaryEntry]:
        """Entries with a selector in ``applies_to`` that matches ``node``, in glossary order."""
        return [e for e in self._candidates("glossary", node.kind) if any(s.matches(node) for s in e.applies_to)]

    def annotations_for(
        self,
        node: VectorNode | ParameterNode | OperationNode,
        graph: Graph,
    ) -> list[ResolvedAnnotation]:
        """Annotations with a target matching ``node``, their template fields filled in from ``graph``."""
        hits = [a for a in self._candidates("annotations", node.kind) if any(s.matches(node) for s in a.targets)]
        values = template_values(graph) if hits else {}
        return [a.resolve(values) for a in hits]

    def _candidates(self, section: str, kind: str) -> tuple:
        """Entries or annotations with a selector that names ``kind`` or names no kind (cached per kind),
        so asking about each of many nodes does not test every selector of every entry."""
        key = (section, kind)
        if key not in self._by_kind:
            items = self._entries.values() if section == "glossary" else self.annotations
            self._by_kind[key] = tuple(
                it for it in items if any(s.kind is None or kind in s.kind for s in getattr(it, _selector_field(it)))
            )
        return self._by_kind[key]

    def _name_index(self) -> dict[str, str]:
        """Casefolded id, term and alias -> entry id; ids are entered first, so they win, then terms."""
        if self._names is None:
            names: dict[str, str] = {}
            for names_of in (lambda e: [e.id], lambda e: [e.term], lambda e: e.aliases):
                for e in self._entries.values():
                    for name in names_of(e):
                        names.setdefault(name.strip().casefold(), e.id)
            self._names = names
        return self._names

    def _suggestion(self, term: str) -> str:
        close = self.suggest(term, n=3)
        return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


# ---- loading --------------------------------------------------------------------------------------------
def data_dir() -> Path:
    """The built-in data directory: ``$GPT2GRAPH_DATA``, else ``data/`` of the checkout the package runs from,
    else the copy an installed wheel carries as ``gpt2graph/data``."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    package = Path(__file__).resolve().parent
    checkout = package.parent / "data"
    return checkout if checkout.is_dir() else package / "data"


def _builtin_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataValidationError(
            [
                f"{root}: built-in data directory not found (set {DATA_ENV} to the data/ "
                f"directory of a gpt2graph checkout)"
            ]
        )
    return sorted(root.rglob("*.yaml"))


def _builtin_source(root: Path, path: Path) -> str:
    return str(Path(root.name) / path.relative_to(root))


def _read_text(path: str | os.PathLike) -> str:
    """A data file's text, or a DataValidationError that says why it cannot be read."""
    try:
        data = read_bounded(path, MAX_BYTES)
    except InputFileError as exc:
        raise DataValidationError([str(exc)]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataValidationError([f"{path}: not UTF-8 text (invalid byte at offset {exc.start})"]) from None


@lru_cache(maxsize=4)
def _builtin(root: Path) -> Glossary:
    files = [(_builtin_source(root, p), _read_text(p)) for p in _builtin_files(root)]
    glossary, problems = _extend(Glossary(), files)
    if problems:
        raise DataValidationError(problems)
    return glossary


def builtin_glossary() -> Glossary:
    """The built-in entries and annotations (parsed and validated once per data directory)."""
    return _builtin(data_dir())


def load_glossary(user_data: Sequence[UserDataFile] = ()) -> Glossary:
    """The built-in glossary with the user's files applied on top, in the order they were added."""
    glossary = builtin_glossary()
    for user_file in user_data:
        glossary, problems = _extend(glossary, [(user_file.source, user_file.text)])
        if problems:
            raise DataValidationError(problems)
    return glossary


def read_user_file(path: str | os.PathLike, graph: Graph | None = None) -> UserDataFile:
    """Read and validate a user's glossary/annotation file on top of ``graph``'s glossary (or the built-in
    one); raise DataValidationError listing every problem, else return the file to store with the graph."""
    text = _read_text(path)
    base = graph.glossary if graph is not None else builtin_glossary()
    _, problems = _extend(base, [(str(path), text)], graph)
    if problems:
        raise DataValidationError(problems)
    return UserDataFile(source=str(path), text=text)


def validate_files(paths: Sequence[str | os.PathLike], graph: Graph | None = None) -> list[str]:
    """Every problem in these files, validated together on top of the built-in data. A built-in file named
    here is checked as part of the built-in set as it now is on disk (with ``graph``, so is that whole set),
    so contributors can check their edits, including links other built-in files make into them."""
    root = data_dir()
    builtin = _builtin_files(root)
    given = {Path(p).resolve() for p in paths}
    problems: list[str] = []
    texts = []
    for p in paths:
        if Path(p).resolve() not in set(map(Path.resolve, builtin)):
            try:
                texts.append((str(p), _read_text(p)))
            except DataValidationError as exc:
                problems += exc.problems
    edited = any(f.resolve() in given for f in builtin)
    base, found = _extend(
        Glossary(), [(_builtin_source(root, f), _read_text(f)) for f in builtin], graph if edited else None
    )
    _, more = _extend(base, texts, graph)
    return problems + found + more


# ---- command line ---------------------------------------------------------------------------------------
def _columns() -> int:
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def _wrap_markdown(text: str, width: int, indent: str = "") -> list[str]:
    """Markdown paragraphs re-wrapped to ``width``; list items keep their own lines, code blocks stay as is."""
    out: list[str] = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        if lines[0].lstrip().startswith("```") or lines[0].startswith("    "):
            out += [indent + line for line in lines]
        elif lines[0].lstrip().startswith(("- ", "* ")) or lines[0].split(".", 1)[0].isdigit():
            items: list[str] = []
            for line in lines:
                starts = line.lstrip().startswith(("- ", "* ")) or line.split(".", 1)[0].strip().isdigit()
                if starts or not items:
                    items.append(line.strip())
                else:
                    items[-1] += " " + line.strip()
            for item in items:
                out += textwrap.wrap(item, width, initial_indent=indent, subsequent_indent=indent + "  ")
        else:
            out += textwrap.wrap(
                " ".join(line.strip() for line in lines), width, initial_indent=indent, subsequent_indent=indent
            )
        out.append("")
    return out[:-1]


def format_entry(entry: GlossaryEntry, width: int = 88) -> str:
    """A glossary entry as plain text for a terminal."""
    lines = [entry.term, "=" * len(entry.term), f"id: {entry.id}"]
    if entry.aliases:
        lines += textwrap.wrap("also: " + ", ".join(entry.aliases), width, subsequent_indent="      ")
    lines += ["", *textwrap.wrap(" ".join(entry.summary.split()), width), "", *_wrap_markdown(entry.body, width)]
    if entry.see_also:
        lines += ["", *textwrap.wrap("See also: " + ", ".join(entry.see_also), width, subsequent_indent="  ")]
    if entry.sources:
        lines += ["", "Sources:"]
        for src in entry.sources:
            lines += [
                *textwrap.wrap(src.title, width, initial_indent="  - ", subsequent_indent="    "),
                f"    {src.url}",
            ]
    if entry.applies_to:
        lines += ["", "Applies to:", *(f"  - {sel.describe()}" for sel in entry.applies_to)]
    return "\n".join(lines)


def cli_glossary(term: str | None) -> int:
    """``gpt2graph glossary [TERM]``: list every term, or print one entry (exit 1 for an unknown term)."""
    glossary = builtin_glossary()
    if term is None:
        id_w = max(map(len, glossary))
        term_w = min(24, max(len(e.term) for e in glossary.values()))
        room = max(20, _columns() - id_w - term_w - 4)
        for e in glossary.values():
            print(f"{e.id:<{id_w}}  {_clip(e.term, term_w):<{term_w}}  {_clip(' '.join(e.summary.split()), room)}")
        print(f"\n{len(glossary)} entries; `gpt2graph glossary TERM` prints one (by id, term or alias)")
        return 0
    entry = glossary.lookup(term)
    if entry is None:
        close = glossary.suggest(term)
        print(
            f"no glossary entry {term!r}"
            + (f"; did you mean: {', '.join(close)}?" if close else "; `gpt2graph glossary` lists every term")
        )
        return 1
    print(format_entry(entry, min(_columns(), 100)))
    return 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def cli_validate(paths: Sequence[str], graph: Graph | None) -> int:
    """``gpt2graph validate FILE... [--graph RUN]``: print every problem, one per line; exit 1 if any."""
    problems = validate_files(paths, graph)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"ok: {len(paths)} file{'s' if len(paths) != 1 else ''} valid" + (" against the graph" if graph else ""))
    return 0
