"""The patching sweeps stored on a run (``graph.header.patching``) as heat maps: one per sweep, layer x position
(per-head kinds: layer x head, or head x position), each cell the normalised metric of the run patched there
(0: as the corrupted run, 1: as the clean one) on the diverging scale, with token labels and a colour bar.

It is a page of the shared engine (:mod:`.engine`): the title block, a panel per sweep (its notes in the gutter,
its heat map in the diagram, the method's callout level with it), the footer. A view (``graph.subgraph(...)``)
is drawn as it is: the rows and columns whose layer, head and position it holds, and how many it leaves out.

Every cell is a group with a tooltip giving the exact numbers and ``data-*`` attributes naming the sweep, the
row and the column (``data-sweep``, ``data-row``, ``data-col``, ``data-raw``, ``data-normalized``), like the
poster's node groups. Nothing is recomputed: the numbers are those stored with the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpt2graph.plugin import (
    CATEGORY_COLOURS,
    Axis,
    PatchSweep,
    RendererError,
    Selection,
    fixed,
    signed,
)

from . import colors as C
from .content import Content, view_text
from .engine import MIN_DIAGRAM_W, Frame, Page, bottom, colour_scale
from .furniture import footer, title_block
from .scene import FS, Box, Group, Rect, Scene, text_at
from .text import line_height, width

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["patching_scene"]

CELL = 34  # smallest width of a cell (px)
CELL_H = 21
SCALE_W = 260  # the colour bar
_DIRECTION = {
    "noising": "the corrupted run's vector put into the clean run: what the prediction needs",
    "denoising": "the clean run's vector put into the corrupted run: what is enough to restore it",
}
_METHOD = {
    "activation": "activation patching, one patched run per cell",
    "attribution": "attribution patching: the gradient estimate of every cell from one backward pass",
}
_CATEGORY = {"resid_pre": "residual", "mlp_out": "mlp"}  # the others patch attention


@dataclass(frozen=True)
class Table:
    """The part of a sweep a view holds: the rows and the columns (indices into the sweep's) whose layer, head
    and position it admits, and the heat map's geometry."""

    sweep: PatchSweep
    rows: list[int]
    cols: list[int]

    @classmethod
    def of(cls, sweep: PatchSweep, selection: Selection) -> Table:
        return cls(sweep, _admitted(sweep.rows, selection), _admitted(sweep.cols, selection))

    @property
    def col_lines(self) -> list[list[str]]:
        return [_col_label(self.sweep.cols.labels[c]) for c in self.cols]

    @property
    def cell_w(self) -> float:
        return max([CELL] + [width(line, FS["tiny"]) + 6 for lines in self.col_lines for line in lines])

    @property
    def row_w(self) -> float:
        return max((width(self.sweep.rows.labels[r], FS["small"]) for r in self.rows), default=0.0) + 8

    @property
    def width(self) -> float:
        return max(SCALE_W, self.row_w + len(self.cols) * self.cell_w)

    @property
    def whole(self) -> bool:
        return len(self.rows) == len(self.sweep.rows.labels) and len(self.cols) == len(self.sweep.cols.labels)


def _admitted(axis: Axis, selection: Selection) -> list[int]:
    def at(values: list[int] | None, i: int) -> int | None:
        return None if values is None else values[i]

    return [
        i
        for i in range(len(axis.labels))
        if selection.admits(at(axis.layers, i), at(axis.heads, i), at(axis.positions, i))
    ]


def patching_scene(graph: Graph, *, callouts: bool = True, title: str = "") -> Scene:
    """Lay out every stored sweep as the view holds it (a pure function of the graph)."""
    sweeps: list[PatchSweep] = list(graph.header.patching)
    if not sweeps:
        raise RendererError(
            "view 'patching' draws the patching sweeps stored on the graph, and it has none: run "
            "graph.patch_sweep(...) (or gpt2graph patch ... -o run.gg) first"
        )
    tables = [Table.of(s, graph.selection) for s in sweeps]
    page = Page(Frame(diagram_w=max(MIN_DIAGRAM_W, *(t.width for t in tables))), Content(graph, callouts))
    title = title or "Activation patching"
    title_block(
        page,
        graph,
        title,
        [
            *sorted({f"corrupted: “{s.corrupted_text}”" for s in sweeps}),
            f"{len(sweeps)} sweep{'s' * (len(sweeps) > 1)}; each cell: the metric with that vector (or head) "
            "patched, 0 = as the corrupted run, 1 = as the clean run",
        ],
    )
    for i, table in enumerate(tables):
        _sweep(page, graph, i, table)
    page.y = max(page.y, page.callout_y)
    footer(page)
    return page.scene(title, f"Patching sweeps of {graph.model.name} on {graph.tokenization.text!r}")


def _sweep(page: Page, graph: Graph, index: int, table: Table) -> None:
    """One sweep's panel: its notes in the gutter, its heat map and colour bar in the diagram."""
    sweep, content = table.sweep, page.content
    category = _CATEGORY.get(sweep.kind, "attention")
    entries = [("activation-patching", "Each cell of a heat map is one such run, scored at the last position.")]
    if sweep.method == "attribution":
        entries.append(("attribution-patching", "Sweeps marked 'attribution' are this estimate."))
    with (
        page.panel(
            category,
            f"{sweep.kind} · {sweep.method} · {sweep.direction}",
            f"{sweep.metric_text} at position {sweep.position}: clean {signed(sweep.clean_value)}, corrupted "
            f"{signed(sweep.corrupted_value)}",
            cls="sweep-heading",
            data={"sweep": str(index)},
        ),
        page.band(category, lambda: [c for e, note in entries for c in content.glossary_callout(e, note)]),
    ):
        top = page.y + 4
        gutter = _notes(page, graph, index, table, top)
        page.y = max(gutter, _heat_map(page, index, table, top)) + 10


def _notes(page: Page, graph: Graph, index: int, table: Table, y: float) -> float:
    """The gutter: how the sweep was made and what a cell shows (and what of it the view holds); returns its
    bottom."""
    x, w = page.frame.gutter_x, page.frame.gutter_w
    sweep = table.sweep
    if not table.whole:
        rows, cols = sweep.rows, sweep.cols
        t = page.wrapped(
            x,
            y,
            f"This view ({view_text(graph.selection)}) holds {len(table.rows)} of the {len(rows.labels)} rows "
            f"({rows.name}) and {len(table.cols)} of the {len(cols.labels)} columns ({cols.name}); the other cells "
            "are not drawn.",
            w,
            FS["small"],
            bold=True,
        )
        data = {"sweep": str(index), "rows": str(len(table.rows)), "cols": str(len(table.cols))}
        page.front.append(Group(texts=[t], cls="view-note", data=data))
        y = t.box.bottom + 8
    for note in (
        f"{_METHOD[sweep.method]}; {_DIRECTION[sweep.direction]}.",
        f"against “{sweep.corrupted_text}”; cells show (metric − corrupted) / (clean − corrupted).",
    ):
        t = page.note(x, y, note, w, FS["small"], gap=4)
        y = t.box.bottom + 4
    return y


def _heat_map(page: Page, index: int, table: Table, y: float) -> float:
    """The heat map of the cells the view holds, under its axis names and column labels, and its colour bar;
    returns its bottom."""
    x = page.frame.diagram_x
    sweep = table.sweep
    rows, cols = sweep.rows, sweep.cols
    if not table.rows or not table.cols:
        t = page.wrapped(x, y, "No cell of this sweep is inside this view.", page.frame.diagram_w, FS["body"])
        page.label(t)
        return t.box.bottom
    cw, row_w, col_lines = table.cell_w, table.row_w, table.col_lines
    axis = Group(cls="sweep-axes", data={"sweep": str(index)})
    axis.texts.append(text_at(x, y, [f"rows: {rows.name}, columns: {cols.name}"], FS["tiny"], colour=C.MUTED))
    y += line_height(FS["tiny"]) + 4
    for i, lines in enumerate(col_lines):
        axis.texts.append(text_at(x + row_w + i * cw + cw / 2, y, lines, FS["tiny"], anchor="middle"))
    top = y + line_height(FS["tiny"]) * max(len(lines) for lines in col_lines) + 4
    values = [sweep.normalized[r][c] for r in table.rows for c in table.cols]
    for i, r in enumerate(table.rows):
        label, cy = rows.labels[r], top + i * CELL_H
        axis.texts.append(text_at(x + row_w - 4, cy + 3, [label], FS["small"], anchor="end", colour=C.MUTED))
        for j, c in enumerate(table.cols):
            col, value, raw = cols.labels[c], sweep.normalized[r][c], sweep.raw[r][c]
            fill = C.diverging(value)
            cell = Box(x + row_w + j * cw, cy, cw - 1, CELL_H - 1)
            text = text_at(
                cell.x + cell.w / 2, cell.y + 4, [fixed(value, 2)], FS["cell"], anchor="middle", colour=C.ink_on(fill)
            )
            page.front.append(
                Group(
                    parts=[Rect(cell, fill)],
                    texts=[text],
                    tip=f"{rows.name} {label}, {cols.name} {col}: normalised {value:.6g}, metric {raw:.6g} (clean "
                    f"{sweep.clean_value:.6g}, corrupted {sweep.corrupted_value:.6g})",
                    cls="patch-cell",
                    data={"sweep": str(index), "row": label, "col": col, "raw": repr(raw), "normalized": repr(value)},
                )
            )
    page.front.append(axis)
    end = top + len(table.rows) * CELL_H
    outline = Box(x + row_w - 1, top - 1, len(table.cols) * cw + 1, end - top + 1)
    page.front.append(Group([Rect(outline, "none", CATEGORY_COLOURS["residual"], 0.6)]))
    scale = colour_scale(
        x,
        end + 12,
        SCALE_W,
        C.diverging,
        -1.0,
        [(0.0, "−1"), (0.5, "0 = corrupted"), (1.0, "1 = clean")],
        title="normalised metric" + clamp_note(values),
        cls="colour-bar",
    )
    page.front.append(scale)
    return bottom(scale)


def clamp_note(values: list[float]) -> str:
    """Say how far beyond the colour scale the values reach, if they do."""
    outside = [v for v in values if abs(v) >= 1.005]  # beyond what rounds to ±1.00
    return f"; {len(outside)} beyond ±1 (up to {fixed(max(outside, key=abs), 2)}) drawn at the ends" if outside else ""


def _col_label(label: str) -> list[str]:
    """A column label on two lines: the index, then the token (and its corrupted counterpart) or the head."""
    first, _, rest = label.partition(" ")
    return [first, rest] if rest else [first]
