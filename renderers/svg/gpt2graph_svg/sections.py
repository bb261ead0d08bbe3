"""The forward pass as the poster draws it, stage by stage in the order the topology gives: the prompt and its
tokens, the embeddings (:data:`EMBED_KINDS`), each block (:data:`BLOCK_KINDS`; blocks not expanded are elided),
the final LayerNorm and the unembedding (:data:`FINAL_KINDS`) and the decoding stage (:data:`DECODE_KINDS`).

What is drawn for each kind (its row's name, the operation written before it) is stated here, per kind; which
kinds come, and in what order, is the topology's, and so are the parameters each operation reads
(:data:`READS`). Within a block the rows sit in nested panels (attention, the head drawn in full, the MLP),
and rows drawn together share a band (a LayerNorm's three vectors, q, k and v, the attention maps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from itertools import groupby
from typing import TYPE_CHECKING

from gpt2graph.plugin import (
    BLOCK_KINDS,
    CATEGORY_COLOURS,
    DECODE_KINDS,
    EMBED_KINDS,
    FINAL_KINDS,
    LAYERNORMS,
    PARAM_SPECS,
    READS,
    VECTOR_SPECS,
    Key,
    VectorKind,
    fixed,
    percent,
    tint,
)

from . import colors as C
from .engine import Page
from .rows import Rows
from .scene import CELL_H, COL_W, FS, MARKER_W, PAD, Box, Group, Path, Rect, Text, text_at
from .text import fit, line_height, width, wrap

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["ForwardPass", "STEPS"]

V = VectorKind

#: the row of each kind: its name and the operation written before it (None: the operation above made it
#: too). Templates: {ln} the LayerNorm, {hook} the kind's hook, {h} the head drawn, {H} the number of heads.
STEPS: dict[str, tuple[str, str | None]] = {
    V.token_embedding: ("token embedding W_E[id]", "lookup: row token_id of W_E"),
    V.pos_embedding: ("positional embedding W_pos[p]", "lookup: row position of W_pos"),
    V.input_embedding: ("input embedding = residual stream into block 0", "add: W_E[id] + W_pos[p]"),
    **{
        kind: step
        for scale, normalized, out in LAYERNORMS.values()
        for kind, step in (
            (scale, ("{ln} scale σ ({hook})", "scale: σ = √(var(x) + ε), one number per position")),
            (normalized, ("{ln} normalised ({hook})", "normalise: (x − mean(x)) / σ")),
            (out, ("{ln} output ({hook})", "gain and bias: × {ln}_w + {ln}_b")),
        )
    },
    V.q: ("query q", "per-head projections: q = x·W_Q + b_Q, k = x·W_K + b_K, v = x·W_V + b_V"),
    V.k: ("key k", None),
    V.v: ("value v", None),
    V.z: ("z (result vector)", "weighted sum: z[p] = Σ_j pattern[p, j] · v[j]"),
    V.head_out: ("head {h} output", "output projection: z · W_O[h]"),
    V.attn_out: ("attention output attn_out", "sum over all {H} heads + b_O"),
    V.resid_mid: ("resid_mid", "add to the stream: resid_mid = stream in + attn_out"),
    V.mlp_pre: ("mlp_pre (neuron pre-activations)", "up-projection: x·W_in + b_in"),
    V.mlp_post: ("mlp_post (neuron activations)", "GELU, elementwise"),
    V.mlp_out: ("MLP output mlp_out", "down-projection: x·W_out + b_out"),
    V.logits: ("logits (a score for every token)", "unembed: x · W_U, with W_U = W_Eᵀ (tied)"),
}
#: the panels inside a block around each kind's row, outermost first (the others sit in the block's panel)
PANELS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys((*LAYERNORMS["ln1"], V.attn_out), ("attention",)),
    **dict.fromkeys((V.q, V.k, V.v, V.attn_scores, V.attn_pattern, V.z, V.head_out), ("attention", "head")),
    **dict.fromkeys((*LAYERNORMS["ln2"], V.mlp_pre, V.mlp_post, V.mlp_out), ("mlp",)),
}
#: kinds drawn in one band (their callouts beside them together); every other kind has a band of its own
BANDS: dict[str, str] = {
    **{kind: ln for ln, kinds in LAYERNORMS.items() for kind in kinds},
    **dict.fromkeys((V.q, V.k, V.v), "projections"),
    **dict.fromkeys((V.attn_scores, V.attn_pattern), "attention maps"),
}
_LN_OF = {kind: ln for ln, kinds in LAYERNORMS.items() for kind in kinds}
#: vectors written into the residual stream, and each LayerNorm's first vector, which reads it: the marks on
#: the residual lane
_WRITES = {kind for kind, spec in VECTOR_SPECS.items() if spec.category == "residual" and spec.op == "add"}
_READS_STREAM = {scale for scale, _, _ in LAYERNORMS.values()}


class ForwardPass:
    """The forward pass of one graph on a page, in rows: ``layers`` are the blocks drawn in full, ``head`` the
    head drawn in full in each; ``head_chip(layer, head, title)`` may set a swatch beside a head's title."""

    def __init__(
        self,
        page: Page,
        rows: Rows,
        graph: Graph,
        layers: Iterable[int],
        head: int,
        head_chip: Callable[[int, int, Text], None] | None = None,
    ):
        self.page = page
        self.rows = rows
        self.g = graph
        self.top = graph.topology
        self.d = graph.dims
        self.layers = set(layers)
        self.head = head
        self.head_chip = head_chip
        self.tokens = list(graph.tokenization.tokens_visible)
        self.lane_marks: list[tuple[float, str]] = []  # (y, "read" | "add") on the residual lane
        self.lane_top: float | None = None
        self.lane_bottom = 0.0

    # ---- the stages -----------------------------------------------------------------------------------
    def input(self) -> None:
        """The prompt, the tokenizer and the tokens."""
        page, lanes, f = self.page, self.rows.lanes, self.page.frame
        tokenizer = CATEGORY_COLOURS["tokenizer"]
        with page.band("tokenizer"):
            tok = self.g.tokenization
            top = page.y
            self.rows.label(top, "input text", f"{len(tok.text)} characters", "tokenizer")
            box_w = f.diagram_w
            lines = wrap(tok.text, box_w - 2 * PAD, FS["h1"])
            if len(lines) > 4:
                lines = [*lines[:3], fit(lines[3] + " …", box_w - 2 * PAD, FS["h1"])]
            t = text_at(f.diagram_x + PAD, top + 6, lines, FS["h1"], colour=C.TEXT)
            box = Box(f.diagram_x, top, box_w, t.box.h + 12)
            page.front.append(Group([Rect(box, tint(tokenizer, 0.1), tokenizer, 1, 6)], [t], cls="prompt"))
            page.y = top + t.box.h + 12
            # the tokenizer: one operation producing every token
            top = page.y + 4
            operation = CATEGORY_COLOURS["operation"]
            label = "tokenize: GPT-2 byte-level BPE"
            page.label(page.wrapped(f.gutter_x, top, label, f.gutter_w, FS["small"], bold=True, colour=operation))
            bottom = top + 30
            tokenize = self.top.op_id(Key(V.token, None, None, 0))
            fan = Group(node=tokenize, tip=self.rows.tips.operation(tokenize), cls="node operation")
            mid = f.diagram_x + f.diagram_w / 2
            for cx in lanes.x.values():
                tx = cx + COL_W / 2 - 2
                path = f"M{mid},{top - 4} C{mid},{top + 14} {tx},{top + 10} {tx},{bottom - 3}"
                fan.parts.append(Path(path, tokenizer, 1.2, arrow=True))
            page.add(fan)
            page.y = bottom
            # tokens
            top = page.y + 2
            self.rows.label(top, "tokens", f"n_tokens = {self.g.n_tokens} · ids in [0, {self.d.n_vocab})", "tokenizer")
            chip_w = COL_W - 14
            for p in lanes.positions:
                x = lanes.x[p] + 7
                node = self.top.vector_id(Key(V.token, None, None, p))
                label = fit(self.tokens[p], chip_w - 8, FS["h2"] + 0.5, bold=True)
                page.add(
                    Group(
                        [Rect(Box(x, top, chip_w, 26), tint(tokenizer, 0.2), tokenizer, 1.2, 5)],
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
                )
            page.y = top + 29 + line_height(FS["small"]) + 8

    def embeddings(self) -> None:
        with self.page.panel("residual", "Embeddings", "two table lookups, added"):
            self._draw([k for k in EMBED_KINDS if k != V.token], None)

    def blocks(self) -> None:
        """Every block: drawn in full when expanded, else elided in runs, each followed by the stream it
        leaves."""
        n = self.d.n_layer
        for expanded, run in groupby(range(n), key=lambda L: L in self.layers):
            if expanded:
                for L in run:
                    self.block(L)
            else:
                run = list(run)
                self._elided(run)
                with self.page.band("residual"):
                    self._stream_row(run[-1] + 1)

    def block(self, L: int) -> None:
        d = self.d
        with self.page.panel("residual", f"Block {L}", f"layer {L} of {d.n_layer} (0-based)"):
            self._draw(BLOCK_KINDS, L)
            with self.page.band("residual"):
                self.rows.operation("add to the stream: resid_mid + mlp_out")
                self._stream_row(L + 1)

    def unembedding(self) -> None:
        with self.page.panel("unembedding", "Unembedding", "final LayerNorm, then a product with the tied embedding"):
            self._draw(FINAL_KINDS, None)

    def decoding_stage(self) -> None:
        """The decoding nodes of every lane, as the graph holds them: one row per step, then the chosen
        tokens."""
        s, n_vocab = self.g.decoding, self.d.n_vocab
        operations = {
            V.scaled_logits: (f"temperature: logits ÷ {s.temperature:g}", "scaled logits"),
            V.top_k_logits: (
                f"top-k: keep the {s.top_k:,} largest" if s.top_k else "top-k: off, keeps all",
                "after top-k",
            ),
            V.top_p_logits: (
                f"top-p: keep the nucleus of mass {s.top_p:g}" if s.top_p else "top-p: off, keeps all",
                "after top-p",
            ),
            V.probs: ("softmax", "probabilities"),
            V.next_token: ("greedy: the most probable token" if s.seed is None else f"sample with seed {s.seed}", ""),
        }
        for kind in DECODE_KINDS:
            operation, name = operations[kind]
            with self.page.band("unembedding"):
                self.rows.operation(operation)
                if kind == V.next_token:
                    self._next_token_row()
                    continue
                below = {}
                for p in self.rows.lanes.positions:
                    v = self.g.values(self.top.vector_id(Key(kind, None, None, p)))
                    if kind == V.probs:
                        best = int(v.argmax())
                        below[p] = f"top: {self.g.decode_token(best)} {percent(float(v[best]))}"
                    else:
                        below[p] = f"kept {int(v.isfinite().sum()):,} of {n_vocab:,}"
                self.rows.vectors(kind, None, name, "unembedding", below=below)

    # ---- drawing the kinds of a stage -----------------------------------------------------------------
    def _draw(self, kinds: Iterable[str], layer: int | None, depth: int = 0) -> None:
        """The rows of ``kinds`` in order, in their panels (from ``depth`` in) and bands."""
        for panel, run in groupby(kinds, key=lambda k: (*PANELS.get(k, ()), None)[depth]):
            with self._panel(panel) as title:
                if panel == "head" and self.head_chip is not None:
                    self.head_chip(layer, self.head, title)
                if panel is not None:
                    self._draw(run, layer, depth + 1)
                    continue
                for _, band in groupby(run, key=lambda k: BANDS.get(k, k)):
                    self._band(list(band), layer)

    def _panel(self, name: str | None) -> AbstractContextManager:
        """The panel ``name`` of a block (None: none); the head's has the other heads as cards behind it."""
        page, d, h = self.page, self.d, self.head
        if name is None:
            return nullcontext()
        if name == "attention":
            return page.panel(
                "attention", "Attention", f"{d.n_head} heads in parallel, each reading the normalised stream"
            )
        if name == "mlp":
            return page.panel("mlp", "MLP", "position-wise: every token goes through the same two-layer network")
        page.y += 14
        others = f"the other {d.n_head - 1} are stacked behind and work the same way"
        return page.panel(
            "attention", f"Head {h}", f"head {h} of {d.n_head} (0-based) shown; {others}", deck=min(3, d.n_head - 1)
        )

    def _band(self, kinds: list[str], layer: int | None) -> None:
        """One band: each kind's row after the operation that makes it (with the parameters of every kind it
        makes), and the residual lane's marks."""
        category = VECTOR_SPECS[kinds[0]].category
        with self.page.band(category):
            if kinds[0] in _READS_STREAM:
                self._lane_mark(self.page.y + 8, "read")
            for i, kind in enumerate(kinds):
                if kind == V.attn_scores:
                    self._matrices(layer, self.head)
                if kind not in STEPS:  # drawn with the kind before it
                    continue
                name, operation = STEPS[kind]
                values = {
                    "ln": _LN_OF.get(kind),
                    "hook": VECTOR_SPECS[kind].hook_point,
                    "h": self.head,
                    "H": self.d.n_head,
                }
                if operation is not None:
                    made = [kind, *(k for k in kinds[i + 1 :] if STEPS.get(k, ("", ""))[1] is None)]
                    self.rows.operation(operation.format_map(values), self._params(made, layer))
                self._row(kind, layer, name.format_map(values))

    def _params(self, kinds: list[str], layer: int | None) -> list[Key]:
        """The parameters the operations making ``kinds`` read (of the head drawn, for per-head ones)."""
        return [
            Key(
                r.kind,
                layer if PARAM_SPECS[r.kind].per_layer else None,
                self.head if PARAM_SPECS[r.kind].per_head else None,
            )
            for kind in kinds
            for r in READS[kind]
            if r.kind in PARAM_SPECS
        ]

    def _row(self, kind: str, layer: int | None, name: str) -> None:
        spec = VECTOR_SPECS[kind]
        below = None
        if kind == V.token_embedding:
            ids = self.g.tokenization.token_ids
            below = {p: f"row {ids[p]}" for p in self.rows.lanes.positions}
        elif kind == V.logits:
            top_ids = self.g.logits.argmax(dim=-1)
            below = {p: f"top: {self.g.decode_token(int(top_ids[p]))}" for p in self.rows.lanes.positions}
        mark_y = self.page.y + CELL_H / 2 + 2
        self.rows.vectors(
            kind, layer if spec.per_layer else None, name, spec.category, self.head if spec.per_head else None, below
        )
        if kind in _WRITES:
            self._lane_mark(mark_y, "add")

    def _stream_row(self, block: int) -> None:
        """The residual stream entering ``block`` (``n_layer``: leaving the last block), when it is in the
        view."""
        kind, layer, _, _ = self.top.stream(block, 0)
        if self.top.vector_id(Key(kind, layer, None, self.rows.lanes.positions[0])) not in self.g:
            return
        name = {
            V.input_embedding: STEPS[V.input_embedding][0],
            V.resid_pre: f"residual stream into block {block} (resid_pre)",
            V.resid_post: f"residual stream after block {block - 1} (resid_post)",
        }[kind]
        mark_y = self.page.y + CELL_H / 2 + 2
        self.rows.vectors(kind, layer, name, "residual")
        self._lane_mark(mark_y, "add")

    def _next_token_row(self) -> None:
        """The token the decoding stage chooses after each lane's position."""
        page, lanes = self.page, self.rows.lanes
        top = page.y + 2
        self.rows.label(top, "next token", "one token id per position", "unembedding")
        chip_w = COL_W - MARKER_W - 18
        colour = CATEGORY_COLOURS["unembedding"]
        for p in lanes.positions:
            key = Key(V.next_token, None, None, p)
            node = self.top.vector_id(key)
            chosen = int(self.g.values(node))
            self.rows.marker(key, lanes.x[p], top)
            x = lanes.x[p] + MARKER_W + 4
            label = fit(self.g.decode_token(chosen), chip_w - 8, FS["body"], bold=True)
            page.add(
                Group(
                    [Rect(Box(x, top, chip_w, CELL_H + 4), tint(colour, 0.2), colour, 1, 4)],
                    [
                        text_at(x + chip_w / 2, top + 1, [label], FS["body"], anchor="middle", bold=True),
                        text_at(x, top + CELL_H + 6, [f"id {chosen}"], FS["tiny"], colour=C.MUTED),
                    ],
                    node=node,
                    tip=self.rows.tips.vector(node),
                    cls="node vector unembedding",
                )
            )
        page.y = top + CELL_H + 6 + line_height(FS["tiny"]) + 8

    def _matrices(self, L: int, h: int) -> None:
        """Scores (causal dot products) and pattern (row softmax) as triangular heat maps with token labels."""
        page, lanes = self.page, self.rows.lanes
        pos = lanes.positions
        m = len(pos)
        labels = [fit(f"{p} {self.tokens[p]}", 96, FS["small"]) for p in pos]
        label_w = max(width(s, FS["small"]) for s in labels) + 6
        avail = (page.frame.diagram_w - 90 - 2 * label_w - 2 * 16) / 2
        cell = max(6.0, min(34.0, avail / m))
        top = page.y + 6
        self.rows.operation("scaled dot products q·k/√d_head, causal mask; then softmax per row", arrows=False)
        top = max(top, page.y)
        mat_w = cell * m
        block_w = label_w + mat_w + 16
        x_left = page.frame.diagram_x
        sides = (
            ("scores", x_left, "attention scores q·k/√d_head"),
            ("pattern", x_left + block_w + 90, "attention pattern (softmax)"),
        )
        headings = [
            page.wrapped(x0, top, heading, block_w, FS["small"], bold=True, colour=CATEGORY_COLOURS["attention"])
            for _, x0, heading in sides
        ]
        page.label(*headings)
        matrix_top = max(h.box.bottom for h in headings) + 2
        bottoms = []
        for which, x0, _ in sides:
            y0 = matrix_top
            if cell >= 11:
                page.label(
                    *[
                        text_at(
                            x0 + label_w + cell * (j + 0.5), y0, [str(p)], FS["tiny"], anchor="middle", colour=C.MUTED
                        )
                        for j, p in enumerate(pos)
                    ]
                )
                y0 += line_height(FS["tiny"])
            kind = V.attn_scores if which == "scores" else V.attn_pattern
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
                group = Group(node=node, tip=self.rows.tips.vector(node), cls=f"node vector attention {which}")
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
                page.add(group)
                self.rows.marker(key, x0 + label_w + mat_w + 4, y + (cell - CELL_H) / 2)
            bottoms.append(y0 + m * cell)
        # the softmax arrow between the two maps
        ay = top + (max(bottoms) - top) / 2
        ax0, ax1 = x_left + block_w + 8, x_left + block_w + 82
        page.under(Group([Path(f"M{ax0},{ay} H{ax1}", CATEGORY_COLOURS["operation"], 1.5, arrow=True)]))
        page.label(
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
        page.label(note)
        page.y = note.box.bottom + 8

    def _elided(self, layers: list[int]) -> None:
        page, f = self.page, self.page.frame
        n = len(layers)
        span = f"block {layers[0]}" if n == 1 else f"blocks {layers[0]} to {layers[-1]}"
        top = page.y + 8
        x0, w = f.panel_x, f.panel_right - f.panel_x
        residual = CATEGORY_COLOURS["residual"]
        group = Group(cls="elided")
        for i in range(min(n, 4) - 1, 0, -1):
            group.parts.append(Rect(Box(x0 + 4 * i, top - 4 * i, w, 50), "#ffffff", C.RULE, 1, 6, dash="4 3"))
        msg = f"⋮  {span} elided: {n} more {'block' if n == 1 else 'blocks'}, each with the same structure"
        t = page.wrapped(f.gutter_x, top + 9, msg, w - 60, FS["h2"], bold=True, colour=residual)
        hint = page.wrapped(
            f.gutter_x,
            t.box.bottom + 2,
            "expand them with --option layers=… (e.g. layers=0,5 or layers=all)",
            w - 60,
            FS["small"],
            colour=C.MUTED,
        )
        h = hint.box.bottom + 9 - top
        group.parts.append(Rect(Box(x0, top, w, h), tint(residual, 0.06), residual, 1, 6, dash="4 3"))
        group.texts += [t, hint]
        page.front.append(group)
        page.y = top + h + 12

    # ---- the residual lane ------------------------------------------------------------------------------
    def _lane_mark(self, y: float, what: str) -> None:
        self.lane_marks.append((y, what))
        self.lane_top = y if self.lane_top is None else self.lane_top
        self.lane_bottom = max(self.lane_bottom, y)

    def residual_lane(self) -> None:
        """The residual stream as one line down the left edge, marked where it is read and where it is added to."""
        if self.lane_top is None:
            return
        colour = CATEGORY_COLOURS["residual"]
        lane_x = self.page.frame.margin + 8  # in the margin, left of every panel
        group = Group(
            [Path(f"M{lane_x},{self.lane_top} V{self.lane_bottom}", tint(colour, 0.55), 5)], cls="residual-lane"
        )
        for y, what in self.lane_marks:
            if what == "add":
                group.parts.append(Rect(Box(lane_x - 7, y - 7, 14, 14), "#ffffff", colour, 1.5, 7))
                group.parts.append(Path(f"M{lane_x - 4},{y} H{lane_x + 4} M{lane_x},{y - 4} V{y + 4}", colour, 1.5))
            else:
                group.parts.append(Path(f"M{lane_x},{y} H{self.page.frame.panel_x + 6}", colour, 1.5, arrow=True))
        self.page.under(group)

    def gap_markers(self, top: float) -> None:
        """A dashed line down each gap between lanes of positions not next to each other."""
        for gx in self.rows.lanes.gaps:
            self.page.under(Group([Path(f"M{gx},{top} V{self.page.y}", C.RULE, 2, dash="2 5")]))
