"""The :class:`Glossary`: entries by id and the annotations, looked up by name and by node."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar, overload

from ..schema import OperationNode, ParameterNode, VectorNode
from .models import Annotation, GlossaryEntry, ResolvedAnnotation, template_values

if TYPE_CHECKING:
    from ..graph import Graph

__all__ = ["Glossary"]

_T = TypeVar("_T")
_Item = TypeVar("_Item", bound=GlossaryEntry | Annotation)


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
        self._by_kind: dict[str, tuple[tuple[GlossaryEntry, ...], tuple[Annotation, ...]]] = {}

    def __getitem__(self, key: str) -> GlossaryEntry:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(f"no glossary entry {key!r}{self._suggestion(key)}") from None

    def __contains__(self, key: object) -> bool:  # Mapping's default would build a suggestion for every miss
        return key in self._entries

    @overload
    def get(self, key: str, /) -> GlossaryEntry | None: ...
    @overload
    def get(self, key: str, default: GlossaryEntry | _T, /) -> GlossaryEntry | _T: ...
    def get(self, key: str, default: object = None, /) -> object:
        """The entry ``key``, or ``default`` (without the suggestions a failed ``glossary[key]`` looks for)."""
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
        return [e for e in self._naming(node.kind)[0] if any(s.matches(node) for s in e.applies_to)]

    def annotations_for(
        self,
        node: VectorNode | ParameterNode | OperationNode,
        graph: Graph,
    ) -> list[ResolvedAnnotation]:
        """Annotations with a target matching ``node``, their template fields filled in from ``graph``."""
        hits = [a for a in self._naming(node.kind)[1] if any(s.matches(node) for s in a.targets)]
        values = template_values(graph) if hits else {}
        return [a.resolve(values) for a in hits]

    def _naming(self, kind: str) -> tuple[tuple[GlossaryEntry, ...], tuple[Annotation, ...]]:
        """The entries and the annotations with a selector that names ``kind`` or names no kind (cached per
        kind), so asking about each of many nodes does not test every selector of every item."""
        if kind not in self._by_kind:
            self._by_kind[kind] = (_naming(self._entries.values(), kind), _naming(self.annotations, kind))
        return self._by_kind[kind]

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


def _naming(items: Iterable[_Item], kind: str) -> tuple[_Item, ...]:
    return tuple(it for it in items if any(s.kind is None or kind in s.kind for s in it.selectors))
