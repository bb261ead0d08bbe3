"""The patching sweeps stored on a run (``graph.header.patching``) as heat maps: one per sweep, layer x position
(per-head kinds: layer x head, or head x position), each cell the normalised metric of the run patched there
(0: as the corrupted run, 1: as the clean one) on the diverging scale, with token labels and a colour bar.

Every cell is a group with a tooltip giving the exact numbers and ``data-*`` attributes naming the sweep, the
row and the column (``data-sweep``, ``data-row``, ``data-col``, ``data-raw``, ``data-normalized``), like the
poster's node groups. Nothing is recomputed: the numbers are those stored with the run.
"""

from __future__ import annotations

from typing import Any

from gpt2graph.plugin import CATEGORY_COLOURS, PatchSweep, RendererError, fixed, signed

from . import colors as C
from .causal_page import MARGIN, Page, clamp_note
from .scene import FS, Box, Group, Rect, Scene, text_at
from .text import line_height, width

__all__ = ["patching_scene"]

CELL = 34  # smallest side of a cell (px)
_DIRECTION = {
    "noising": "the corrupted run's vector put into the clean run: what the prediction needs",
    "denoising": "the clean run's vector put into the corrupted run: what is enough to restore it",
}
_METHOD = {
    "activation": "activation patching, one patched run per cell",
    "attribution": "attribution patching: the gradient estimate of every cell from one backward pass",
}


def patching_scene(graph: Any, *, callouts: bool = True, title: str = "") -> Scene:
    """Lay out every stored sweep (a pure function of the graph)."""
    sweeps: list[PatchSweep] = list(graph.header.patching)
    if not sweeps:
        raise RendererError(
            "view 'patching' draws the patching sweeps stored on the graph, and it has none: run "
            "graph.patch_sweep(...) (or gpt2graph patch ... -o run.gg) first"
        )
    page = Page(graph, callouts)
    page.header(
        title or "Activation patching",
        [
            f"clean: {graph.tokenization.text!r}",
            *sorted({f"corrupted: {s.corrupted_text!r}" for s in sweeps}),
            f"{graph.model.name} · {graph.n_tokens} tokens · {len(sweeps)} sweep{'s' * (len(sweeps) > 1)}",
        ],
        900,
    )
    for i, sweep in enumerate(sweeps):
        _sweep(page, i, sweep)
    x, bottom = MARGIN, page.y
    for entry, note in (
        ("activation-patching", "Each cell of a heat map is one such run, scored at the last position."),
        ("attribution-patching", "Sweeps marked 'attribution' are this estimate."),
    ):
        if entry == "attribution-patching" and not any(s.method == "attribution" for s in sweeps):
            continue
        bottom = max(bottom, page.callout(entry, x, page.y, 320, "residual", note))
        x += 340
    return Scene(page.right + MARGIN, bottom + MARGIN, title or "Activation patching", _description(graph), page.groups)


def _description(graph: Any) -> str:
    return f"Patching sweeps of {graph.model.name} on {graph.tokenization.text!r}"


def _metric(sweep: PatchSweep) -> str:
    if sweep.metric == "logit_diff":
        return f"logit({sweep.answer}) − logit({sweep.wrong})"
    return f"p({sweep.answer})"


def _sweep(page: Page, index: int, sweep: PatchSweep) -> None:
    """One sweep's heading, heat map and colour bar at the page's next line."""
    x, y = MARGIN, page.y
    heading = Group(cls="sweep-heading", data={"sweep": str(index)})
    h = page.text(x, y, f"{sweep.kind} · {sweep.method} · {sweep.direction}", 900, FS["h1"], bold=True)
    notes = [
        f"{_METHOD[sweep.method]}; {_DIRECTION[sweep.direction]}.",
        f"metric {_metric(sweep)} at position {sweep.position}: clean {signed(sweep.clean_value)}, corrupted "
        f"{signed(sweep.corrupted_value)}; cells show (metric − corrupted) / (clean − corrupted).",
    ]
    heading.texts.append(h)
    y = h.box.bottom + 3
    for note in notes:
        t = page.text(x, y, note, 900, FS["small"], colour=C.MUTED)
        heading.texts.append(t)
        y = t.box.bottom + 1
    page.groups.append(heading)
    y += 10

    rows, cols = sweep.rows, sweep.cols
    col_lines = [_col_label(label) for label in cols.labels]
    cw = max(CELL, *(width(line, FS["tiny"]) + 6 for lines in col_lines for line in lines))
    row_w = max(width(label, FS["small"]) for label in rows.labels) + 8
    label_h = line_height(FS["tiny"]) * max(len(lines) for lines in col_lines) + 4
    axis = Group(cls="sweep-axes", data={"sweep": str(index)})
    axis.texts.append(text_at(x, y, [f"rows: {rows.name}, columns: {cols.name}"], FS["tiny"], colour=C.MUTED))
    y += line_height(FS["tiny"]) + 4
    for c, lines in enumerate(col_lines):
        axis.texts.append(text_at(x + row_w + c * cw + cw / 2, y, lines, FS["tiny"], anchor="middle"))
    top = y + label_h
    values = [v for row in sweep.normalized for v in row]
    for r, label in enumerate(rows.labels):
        cy = top + r * CELL * 0.62
        axis.texts.append(text_at(x + row_w - 4, cy + 3, [label], FS["small"], anchor="end", colour=C.MUTED))
        for c, col in enumerate(cols.labels):
            value, raw = sweep.normalized[r][c], sweep.raw[r][c]
            fill = C.diverging(value)
            cell = Box(x + row_w + c * cw, cy, cw - 1, CELL * 0.62 - 1)
            page.groups.append(
                Group(
                    parts=[Rect(cell, fill)],
                    texts=[
                        text_at(
                            cell.x + cell.w / 2,
                            cell.y + 4,
                            [fixed(value, 2)],
                            FS["cell"],
                            anchor="middle",
                            colour=C.ink_on(fill),
                        )
                    ],
                    tip=f"{rows.name} {label}, {cols.name} {col}: normalised {value:.6g}, metric {raw:.6g} (clean "
                    f"{sweep.clean_value:.6g}, corrupted {sweep.corrupted_value:.6g})",
                    cls="patch-cell",
                    data={
                        "sweep": str(index),
                        "row": label,
                        "col": col,
                        "raw": repr(raw),
                        "normalized": repr(value),
                    },
                )
            )
    page.groups.append(axis)
    bottom = top + len(rows.labels) * CELL * 0.62
    right = x + row_w + len(cols.labels) * cw
    page.groups.append(
        Group(
            parts=[
                Rect(
                    Box(x + row_w - 1, top - 1, right - x - row_w + 1, bottom - top + 1),
                    "none",
                    CATEGORY_COLOURS["residual"],
                    0.6,
                )
            ]
        )
    )
    bar_y = page.colour_bar(
        x,
        bottom + 12,
        "normalised metric" + clamp_note(values),
        {-1.0: "−1", 0.0: "0 = corrupted", 1.0: "1 = clean"},
    )
    page.y = bar_y + 26


def _col_label(label: str) -> list[str]:
    """A column label on two lines: the index, then the token (and its corrupted counterpart) or the head."""
    first, _, rest = label.partition(" ")
    return [first, rest] if rest else [first]
