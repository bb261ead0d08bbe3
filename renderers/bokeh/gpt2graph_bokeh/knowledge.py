"""What the page says about each node: the glossary summary in its tooltip and the side panel of glossary
entries, annotations and sources, as sanitised HTML.

Entries and annotations are looked up per *unit* (a vector group ``(kind, layer, head)`` or a parameter):
every node of a unit shares kind, stage, category, layer and head, so a selector that names none of
position or id matches all of them or none, and one representative node answers for the whole unit (cached
further by kind when no selector names a layer or head). The few selectors that do name a position or an
id (a user's note on one token) are matched node by node and give those nodes a panel of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gpt2graph.plugin import VECTOR_SPECS, Key

from .layout import Layout
from .sanitize import escape, inline, link, markdown

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["Knowledge", "knowledge", "primary_entry"]


@dataclass
class Knowledge:
    """Tooltip texts and panel fragments, deduplicated, with the index of each unit's (and node's) own."""

    tips: list[str]  # plain text: Bokeh escapes tooltip fields
    panels: list[str]  # sanitised HTML
    unit_tip: np.ndarray  # int32 index into tips, per unit
    unit_panel: np.ndarray  # int32 index into panels, per unit
    node_panel: dict[int, int]  # node index -> panel, where it differs from its unit's


def primary_entry(entries: list, kind: str) -> Any | None:
    """The entry that defines ``kind``: one naming it or its hook (id, term or alias, e.g. ``hook_q`` for q),
    else the one whose matching selector lists the fewest kinds; ties keep glossary order."""

    def names(e) -> set[str]:
        return {x.casefold() for x in (e.id, e.term, *e.aliases)} | {e.id.replace("-", "_")}

    spec = VECTOR_SPECS.get(kind)
    wanted = {name.casefold() for name in (kind, spec and spec.hook_point) if name}

    def rank(item: tuple[int, Any]) -> tuple[int, int, int]:
        i, e = item
        sizes = [len(s.kind) for s in e.applies_to if s.kind and kind in s.kind]
        return (0 if names(e) & wanted else 1, min(sizes, default=99), i)

    return min(enumerate(entries), key=rank)[1] if entries else None


def _specific(item: Any) -> bool:
    selectors = item.applies_to if hasattr(item, "applies_to") else item.targets
    return any(s.position is not None or s.id is not None for s in selectors)


def _uses(items: list, name: str) -> bool:
    return any(
        getattr(s, name) is not None
        for it in items
        for s in (it.applies_to if hasattr(it, "applies_to") else it.targets)
    )


def _sources(entry: Any) -> str:
    if not entry.sources:
        return ""
    links = "; ".join(link(s.url, s.title) for s in entry.sources)
    return f'<div class="g2g-sources">Sources: {links}</div>'


def _entry_html(entry: Any, glossary: Any) -> str:
    see = [escape(glossary[i].term) for i in entry.see_also if i in glossary]
    see_html = f'<div class="g2g-see">See also: {", ".join(see)}</div>' if see else ""
    return f'<p class="g2g-summary">{inline(entry.summary)}</p>{markdown(entry.body)}{_sources(entry)}{see_html}'


def _panel(annotations: list, entries: list, op: tuple[str, Any] | None, kind: str, glossary: Any) -> str:
    """The side-panel fragment for a node: callouts, the defining entry, the operation, related entries."""
    parts = []
    for a in annotations:
        caption = f'<div class="g2g-caption">{escape(a.caption)}</div>' if a.caption else ""
        parts.append(
            f'<div class="g2g-callout"><div class="g2g-callout-title">{escape(a.title)}</div>'
            f"{markdown(a.body)}{caption}</div>"
        )
    main = primary_entry(entries, kind)
    if main is not None:
        parts.append(f"<h3>{escape(main.term)}</h3>{_entry_html(main, glossary)}")
    if op is not None:
        op_kind, op_entry = op
        about = f": {inline(op_entry.summary)}" if op_entry is not None else ""
        parts.append(f'<div class="g2g-op">Computed by the operation <code>{escape(op_kind)}</code>{about}</div>')
    related = [e for e in entries if e is not main]
    if related:
        items = "".join(
            f"<details><summary>{escape(e.term)}</summary>{_entry_html(e, glossary)}</details>" for e in related
        )
        parts.append(f'<div class="g2g-related"><div class="g2g-label">Related concepts</div>{items}</div>')
    return "".join(parts)


class _Builder:
    """Looks up and renders units, caching by what the glossary's selectors can tell apart."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.glossary = graph.glossary
        items = [*self.glossary.values(), *self.glossary.annotations]
        self.specific_ids = {it.id for it in items if _specific(it)}
        self.by_layer = _uses(items, "layer")
        self.by_head = _uses(items, "head")
        self.found: dict[tuple, tuple[list, list, tuple | None]] = {}
        self.rendered: dict[tuple, tuple[int, int]] = {}
        self.tips: dict[str, int] = {}
        self.panels: dict[str, int] = {}

    def cache_key(self, key: Key) -> tuple:
        return key.kind, key.layer if self.by_layer else None, key.head if self.by_head else None

    def lookup(self, node_id: str, key: Key) -> tuple[list, list, tuple | None]:
        """(annotations, entries, (op kind, op entry) or None) of the node with this id, unit-level items only."""
        cache_key = self.cache_key(key)
        if cache_key not in self.found:
            g = self.graph
            node = g.node(node_id)
            notes = [a for a in g.annotations_for(node) if a.id not in self.specific_ids]
            entries = [e for e in g.glossary_for(node) if e.id not in self.specific_ids]
            op = None
            op_id = g.topology.op_id(key) if key.kind in VECTOR_SPECS and key.kind != "token" else None
            if op_id is not None and op_id in g:  # the operation producing it, when the view holds it
                op_node = g.node(op_id)
                op = (str(op_node.kind), primary_entry(g.glossary_for(op_node), str(op_node.kind)))
            self.found[cache_key] = (notes, entries, op)
        return self.found[cache_key]

    def unit(self, node_id: str, key: Key) -> tuple[int, int]:
        """(tip index, panel index) of a unit, rendered once per cache key."""
        cache_key = self.cache_key(key)
        if cache_key not in self.rendered:
            notes, entries, op = self.lookup(node_id, key)
            main = primary_entry(entries, key.kind)
            self.rendered[cache_key] = (
                self.intern(self.tips, main.summary if main is not None else ""),
                self.intern(self.panels, _panel(notes, entries, op, key.kind, self.glossary)),
            )
        return self.rendered[cache_key]

    @staticmethod
    def intern(table: dict[str, int], text: str) -> int:
        return table.setdefault(text, len(table))


def knowledge(graph: Graph, lay: Layout) -> Knowledge:
    """Tooltip summary and side panel of every unit, plus per-node panels for position- or id-specific notes."""
    b = _Builder(graph)
    top = lay.topology
    units = [k._replace(position=int(lay.positions[0])) for k in lay.groups] + list(lay.params)
    unit_tip = np.zeros(len(units), np.int32)
    unit_panel = np.zeros(len(units), np.int32)
    for u, key in enumerate(units):
        unit_tip[u], unit_panel[u] = b.unit(top.node_id(key), key)

    node_panel: dict[int, int] = {}
    hits: dict[int, dict[str, str]] = {}  # node index -> {item id: id of the node it matched there}
    for item in [*b.glossary.values(), *b.glossary.annotations]:
        if item.id in b.specific_ids:
            for index, node_id in _selected_nodes(graph, lay, item):
                hits.setdefault(index, {})[item.id] = node_id
    done: dict[tuple, int] = {}
    for index, matched in sorted(hits.items()):
        key = lay.key_of(index)
        memo = (b.cache_key(key), frozenset(matched))
        if memo not in done:
            notes, entries, op = b.lookup(top.node_id(key), key)
            notes = notes + [
                a for item_id, node_id in matched.items() for a in graph.annotations_for(node_id) if a.id == item_id
            ]
            entries = entries + [b.glossary[item_id] for item_id in matched if item_id in b.glossary]
            done[memo] = b.intern(b.panels, _panel(notes, entries, op, key.kind, b.glossary))
        node_panel[index] = done[memo]
    return Knowledge(list(b.tips), list(b.panels), unit_tip, unit_panel, node_panel)


def _selected_nodes(graph: Graph, lay: Layout, item: Any) -> list[tuple[int, str]]:
    """(node index, node id) of what an item's position- or id-specific selectors select; an operation shows
    on the vector it produces."""
    top = graph.topology
    out = []
    for sel in item.applies_to if hasattr(item, "applies_to") else item.targets:
        if sel.id is not None:
            candidates = [graph.node(sel.id)] if sel.id in graph else []
        else:
            candidates = graph.iter_nodes(kind=sel.kind, layer=sel.layer, head=sel.head, position=sel.position)
        for node in candidates:
            if sel.matches(node):
                _, key = top.parse(node.id)
                vector = top.vector_id(key) if key.kind in VECTOR_SPECS else node.id  # an op: the vector it makes
                if key.kind != "tokenize" and vector in lay.id_index:
                    out.append((lay.index(key), node.id))
    return out
