"""What the callouts say, apart from where they go: annotations and glossary entries from the glossary data,
resolved for this run and reduced to plain text (the SVG shows text only, so no Markdown ever becomes markup)
and links the core's link policy allows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from gpt2graph.plugin import ResolvedAnnotation, Selection, parse_markdown, safe_url, template_values

__all__ = ["Link", "Callout", "Content", "view_text"]


@dataclass(frozen=True)
class Link:
    text: str
    url: str
    tip: str


@dataclass(frozen=True)
class Callout:
    """A resolved annotation, ready to be laid out as plain text. ``entry`` names the glossary entry a callout
    presents (empty for an annotation); ``note`` says what it means on this page (empty: nothing to add)."""

    id: str
    title: str
    caption: str
    paragraphs: tuple[str, ...]
    links: tuple[Link, ...]
    entry: str = ""
    note: str = ""


class Content:
    """Callouts for the parts drawn, each shown once, at the first part it applies to. A page without callouts
    (``enabled=False``) asks nothing of ``graph``: it may be None."""

    TERMINOLOGY = "terminology"

    def __init__(self, graph: Any, enabled: bool):
        self.graph = graph
        self.enabled = enabled
        self._shown: set[str] = set()

    def callouts_for(self, node_ids: Iterable[str]) -> list[Callout]:
        if not self.enabled:
            return []
        out = []
        for node_id in node_ids:
            for a in self.graph.annotations_for(node_id):
                if a.id not in self._shown and a.id != self.TERMINOLOGY:
                    self._shown.add(a.id)
                    out.append(self._callout(a))
        return out

    def glossary_callout(self, entry_id: str, note: str = "") -> list[Callout]:
        """A glossary entry as a callout (term, one-sentence summary, its source, and ``note``: what it means on
        this page), for the panels that explain a method rather than a graph node; empty when callouts are off
        or it was shown."""
        if not self.enabled:
            return []
        entry = self.graph.glossary.get(entry_id)
        key = f"glossary:{entry_id}"
        if entry is None or key in self._shown:
            return []
        self._shown.add(key)
        c = self._callout(ResolvedAnnotation(key, entry.term, entry.summary, None, (entry_id,)))
        return [replace(c, entry=entry_id, note=note)]

    def terminology(self) -> Callout | None:
        """The terminology note, drawn in its own box near the legend rather than beside one part."""
        return next((self._resolved(a) for a in self.graph.glossary.annotations if a.id == self.TERMINOLOGY), None)

    def _resolved(self, a: Any) -> Callout:
        return self._callout(a.resolve(template_values(self.graph)))

    def _callout(self, a: Any) -> Callout:
        links = []
        for gid in a.glossary:
            entry = self.graph.glossary.get(gid)
            if entry is None:
                continue
            source = next((s for s in entry.sources if safe_url(s.url)), None)
            if source is not None:
                links.append(
                    Link(entry.term, safe_url(source.url), f"{entry.term}: {entry.summary} (source: {source.title})")
                )
        paragraphs = tuple(block.text for block in parse_markdown(a.body))
        return Callout(a.id, a.title, a.caption or "", paragraphs, tuple(links))


def view_text(selection: Selection) -> str:
    """What a view selects, as a page says it: 'layers 0, 1; positions 3' ('the whole run' for no selection)."""
    axes = (("layers", selection.layers), ("heads", selection.heads), ("positions", selection.positions))
    parts = [f"{name} {', '.join(map(str, sorted(chosen)))}" for name, chosen in axes if chosen is not None]
    return "; ".join(parts) or "the whole run"
