"""The map of heads: every head of the view coloured by one metric of the analysis (direct logit attribution,
a role score or the OV copying score), with its colour scale, and a chip in that colour beside each head the
forward pass draws in full."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gpt2graph.plugin import fixed

from . import colors as C
from .engine import Page, bottom, colour_scale
from .readout import HEAD_METRIC, Readout
from .scene import FS, Box, Group, Path, Rect, Text, text_at
from .text import line_height, width

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["HeadMap"]

#: glossary entry explaining each head colouring
HEAD_GLOSSARY = {
    "dla": "direct-logit-attribution",
    "previous_token": "previous-token-head",
    "induction": "induction-head",
    "copying": "ov-circuit",
    "first_token": "attention-sink",
    "current_token": "attention-pattern",
}


class HeadMap:
    """Every head of the view coloured by one metric of the analysis (DLA, a role score, the OV copying
    score): a map of layers x heads, its colour scale, and a chip beside each head drawn in full."""

    def __init__(self, page: Page, graph: Graph, readout: Readout, metric: str, drawn: Iterable[int], head: int):
        self.page, self.frame = page, page.frame
        self.g, self.readout, self.metric = graph, readout, metric
        self.drawn, self.head = set(drawn), head  # the blocks and the head drawn in full, outlined on the map
        sel, d = graph.selection, graph.dims
        self.layers = sorted(sel.layers) if sel.layers is not None else list(range(d.n_layer))
        self.heads = sorted(sel.heads) if sel.heads is not None else list(range(d.n_head))
        self.values = {(L, h): readout.head_value(metric, L, h) for L in self.layers for h in self.heads}
        self.scale = max((abs(v) for v in self.values.values() if v is not None), default=0.0) or 1.0

    def fill(self, value: float | None) -> str:
        """A head's colour: diverging around 0 for DLA, the 0–1 attention scale for scores."""
        if value is None:
            return C.MASKED
        if self.metric == "dla":
            return C.diverging(value / self.scale)
        return C.sequential(value)

    def text(self, value: float | None) -> str:
        """A head's value as its cell shows it: scores with two decimals; DLA with as many as give the largest
        two significant digits, so every cell of the map has the same width of number."""
        if value is None:
            return "n/a"
        if self.metric != "dla":
            return fixed(value, 2)
        digits = max(0, 1 - math.floor(math.log10(self.scale)))
        text = fixed(value, digits)
        return text if text == "0" or text.startswith("−") else "+" + text

    def panel(self) -> None:
        """Layers × heads, one cell per head coloured by the chosen metric, with its scale."""
        metric, layers, heads = self.metric, self.layers, self.heads
        with (
            self.page.panel(
                "attention", "Heads", f"{len(layers)} layers × {len(heads)} heads, coloured by {HEAD_METRIC[metric]}"
            ),
            self.page.band("attention", lambda: self.page.content.glossary_callout(HEAD_GLOSSARY[metric])),
        ):
            top = self.page.y + 4
            gutter = self.page.wrapped(
                self.frame.gutter_x,
                top,
                f"rows: layers L{layers[0]}–L{layers[-1]} · columns: heads "
                f"H{heads[0]}–H{heads[-1]} · outlined: the head drawn in full above; hover a cell for "
                "all its scores",
                self.frame.gutter_w,
                FS["small"],
                colour=C.MUTED,
            )
            self.page.label(gutter)
            label_w = width(f"L{layers[-1]}", FS["small"]) + 8
            cell = max(14.0, min(36.0, (self.frame.diagram_w - label_w) / len(heads)))
            x0 = self.frame.diagram_x + label_w
            self.page.label(
                *[
                    text_at(
                        x0 + cell * (i + 0.5),
                        top,
                        [f"H{h}" if width(f"H{h}", FS["tiny"]) < cell - 2 else str(h)],
                        FS["tiny"],
                        anchor="middle",
                        colour=C.MUTED,
                    )
                    for i, h in enumerate(heads)
                ]
            )
            y0 = top + line_height(FS["tiny"]) + 2
            for row, L in enumerate(layers):
                y = y0 + row * cell
                self.page.label(
                    text_at(
                        x0 - 6,
                        y + (cell - line_height(FS["small"])) / 2,
                        [f"L{L}"],
                        FS["small"],
                        anchor="end",
                        colour=C.MUTED,
                    )
                )
                for col, h in enumerate(heads):
                    v = self.values[L, h]
                    fill = self.fill(v)
                    box = Box(x0 + col * cell, y, cell, cell)
                    g = Group(
                        [Rect(box, fill, "#ffffff", 1)],
                        tip=self.readout.head_tip(L, h),
                        cls="head-cell",
                        data={"layer": str(L), "head": str(h), "value": "" if v is None else repr(v)},
                    )
                    text = self.text(v)
                    if cell >= 24 and width(text, FS["cell"]) <= cell - 3:
                        g.texts.append(
                            text_at(
                                box.x + cell / 2,
                                y + (cell - line_height(FS["cell"])) / 2,
                                [text],
                                FS["cell"],
                                anchor="middle",
                                colour=C.ink_on(fill),
                            )
                        )
                    if L in self.drawn and h == self.head:
                        g.parts.append(Rect(Box(box.x + 1, y + 1, cell - 2, cell - 2), "none", C.TEXT, 1.6))
                    self.page.front.append(g)
            self.page.y = max(gutter.box.bottom, y0 + len(layers) * cell) + 10
            self._legend(x0, min(cell * len(heads), self.frame.diagram_right - x0))

    def _legend(self, x: float, w: float) -> None:
        """The head map's colour scale with its numbers (and the chance level of a role score)."""
        w = max(w, 240.0)
        y = self.page.y
        group = Group(cls="head-scale")
        if self.metric == "dla":
            m = self.scale
            scale = colour_scale(x, y, w, C.diverging, -1.0, [(0.0, f"−{m:.3g}"), (0.5, "0"), (1.0, f"+{m:.3g}")])
            what = (
                "sum of each head's direct logit attribution to the " + self.readout.metric() + " at position "
                f"{self.g.analysis.dla.position}: red raises it, blue lowers it (scale: the largest |value|)"
            )
        else:
            scale = colour_scale(x, y, w, C.sequential, 0.0, [(0.0, "0"), (0.5, "0.5"), (1.0, "1")])
            what = (
                "share of the eigenvalue mass of the full OV circuit that is positive: near 1, the head copies "
                "what it attends to"
                if self.metric == "copying"
                else "mean attention to the key the role "
                f"picks out ({self.g.analysis.roles.source}); grey: undefined on this sequence"
            )
        group.parts += scale.parts
        group.texts += scale.texts
        y = bottom(scale) + 2
        chance = self.g.analysis.roles.chance.get(self.metric)  # None for dla and copying
        if chance is not None:
            cx = x + w * chance
            group.parts.append(Path(f"M{cx},{self.page.y - 2} V{self.page.y + 14}", C.TEXT, 1.5))
            group.texts.append(
                text_at(
                    min(max(cx, x + 40), x + w - 40),
                    y,
                    [f"▲ chance {chance:.3f}"],
                    FS["small"],
                    anchor="middle",
                    colour=C.TEXT,
                )
            )
            y += line_height(FS["small"]) + 2
        t = self.page.wrapped(x, y, what, self.frame.diagram_right - x, FS["small"])
        group.texts.append(t)
        self.page.front.append(group)
        self.page.y = t.box.bottom + 8

    def chip(self, layer: int, head: int, after: Text) -> None:
        """A swatch in the head map's colour beside the title of a head drawn in full, with its value."""
        v = self.values[layer, head]
        text = f"{HEAD_METRIC[self.metric]}: {self.text(v)}"
        tw = width(text, FS["small"])
        x, y = after.box.right + 14, after.box.y
        right = self.page.panel_right()
        if x + 18 + tw > right:  # no room on the title line: a line of its own
            x, y = self.frame.gutter_x, self.page.y
            self.page.y += line_height(FS["small"]) + 4
        self.page.front.append(
            Group(
                [Rect(Box(x, y + 1, 12, 12), self.fill(v), C.TEXT, 0.8, 2)],
                [text_at(x + 18, y, [text], FS["small"])],
                tip=self.readout.head_tip(layer, head),
                cls="head-chip",
                data={"layer": str(layer), "head": str(head)},
            )
        )
