"""The diagram's rows: one lane per token position shown, a strip of coloured cells per vector in each lane,
and between rows the operation that made the next one (its name and parameters in the gutter, an arrow down
each lane). The forward pass and the decoding stage are drawn as rows; so can any view of per-position
vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpt2graph.plugin import CATEGORY_COLOURS, VECTOR_SPECS, Key, tint

from . import colors as C
from .engine import DIAGRAM_X, MIN_DIAGRAM_W, Page
from .scene import CELL_H, CELL_W, COL_W, FS, MARKER_W, Box, Group, Path, Rect, text_at
from .text import fit, line_height, width
from .tips import Tips

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["Lanes", "Rows", "SAMPLE_HEAD", "SAMPLE_TAIL", "sample_indices", "times"]

SAMPLE_HEAD, SAMPLE_TAIL = 6, 2
ELLIPSIS_W = 14


def sample_indices(d: int) -> tuple[list[int], int | None]:
    """Components drawn for a vector of length ``d`` and where the ellipsis goes (after that many cells)."""
    if d <= SAMPLE_HEAD + SAMPLE_TAIL + 2:
        return list(range(d)), None
    return list(range(SAMPLE_HEAD)) + list(range(d - SAMPLE_TAIL, d)), SAMPLE_HEAD


def times(*parts: object) -> str:
    return " × ".join(map(str, parts))


@dataclass(frozen=True)
class Lanes:
    """One column per position shown (``x``: its left edge), a narrow gap where positions are skipped
    (``gaps``: the gap's middle); ``width`` is the diagram's width they need."""

    positions: tuple[int, ...]
    x: dict[int, float]
    gaps: tuple[float, ...]
    width: float

    @classmethod
    def of(cls, positions: Sequence[int], x0: float = DIAGRAM_X) -> Lanes:
        xs: dict[int, float] = {}
        gaps: list[float] = []
        x = 0.0
        for i, p in enumerate(positions):
            if i and p != positions[i - 1] + 1:
                gaps.append(x0 + x + 12)
                x += 24
            xs[p] = x0 + x
            x += COL_W
        return cls(tuple(positions), xs, tuple(gaps), max(x, MIN_DIAGRAM_W))


class Rows:
    """Rows of vectors on a page, one strip per lane, each with its operation and its name in the gutter."""

    def __init__(self, page: Page, lanes: Lanes, graph: Graph, tips: Tips):
        self.page = page
        self.lanes = lanes
        self.g = graph
        self.top = graph.topology
        self.tips = tips

    def label(self, y: float, name: str, caption: str, category: str, extra: str = "") -> float:
        """A row's name, caption and an extra line in the gutter; returns their bottom."""
        f, page = self.page.frame, self.page
        t = page.wrapped(
            f.gutter_x, y, name, f.gutter_w, FS["body"] + 0.5, bold=True, colour=CATEGORY_COLOURS[category]
        )
        texts = [t]
        c = page.wrapped(f.gutter_x, t.box.bottom, caption, f.gutter_w, FS["small"], colour=C.MUTED)
        texts.append(c)
        bottom = c.box.bottom
        if extra:
            e = page.wrapped(f.gutter_x, bottom, extra, f.gutter_w, FS["tiny"], colour=C.MUTED)
            texts.append(e)
            bottom = e.box.bottom
        page.label(*texts)
        return bottom

    def caption(self, space: str) -> str:
        """The shape of a row of ``space`` vectors, from the run."""
        n, d = self.g.n_tokens, self.g.dims
        dim = {
            "residual": ("d_model", d.d_model),
            "head": ("d_head", d.d_head),
            "mlp": ("d_mlp", d.d_mlp),
            "vocab": ("n_vocab", d.n_vocab),
            "scalar": ("1", 1),
        }[space]
        shown = "" if len(self.lanes.positions) == n else f" ({len(self.lanes.positions)} positions shown)"
        return f"n_tokens × {dim[0]} = {times(n, dim[1])}{shown}"

    def operation(self, label: str, params: Sequence[Key] = (), note: str = "", arrows: bool = True) -> None:
        """An operation between two rows: its name and parameters in the gutter, arrows down each lane."""
        page, f = self.page, self.page.frame
        top = page.y + 4
        colour = CATEGORY_COLOURS["operation"]
        t = page.wrapped(f.gutter_x, top, label, f.gutter_w, FS["small"], bold=True, colour=colour)
        page.label(t)
        y = t.box.bottom + 2
        if note:
            n = page.wrapped(f.gutter_x, y, note, f.gutter_w, FS["tiny"], colour=C.MUTED)
            page.label(n)
            y = n.box.bottom + 2
        x = f.gutter_x
        ch = line_height(FS["tiny"]) + 4
        for key in params:
            text = self._param_label(key)
            w = width(text, FS["tiny"]) + 10
            if x + w > f.gutter_x + f.gutter_w:
                x, y = f.gutter_x, y + ch + 3
            node = self.top.param_id(key)
            parameter = CATEGORY_COLOURS["parameter"]
            page.add(
                Group(
                    [Rect(Box(x, y, w, ch), tint(parameter, 0.18), parameter, 0.8, 3)],
                    [text_at(x + 5, y + 2, [text], FS["tiny"], colour=C.TEXT)],
                    node=node,
                    tip=self.tips.parameter(node),
                    cls="node parameter",
                )
            )
            x += w + 4
        if params:
            y += ch
        bottom = max(y + 4, top + 22)
        if arrows:
            for cx in self.lanes.x.values():
                mx = cx + MARKER_W + 4 + 46
                page.under(Group([Path(f"M{mx},{top - 2} V{bottom - 3}", C.RULE, 1.2, arrow=True)]))
        page.y = bottom

    def _param_label(self, key: Key) -> str:
        name = key.kind + ("" if key.head is None else f"[{key.head}]")
        return f"{name}: {times(*self.top.param_shape(key))}"

    def vectors(
        self,
        kind: str,
        layer: int | None,
        name: str,
        category: str,
        head: int | None = None,
        below: dict[int, str] | None = None,
    ) -> None:
        """One strip per lane, coloured on one scale per row (its largest |value|), captioned with the row's
        shape, with a text ``below`` some strips."""
        page, lanes = self.page, self.lanes
        keys = {p: Key(kind, layer, head, p) for p in lanes.positions}
        ids = {p: self.top.vector_id(k) for p, k in keys.items()}
        vals = {p: self.g.values(i).double() for p, i in ids.items()}
        # tokens a decoding filter removed are -inf: drawn as masked cells, outside the colour scale
        scale = max(float(v.masked_fill(v.isinf(), 0).abs().max()) for v in vals.values()) or 1.0
        top = page.y + 2
        bottom = self.label(top, name, self.caption(VECTOR_SPECS[kind].space), category, f"colour scale ±{scale:.3g}")
        d = len(next(iter(vals.values())))
        idx, gap = sample_indices(d)
        cell_w = min(CELL_W, (COL_W - MARKER_W - 20) / len(idx))
        strip_bottom = top + CELL_H
        for i, p in enumerate(lanes.positions):
            x0 = lanes.x[p] + MARKER_W + 4
            self.marker(keys[p], lanes.x[p], top)
            group = Group(node=ids[p], tip=self.tips.vector(ids[p]), cls=f"node vector {category}")
            cx = x0
            for j, comp in enumerate(idx):
                if gap is not None and j == gap:
                    group.parts.append(
                        Path(f"M{cx + 3},{top + CELL_H / 2} H{cx + ELLIPSIS_W - 3}", C.MUTED, 1, dash="1.5 2")
                    )
                    cx += ELLIPSIS_W
                t = float(vals[p][comp]) / scale
                fill = C.MASKED if t == float("-inf") else C.diverging(t)
                group.parts.append(Rect(Box(cx, top, cell_w, CELL_H), fill, "#ffffff", 0.5))
                cx += cell_w
            group.parts.append(Rect(Box(x0, top, cx - x0, CELL_H), "none", CATEGORY_COLOURS[category], 0.9, 1.5))
            y = top + CELL_H + 1
            if i == 0:  # index labels under the first lane only: the others share them
                first = text_at(x0 + cell_w / 2, y, ["0"], FS["tiny"], anchor="middle", colour=C.MUTED)
                group.texts.append(first)
                if gap is not None:
                    group.texts.append(
                        text_at(
                            x0 + cell_w * (gap - 0.5), y, [str(gap - 1)], FS["tiny"], anchor="middle", colour=C.MUTED
                        )
                    )
                if d > 1:
                    group.texts.append(text_at(cx, y, [str(d - 1)], FS["tiny"], anchor="end", colour=C.MUTED))
                y += line_height(FS["tiny"])
            if below and p in below:
                group.texts.append(
                    text_at(x0, y, [fit(below[p], COL_W - MARKER_W - 8, FS["tiny"])], FS["tiny"], colour=C.TEXT)
                )
                y += line_height(FS["tiny"])
            strip_bottom = max(strip_bottom, y)
            page.add(group)
        page.y = max(bottom, strip_bottom) + 6

    def marker(self, out: Key, x: float, y: float) -> None:
        """The operation producing ``out``, left of its strip (when the operation is in the view)."""
        op_id = self.top.op_id(out)
        if op_id not in self.g:
            return
        colour = CATEGORY_COLOURS["operation"]
        d = f"M{x + 1},{y + 2} L{x + MARKER_W - 1},{y + CELL_H / 2} L{x + 1},{y + CELL_H - 2} Z"
        self.page.add(
            Group([Path(d, colour, 1, fill=colour)], node=op_id, tip=self.tips.operation(op_id), cls="node operation")
        )
