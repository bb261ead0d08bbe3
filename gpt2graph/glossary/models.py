"""The glossary's data: the YAML models an entry or annotation file is validated against (the source of
``schema/data.schema.json``), the template fields an annotation's text may use, and an annotation resolved for
one graph."""

from __future__ import annotations

import difflib
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from ..schema import Category, OperationNode, OpKind, ParameterNode, ParamKind, Stage, VectorKind, VectorNode

if TYPE_CHECKING:
    from ..graph import Graph

__all__ = [
    "KINDS",
    "TEMPLATE_FIELDS",
    "Source",
    "Selector",
    "GlossaryEntry",
    "Annotation",
    "DataFile",
    "ResolvedAnnotation",
    "template_values",
]  # and, for the other glossary modules: selector_field, did_you_mean

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

_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
Id = Annotated[str, Field(pattern=_ID_PATTERN)]
_KIND_SCHEMA = {
    "anyOf": [
        {"enum": list(KINDS), "type": "string"},
        {"items": {"enum": list(KINDS), "type": "string"}, "minItems": 1, "type": "array"},
    ]
}


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
            raise ValueError("; ".join(f"unknown kind {k!r}{did_you_mean(k, KINDS)}" for k in unknown))
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

    @property
    def selectors(self) -> list[Selector]:
        """The nodes the entry explains (``applies_to``)."""
        return self.applies_to


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

    @property
    def selectors(self) -> list[Selector]:
        """The nodes the callout is attached to (``targets``)."""
        return self.targets

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
                f"unknown template field {{{name}}}{did_you_mean(name, TEMPLATE_FIELDS)}; known: "
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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the choices spelled like ``word``, else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def selector_field(item: GlossaryEntry | Annotation) -> str:
    """The field holding an item's selectors: ``applies_to`` of an entry, ``targets`` of an annotation."""
    return "applies_to" if isinstance(item, GlossaryEntry) else "targets"
