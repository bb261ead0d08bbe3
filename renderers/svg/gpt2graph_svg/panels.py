"""The panels after the forward pass: decoding the next token, and, when the graph carries an analysis, the
logit lens, direct logit attribution and the map of heads.

:class:`Panels` is mixed into the layout: it draws with the layout's bands, panels, gutter and columns, and
reads every number from :mod:`readout` (that is, from the core)."""

from __future__ import annotations

import math

from gpt2graph.plugin import CATEGORY_COLOURS, Key, fixed, percent, signed, tint

from . import colors as C
from .readout import HEAD_METRIC, decoding_rows
from .scene import CELL_H, COL_W, FS, MARKER_W, Box, Group, Path, Rect, Text, text_at
from .text import fit, line_height, width

__all__ = ["Panels", "DLA_ROWS"]

#: contributors listed in the DLA panel
DLA_ROWS = 12
#: glossary entry explaining each head colouring
HEAD_GLOSSARY = {
    "dla": "direct-logit-attribution",
    "previous_token": "previous-token-head",
    "induction": "induction-head",
    "copying": "ov-circuit",
    "first_token": "attention-sink",
    "current_token": "attention-pattern",
}
STEP_LABEL = {"softmax": "softmax", "temperature": "temperature", "top_k": "top-k", "top_p": "top-p"}
SYMBOL = {"temperature": "T", "top_k": "k", "top_p": "p"}


class Panels:
    """Decoding and analysis panels of :class:`~gpt2graph_svg.layout._Layout`."""

    # ---- decoding -----------------------------------------------------------------------------------
    def decoding_section(self) -> None:
        dec = self.decoding
        p = dec.position
        self.open_panel(
            "unembedding",
            "Decoding",
            "from each position's logits to the token the model would "
            f"write next; in detail for position {p} ({self.tokens[p]})",
        )
        self.decoding_stage()
        self.begin_band()
        self.decoding_steps(self.y + 4)
        how = ", ".join(
            [
                f"temperature {dec.temperature:g}",
                "no top-k" if dec.top_k is None else f"top-k {dec.top_k}",
                "no top-p" if dec.top_p is None else f"top-p {dec.top_p:g}",
                "greedy" if dec.greedy else f"sampled with seed {dec.seed}",
            ]
        )
        source = "from the analysis stored with the graph" if self.decoding_stored else "computed for this picture"
        note = self.wrapped(
            self.dx,
            self.y + 6,
            f"settings: {how} ({source}); change them with --option temperature=… top_k=… top_p=… seed=…",
            self.diagram_w,
            FS["small"],
            colour=C.MUTED,
        )
        self.label(note)
        self.y = note.box.bottom + 10
        self.decoding_table()
        self.end_band("unembedding", self.content.decoding_callouts())
        self.next_token()
        self.close_panel()

    def decoding_stage(self) -> None:
        """The decoding nodes of every shown position, as the graph holds them: one row per step, then the
        chosen tokens."""
        s = self.g.decoding
        rows = [
            ("scaled_logits", f"temperature: logits ÷ {s.temperature:g}", "scaled logits"),
            (
                "top_k_logits",
                f"top-k: keep the {s.top_k:,} largest" if s.top_k else "top-k: off, keeps all",
                "after top-k",
            ),
            (
                "top_p_logits",
                f"top-p: keep the nucleus of mass {s.top_p:g}" if s.top_p else "top-p: off, keeps all",
                "after top-p",
            ),
            ("probs", "softmax", "probabilities"),
        ]
        for kind, op, name in rows:
            self.begin_band()
            self.connector(op)
            below = {}
            for p in self.positions:
                v = self.g.values(self.top.vector_id(Key(kind, None, None, p)))
                if kind == "probs":
                    best = int(v.argmax())
                    below[p] = f"top: {self.g.decode_token(best)} {percent(float(v[best]))}"
                else:
                    below[p] = f"kept {int(v.isfinite().sum()):,} of {self.d.n_vocab:,}"
            self.vector_row(kind, None, name, self.caption("vocab"), "unembedding", below=below)
            self.end_band("unembedding")
        self.begin_band()
        self.connector("greedy: the most probable token" if s.seed is None else f"sample with seed {s.seed}")
        self.next_token_row()
        self.end_band("unembedding")

    def next_token_row(self) -> None:
        """The token the decoding stage chooses after each shown position."""
        top = self.y + 2
        self.row_label(top, "next token", "one token id per position", "unembedding")
        chip_w = COL_W - MARKER_W - 18
        colour = CATEGORY_COLOURS["unembedding"]
        for p in self.positions:
            key = Key("next_token", None, None, p)
            node = self.top.vector_id(key)
            chosen = int(self.g.values(node))
            self.op_marker(key, self.col_x[p], top)
            x = self.col_x[p] + MARKER_W + 4
            label = fit(self.g.decode_token(chosen), chip_w - 8, FS["body"], bold=True)
            self.add(
                Group(
                    [Rect(Box(x, top, chip_w, CELL_H + 4), tint(colour, 0.2), colour, 1, 4)],
                    [
                        text_at(x + chip_w / 2, top + 1, [label], FS["body"], anchor="middle", bold=True),
                        text_at(x, top + CELL_H + 6, [f"id {chosen}"], FS["tiny"], colour=C.MUTED),
                    ],
                    node=node,
                    tip=self.vector_tip(node),
                    cls="node vector unembedding",
                )
            )
        self.y = top + CELL_H + 6 + line_height(FS["tiny"]) + 8

    def decoding_steps(self, top: float) -> None:
        """One box per step, in the order they are applied, then the choice."""
        dec = self.decoding
        n_vocab = self.d.n_vocab
        boxes = []
        for s in dec.steps:
            value = "probabilities" if s.value is None else f"{SYMBOL[s.kind]} = {s.value:g}"
            note = {"softmax": f"over all {s.kept:,}", "temperature": "logits ÷ T"}.get(
                s.kind, f"keeps {s.kept:,} of {n_vocab:,}"
            )
            boxes.append((s.kind, STEP_LABEL[s.kind], value, note))
        boxes.append(
            ("choice", "greedy", "argmax", "the most probable")
            if dec.greedy
            else ("choice", "sample", f"seed {dec.seed}", "one seeded draw")
        )
        n, gap = len(boxes), 26
        box_w = min(150.0, (self.diagram_w - gap * (n - 1)) / n)
        row_h = line_height(FS["h2"]) + 2 * line_height(FS["small"]) + 12
        colour = CATEGORY_COLOURS["unembedding"]
        x = self.dx
        for i, (kind, label, value, note) in enumerate(boxes):
            mid = x + box_w / 2
            self.front.append(
                Group(
                    [Rect(Box(x, top, box_w, row_h), tint(colour, 0.12), colour, 1.2, 6)],
                    [
                        text_at(mid, top + 5, [label], FS["h2"], anchor="middle", bold=True, colour=colour),
                        text_at(
                            mid,
                            top + 5 + line_height(FS["h2"]),
                            [fit(value, box_w - 8, FS["small"])],
                            FS["small"],
                            anchor="middle",
                        ),
                        text_at(
                            mid,
                            top + 5 + line_height(FS["h2"]) + line_height(FS["small"]),
                            [fit(note, box_w - 8, FS["small"])],
                            FS["small"],
                            anchor="middle",
                            colour=C.MUTED,
                        ),
                    ],
                    tip=f"decoding step {i + 1}: {label} ({value}; {note})",
                    cls=f"decode-step {kind}",
                )
            )
            if i < n - 1:
                self.back.append(
                    Group(
                        [
                            Path(
                                f"M{x + box_w + 3},{top + row_h / 2} H{x + box_w + gap - 3}",
                                CATEGORY_COLOURS["operation"],
                                1.5,
                                arrow=True,
                            )
                        ]
                    )
                )
            x += box_w + gap
        self.y = top + row_h

    def decoding_table(self) -> None:
        """The candidates with their probability after every step, a bar under each; the chosen one in bold."""
        dec = self.decoding
        colour = CATEGORY_COLOURS["unembedding"]
        x0, y = self.dx, self.y
        cols = {"rank": x0, "token": x0 + 34, "id": x0 + 166, "logit": x0 + 222}
        step_x = x0 + 286
        step_w = (self.diagram_right - step_x) / len(dec.steps)
        heads = [text_at(x, y, [name], FS["small"], bold=True, colour=C.MUTED) for name, x in cols.items()]
        for i, s in enumerate(dec.steps):
            label = (
                STEP_LABEL[s.kind]
                if s.value is None
                else f"T = {s.value:g}"
                if s.kind == "temperature"
                else f"{STEP_LABEL[s.kind]} {s.value:g}"
            )
            heads.append(
                text_at(
                    step_x + i * step_w,
                    y,
                    [fit(label, step_w - 8, FS["small"], True)],
                    FS["small"],
                    bold=True,
                    colour=C.MUTED,
                )
            )
            heads.append(
                text_at(
                    step_x + i * step_w,
                    y + line_height(FS["small"]),
                    [fit(f"kept {s.kept:,}", step_w - 8, FS["tiny"])],
                    FS["tiny"],
                    colour=C.MUTED,
                )
            )
        self.label(*heads)
        y += line_height(FS["small"]) + line_height(FS["tiny"]) + 4
        rh = line_height(FS["body"]) + 7
        for row in decoding_rows(self.g, dec):
            bold = row.chosen
            g = Group(
                cls="candidate" + (" chosen" if row.chosen else ""),
                data={"token-id": str(row.token_id)},
                tip=f"token {row.token!r} · id {row.token_id} · raw logit {row.logit:.6g}"
                + (" · chosen" if row.chosen else ""),
            )
            if row.chosen:
                g.parts.append(Rect(Box(x0 - 4, y - 1, self.diagram_right - x0 + 4, rh), tint(colour, 0.12), rx=3))
            g.texts += [
                text_at(cols["rank"], y, ["…" if row.rank is None else str(row.rank)], FS["body"], bold=bold),
                text_at(cols["token"], y, [fit(row.token, 126, FS["body"], bold)], FS["body"], bold=bold),
                text_at(cols["id"], y, [str(row.token_id)], FS["body"], colour=C.MUTED),
                text_at(cols["logit"], y, [fixed(row.logit, 3)], FS["body"], colour=C.MUTED),
            ]
            self.front.append(g)
            for i, (s, prob) in enumerate(zip(dec.steps, row.probs, strict=True)):
                x = step_x + i * step_w
                label = STEP_LABEL[s.kind]
                if prob is None:
                    cell = Group(
                        texts=[text_at(x, y, ["—"], FS["body"], colour=C.MUTED)],
                        tip=f"after {label}: not among the {len(s.candidates)} listed candidates",
                        cls="decode-prob",
                        data={"step": s.kind, "token-id": str(row.token_id)},
                    )
                else:
                    shown = "0 (cut)" if prob == 0 else percent(prob)
                    cell = Group(
                        [
                            Rect(Box(x, y + rh - 5, step_w - 12, 2.5), tint(colour, 0.12)),
                            Rect(Box(x, y + rh - 5, max(0.5, (step_w - 12) * prob), 2.5), colour),
                        ],
                        [text_at(x, y, [shown], FS["body"], bold=bold, colour=C.MUTED if prob == 0 else C.TEXT)],
                        tip=f"after {label}: probability {prob:.6g}" + (" (filtered out)" if prob == 0 else ""),
                        cls="decode-prob",
                        data={"step": s.kind, "token-id": str(row.token_id), "prob": repr(prob)},
                    )
                self.front.append(cell)
            y += rh
        key = self.wrapped(
            x0,
            y + 2,
            "each column: the distribution after that step (rank, logit: before any "
            "step) · 0 (cut): filtered out · —: kept, but not among the step's listed candidates",
            self.diagram_w,
            FS["tiny"],
            colour=C.MUTED,
        )
        self.label(key)
        self.y = key.box.bottom + 8

    def next_token(self) -> None:
        """The chosen token, as the pass's output."""
        dec, c = self.decoding, self.decoding.chosen
        self.begin_band()
        top = self.y + 4
        self.label(
            text_at(self.gutter_x, top + 6, ["next token"], FS["h2"], bold=True, colour=CATEGORY_COLOURS["unembedding"])
        )
        size = FS["title"] - 4
        shown = fit(c.token, 400, size, True)
        box = Box(self.dx, top, width(shown, size, True) + 40, line_height(size) + 16)
        how = "greedy: the most probable token" if dec.greedy else f"sampled with seed {dec.seed}"
        self.front.append(
            Group(
                [Rect(box, CATEGORY_COLOURS["unembedding"], rx=8)],
                [text_at(box.x + 20, top + 8, [shown], size, bold=True, colour="#ffffff")],
                tip=f"next token {c.token!r} (id {c.id}), probability {c.prob:.6g} after the last step; {how}",
                cls="output-token",
                data={"token-id": str(c.id)},
            )
        )
        sub = self.wrapped(
            box.right + 14,
            top + 6,
            f"id {c.id} · probability {percent(c.prob)} · {how} · appended to the prompt, and the pass runs again",
            self.diagram_right - box.right - 14,
            FS["body"],
            colour=C.MUTED,
        )
        self.label(sub)
        self.y = max(box.bottom, sub.box.bottom) + 8
        self.end_band("unembedding")

    # ---- logit lens ---------------------------------------------------------------------------------
    def lens_panel(self) -> None:
        """The most probable next token of every residual stream vector, read through ln_final and W_U."""
        rows = [("input_embedding", None, "embeddings")]
        for L in range(self.d.n_layer):
            after_mlp = self.top.stream(L + 1, 0)
            rows += [
                ("resid_mid", L, f"block {L}, after attention"),
                (after_mlp.kind, after_mlp.layer, f"block {L}, after the MLP"),
            ]
        ids = [[self.top.vector_id(Key(kind, layer, None, p)) for p in self.positions] for kind, layer, _ in rows]
        shown = [(r, i) for r, i in zip(rows, ids, strict=True) if all(n in self.g and self.readout.lens(n) for n in i)]
        if not shown:
            return
        self.open_panel(
            "unembedding", "Logit lens", "each residual stream vector read as if it were the last: ln_final, then W_U"
        )
        self.begin_band()
        token_ids = self.g.tokenization.token_ids
        rh = line_height(FS["small"]) + 8
        y = self.y + 4
        for (_, _, name), node_ids in shown:
            self.label(text_at(self.gutter_x, y + 3, [name], FS["small"], colour=C.MUTED))
            for p, node in zip(self.positions, node_ids, strict=True):
                best = self.readout.lens(node).top[0]
                fill = C.sequential(best.prob)
                box = Box(self.col_x[p] + 4, y, self.col_w - 8, rh - 2)
                hit = p + 1 < len(token_ids) and best.id == token_ids[p + 1]
                prob = text_at(
                    box.right - 4, y + 4, [percent(best.prob)], FS["tiny"], anchor="end", colour=C.ink_on(fill)
                )
                token = text_at(
                    box.x + 4,
                    y + 3,
                    [fit(best.token, prob.box.x - box.x - 10, FS["small"], hit)],
                    FS["small"],
                    bold=hit,
                    colour=C.ink_on(fill),
                )
                self.front.append(
                    Group(
                        [Rect(box, fill, CATEGORY_COLOURS["unembedding"] if hit else C.RULE, 2 if hit else 0.6, 3)],
                        [token, prob],
                        tip="\n".join([node, *self.readout.notes(node)]),
                        cls="lens-cell",
                        data={"node": node, "token-id": str(best.id)},
                    )
                )
            y += rh
        key = self.wrapped(
            self.dx,
            y + 4,
            "each cell: the most probable token under the lens, shaded by its "
            "probability on the 0–1 attention scale; outlined and bold: it is the token that "
            "actually comes next. Hover a cell (or any stream vector above) for the top tokens and "
            "the next token's rank.",
            self.diagram_w,
            FS["tiny"],
            colour=C.MUTED,
        )
        self.label(key)
        self.y = key.box.bottom + 8
        self.end_band("unembedding", self.content.glossary_callout("logit-lens"))
        self.close_panel()

    # ---- direct logit attribution -------------------------------------------------------------------
    def dla_panel(self) -> None:
        """The largest contributors to the attributed logit as a signed bar chart, and the sum check."""
        dla = self.g.analysis.dla
        p = dla.position
        self.open_panel(
            "unembedding", "Direct logit attribution", f"{self.readout.metric()} after position {p} ({self.tokens[p]})"
        )
        self.begin_band()
        n = len(dla.contributions)
        check = self.wrapped(
            self.dx,
            self.y + 4,
            f"model value {signed(dla.model_value, 6)} = sum of all {n} "
            f"contributions {signed(dla.total, 6)} (residual error {dla.residual_error:.1e}, "
            f"tolerance {dla.tolerance:g}) · final LayerNorm scale frozen at {dla.ln_scale:.4g}",
            self.diagram_w,
            FS["small"],
        )
        self.label(check)
        y = check.box.bottom + 10
        top = [a for a in dla.top(n) if a.component in self.g][:DLA_ROWS]  # the view's largest
        scale = max(abs(a.contribution) for a in top) or 1.0
        value_w = 64
        half = (self.diagram_w - value_w - 8) / 2
        zero = self.dx + half
        rh = line_height(FS["body"]) + 6
        axis_top = y
        for rank, a in enumerate(top, 1):
            v = a.contribution
            length = max(0.5, half * abs(v) / scale)
            bar = Box(zero if v >= 0 else zero - length, y + 2, length, rh - 6)
            self.front.append(
                Group(
                    [Rect(bar, C.diverging(0.8 if v >= 0 else -0.8), rx=1)],
                    [
                        text_at(
                            self.gutter_x,
                            y,
                            [fit(f"{rank}. {self.readout.component_label(a)}", self.gutter_w, FS["body"])],
                            FS["body"],
                        ),
                        text_at(self.diagram_right, y, [signed(v)], FS["body"], anchor="end"),
                    ],
                    tip=f"{a.component}\n{self.readout.component_label(a)} ({a.kind}): {signed(v, 6)} to the "
                    f"{self.readout.metric()}",
                    cls="dla-bar",
                    data={"component": a.component, "contribution": repr(v)},
                )
            )
            y += rh
        self.back.append(Group([Path(f"M{zero},{axis_top - 2} V{y + 2}", C.MUTED, 1)]))
        rest = dla.total - sum(a.contribution for a in top)
        key = self.wrapped(
            self.dx,
            y + 6,
            f"the other {n - len(top)} components sum to {signed(rest)} · red "
            "raises the logit, blue lowers it; bars to the scale of the largest |contribution|",
            self.diagram_w,
            FS["tiny"],
            colour=C.MUTED,
        )
        self.label(key)
        self.y = key.box.bottom + 8
        self.end_band("unembedding", self.content.glossary_callout("direct-logit-attribution"))
        self.close_panel()

    # ---- heads ----------------------------------------------------------------------------------------
    def head_fill(self, value: float | None) -> str:
        """A head's colour: diverging around 0 for DLA, the 0–1 attention scale for scores."""
        if value is None:
            return C.MASKED
        if self.head_color == "dla":
            return C.diverging(value / self.head_scale)
        return C.sequential(value)

    def head_text(self, value: float | None) -> str:
        """A head's value as its cell shows it: scores with two decimals; DLA with as many as give the largest
        two significant digits, so every cell of the map has the same width of number."""
        if value is None:
            return "n/a"
        if self.head_color != "dla":
            return fixed(value, 2)
        digits = max(0, 1 - math.floor(math.log10(self.head_scale)))
        text = fixed(value, digits)
        return text if text == "0" or text.startswith("−") else "+" + text

    def head_map_panel(self) -> None:
        """Layers × heads, one cell per head coloured by the chosen metric, with its scale."""
        metric, layers, heads = self.head_color, self.view_layers, self.view_heads
        self.open_panel(
            "attention", "Heads", f"{len(layers)} layers × {len(heads)} heads, coloured by {HEAD_METRIC[metric]}"
        )
        self.begin_band()
        top = self.y + 4
        gutter = self.wrapped(
            self.gutter_x,
            top,
            f"rows: layers L{layers[0]}–L{layers[-1]} · columns: heads "
            f"H{heads[0]}–H{heads[-1]} · outlined: the head drawn in full above; hover a cell for "
            "all its scores",
            self.gutter_w,
            FS["small"],
            colour=C.MUTED,
        )
        self.label(gutter)
        label_w = width(f"L{layers[-1]}", FS["small"]) + 8
        cell = max(14.0, min(36.0, (self.diagram_w - label_w) / len(heads)))
        x0 = self.dx + label_w
        self.label(
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
            self.label(
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
                v = self.head_values[L, h]
                fill = self.head_fill(v)
                box = Box(x0 + col * cell, y, cell, cell)
                g = Group(
                    [Rect(box, fill, "#ffffff", 1)],
                    tip=self.readout.head_tip(L, h),
                    cls="head-cell",
                    data={"layer": str(L), "head": str(h), "value": "" if v is None else repr(v)},
                )
                text = self.head_text(v)
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
                if L in self.layers and h == self.head:
                    g.parts.append(Rect(Box(box.x + 1, y + 1, cell - 2, cell - 2), "none", C.TEXT, 1.6))
                self.front.append(g)
        self.y = max(gutter.box.bottom, y0 + len(layers) * cell) + 10
        self.head_scale_legend(x0, min(cell * len(heads), self.diagram_right - x0))
        self.end_band("attention", self.content.glossary_callout(HEAD_GLOSSARY[metric]))
        self.close_panel()

    def head_scale_legend(self, x: float, w: float) -> None:
        """The head map's colour scale with its numbers (and the chance level of a role score)."""
        w = max(w, 240.0)
        y = self.y
        group = Group(cls="head-scale")
        if self.head_color == "dla":
            m = self.head_scale
            group.parts += self.gradient_bar(x, y, w, C.diverging, -1.0)
            ticks = [(f"−{m:.3g}", "start", x), ("0", "middle", x + w / 2), (f"+{m:.3g}", "end", x + w)]
            what = (
                "sum of each head's direct logit attribution to the " + self.readout.metric() + " at position "
                f"{self.g.analysis.dla.position}: red raises it, blue lowers it (scale: the largest |value|)"
            )
        else:
            group.parts += self.gradient_bar(x, y, w, C.sequential, 0.0)
            ticks = [("0", "start", x), ("0.5", "middle", x + w / 2), ("1", "end", x + w)]
            what = (
                "share of the eigenvalue mass of the full OV circuit that is positive: near 1, the head copies "
                "what it attends to"
                if self.head_color == "copying"
                else "mean attention to the key the role "
                f"picks out ({self.g.analysis.roles.source}); grey: undefined on this sequence"
            )
        y += 14
        group.texts += [
            text_at(lx, y, [label], FS["small"], anchor=anchor, colour=C.MUTED) for label, anchor, lx in ticks
        ]
        y += line_height(FS["small"]) + 2
        chance = self.g.analysis.roles.chance.get(self.head_color)  # None for dla and copying
        if chance is not None:
            cx = x + w * chance
            group.parts.append(Path(f"M{cx},{self.y - 2} V{self.y + 14}", C.TEXT, 1.5))
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
        t = self.wrapped(x, y, what, self.diagram_right - x, FS["small"])
        group.texts.append(t)
        self.front.append(group)
        self.y = t.box.bottom + 8

    def head_chip(self, layer: int, head: int, after: Text) -> None:
        """A swatch in the head map's colour beside the title of a head drawn in full, with its value."""
        v = self.head_values[layer, head]
        text = f"{HEAD_METRIC[self.head_color]}: {self.head_text(v)}"
        tw = width(text, FS["small"])
        x, y = after.box.right + 14, after.box.y
        right = self.panel_right - 7 * (len(self.panels) - 1) - 10
        if x + 18 + tw > right:  # no room on the title line: a line of its own
            x, y = self.gutter_x, self.y
            self.y += line_height(FS["small"]) + 4
        self.front.append(
            Group(
                [Rect(Box(x, y + 1, 12, 12), self.head_fill(v), C.TEXT, 0.8, 2)],
                [text_at(x + 18, y, [text], FS["small"])],
                tip=self.readout.head_tip(layer, head),
                cls="head-chip",
                data={"layer": str(layer), "head": str(head)},
            )
        )
