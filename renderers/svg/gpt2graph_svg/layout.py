"""Where everything goes: a pure function from a graph (and the options) to a :class:`Scene` of positioned
shapes and measured text. Nothing here knows SVG; :mod:`draw` turns a scene into a document.

The page reads top to bottom as the forward pass runs. Three columns: a gutter naming each row of vectors
(with its shape computed from the run), the diagram (one lane per token position, one strip of coloured cells
per vector), and the callouts beside the band they explain. Every band is as tall as the taller of its
diagram and its callouts, so a callout always sits level with the part it explains.

Every text item carries the box it occupies (measured with the font the SVG names); ``Scene.texts()`` lists
them all so that a test can check that no two overlap. The panels after the forward pass (decoding, and the
analysis when the graph has one) are laid out by :mod:`panels` with the same bands and columns.
"""

from __future__ import annotations

from typing import Any

from gpt2graph.plugin import (
    CATEGORY_COLOURS,
    CATEGORY_LABELS,
    LAYERNORMS,
    VECTOR_SPECS,
    DecodingResult,
    Key,
    fixed,
    tint,
)

from . import colors as C
from .content import Callout, Content
from .panels import Panels
from .readout import Readout
from .scene import CELL_H, CELL_W, COL_W, FS, MARKER_W, PAD, Box, Group, Path, Rect, Scene, Text, text_at
from .text import fit, line_height, width, wrap

__all__ = ["layout", "SAMPLE_HEAD", "SAMPLE_TAIL", "sample_indices"]

# ---- geometry constants (px) -------------------------------------------------------------------------
MARGIN = 28
LANE_X = MARGIN + 8  # the residual stream drawn as one line down the left edge
PANEL_X = MARGIN + 24  # outermost panel's left edge
GUTTER_X = PANEL_X + 26  # row names and operation labels
GUTTER_W = 236
SAMPLE_HEAD, SAMPLE_TAIL = 6, 2
ELLIPSIS_W = 14
MIN_DIAGRAM_W = 640
CALLOUT_W = 440
MAX_DRIFT = 90  # how far the callout column may run ahead of the diagram


def sample_indices(d: int) -> tuple[list[int], int | None]:
    """Components drawn for a vector of length ``d`` and where the ellipsis goes (after that many cells)."""
    if d <= SAMPLE_HEAD + SAMPLE_TAIL + 2:
        return list(range(d)), None
    return list(range(SAMPLE_HEAD)) + list(range(d - SAMPLE_TAIL, d)), SAMPLE_HEAD


def _times(*parts: object) -> str:
    return " × ".join(map(str, parts))


# ---- the layout --------------------------------------------------------------------------------------
class _Layout(Panels):
    gutter_x, gutter_w, col_w = GUTTER_X, GUTTER_W, COL_W  # for the panels

    def __init__(
        self,
        graph: Any,
        layers: list[int],
        head: int,
        positions: list[int],
        callouts: bool,
        title: str,
        decoding: DecodingResult,
        decoding_stored: bool,
        head_color: str | None,
    ):
        self.g = graph
        self.top = graph.topology
        self.d = graph.dims
        self.layers = layers
        self.head = head
        self.positions = positions
        self.content = Content(graph, callouts)
        self.title = title
        self.decoding = decoding
        self.decoding_stored = decoding_stored
        self.readout = Readout(graph)
        self.head_color = head_color
        # the view's layers and heads (a whole graph: every one), for what is drawn per head
        sel = graph.selection
        self.view_layers = sorted(sel.layers) if sel.layers is not None else list(range(self.d.n_layer))
        self.view_heads = sorted(sel.heads) if sel.heads is not None else list(range(self.d.n_head))
        self.head_values = (
            {}
            if head_color is None
            else {(L, h): self.readout.head_value(head_color, L, h) for L in self.view_layers for h in self.view_heads}
        )
        self.head_scale = max((abs(v) for v in self.head_values.values() if v is not None), default=0.0) or 1.0
        self.tokens = list(graph.tokenization.tokens_visible)

        # columns: one per shown position, a narrow gap where positions are skipped
        self.col_x: dict[int, float] = {}
        self.gaps: list[float] = []
        x = 0.0
        for i, p in enumerate(positions):
            if i and p != positions[i - 1] + 1:
                self.gaps.append(x + 12)
                x += 24
            self.col_x[p] = x
            x += COL_W
        self.diagram_w = max(x, MIN_DIAGRAM_W)
        self.dx = GUTTER_X + GUTTER_W + 18  # diagram's left edge
        self.col_x = {p: self.dx + cx for p, cx in self.col_x.items()}
        self.gaps = [self.dx + gx for gx in self.gaps]
        self.diagram_right = self.dx + self.diagram_w
        self.panel_right = self.diagram_right + 18
        self.cx = self.panel_right + 40  # callout column
        self.width = self.cx + CALLOUT_W + MARGIN

        self.y = float(MARGIN)
        self.panel_groups: list[tuple[int, Group]] = []  # (depth, panel): outer panels drawn first
        self.back: list[Group] = []  # arrows, lanes, leaders: under the content
        self.front: list[Group] = []
        self.panels: list[tuple[float, str, int]] = []
        self.band_top = 0.0
        self.callout_y = 0.0  # where the callout column is free from
        self.band_nodes: list[str] = []
        self.lane_marks: list[tuple[float, str]] = []  # (y, "read" | "add") on the residual lane
        self.lane_top: float | None = None
        self.lane_bottom = 0.0

    # ---- small builders ---------------------------------------------------------------------------
    def add(self, group: Group) -> Group:
        self.front.append(group)
        if group.node is not None:
            self.band_nodes.append(group.node)
        return group

    def label(self, *texts: Text) -> None:
        self.front.append(Group(texts=list(texts)))

    def wrapped(self, x: float, y: float, text: str, w: float, size: float, **style: Any) -> Text:
        return text_at(x, y, wrap(text, w, size, style.get("bold", False)), size, **style)

    # ---- bands and panels ---------------------------------------------------------------------------
    def begin_band(self) -> None:
        self.band_top = self.y
        self.band_nodes = []

    def end_band(self, category: str, extra: list[Callout] | None = None) -> None:
        """Callouts for what the band drew, level with it or, when the column is busy, just below the last
        callout, with a leader line back to the band."""
        anchor = self.band_top + CELL_H / 2 + 2
        for c in self.content.callouts_for(self.band_nodes) + (extra or []):
            self.callout_y = self.callout(c, max(self.band_top, self.callout_y), category, anchor) + 10
        self.y = max(self.y, self.callout_y - MAX_DRIFT)  # keep callouts near what they explain

    def open_panel(self, category: str, title: str, subtitle: str = "") -> Text:
        """Start a panel; returns the last text of its title line, for anything to be set beside it."""
        depth = len(self.panels)
        self.panels.append((self.y, category, depth))
        x = PANEL_X + 7 * depth + 10
        self.y += 6
        t = text_at(x, self.y, [title], FS["h2"], bold=True, colour=CATEGORY_COLOURS[category])
        texts = [t]
        if subtitle:
            texts.append(text_at(t.box.right + 10, self.y + 2, [subtitle], FS["small"], colour=C.MUTED))
        self.label(*texts)
        self.y += t.box.h + 8
        return texts[-1]

    def close_panel(self, deck: int = 0) -> None:
        top, category, depth = self.panels.pop()
        self.y += 8
        x0, x1 = PANEL_X + 7 * depth, self.panel_right - 7 * depth
        box = Box(x0, top, x1 - x0, self.y - top)
        group = Group(cls=f"panel {category}")
        for i in range(deck, 0, -1):  # the other heads, as cards stacked behind
            group.parts.append(
                Rect(
                    Box(x0 + 5 * i, top - 5 * i, box.w, box.h),
                    tint(CATEGORY_COLOURS[category], 0.1),
                    tint(CATEGORY_COLOURS[category], 0.5),
                    0.8,
                    6,
                )
            )
        group.parts.append(
            Rect(
                box,
                tint(CATEGORY_COLOURS[category], 0.06 + 0.03 * depth),
                tint(CATEGORY_COLOURS[category], 0.55),
                1.2,
                8,
            )
        )
        self.panel_groups.append((depth, group))
        self.y += 10

    def callout(self, c: Callout, y: float, category: str, anchor: float) -> float:
        x, w = self.cx + PAD + 4, CALLOUT_W - 2 * PAD - 4
        group = Group(cls="callout")
        top = y
        y += PAD
        title = self.wrapped(x, y, c.title, w, FS["h2"], bold=True)
        group.texts.append(title)
        y = title.box.bottom + 2
        if c.caption:
            cap = self.wrapped(x, y, c.caption, w, FS["small"], italic=True, colour=CATEGORY_COLOURS[category])
            group.texts.append(cap)
            y = cap.box.bottom + 4
        for para in c.paragraphs:
            t = self.wrapped(x, y, para, w, FS["body"])
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
        group.parts.append(Rect(Box(self.cx, top, CALLOUT_W, y - top), "#ffffff", C.RULE, 1, 6))
        group.parts.append(Rect(Box(self.cx, top, 4, y - top), CATEGORY_COLOURS[category], rx=2))
        leader_y = top + PAD + line_height(FS["h2"]) / 2
        colour = CATEGORY_COLOURS[category]
        self.back.append(
            Group(
                [
                    Path(f"M{self.panel_right + 2},{anchor} L{self.cx},{leader_y}", tint(colour, 0.6), 1, dash="3 3"),
                    Rect(Box(self.panel_right, anchor - 2, 4, 4), colour, rx=2),
                ]
            )
        )
        self.front.append(group)
        return y

    # ---- gutter labels ------------------------------------------------------------------------------
    def row_label(self, y: float, name: str, caption: str, category: str, extra: str = "") -> float:
        t = self.wrapped(GUTTER_X, y, name, GUTTER_W, FS["body"] + 0.5, bold=True, colour=CATEGORY_COLOURS[category])
        texts = [t]
        c = self.wrapped(GUTTER_X, t.box.bottom, caption, GUTTER_W, FS["small"], colour=C.MUTED)
        texts.append(c)
        bottom = c.box.bottom
        if extra:
            e = self.wrapped(GUTTER_X, bottom, extra, GUTTER_W, FS["tiny"], colour=C.MUTED)
            texts.append(e)
            bottom = e.box.bottom
        self.label(*texts)
        return bottom

    def connector(self, label: str, params: list[Key] = (), note: str = "", arrows: bool = True) -> None:
        """An operation between two rows: its name and parameters in the gutter, arrows down each lane."""
        top = self.y + 4
        t = self.wrapped(GUTTER_X, top, label, GUTTER_W, FS["small"], bold=True, colour=CATEGORY_COLOURS["operation"])
        self.label(t)
        y = t.box.bottom + 2
        if note:
            n = self.wrapped(GUTTER_X, y, note, GUTTER_W, FS["tiny"], colour=C.MUTED)
            self.label(n)
            y = n.box.bottom + 2
        x = GUTTER_X
        ch = line_height(FS["tiny"]) + 4
        for key in params:
            text = self.param_label(key)
            w = width(text, FS["tiny"]) + 10
            if x + w > GUTTER_X + GUTTER_W:
                x, y = GUTTER_X, y + ch + 3
            node = self.top.param_id(key)
            self.add(
                Group(
                    [
                        Rect(
                            Box(x, y, w, ch),
                            tint(CATEGORY_COLOURS["parameter"], 0.18),
                            CATEGORY_COLOURS["parameter"],
                            0.8,
                            3,
                        )
                    ],
                    [text_at(x + 5, y + 2, [text], FS["tiny"], colour=C.TEXT)],
                    node=node,
                    tip=self.param_tip(node),
                    cls="node parameter",
                )
            )
            x += w + 4
        if params:
            y += ch
        bottom = max(y + 4, top + 22)
        if arrows:
            for cx in self.col_x.values():
                mx = cx + MARKER_W + 4 + 46
                self.back.append(Group([Path(f"M{mx},{top - 2} V{bottom - 3}", C.RULE, 1.2, arrow=True)]))
        self.y = bottom

    def param_label(self, key: Key) -> str:
        name = key.kind + ("" if key.head is None else f"[{key.head}]")
        return f"{name}: {_times(*self.top.param_shape(key))}"

    # ---- vector rows --------------------------------------------------------------------------------
    def vector_row(
        self,
        kind: str,
        layer: int | None,
        name: str,
        caption: str,
        category: str,
        head: int | None = None,
        below: dict[int, str] | None = None,
    ) -> None:
        """One strip per shown position, coloured on one scale per row (its largest |value|)."""
        keys = {p: Key(kind, layer, head, p) for p in self.positions}
        ids = {p: self.top.vector_id(k) for p, k in keys.items()}
        vals = {p: self.g.values(i).double() for p, i in ids.items()}
        # tokens a decoding filter removed are -inf: drawn as masked cells, outside the colour scale
        scale = max(float(v.masked_fill(v.isinf(), 0).abs().max()) for v in vals.values()) or 1.0
        top = self.y + 2
        bottom = self.row_label(top, name, caption, category, f"colour scale ±{scale:.3g}")
        d = len(next(iter(vals.values())))
        idx, gap = sample_indices(d)
        cell_w = min(CELL_W, (COL_W - MARKER_W - 20) / len(idx))
        strip_bottom = top + CELL_H
        for i, p in enumerate(self.positions):
            x0 = self.col_x[p] + MARKER_W + 4
            self.op_marker(keys[p], self.col_x[p], top)
            group = Group(node=ids[p], tip=self.vector_tip(ids[p]), cls=f"node vector {category}")
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
            self.add(group)
        self.y = max(bottom, strip_bottom) + 6

    def op_marker(self, out: Key, x: float, y: float) -> None:
        """The operation producing ``out``, left of its strip (when the operation is in the view)."""
        op_id = self.top.op_id(out)
        if op_id not in self.g:
            return
        colour = CATEGORY_COLOURS["operation"]
        d = f"M{x + 1},{y + 2} L{x + MARKER_W - 1},{y + CELL_H / 2} L{x + 1},{y + CELL_H - 2} Z"
        self.add(Group([Path(d, colour, 1, fill=colour)], node=op_id, tip=self.op_tip(op_id), cls="node operation"))

    # ---- tooltips -----------------------------------------------------------------------------------
    def vector_tip(self, node_id: str) -> str:
        n = self.g.node(node_id)
        where = [
            f"layer {n.layer}" if n.layer is not None else "",
            f"head {n.head}" if n.head is not None else "",
            f"position {n.position} ({self.tokens[n.position]})" if n.position is not None else "",
        ]
        s = n.summary
        stats = (
            f"norm {s.norm:.4g} · mean {s.mean:.3g} · std {s.std:.3g} · min {s.min:.3g} · max {s.max:.3g}" if s else ""
        )
        return "\n".join(
            x
            for x in [
                node_id,
                f"{n.kind} · " + " · ".join(w for w in where if w),
                f"shape {n.shape}" + (f" · hook {n.hook}" if n.hook else ""),
                stats,
                *self.readout.notes(node_id),
            ]
            if x
        )

    def op_tip(self, op_id: str) -> str:
        op = self.g.node(op_id)
        edges = self.g.edges(op_id)
        ins = [e.source for e in edges if e.role == "input"]
        params = [e.source for e in edges if e.role == "parameter"]
        shown = ", ".join(ins[:4]) + (f" and {len(ins) - 4} more" if len(ins) > 4 else "")
        lines = [op_id, f"{op.kind} ({op.stage})", f"inputs: {shown}" if ins else ""]
        if params:
            lines.append("parameters: " + ", ".join(params))
        return "\n".join(x for x in lines if x)

    def param_tip(self, node_id: str) -> str:
        p = self.g.node(node_id)
        extra = f" · tied to {p.tied_to}" + (" (transposed)" if p.transposed else "") if p.tied_to else ""
        return "\n".join(
            [
                f"{node_id}\nparameter {p.kind} · shape {p.shape} · {p.n_params:,} values{extra}",
                *self.readout.notes(node_id),
            ]
        )

    # ---- captions -----------------------------------------------------------------------------------
    def caption(self, space: str) -> str:
        n, d = self.g.n_tokens, self.d
        dim = {
            "residual": ("d_model", d.d_model),
            "head": ("d_head", d.d_head),
            "mlp": ("d_mlp", d.d_mlp),
            "vocab": ("n_vocab", d.n_vocab),
            "scalar": ("1", 1),
        }[space]
        shown = "" if len(self.positions) == n else f" ({len(self.positions)} positions shown)"
        return f"n_tokens × {dim[0]} = {_times(n, dim[1])}{shown}"

    # ---- sections -----------------------------------------------------------------------------------
    def title_block(self) -> None:
        m, tok = self.g.model, self.g.tokenization
        x, w = MARGIN, self.width - 2 * MARGIN
        t = self.wrapped(x, self.y, self.title, w, FS["title"], bold=True)
        self.label(t)
        self.y = t.box.bottom + 6
        d = self.d
        facts = (
            f"model {m.name} ({m.architecture}) · {m.total_parameters:,} parameters · {d.n_layer} layers × "
            f"{d.n_head} heads · d_model {d.d_model} · d_head {d.d_head} · d_mlp {d.d_mlp} · "
            f"n_ctx {d.n_ctx} · n_vocab {d.n_vocab} · {m.dtype}"
        )
        f = self.wrapped(x, self.y, facts, w, FS["body"] + 1, colour=C.MUTED)
        prompt = self.wrapped(
            x, f.box.bottom + 4, f"prompt: “{tok.text}” → {self.g.n_tokens} tokens", w, FS["h1"], bold=True
        )
        date = text_at(
            x,
            prompt.box.bottom + 4,
            [
                f"captured {self.g.header.created} · gpt2graph "
                f"{self.g.header.gpt2graph_version} · values exact from one "
                f"forward pass"
            ],
            FS["small"],
            colour=C.MUTED,
        )
        self.label(f, prompt, date)
        self.y = date.box.bottom + 10
        if self.g.random_weights:
            seed = "unknown seed" if m.weights.seed is None else f"seed {m.weights.seed}"
            msg = (
                f"RANDOM WEIGHTS ({seed}): this model was never trained. The structure and "
                f"the arithmetic are exact, but every value and prediction shown is meaningless."
            )
            fill = C.WARNING
        else:
            msg = "Pretrained weights: the values below are those of the trained model."
            fill = "#2f8a4e"
        t = self.wrapped(x + 14, self.y + 9, msg, w - 28, FS["h2"] + 1, bold=True, colour="#ffffff")
        self.front.append(Group([Rect(Box(x, self.y, w, t.box.h + 18), fill, rx=6)], [t], cls="weights-banner"))
        self.y = t.box.bottom + 9 + 16

    def legend_block(self) -> None:
        x0, w_all = MARGIN, self.width - 2 * MARGIN
        top = self.y
        col_w = (w_all - 2 * 14) / 3
        # categories
        x, y = x0 + PAD, top + PAD
        group = Group(cls="legend")
        group.texts.append(text_at(x, y, ["Legend"], FS["h2"], bold=True))
        y += line_height(FS["h2"]) + 4
        for cat, label in CATEGORY_LABELS.items():
            group.parts.append(
                Rect(Box(x, y + 1, 14, 11), tint(CATEGORY_COLOURS[cat], 0.25), CATEGORY_COLOURS[cat], 1.2, 2)
            )
            group.texts.append(text_at(x + 20, y, [label], FS["body"]))
            y += line_height(FS["body"]) + 3
        bottom = y
        # colour scales
        x = x0 + col_w + 14 + PAD
        y = top + PAD
        group.texts.append(text_at(x, y, ["Colour scales"], FS["h2"], bold=True))
        y += line_height(FS["h2"]) + 6
        bar_w = col_w - 2 * PAD
        group.parts += self.gradient_bar(x, y, bar_w, C.diverging, -1.0)
        y += 16
        for label, anchor, lx in (("−max", "start", x), ("0", "middle", x + bar_w / 2), ("+max", "end", x + bar_w)):
            group.texts.append(text_at(lx, y, [label], FS["small"], anchor=anchor, colour=C.MUTED))
        y += line_height(FS["small"]) + 2
        t = self.wrapped(
            x,
            y,
            "Vector cells: value ÷ the row's largest |value| (each row gives its max as "
            "'colour scale ±…'); blue negative, red positive.",
            bar_w,
            FS["small"],
        )
        group.texts.append(t)
        y = t.box.bottom + 8
        group.parts += self.gradient_bar(x, y, bar_w, C.sequential, 0.0)
        y += 16
        for label, anchor, lx in (("0", "start", x), ("1", "end", x + bar_w)):
            group.texts.append(text_at(lx, y, [label], FS["small"], anchor=anchor, colour=C.MUTED))
        y += line_height(FS["small"]) + 2
        t = self.wrapped(
            x,
            y,
            "Attention weights (pattern). Raw scores use the blue–red scale; masked future positions are grey.",
            bar_w,
            FS["small"],
        )
        group.texts.append(t)
        bottom = max(bottom, t.box.bottom)
        # how to read
        x = x0 + 2 * (col_w + 14) + PAD
        y = top + PAD
        group.texts.append(text_at(x, y, ["How to read it"], FS["h2"], bold=True))
        y += line_height(FS["h2"]) + 4
        n_show = SAMPLE_HEAD + SAMPLE_TAIL
        for line in (
            f"One lane per token position; each strip is one vector. Long vectors show {n_show} of "
            f"their components: the first {SAMPLE_HEAD}, a gap, the last {SAMPLE_TAIL}, with index "
            "labels under the first lane.",
            "▶ marks the operation that produced the vector to its right. Hover any element for its "
            "graph node id and statistics (the id is also in its data-node attribute).",
            "Ġ marks a token's leading space and Ċ a newline, as GPT-2's tokenizer stores them.",
            "Indices (layer, head, position) start at 0.",
        ):
            t = self.wrapped(x, y, line, col_w - 2 * PAD, FS["small"])
            group.texts.append(t)
            y = t.box.bottom + 4
        bottom = max(bottom, y)
        for i in range(3):
            group.parts.insert(
                0, Rect(Box(x0 + i * (col_w + 14), top, col_w, bottom - top + PAD), "#ffffff", C.RULE, 1, 6)
            )
        self.front.append(group)
        self.y = bottom + PAD + 14
        term = self.content.terminology() if self.content.enabled else None
        if term is not None:
            group = Group(cls="terminology")
            x, w = x0 + PAD, w_all - 2 * PAD
            y = self.y + PAD
            t = text_at(x, y, [term.title], FS["h2"], bold=True)
            group.texts.append(t)
            if term.caption:
                group.texts.append(
                    text_at(t.box.right + 10, y + 2, [term.caption], FS["small"], italic=True, colour=C.MUTED)
                )
            y = t.box.bottom + 4
            for para in term.paragraphs:
                p = self.wrapped(x, y, para, w, FS["body"])
                group.texts.append(p)
                y = p.box.bottom + 4
            group.parts.append(Rect(Box(x0, self.y, w_all, y - self.y + PAD - 4), "#ffffff", C.RULE, 1, 6))
            self.front.append(group)
            self.y = y + PAD + 14

    def gradient_bar(self, x: float, y: float, w: float, ramp, start: float) -> list[Rect]:
        steps = 40
        return [
            Rect(Box(x + w * i / steps, y, w / steps + 0.3, 12), ramp(start + (1 - start) * (i + 0.5) / steps))
            for i in range(steps)
        ]

    def input_section(self) -> None:
        self.begin_band()
        tok = self.g.tokenization
        top = self.y
        self.row_label(top, "input text", f"{len(tok.text)} characters", "tokenizer")
        box_w = self.diagram_w
        lines = wrap(tok.text, box_w - 2 * PAD, FS["h1"])
        if len(lines) > 4:
            lines = [*lines[:3], fit(lines[3] + " …", box_w - 2 * PAD, FS["h1"])]
        t = text_at(self.dx + PAD, top + 6, lines, FS["h1"], colour=C.TEXT)
        self.front.append(
            Group(
                [
                    Rect(
                        Box(self.dx, top, box_w, t.box.h + 12),
                        tint(CATEGORY_COLOURS["tokenizer"], 0.1),
                        CATEGORY_COLOURS["tokenizer"],
                        1,
                        6,
                    )
                ],
                [t],
                cls="prompt",
            )
        )
        self.y = top + t.box.h + 12
        # the tokenizer: one operation producing every token
        top = self.y + 4
        t = self.wrapped(
            GUTTER_X,
            top,
            "tokenize: GPT-2 byte-level BPE",
            GUTTER_W,
            FS["small"],
            bold=True,
            colour=CATEGORY_COLOURS["operation"],
        )
        self.label(t)
        bottom = top + 30
        tokenize = self.top.op_id(Key("token", None, None, 0))
        fan = Group(node=tokenize, tip=self.op_tip(tokenize), cls="node operation")
        mid = self.dx + self.diagram_w / 2
        for cx in self.col_x.values():
            tx = cx + COL_W / 2 - 2
            fan.parts.append(
                Path(
                    f"M{mid},{top - 4} C{mid},{top + 14} {tx},{top + 10} {tx},{bottom - 3}",
                    CATEGORY_COLOURS["tokenizer"],
                    1.2,
                    arrow=True,
                )
            )
        self.add(fan)
        self.y = bottom
        # tokens
        top = self.y + 2
        self.row_label(top, "tokens", f"n_tokens = {self.g.n_tokens} · ids in [0, {self.d.n_vocab})", "tokenizer")
        chip_w = COL_W - 14
        for p in self.positions:
            x = self.col_x[p] + 7
            node = self.top.vector_id(Key("token", None, None, p))
            label = fit(self.tokens[p], chip_w - 8, FS["h2"] + 0.5, bold=True)
            group = Group(
                [
                    Rect(
                        Box(x, top, chip_w, 26),
                        tint(CATEGORY_COLOURS["tokenizer"], 0.2),
                        CATEGORY_COLOURS["tokenizer"],
                        1.2,
                        5,
                    )
                ],
                [
                    text_at(x + chip_w / 2, top + 4, [label], FS["h2"] + 0.5, anchor="middle", bold=True),
                    text_at(
                        x + chip_w / 2,
                        top + 29,
                        [f"pos {p} · id {tok.token_ids[p]}"],
                        FS["small"],
                        anchor="middle",
                        colour=C.MUTED,
                    ),
                ],
                node=node,
                tip=f"{node}\ntoken {tok.tokens_visible[p]!r} (text {tok.tokens[p]!r}) · "
                f"id {tok.token_ids[p]} · position {p}",
                cls="node vector tokenizer",
            )
            self.add(group)
        self.y = top + 29 + line_height(FS["small"]) + 8
        self.end_band("tokenizer")

    def embedding_section(self) -> None:
        self.open_panel("residual", "Embeddings", "two table lookups, added")
        self.begin_band()
        ids = self.g.tokenization.token_ids
        self.connector("lookup: row token_id of W_E", [Key("W_E")])
        self.vector_row(
            "token_embedding",
            None,
            "token embedding W_E[id]",
            self.caption("residual"),
            "residual",
            below={p: f"row {ids[p]}" for p in self.positions},
        )
        self.end_band("residual")
        self.begin_band()
        self.connector("lookup: row position of W_pos", [Key("W_pos")])
        self.vector_row("pos_embedding", None, "positional embedding W_pos[p]", self.caption("residual"), "residual")
        self.end_band("residual")
        self.begin_band()
        self.connector("add: W_E[id] + W_pos[p]")
        self.stream_row(0)
        self.end_band("residual")
        self.close_panel()

    def stream_row(self, block: int) -> None:
        """The residual stream entering ``block`` (``n_layer``: leaving the last block), when it is in the view."""
        kind, layer, _, _ = self.top.stream(block, 0)
        if self.top.vector_id(Key(kind, layer, None, self.positions[0])) not in self.g:
            return
        name = {
            "input_embedding": "input embedding = residual stream into block 0",
            "resid_pre": f"residual stream into block {block} (resid_pre)",
            "resid_post": f"residual stream after block {block - 1} (resid_post)",
        }[kind]
        mark_y = self.y + CELL_H / 2 + 2
        self.vector_row(kind, layer, name, self.caption("residual"), "residual")
        self.lane_mark(mark_y, "add")

    def layernorm(self, which: str, layer: int | None, category: str) -> None:
        """A LayerNorm as its three steps, one row each: the scale, the normalised vector, the output."""
        scale, normalized, out = LAYERNORMS[which]
        self.connector("scale: σ = √(var(x) + ε), one number per position")
        hook = {kind: VECTOR_SPECS[kind].hook_point for kind in LAYERNORMS[which]}
        self.vector_row(scale, layer, f"{which} scale σ ({hook[scale]})", self.caption("scalar"), category)
        self.connector("normalise: (x − mean(x)) / σ")
        name = f"{which} normalised ({hook[normalized]})"
        self.vector_row(normalized, layer, name, self.caption("residual"), category)
        self.connector(f"gain and bias: × {which}_w + {which}_b", [Key(f"{which}_w", layer), Key(f"{which}_b", layer)])
        self.vector_row(out, layer, f"{which} output ({hook[out]})", self.caption("residual"), category)

    def lane_mark(self, y: float, what: str) -> None:
        self.lane_marks.append((y, what))
        self.lane_top = y if self.lane_top is None else self.lane_top
        self.lane_bottom = max(self.lane_bottom, y)

    def block(self, L: int) -> None:
        d, h = self.d, self.head
        self.open_panel("residual", f"Block {L}", f"layer {L} of {d.n_layer} (0-based)")
        # attention
        self.open_panel("attention", "Attention", f"{d.n_head} heads in parallel, each reading the normalised stream")
        self.begin_band()
        self.lane_mark(self.y + 8, "read")
        self.layernorm("ln1", L, "attention")
        self.end_band("attention")
        self.y += 14
        title = self.open_panel(
            "attention",
            f"Head {h}",
            f"head {h} of {d.n_head} (0-based) shown; the other "
            f"{d.n_head - 1} are stacked behind and work the same way",
        )
        if self.head_color is not None:
            self.head_chip(L, h, title)
        self.begin_band()
        self.connector(
            "per-head projections: q = x·W_Q + b_Q, k = x·W_K + b_K, v = x·W_V + b_V",
            [Key(k, L, h) for k in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V")],
        )
        for kind in ("q", "k", "v"):
            self.vector_row(
                kind, L, {"q": "query q", "k": "key k", "v": "value v"}[kind], self.caption("head"), "attention", head=h
            )
        self.end_band("attention")
        self.begin_band()
        self.attention_matrices(L, h)
        self.end_band("attention")
        self.begin_band()
        self.connector("weighted sum: z[p] = Σ_j pattern[p, j] · v[j]")
        self.vector_row("z", L, "z (result vector)", self.caption("head"), "attention", head=h)
        self.end_band("attention")
        self.begin_band()
        self.connector("output projection: z · W_O[h]", [Key("W_O", L, h)])
        self.vector_row("head_out", L, f"head {h} output", self.caption("residual"), "attention", head=h)
        self.end_band("attention")
        self.close_panel(deck=min(3, d.n_head - 1))
        self.begin_band()
        self.connector(f"sum over all {d.n_head} heads + b_O", [Key("b_O", L)])
        self.vector_row("attn_out", L, "attention output attn_out", self.caption("residual"), "attention")
        self.end_band("attention")
        self.close_panel()
        self.begin_band()
        self.connector("add to the stream: resid_mid = stream in + attn_out")
        mark_y = self.y + CELL_H / 2 + 2
        self.vector_row("resid_mid", L, "resid_mid", self.caption("residual"), "residual")
        self.lane_mark(mark_y, "add")
        self.end_band("residual")
        # MLP
        self.open_panel("mlp", "MLP", "position-wise: every token goes through the same two-layer network")
        self.begin_band()
        self.lane_mark(self.y + 8, "read")
        self.layernorm("ln2", L, "mlp")
        self.end_band("mlp")
        self.begin_band()
        self.connector("up-projection: x·W_in + b_in", [Key("W_in", L), Key("b_in", L)])
        self.vector_row("mlp_pre", L, "mlp_pre (neuron pre-activations)", self.caption("mlp"), "mlp")
        self.end_band("mlp")
        self.begin_band()
        self.connector("GELU, elementwise")
        self.vector_row("mlp_post", L, "mlp_post (neuron activations)", self.caption("mlp"), "mlp")
        self.end_band("mlp")
        self.begin_band()
        self.connector("down-projection: x·W_out + b_out", [Key("W_out", L), Key("b_out", L)])
        self.vector_row("mlp_out", L, "MLP output mlp_out", self.caption("residual"), "mlp")
        self.end_band("mlp")
        self.close_panel()
        self.begin_band()
        self.connector("add to the stream: resid_mid + mlp_out")
        self.stream_row(L + 1)
        self.end_band("residual")
        self.close_panel()

    def attention_matrices(self, L: int, h: int) -> None:
        """Scores (causal dot products) and pattern (row softmax) as triangular heat maps with token labels."""
        pos = self.positions
        m = len(pos)
        labels = [fit(f"{p} {self.tokens[p]}", 96, FS["small"]) for p in pos]
        label_w = max(width(s, FS["small"]) for s in labels) + 6
        avail = (self.diagram_w - 90 - 2 * label_w - 2 * 16) / 2
        cell = max(6.0, min(34.0, avail / m))
        top = self.y + 6
        self.connector("scaled dot products q·k/√d_head, causal mask; then softmax per row", arrows=False)
        top = max(top, self.y)
        mat_w = cell * m
        block_w = label_w + mat_w + 16
        x_left = self.dx
        sides = (
            ("scores", x_left, "attention scores q·k/√d_head"),
            ("pattern", x_left + block_w + 90, "attention pattern (softmax)"),
        )
        headings = [
            self.wrapped(x0, top, heading, block_w, FS["small"], bold=True, colour=CATEGORY_COLOURS["attention"])
            for _, x0, heading in sides
        ]
        self.label(*headings)
        matrix_top = max(h.box.bottom for h in headings) + 2
        bottoms = []
        for which, x0, _ in sides:
            y0 = matrix_top
            if cell >= 11:
                self.label(
                    *[
                        text_at(
                            x0 + label_w + cell * (j + 0.5), y0, [str(p)], FS["tiny"], anchor="middle", colour=C.MUTED
                        )
                        for j, p in enumerate(pos)
                    ]
                )
                y0 += line_height(FS["tiny"])
            kind = "attn_scores" if which == "scores" else "attn_pattern"
            rows = {q: self.g.values(self.top.vector_id(Key(kind, L, h, q))).double() for q in pos}
            scale = max(float(r.abs().max()) for r in rows.values()) or 1.0
            numbers = {}
            if cell >= 20:
                digits = 2 if which == "pattern" or scale < 1 else 1
                numbers = {(q, k): fixed(float(rows[q][k]), digits) for q in pos for k in pos if k <= q}
                if any(width(s, FS["cell"]) > cell - 3 for s in numbers.values()):
                    numbers = {}
            for i, q in enumerate(pos):
                key = Key(kind, L, h, q)
                node = self.top.vector_id(key)
                y = y0 + i * cell
                group = Group(node=node, tip=self.vector_tip(node), cls=f"node vector attention {which}")
                for j, k in enumerate(pos):
                    box = Box(x0 + label_w + j * cell, y, cell, cell)
                    if k > q:
                        group.parts.append(Rect(box, C.MASKED, "#ffffff", 0.6))
                        continue
                    v = float(rows[q][k])
                    fill = C.sequential(v) if which == "pattern" else C.diverging(v / scale)
                    group.parts.append(Rect(box, fill, "#ffffff", 0.6))
                    if (q, k) in numbers:
                        group.texts.append(
                            text_at(
                                box.x + cell / 2,
                                y + (cell - line_height(FS["cell"])) / 2,
                                [numbers[q, k]],
                                FS["cell"],
                                anchor="middle",
                                colour=C.ink_on(fill),
                            )
                        )
                group.texts.append(
                    text_at(
                        x0 + label_w - 4,
                        y + (cell - line_height(FS["small"])) / 2,
                        [labels[i]],
                        FS["small"],
                        anchor="end",
                    )
                )
                self.add(group)
                self.op_marker(key, x0 + label_w + mat_w + 4, y + (cell - CELL_H) / 2)
            bottoms.append(y0 + m * cell)
        # the softmax arrow between the two maps
        ay = top + (max(bottoms) - top) / 2
        ax0, ax1 = x_left + block_w + 8, x_left + block_w + 82
        self.back.append(Group([Path(f"M{ax0},{ay} H{ax1}", CATEGORY_COLOURS["operation"], 1.5, arrow=True)]))
        self.label(
            text_at(
                (ax0 + ax1) / 2,
                ay - line_height(FS["small"]) - 2,
                ["softmax"],
                FS["small"],
                anchor="middle",
                colour=CATEGORY_COLOURS["operation"],
            )
        )
        note = text_at(
            x_left + label_w,
            max(bottoms) + 4,
            ["rows: query position · columns: key position · grey: masked (key after query)"],
            FS["tiny"],
            colour=C.MUTED,
        )
        self.label(note)
        self.y = note.box.bottom + 8

    def elided(self, layers: list[int]) -> None:
        n = len(layers)
        span = f"block {layers[0]}" if n == 1 else f"blocks {layers[0]} to {layers[-1]}"
        top = self.y + 8
        x0, w = PANEL_X, self.panel_right - PANEL_X
        group = Group(cls="elided")
        for i in range(min(n, 4) - 1, 0, -1):
            group.parts.append(Rect(Box(x0 + 4 * i, top - 4 * i, w, 50), "#ffffff", C.RULE, 1, 6, dash="4 3"))
        msg = f"⋮  {span} elided: {n} more {'block' if n == 1 else 'blocks'}, each with the same structure"
        t = self.wrapped(GUTTER_X, top + 9, msg, w - 60, FS["h2"], bold=True, colour=CATEGORY_COLOURS["residual"])
        hint = self.wrapped(
            GUTTER_X,
            t.box.bottom + 2,
            "expand them with --option layers=… (e.g. layers=0,5 or layers=all)",
            w - 60,
            FS["small"],
            colour=C.MUTED,
        )
        h = hint.box.bottom + 9 - top
        group.parts.append(
            Rect(
                Box(x0, top, w, h),
                tint(CATEGORY_COLOURS["residual"], 0.06),
                CATEGORY_COLOURS["residual"],
                1,
                6,
                dash="4 3",
            )
        )
        group.texts += [t, hint]
        self.front.append(group)
        self.y = top + h + 12

    def unembed_section(self) -> None:
        self.open_panel("unembedding", "Unembedding", "final LayerNorm, then a product with the tied embedding")
        self.begin_band()
        self.lane_mark(self.y + 8, "read")
        self.layernorm("ln_final", None, "unembedding")
        self.end_band("unembedding")
        self.begin_band()
        self.connector("unembed: x · W_U, with W_U = W_Eᵀ (tied)", [Key("W_U")])
        top_ids = self.g.logits.argmax(dim=-1)
        self.vector_row(
            "logits",
            None,
            "logits (a score for every token)",
            self.caption("vocab"),
            "unembedding",
            below={p: f"top: {self.g.decode_token(int(top_ids[p]))}" for p in self.positions},
        )
        self.end_band("unembedding")
        self.close_panel()

    def footer(self) -> None:
        self.y += 6
        t = self.wrapped(
            MARGIN,
            self.y,
            "Generated by gpt2graph-svg from a saved forward pass. Every element "
            "that draws a graph node carries the node id in data-node (and n-<escaped id> as its "
            "XML id).",
            self.width - 2 * MARGIN,
            FS["small"],
            colour=C.MUTED,
        )
        self.label(t)
        self.y = t.box.bottom + MARGIN

    def residual_lane(self) -> None:
        if self.lane_top is None:
            return
        colour = CATEGORY_COLOURS["residual"]
        group = Group(
            [Path(f"M{LANE_X},{self.lane_top} V{self.lane_bottom}", tint(colour, 0.55), 5)], cls="residual-lane"
        )
        for y, what in self.lane_marks:
            if what == "add":
                group.parts.append(Rect(Box(LANE_X - 7, y - 7, 14, 14), "#ffffff", colour, 1.5, 7))
                group.parts.append(Path(f"M{LANE_X - 4},{y} H{LANE_X + 4} M{LANE_X},{y - 4} V{y + 4}", colour, 1.5))
            else:
                group.parts.append(Path(f"M{LANE_X},{y} H{PANEL_X + 6}", colour, 1.5, arrow=True))
        self.back.append(group)

    def gap_markers(self, top: float) -> None:
        for gx in self.gaps:
            self.back.append(Group([Path(f"M{gx},{top} V{self.y}", C.RULE, 2, dash="2 5")]))

    def build(self) -> Scene:
        self.title_block()
        self.legend_block()
        lanes_top = self.y
        self.input_section()
        self.embedding_section()
        L = 0
        n = self.d.n_layer
        expanded = set(self.layers)
        while n > L:
            if L in expanded:
                self.block(L)
                L += 1
                continue
            run = [L]
            while run[-1] + 1 < n and run[-1] + 1 not in expanded:
                run.append(run[-1] + 1)
            self.elided(run)
            self.begin_band()
            self.stream_row(run[-1] + 1)
            self.end_band("residual")
            L = run[-1] + 1
        self.unembed_section()
        self.decoding_section()
        if self.g.analysis is not None:
            self.lens_panel()
            self.dla_panel()
        if self.head_color is not None:
            self.head_map_panel()
        self.gap_markers(lanes_top)
        self.residual_lane()
        self.y = max(self.y, self.callout_y)
        self.footer()
        tok = self.g.tokenization
        desc = (
            f"Vector-level view of one forward pass of {self.g.model.name} "
            f"({self.g.model.weights.status} weights) on the prompt {tok.text!r}."
        )
        panels = [g for _, g in sorted(self.panel_groups, key=lambda dg: dg[0])]
        return Scene(self.width, self.y, self.title, desc, panels + self.back + self.front)


def layout(
    graph: Any,
    *,
    layers: list[int],
    head: int,
    positions: list[int],
    decoding: DecodingResult,
    decoding_stored: bool = False,
    head_color: str | None = None,
    callouts: bool = True,
    title: str = "",
) -> Scene:
    """The positioned scene for ``graph``. Arguments are already validated by the renderer; ``decoding`` is the
    decoding to draw (stored in the analysis or computed), ``head_color`` the head map's metric (None: no map,
    which needs an analysis)."""
    title = title or f"GPT-2, vector by vector: “{_short(graph.tokenization.text)}”"
    return _Layout(
        graph, sorted(set(layers)), head, positions, callouts, title, decoding, decoding_stored, head_color
    ).build()


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
