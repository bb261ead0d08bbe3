"""The panels after the forward pass: decoding the next token, and, when the graph carries an analysis, the
logit lens and direct logit attribution (the map of heads is :mod:`.heads`).

Each is drawn on the page it is given (:class:`~.engine.Page`: its frame, bands and panels) over the lanes of
the forward pass, and reads every number from :mod:`.readout` (that is, from the core)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpt2graph.plugin import CATEGORY_COLOURS, DecodingResult, Key, fixed, percent, signed, tint

from . import colors as C
from .engine import Page
from .readout import Readout, decoding_rows
from .rows import Lanes
from .scene import COL_W, FS, Box, Group, Path, Rect, text_at
from .sections import ForwardPass
from .text import fit, line_height, width

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["Panels", "DLA_ROWS"]

#: contributors listed in the DLA panel
DLA_ROWS = 12
STEP_LABEL = {"softmax": "softmax", "temperature": "temperature", "top_k": "top-k", "top_p": "top-p"}
SYMBOL = {"temperature": "T", "top_k": "k", "top_p": "p"}


class Panels:
    """The decoding panel and, for a graph carrying an analysis, the logit lens and DLA panels: drawn on a
    page over the lanes of the forward pass, every number read from :mod:`.readout` (that is, from the
    core)."""

    def __init__(
        self,
        page: Page,
        lanes: Lanes,
        graph: Graph,
        readout: Readout,
        forward: ForwardPass,
        result: DecodingResult,
        stored: bool,
    ):
        self.page, self.frame, self.lanes = page, page.frame, lanes
        self.g, self.top, self.d = graph, graph.topology, graph.dims
        self.readout = readout
        self.forward = forward
        self.result = result  # the decoding drawn
        self.stored = stored  # it is the analysis's own
        self.tokens = list(graph.tokenization.tokens_visible)

    # ---- decoding -----------------------------------------------------------------------------------
    def decoding(self) -> None:
        """The decoding panel: the decoding stage of every lane, the steps and the table for one position,
        and the chosen token."""
        dec = self.result
        p = dec.position
        with self.page.panel(
            "unembedding",
            "Decoding",
            "from each position's logits to the token the model would "
            f"write next; in detail for position {p} ({self.tokens[p]})",
        ):
            self.forward.decoding_stage()
            with self.page.band("unembedding"):
                self.decoding_steps(self.page.y + 4)
                how = ", ".join(
                    [
                        f"temperature {dec.temperature:g}",
                        "no top-k" if dec.top_k is None else f"top-k {dec.top_k}",
                        "no top-p" if dec.top_p is None else f"top-p {dec.top_p:g}",
                        "greedy" if dec.greedy else f"sampled with seed {dec.seed}",
                    ]
                )
                source = "from the analysis stored with the graph" if self.stored else "computed for this picture"
                self.page.note(
                    self.frame.diagram_x,
                    self.page.y + 6,
                    f"settings: {how} ({source}); change them with --option temperature=… top_k=… top_p=… seed=…",
                    self.frame.diagram_w,
                    FS["small"],
                    gap=10,
                )
                self.decoding_table()
            self.next_token()

    def decoding_steps(self, top: float) -> None:
        """One box per step, in the order they are applied, then the choice."""
        dec = self.result
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
        box_w = min(150.0, (self.frame.diagram_w - gap * (n - 1)) / n)
        row_h = line_height(FS["h2"]) + 2 * line_height(FS["small"]) + 12
        colour = CATEGORY_COLOURS["unembedding"]
        x = self.frame.diagram_x
        for i, (kind, label, value, note) in enumerate(boxes):
            mid = x + box_w / 2
            self.page.front.append(
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
                self.page.under(
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
        self.page.y = top + row_h

    def decoding_table(self) -> None:
        """The candidates with their probability after every step, a bar under each; the chosen one in bold."""
        dec = self.result
        colour = CATEGORY_COLOURS["unembedding"]
        x0, y = self.frame.diagram_x, self.page.y
        cols = {"rank": x0, "token": x0 + 34, "id": x0 + 166, "logit": x0 + 222}
        step_x = x0 + 286
        step_w = (self.frame.diagram_right - step_x) / len(dec.steps)
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
        self.page.label(*heads)
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
                g.parts.append(
                    Rect(Box(x0 - 4, y - 1, self.frame.diagram_right - x0 + 4, rh), tint(colour, 0.12), rx=3)
                )
            g.texts += [
                text_at(cols["rank"], y, ["…" if row.rank is None else str(row.rank)], FS["body"], bold=bold),
                text_at(cols["token"], y, [fit(row.token, 126, FS["body"], bold)], FS["body"], bold=bold),
                text_at(cols["id"], y, [str(row.token_id)], FS["body"], colour=C.MUTED),
                text_at(cols["logit"], y, [fixed(row.logit, 3)], FS["body"], colour=C.MUTED),
            ]
            self.page.front.append(g)
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
                self.page.front.append(cell)
            y += rh
        self.page.note(
            x0,
            y + 2,
            "each column: the distribution after that step (rank, logit: before any "
            "step) · 0 (cut): filtered out · —: kept, but not among the step's listed candidates",
            self.frame.diagram_w,
            FS["tiny"],
        )

    def next_token(self) -> None:
        """The chosen token, as the pass's output."""
        dec, c = self.result, self.result.chosen
        with self.page.band("unembedding"):
            top = self.page.y + 4
            self.page.label(
                text_at(
                    self.frame.gutter_x,
                    top + 6,
                    ["next token"],
                    FS["h2"],
                    bold=True,
                    colour=CATEGORY_COLOURS["unembedding"],
                )
            )
            size = FS["title"] - 4
            shown = fit(c.token, 400, size, True)
            box = Box(self.frame.diagram_x, top, width(shown, size, True) + 40, line_height(size) + 16)
            how = "greedy: the most probable token" if dec.greedy else f"sampled with seed {dec.seed}"
            self.page.front.append(
                Group(
                    [Rect(box, CATEGORY_COLOURS["unembedding"], rx=8)],
                    [text_at(box.x + 20, top + 8, [shown], size, bold=True, colour="#ffffff")],
                    tip=f"next token {c.token!r} (id {c.id}), probability {c.prob:.6g} after the last step; {how}",
                    cls="output-token",
                    data={"token-id": str(c.id)},
                )
            )
            sub = self.page.wrapped(
                box.right + 14,
                top + 6,
                f"id {c.id} · probability {percent(c.prob)} · {how} · appended to the prompt, and the pass runs again",
                self.frame.diagram_right - box.right - 14,
                FS["body"],
                colour=C.MUTED,
            )
            self.page.label(sub)
            self.page.y = max(box.bottom, sub.box.bottom) + 8

    # ---- logit lens ---------------------------------------------------------------------------------
    def lens(self) -> None:
        """The most probable next token of every residual stream vector, read through ln_final and W_U."""
        rows = [("input_embedding", None, "embeddings")]
        for L in range(self.d.n_layer):
            after_mlp = self.top.stream(L + 1, 0)
            rows += [
                ("resid_mid", L, f"block {L}, after attention"),
                (after_mlp.kind, after_mlp.layer, f"block {L}, after the MLP"),
            ]
        ids = [[self.top.vector_id(Key(kind, layer, None, p)) for p in self.lanes.positions] for kind, layer, _ in rows]
        shown = [(r, i) for r, i in zip(rows, ids, strict=True) if all(n in self.g and self.readout.lens(n) for n in i)]
        if not shown:
            return
        with (
            self.page.panel(
                "unembedding",
                "Logit lens",
                "each residual stream vector read as if it were the last: ln_final, then W_U",
            ),
            self.page.band("unembedding", lambda: self.page.content.glossary_callout("logit-lens")),
        ):
            token_ids = self.g.tokenization.token_ids
            rh = line_height(FS["small"]) + 8
            y = self.page.y + 4
            for (_, _, name), node_ids in shown:
                self.page.label(text_at(self.frame.gutter_x, y + 3, [name], FS["small"], colour=C.MUTED))
                for p, node in zip(self.lanes.positions, node_ids, strict=True):
                    best = self.readout.lens(node).top[0]
                    fill = C.sequential(best.prob)
                    box = Box(self.lanes.x[p] + 4, y, COL_W - 8, rh - 2)
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
                    self.page.front.append(
                        Group(
                            [Rect(box, fill, CATEGORY_COLOURS["unembedding"] if hit else C.RULE, 2 if hit else 0.6, 3)],
                            [token, prob],
                            tip="\n".join([node, *self.readout.notes(node)]),
                            cls="lens-cell",
                            data={"node": node, "token-id": str(best.id)},
                        )
                    )
                y += rh
            self.page.note(
                self.frame.diagram_x,
                y + 4,
                "each cell: the most probable token under the lens, shaded by its "
                "probability on the 0–1 attention scale; outlined and bold: it is the token that "
                "actually comes next. Hover a cell (or any stream vector above) for the top tokens and "
                "the next token's rank.",
                self.frame.diagram_w,
                FS["tiny"],
            )

    # ---- direct logit attribution -------------------------------------------------------------------
    def dla(self) -> None:
        """The largest contributors to the attributed logit as a signed bar chart, and the sum check."""
        dla = self.g.analysis.dla
        p = dla.position
        with (
            self.page.panel(
                "unembedding",
                "Direct logit attribution",
                f"{self.readout.metric()} after position {p} ({self.tokens[p]})",
            ),
            self.page.band("unembedding", lambda: self.page.content.glossary_callout("direct-logit-attribution")),
        ):
            n = len(dla.contributions)
            check = self.page.wrapped(
                self.frame.diagram_x,
                self.page.y + 4,
                f"model value {signed(dla.model_value, 6)} = sum of all {n} "
                f"contributions {signed(dla.total, 6)} (residual error {dla.residual_error:.1e}, "
                f"tolerance {dla.tolerance:g}) · final LayerNorm scale frozen at {dla.ln_scale:.4g}",
                self.frame.diagram_w,
                FS["small"],
            )
            self.page.label(check)
            y = check.box.bottom + 10
            top = [a for a in dla.top(n) if a.component in self.g][:DLA_ROWS]  # the view's largest
            scale = max(abs(a.contribution) for a in top) or 1.0
            value_w = 64
            half = (self.frame.diagram_w - value_w - 8) / 2
            zero = self.frame.diagram_x + half
            rh = line_height(FS["body"]) + 6
            axis_top = y
            for rank, a in enumerate(top, 1):
                v = a.contribution
                length = max(0.5, half * abs(v) / scale)
                bar = Box(zero if v >= 0 else zero - length, y + 2, length, rh - 6)
                self.page.front.append(
                    Group(
                        [Rect(bar, C.diverging(0.8 if v >= 0 else -0.8), rx=1)],
                        [
                            text_at(
                                self.frame.gutter_x,
                                y,
                                [fit(f"{rank}. {self.readout.component_label(a)}", self.frame.gutter_w, FS["body"])],
                                FS["body"],
                            ),
                            text_at(self.frame.diagram_right, y, [signed(v)], FS["body"], anchor="end"),
                        ],
                        tip=f"{a.component}\n{self.readout.component_label(a)} ({a.kind}): {signed(v, 6)} to the "
                        f"{self.readout.metric()}",
                        cls="dla-bar",
                        data={"component": a.component, "contribution": repr(v)},
                    )
                )
                y += rh
            self.page.under(Group([Path(f"M{zero},{axis_top - 2} V{y + 2}", C.MUTED, 1)]))
            rest = dla.total - sum(a.contribution for a in top)
            self.page.note(
                self.frame.diagram_x,
                y + 6,
                f"the other {n - len(top)} components sum to {signed(rest)} · red "
                "raises the logit, blue lowers it; bars to the scale of the largest |contribution|",
                self.frame.diagram_w,
                FS["tiny"],
            )
