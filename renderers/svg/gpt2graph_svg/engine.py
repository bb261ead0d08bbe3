"""The page engine every SVG view lays out with: a vertical flow of *bands* framed by nested *panels*, over
fixed columns (a :class:`Frame`), with callouts kept level with the band they explain.

A band is a strip of diagram: everything a view draws inside ``with page.band(...)`` belongs to it, and the
callouts for the nodes it drew (and any extra ones given) go in the callout column beside it, or just below
the previous callout when the column is busy, with a leader line back. A panel is a tinted frame around
bands (nested panels are inset, and may be drawn as a deck of cards). The engine knows nothing of GPT-2:
the forward pass (:mod:`.sections`) and the analysis panels (:mod:`.panels`) are views drawn with it, and a
new view needs only a frame, a page and bands::

    frame = Frame(diagram_w=700)
    page = Page(frame, Content(graph, enabled=True))
    with page.panel("attention", "Patching", "effect of each head on the logit difference"):
        with page.band("attention"):
            page.label(page.wrapped(frame.gutter_x, page.y, "rows: layers", frame.gutter_w, FS["small"]))
            page.add(Group([Rect(Box(frame.diagram_x, page.y, 40, 14), "#ffffff")], node=some_node_id))
            page.y += 20
    scene = page.scene("title", "description")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gpt2graph.plugin import CATEGORY_COLOURS, tint

from . import colors as C
from .content import Callout, Content
from .scene import CELL_H, FS, PAD, Box, Group, Path, Rect, Scene, Text, text_at
from .text import line_height, width, wrap

__all__ = ["Frame", "Page", "colour_scale", "bottom", "MARGIN", "CALLOUT_W", "MIN_DIAGRAM_W"]

# ---- columns (px) ------------------------------------------------------------------------------------------
MARGIN = 28
PANEL_X = MARGIN + 24  # outermost panel's left edge
GUTTER_X = PANEL_X + 26  # row names and operation labels
GUTTER_W = 236
DIAGRAM_X = GUTTER_X + GUTTER_W + 18
MIN_DIAGRAM_W = 640
CALLOUT_W = 440
MAX_DRIFT = 90  # how far the callout column may run ahead of the diagram
PANEL_INSET = 7  # each nested panel's inset on both sides
BAR_H = 12  # a colour scale's bar


@dataclass(frozen=True)
class Frame:
    """The page's columns, left to right: panels' edge, the gutter (row names, operations), the diagram, the
    callouts."""

    diagram_w: float
    margin: float = MARGIN
    panel_x: float = PANEL_X
    gutter_x: float = GUTTER_X
    gutter_w: float = GUTTER_W
    diagram_x: float = DIAGRAM_X
    callout_w: float = CALLOUT_W

    @property
    def diagram_right(self) -> float:
        return self.diagram_x + self.diagram_w

    @property
    def panel_right(self) -> float:
        return self.diagram_right + 18

    @property
    def callout_x(self) -> float:
        return self.panel_right + 40

    @property
    def width(self) -> float:
        """The page's width: up to the callouts' right edge, or the panels' on a page without callouts
        (``callout_w=0``)."""
        return (self.callout_x + self.callout_w if self.callout_w else self.panel_right) + self.margin


class Page:
    """One page being laid out top to bottom: ``y`` is where the next thing goes."""

    def __init__(self, frame: Frame, content: Content):
        self.frame = frame
        self.content = content
        self.y = float(frame.margin)
        self.front: list[Group] = []  # the content
        self.back: list[Group] = []  # arrows, lanes, leaders: under the content
        self._panel_groups: list[tuple[int, Group]] = []  # (depth, panel): outer panels drawn first
        self._open: list[tuple[float, str, int]] = []  # (top, category, depth) of each open panel
        self._band_top = 0.0
        self._band_nodes: list[str] = []
        self.callout_y = 0.0  # where the callout column is free from

    # ---- drawing --------------------------------------------------------------------------------------
    def add(self, group: Group) -> Group:
        """Draw ``group`` in front; a group that draws a node counts for the callouts of the band."""
        self.front.append(group)
        if group.node is not None:
            self._band_nodes.append(group.node)
        return group

    def label(self, *texts: Text) -> None:
        self.front.append(Group(texts=list(texts)))

    def under(self, group: Group) -> None:
        """Draw ``group`` behind everything in front (arrows, lanes, leader lines)."""
        self.back.append(group)

    @staticmethod
    def wrapped(x: float, y: float, text: str, w: float, size: float, **style: Any) -> Text:
        """``text`` wrapped to width ``w``, its box's top at ``y``."""
        return text_at(x, y, wrap(text, w, size, style.get("bold", False)), size, **style)

    def note(self, x: float, y: float, text: str, w: float, size: float, gap: float = 8) -> Text:
        """A muted note (the key to what is drawn above it) at ``y``; the page continues ``gap`` below it."""
        t = self.wrapped(x, y, text, w, size, colour=C.MUTED)
        self.label(t)
        self.y = t.box.bottom + gap
        return t

    @property
    def depth(self) -> int:
        """How many panels are open."""
        return len(self._open)

    def panel_right(self) -> float:
        """The right edge inside the innermost open panel."""
        return self.frame.panel_right - PANEL_INSET * (self.depth - 1) - 10

    # ---- panels and bands -----------------------------------------------------------------------------
    @contextmanager
    def panel(
        self,
        category: str,
        title: str,
        subtitle: str = "",
        deck: int = 0,
        *,
        cls: str | None = None,
        data: dict[str, str] | None = None,
    ) -> Iterator[Text]:
        """A panel framing what is drawn inside; yields the last text of its title line (to set things
        beside). ``deck`` draws that many cards stacked behind it (the other heads); ``cls`` and ``data`` mark
        the title line's group, for a reader (or a test) to find what the panel shows. A subtitle that does not
        fit beside the title goes on the lines below it."""
        depth = self.depth
        self._open.append((self.y, category, depth))
        x = self.frame.panel_x + PANEL_INSET * depth + 10
        self.y += 6
        t = text_at(x, self.y, [title], FS["h2"], bold=True, colour=CATEGORY_COLOURS[category])
        texts = [t]
        bottom = t.box.bottom
        if subtitle:
            right = self.panel_right()
            if t.box.right + 10 + width(subtitle, FS["small"]) <= right:
                sub = text_at(t.box.right + 10, self.y + 2, [subtitle], FS["small"], colour=C.MUTED)
            else:
                sub = self.wrapped(x, bottom + 2, subtitle, right - x, FS["small"], colour=C.MUTED)
            texts.append(sub)
            bottom = max(bottom, sub.box.bottom)
        self.front.append(Group(texts=texts, cls=cls, data=data or {}))
        self.y = bottom + 8
        yield texts[-1]
        self._close_panel(deck)

    def _close_panel(self, deck: int) -> None:
        top, category, depth = self._open.pop()
        self.y += 8
        x0, x1 = self.frame.panel_x + PANEL_INSET * depth, self.frame.panel_right - PANEL_INSET * depth
        box = Box(x0, top, x1 - x0, self.y - top)
        colour = CATEGORY_COLOURS[category]
        group = Group(cls=f"panel {category}")
        for i in range(deck, 0, -1):  # cards stacked behind
            group.parts.append(
                Rect(Box(x0 + 5 * i, top - 5 * i, box.w, box.h), tint(colour, 0.1), tint(colour, 0.5), 0.8, 6)
            )
        group.parts.append(Rect(box, tint(colour, 0.06 + 0.03 * depth), tint(colour, 0.55), 1.2, 8))
        self._panel_groups.append((depth, group))
        self.y += 10

    @contextmanager
    def band(self, category: str, callouts: Callable[[], list[Callout]] | None = None) -> Iterator[None]:
        """A band of diagram: afterwards, the callouts for the nodes drawn in it (and ``callouts()``, asked
        for then) are set level with it, or just below the callout before, with a leader line back."""
        self._band_top = self.y
        self._band_nodes = []
        yield
        anchor = self._band_top + CELL_H / 2 + 2
        extra = callouts() if callouts is not None else []
        for c in self.content.callouts_for(self._band_nodes) + extra:
            self.callout_y = self._callout(c, max(self._band_top, self.callout_y), category, anchor) + 10
        self.y = max(self.y, self.callout_y - MAX_DRIFT)  # keep callouts near what they explain

    def _callout(self, c: Callout, y: float, category: str, anchor: float) -> float:
        f = self.frame
        x, w = f.callout_x + PAD + 4, f.callout_w - 2 * PAD - 4
        group = Group(cls="callout", data={"entry": c.entry} if c.entry else {})
        top = y
        y += PAD
        title = self.wrapped(x, y, c.title, w, FS["h2"], bold=True)
        group.texts.append(title)
        y = title.box.bottom + 2
        colour = CATEGORY_COLOURS[category]
        if c.caption:
            cap = self.wrapped(x, y, c.caption, w, FS["small"], italic=True, colour=colour)
            group.texts.append(cap)
            y = cap.box.bottom + 4
        for para in c.paragraphs:
            t = self.wrapped(x, y, para, w, FS["body"])
            group.texts.append(t)
            y = t.box.bottom + 4
        if c.note:
            t = self.wrapped(x, y, c.note, w, FS["small"], italic=True, colour=C.MUTED)
            group.texts.append(t)
            y = t.box.bottom + 4
        if c.links:
            lead = text_at(x, y, ["Read more:"], FS["small"], colour=C.MUTED)
            group.texts.append(lead)
            lx, lh = lead.box.right + 5, line_height(FS["small"])
            for i, link in enumerate(c.links):
                label = link.text + (" ·" if i < len(c.links) - 1 else "")
                lw = width(label, FS["small"])
                if lx + lw > x + w:
                    lx, y = x, y + lh
                group.texts.append(text_at(lx, y, [label], FS["small"], colour="#1a5fb4", href=link.url, tip=link.tip))
                lx += lw + 5
            y += lh + 2
        y += PAD - 4
        group.parts.append(Rect(Box(f.callout_x, top, f.callout_w, y - top), "#ffffff", C.RULE, 1, 6))
        group.parts.append(Rect(Box(f.callout_x, top, 4, y - top), colour, rx=2))
        leader_y = top + PAD + line_height(FS["h2"]) / 2
        self.under(
            Group(
                [
                    Path(f"M{f.panel_right + 2},{anchor} L{f.callout_x},{leader_y}", tint(colour, 0.6), 1, dash="3 3"),
                    Rect(Box(f.panel_right, anchor - 2, 4, 4), colour, rx=2),
                ]
            )
        )
        self.front.append(group)
        return y

    # ---- the result -----------------------------------------------------------------------------------
    def scene(self, title: str, description: str) -> Scene:
        """Everything drawn, as a scene whose height is where the page ends (callouts included)."""
        panels = [g for _, g in sorted(self._panel_groups, key=lambda dg: dg[0])]
        return Scene(self.frame.width, self.y, title, description, panels + self.back + self.front)


def _gradient_bar(x: float, y: float, w: float, ramp: Callable[[float], str], start: float) -> list[Rect]:
    """A colour scale as a bar of ``w`` px: ``ramp`` from ``start`` to 1."""
    steps = 40
    return [
        Rect(Box(x + w * i / steps, y, w / steps + 0.3, BAR_H), ramp(start + (1 - start) * (i + 0.5) / steps))
        for i in range(steps)
    ]


def colour_scale(
    x: float,
    y: float,
    w: float,
    ramp: Callable[[float], str],
    start: float,
    ticks: Sequence[tuple[float, str]],
    title: str = "",
    cls: str = "colour-scale",
) -> Group:
    """A colour scale with its ``title`` above and its ``ticks`` below: (where along the bar, 0 to 1; label),
    the end labels kept inside the bar's width. The group's lowest text is its bottom."""
    group = Group(cls=cls)
    if title:
        t = text_at(x, y, wrap(title, w, FS["small"], True), FS["small"], bold=True)
        group.texts.append(t)
        y = t.box.bottom + 3
    group.parts += _gradient_bar(x, y, w, ramp, start)
    y += BAR_H + 4
    for at, label in ticks:
        anchor = "start" if at <= 0 else "end" if at >= 1 else "middle"
        group.parts.append(Path(f"M{x + w * at},{y - 4} V{y - 1}", C.MUTED))
        group.texts.append(text_at(x + w * at, y, [label], FS["small"], anchor=anchor, colour=C.MUTED))
    return group


def bottom(group: Group) -> float:
    """The lowest point of ``group``'s texts and rectangles."""
    return max([t.box.bottom for t in group.texts] + [p.box.bottom for p in group.parts if isinstance(p, Rect)])
