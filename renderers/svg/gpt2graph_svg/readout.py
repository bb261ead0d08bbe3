"""What the graph's interpretability results say, worded for the page: the decoding to draw, the tooltip notes
of each node (logit lens, direct logit attribution), and one value per head for the head map.

Every number comes from the core: the stored ``graph.analysis``, or :func:`gpt2graph.decoding.decode_next`
when the decoding options ask for something else. The renderer never computes a lens or an attribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpt2graph.plugin import (
    Attribution,
    DecodingResult,
    InterpretError,
    LensEntry,
    RendererError,
    Role,
    decode_next,
    percent,
    signed,
)

__all__ = [
    "HEAD_COLOURS",
    "HEAD_METRIC",
    "CANDIDATES",
    "decoding",
    "decoding_view",
    "Row",
    "decoding_rows",
    "Readout",
]

#: what the head map can be coloured by, with how a legend names it
HEAD_METRIC = {
    "dla": "direct logit attribution",
    "previous_token": "previous-token score",
    "first_token": "first-token score",
    "current_token": "current-token score",
    "induction": "induction score",
    "copying": "OV copying score",
}
HEAD_COLOURS = tuple(HEAD_METRIC)
#: rows of a decoding table computed for the render (a stored one keeps the analysis's own length)
CANDIDATES = 8


def decoding_view(
    graph: Any, *, temperature: float | None, top_k: int | None, top_p: float | None, seed: int | None
) -> Any:
    """The graph to draw: itself, or, when a decoding option is given, a view with those settings
    (temperature 1, no filter and greedy where unset), so the decoding rows and the table agree. A bad option
    is a :class:`RendererError` carrying the core's message."""
    if (temperature, top_k, top_p, seed) == (None, None, None, None):
        return graph
    try:
        return graph.with_decoding(1.0 if temperature is None else temperature, top_k, top_p, seed)
    except InterpretError as exc:
        raise RendererError(f"decoding option: {exc}") from exc


def decoding(graph: Any, custom: bool) -> tuple[DecodingResult, bool]:
    """The decoding table to draw and whether it is the stored one: the analysis's when the graph carries one
    and no decoding option was given (``custom``), otherwise the core's ``decode_next`` with the graph's
    decoding settings, at the analysed position or the last one."""
    analysis = graph.analysis
    if analysis is not None and not custom:
        return analysis.decoding, True
    s = graph.decoding
    return decode_next(
        graph,
        position=-1 if analysis is None else analysis.decoding.position,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        seed=s.seed,
        candidates=CANDIDATES,
    ), False


@dataclass(frozen=True)
class Row:
    """One token of the decoding table: its probability after each step (0: filtered out by that step; None:
    kept but not among the step's listed candidates)."""

    token_id: int
    token: str
    logit: float  # the model's raw logit
    probs: tuple[float | None, ...]
    rank: int | None  # rank in the first step's table; None for a sampled token listed below it
    chosen: bool


def decoding_rows(graph: Any, result: DecodingResult) -> list[Row]:
    """The candidates of every step as one table: the steps never reorder tokens (temperature is monotone,
    the filters cut the tail), so one row per token reads across the steps. A sampled token outside the
    tables gets a row of its own with its final probability."""
    tables = [{c.id: c.prob for c in step.candidates} for step in result.steps]
    order: dict[int, str] = {}
    for step in result.steps:
        for c in step.candidates:
            order.setdefault(c.id, c.token)
    first = {c.id: r for r, c in enumerate(result.steps[0].candidates, 1)}
    logits = graph.logits[result.position]

    def probs(token_id: int) -> tuple[float | None, ...]:
        # a token missing from a step that lists all its survivors was filtered out: probability exactly 0
        return tuple(
            t.get(token_id, 0.0 if len(s.candidates) == s.kept else None)
            for t, s in zip(tables, result.steps, strict=True)
        )

    rows = [Row(i, tok, float(logits[i]), probs(i), first.get(i), i == result.chosen.id) for i, tok in order.items()]
    if not any(r.chosen for r in rows):
        c = result.chosen
        rows.append(Row(c.id, c.token, float(logits[c.id]), (None,) * (len(result.steps) - 1) + (c.prob,), None, True))
    return rows


class Readout:
    """The stored analysis of one graph, indexed for lookups while the page is laid out."""

    def __init__(self, graph: Any):
        self.g = graph
        self.analysis = a = graph.analysis
        self._lens = None if a is None else a.lens
        self.dla = {} if a is None else {c.component: c for c in a.dla.contributions}
        self.roles = {} if a is None else {(r.layer, r.head): r for r in a.roles.heads}
        self.circuits = {} if a is None else {(c.layer, c.head): c for c in a.circuits.heads}
        self.head_dla = {} if a is None else a.dla.by_head()

    def lens(self, node_id: str) -> LensEntry | None:
        """The stored logit-lens entry of a node (made from the lens arrays only for the nodes drawn)."""
        return None if self._lens is None else self._lens.entry(node_id)

    def metric(self) -> str:
        """What DLA attributes, in words: ``logit of 'Ġthe'`` or ``logit('ĠMary') − logit('ĠJohn')``."""
        d = self.analysis.dla
        return f"logit of {d.token!r}" if d.contrast is None else f"logit({d.token!r}) − logit({d.contrast!r})"

    def notes(self, node_id: str) -> list[str]:
        """Tooltip lines for a node: its logit lens and its direct logit attribution, where the analysis has them."""
        lines = []
        entry = self.lens(node_id)
        if entry is not None:
            lines.append(
                f"logit lens (top {len(entry.top)}): " + " · ".join(f"{t.token!r} {percent(t.prob)}" for t in entry.top)
            )
            if entry.next_token_rank is not None:
                following = self.g.tokenization.tokens_visible[self.g.node(node_id).position + 1]
                lines.append(
                    f"next token {following!r}: rank {entry.next_token_rank:,} under the lens, "
                    f"{percent(entry.next_token_prob)}"
                )
            if entry.target_rank is not None:
                target = self.g.decode_token(self.analysis.lens.target)
                lines.append(f"target {target!r}: rank {entry.target_rank:,}, {percent(entry.target_prob)}")
        c = self.dla.get(node_id)
        if c is not None:
            extra = " (the MLP's output without b_out, which counts on its own)" if c.kind == "mlp_out" else ""
            lines.append(
                f"direct logit attribution to the {self.metric()} at position "
                f"{self.analysis.dla.position}: {signed(c.contribution)}{extra}"
            )
        return lines

    def head_value(self, metric: str, layer: int, head: int) -> float | None:
        """The head map's value for one head (None: the score is undefined on this sequence)."""
        if metric == "dla":
            return self.head_dla.get((layer, head))
        if metric == "copying":
            return self.circuits[layer, head].ov_copying_score
        return getattr(self.roles[layer, head], metric)

    def head_tip(self, layer: int, head: int) -> str:
        """Everything the analysis knows about one head, for its cell's tooltip."""
        a = self.analysis
        role, circuit = self.roles[layer, head], self.circuits[layer, head]
        scores = []
        for name in map(str, Role):
            value, chance = getattr(role, name), a.roles.chance.get(name)
            shown = "n/a" if value is None else f"{value:.3f}"
            scores.append(f"{name.replace('_', '-')} {shown}" + ("" if chance is None else f" (chance {chance:.3f})"))
        boosted = ", ".join(repr(t.token) for t in circuit.boosted[:3])
        return "\n".join(
            [
                f"head {layer}.{head} (layer {layer}, head {head}) · role: {role.label or 'none'}",
                f"attention scores ({a.roles.source}): " + " · ".join(scores),
                f"OV copying score {circuit.ov_copying_score:.3f} · boosts {boosted} after attending to "
                f"{a.circuits.input_token!r}",
                f"direct logit attribution to the {self.metric()} at position {a.dla.position}: "
                f"{signed(self.head_dla.get((layer, head), 0.0))}",
            ]
        )

    def component_label(self, c: Attribution) -> str:
        """A DLA component in words."""
        return {
            "token_embedding": "token embedding",
            "pos_embedding": "positional embedding",
            "head_out": f"head {c.layer}.{c.head} output",
            "b_O": f"attention bias b_O, block {c.layer}",
            "mlp_out": f"MLP {c.layer} output (without b_out)",
            "b_out": f"MLP bias b_out, block {c.layer}",
            "ln_final_b": "final LayerNorm bias",
        }[c.kind]
