"""What the pages of causal experiments share (the patching heat maps, the circuit view): a header naming the two
runs and the weights, callout boxes explaining a method from the glossary, and the diverging colour bar."""

from __future__ import annotations

from typing import Any

from gpt2graph.plugin import CATEGORY_COLOURS, fixed

from . import colors as C
from .content import Callout, Content
from .scene import FS, PAD, Box, Group, Rect, Text, text_at
from .text import line_height, width, wrap

__all__ = ["Page", "MARGIN", "clamp_note"]

MARGIN = 24


class Page:
    """Groups laid out top to bottom, ``y`` the next free line; ``right`` the widest extent so far."""

    def __init__(self, graph: Any, callouts: bool = True):
        self.graph = graph
        self.groups: list[Group] = []
        self.y = MARGIN
        self.right = 640.0
        self.content = Content(graph, callouts)

    def text(self, x: float, y: float, text: str, w: float, size: float, **style: Any) -> Text:
        t = text_at(x, y, wrap(text, w, size, style.get("bold", False)), size, **style)
        self.right = max(self.right, t.box.right)
        return t

    def header(self, title: str, lines: list[str], w: float) -> None:
        """The title, lines about the runs, and a banner saying whether the weights are trained."""
        head = Group(cls="page-header")
        t = self.text(MARGIN, self.y, title, w, FS["title"], bold=True)
        head.texts.append(t)
        y = t.box.bottom + 6
        for line in lines:
            t = self.text(MARGIN, y, line, w, FS["body"], colour=C.MUTED)
            head.texts.append(t)
            y = t.box.bottom + 2
        self.groups.append(head)
        m = self.graph.model
        if self.graph.random_weights:
            seed = "unknown seed" if m.weights.seed is None else f"seed {m.weights.seed}"
            msg = f"RANDOM WEIGHTS ({seed}): this model was never trained; every number here is exact and meaningless."
            fill = C.WARNING
        else:
            msg = f"Pretrained weights ({m.name})."
            fill = CATEGORY_COLOURS["mlp"]
        t = self.text(MARGIN + 12, y + 14, msg, w - 24, FS["h2"], bold=True, colour="#ffffff")
        self.groups.append(Group([Rect(Box(MARGIN, y + 6, w, t.box.h + 16), fill, rx=6)], [t], cls="weights-banner"))
        self.right = max(self.right, MARGIN + w)
        self.y = t.box.bottom + 8 + 18

    def callout(self, entry_id: str, x: float, y: float, w: float, category: str, note: str = "") -> float:
        """A glossary entry as a boxed callout (term, summary, ``note`` about this page, a link to its source) at
        (x, y), ``w`` wide; returns its bottom (``y`` when callouts are off)."""
        found = self.content.glossary_callout(entry_id)
        if not found:
            return y
        c: Callout = found[0]
        group = Group(cls="callout", data={"entry": entry_id})
        inner, top = w - 2 * PAD - 4, y
        y += PAD
        for text, size, style in (
            (c.title, FS["h2"], {"bold": True}),
            *((p, FS["body"], {}) for p in c.paragraphs),
            *(((note, FS["small"], {"italic": True, "colour": C.MUTED}),) if note else ()),
        ):
            t = self.text(x + PAD + 4, y, text, inner, size, **style)
            group.texts.append(t)
            y = t.box.bottom + 4
        for link in c.links:
            label = f"Read more: {link.text}"
            if width(label, FS["small"]) > inner:
                label = wrap(label, inner, FS["small"])[0]
            group.texts.append(
                text_at(x + PAD + 4, y, [label], FS["small"], colour="#1a5fb4", href=link.url, tip=link.tip)
            )
            y += line_height(FS["small"]) + 2
        y += PAD - 4
        group.parts.append(Rect(Box(x, top, w, y - top), "#ffffff", C.RULE, 1, 6))
        group.parts.append(Rect(Box(x, top, 4, y - top), CATEGORY_COLOURS[category], rx=2))
        self.groups.append(group)
        self.right = max(self.right, x + w)
        return y

    def colour_bar(self, x: float, y: float, title: str, ticks: dict[float, str], w: float = 240) -> float:
        """The diverging scale from -1 to 1 as a strip of swatches with labelled ticks; returns its bottom."""
        group = Group(cls="colour-bar")
        group.texts.append(text_at(x, y, [title], FS["small"], bold=True))
        y += line_height(FS["small"]) + 3
        steps = 48
        for i in range(steps):
            t = -1 + 2 * (i + 0.5) / steps
            group.parts.append(Rect(Box(x + i * w / steps, y, w / steps + 0.3, 10), C.diverging(t)))
        group.parts.append(Rect(Box(x, y, w, 10), "none", C.RULE, 0.8))
        for value, label in ticks.items():
            tx = x + (value + 1) / 2 * w
            group.parts.append(Rect(Box(tx - 0.5, y + 10, 1, 4), C.MUTED))
            group.texts.append(text_at(tx, y + 15, [label], FS["tiny"], anchor="middle", colour=C.MUTED))
        self.groups.append(group)
        self.right = max(self.right, x + w + 40)
        return y + 15 + line_height(FS["tiny"])


def clamp_note(values: list[float]) -> str:
    """Say how far beyond the colour scale the values reach, if they do."""
    outside = [v for v in values if abs(v) >= 1.005]  # beyond what rounds to ±1.00
    return f"; {len(outside)} beyond ±1 (up to {fixed(max(outside, key=abs), 2)}) drawn at the ends" if outside else ""
