"""What the graph's stored analysis adds to the explorer: colour columns per head metric, a DLA line per
component node, a summary per head for the node panel, and the analysis panel (direct logit attribution,
head roles, decoding). Everything is read from ``graph.analysis``; nothing is recomputed here.

A head's metric colours every node of that head (its q, k, v, scores, pattern, z, output and weight slices),
so a head lights up as a unit wherever it is looked at. Direct logit attribution colours the components at
the attributed position by their own contribution and the rest of each attributed head by the head's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gpt2graph.plugin import Analysis, DecodingResult, DLAResult, Role, Selection, percent, signed

if TYPE_CHECKING:
    from gpt2graph import Graph

from .layout import Layout
from .sanitize import escape

__all__ = ["ANALYSIS_MODES", "ROLE_MODES", "Metrics", "analysis_panel", "decoding_panel", "head_panels", "metrics"]

ROLE_MODES = tuple(map(str, Role))
#: colour modes an analysed graph adds: signed DLA, then scores in [0, 1]
ANALYSIS_MODES = ("dla", *ROLE_MODES, "copying")
#: how the colour bar names each score
_SCORE_NAME = {
    "previous_token": "previous-token score",
    "first_token": "first-token (sink) score",
    "current_token": "current-token score",
    "induction": "induction score",
    "copying": "OV copying score",
}
#: colour-bar ends closer than this to the chance tick lose their label, so the two never overlap
_TICK_GAP = 0.08


@dataclass(frozen=True)
class Metrics:
    """Node columns of the analysis colour modes and the titles and ticks of their colour bars."""

    columns: dict[str, np.ndarray]  # c_<mode> float32 in [0, 1], NaN where the metric says nothing; dla_text
    titles: dict[str, str]  # plain text (Bokeh draws it on the canvas)
    ticks: dict[str, dict[float, str]]  # colour-bar position in [0, 1] -> label, per mode


def _unit_heads(lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Layer and head (-1: none) of every node."""
    n = lay.n
    units = [*lay.groups, *lay.params]
    layer = np.array([-1 if k.layer is None else k.layer for k in units], dtype=np.int32)
    head = np.array([-1 if k.head is None else k.head for k in units], dtype=np.int32)
    per_node = np.concatenate([np.repeat(np.arange(len(lay.groups)), n), np.arange(len(lay.groups), len(units))])
    return layer[per_node], head[per_node]


def _what(d: DLAResult) -> str:
    """What DLA attributes, as plain text."""
    return f"logit({d.token})" if d.contrast is None else f"logit({d.token}) − logit({d.contrast})"


def _score_bar(name: str, chance: float | None) -> tuple[str, dict[float, str]]:
    """Title and ticks of a score's colour bar: 0 and 1, and the score of a uniform head (the level a score
    is read against) when there is one. That tick's label is the bare number, short enough to sit beside an
    end's; the title says what it marks."""
    if chance is None:
        return f"{name} (grey: not a head's)", {0: "0", 0.5: "0.5", 1: "1"}
    ends = {end: str(end) for end in (0, 1) if abs(end - chance) >= _TICK_GAP}
    return (
        f"{name} (tick {chance:.2f}: a head attending uniformly; grey: not a head's)",
        {**ends, float(chance): f"{chance:.2f}"},
    )


def metrics(analysis: Analysis, lay: Layout) -> Metrics:
    """The ``c_<mode>`` colour column of every analysis mode, ``dla_text`` (each component node's tooltip
    line), and the colour-bar ticks: DLA's ends are the largest contribution, role scores mark chance."""
    layer, head = _unit_heads(lay)
    d = lay.topology.dims

    def per_head(score: np.ndarray) -> np.ndarray:  # (n_layer, n_head) -> every node of each head
        out = np.full(layer.shape, np.nan, dtype=np.float32)
        mask = head >= 0
        out[mask] = score[layer[mask], head[mask]]
        return out

    cols: dict[str, np.ndarray] = {}
    titles: dict[str, str] = {}
    ticks: dict[str, dict[float, str]] = {}
    for role in ROLE_MODES:
        score = np.full((d.n_layer, d.n_head), np.nan)
        for h in analysis.roles.heads:
            value = getattr(h, role)
            score[h.layer, h.head] = np.nan if value is None else value
        cols[f"c_{role}"] = per_head(score)
        titles[role], ticks[role] = _score_bar(_SCORE_NAME[role], analysis.roles.chance.get(role))
    copying = np.full((d.n_layer, d.n_head), np.nan)
    for c in analysis.circuits.heads:
        copying[c.layer, c.head] = c.ov_copying_score
    cols["c_copying"] = per_head(copying)
    titles["copying"], ticks["copying"] = _score_bar(_SCORE_NAME["copying"], None)

    head_dla = np.full((d.n_layer, d.n_head), np.nan)
    for (L, h), contribution in analysis.dla.by_head().items():
        head_dla[L, h] = contribution
    raw = np.full(layer.shape, np.nan, dtype=np.float32)
    for a in analysis.dla.contributions:
        if a.component in lay.id_index:  # every component is a node (b_O, ln_final.b: weights), maybe outside the view
            raw[lay.id_index[a.component]] = a.contribution
    dla = per_head(head_dla)
    own = ~np.isnan(raw)
    dla[own] = raw[own]  # a component's own contribution over its head's
    span = float(np.nanmax(np.abs(dla))) if not np.isnan(dla).all() else 0.0
    scaled = 0.5 + 0.5 * dla / span if span > 0 else np.where(np.isnan(dla), np.nan, 0.5)  # all zero: the middle
    cols["c_dla"] = scaled.astype(np.float32)
    ticks["dla"] = {0: signed(-span), 0.5: "0", 1: signed(span)}
    titles["dla"] = (
        f"direct logit attribution to {_what(analysis.dla)} (red raises it, blue lowers it; grey: not attributed)"
    )
    what = f"direct effect on {_what(analysis.dla)} at position {analysis.dla.position}: "
    cols["dla_text"] = np.array(["" if np.isnan(v) else what + signed(float(v)) for v in raw])
    return Metrics(cols, titles, ticks)


def _table(header: list[str], rows: list[list[str]], cls: str) -> str:
    """An HTML table of already escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="g2g-table {cls}"><tr>{head}</tr>{body}</table>'


def _shown(name: str) -> str:
    """A role or step name as the page writes it: ``previous_token`` as ``previous-token``, escaped."""
    return escape(name.replace("_", "-"))


def head_panels(analysis: Analysis) -> list[str]:
    """HTML per head (index ``layer * n_head + head``) for the node panel of any of its nodes: its role
    scores against a uniform head and its label, its direct effect (DLA attributes every head's output at
    its position), and its circuits (OV copying score, leading singular values, the tokens it boosts). Every
    token is escaped."""
    dla = analysis.dla.by_head()
    c = analysis.circuits
    chance = analysis.roles.chance
    out = []
    for role, circuit in zip(analysis.roles.heads, c.heads, strict=True):
        scores = [
            [
                _shown(r),
                "—" if getattr(role, r) is None else f"{getattr(role, r):.3f}",
                "—" if chance.get(r) is None else f"{chance[r]:.3f}",
            ]
            for r in ROLE_MODES
        ]
        label = f"labelled <b>{_shown(role.label)}</b>" if role.label else "no role stands out"
        effect = (
            f"<p>direct effect on {escape(_what(analysis.dla))} at position {analysis.dla.position}: "
            f"{signed(dla[role.layer, role.head])}</p>"
        )
        boosted = ", ".join(f"{escape(t.token)} {signed(t.value)}" for t in circuit.boosted)
        out.append(
            f'<div class="g2g-head"><h3>Head {role.layer}.{role.head}</h3><p>{label}</p>'
            + _table(["role", "score", "uniform head"], scores, "g2g-head-roles")
            + effect
            + f"<p>OV copying score {circuit.ov_copying_score:.3f} (near 1: copies the tokens it attends to)</p>"
            + "<p>singular values: QK "
            + ", ".join(f"{s:.3g}" for s in circuit.qk_singular_values[:3])
            + " · OV "
            + ", ".join(f"{s:.3g}" for s in circuit.ov_singular_values[:3])
            + "</p>"
            + f"<p>attending to <b>{escape(c.input_token)}</b>, it raises: {boosted}</p></div>"
        )
    return out


def analysis_panel(analysis: Analysis, k: int = 8, view: Graph | None = None) -> str:
    """HTML of the analysis: the ``k`` largest DLA contributors, the strongest and the labelled heads per role
    against the uniform baseline, and the decoding table of every step; components and heads are those of
    ``view`` (None: every one). Every text from the run is escaped."""
    d = analysis.dla
    what = (
        f"logit of <b>{escape(d.token)}</b>"
        if d.contrast is None
        else f"logit difference <b>{escape(d.token)}</b> − <b>{escape(d.contrast)}</b>"
    )
    dla = [
        f"<h3>Direct logit attribution</h3><p>{what} after position {d.position}: model value "
        f"{signed(d.model_value)}, sum of all {len(d.contributions)} contributions {signed(d.total)} "
        f"(residual error {d.residual_error:.1e}, tolerance {d.tolerance:.0e})</p>",
        _table(
            ["component", "kind", "contribution"],
            [
                [escape(c.component), escape(c.kind), signed(c.contribution)]
                for c in [c for c in d.top(len(d.contributions)) if view is None or c.component in view][:k]
            ],
            "g2g-dla",
        ),
    ]
    r = analysis.roles
    shown = Selection() if view is None else view.selection
    rows = []
    for role in ROLE_MODES:
        ranked = [h for h in r.ranked(role) if shown.admits(h.layer, h.head, None)][:3]
        best = ", ".join(f"{h.layer}.{h.head} ({getattr(h, role):.2f})" for h in ranked if getattr(h, role) is not None)
        labelled = [h for h in r.heads if h.label == role and shown.admits(h.layer, h.head, None)]
        labelled = ", ".join(f"{h.layer}.{h.head}" for h in labelled) or "—"
        best = best or "—"
        chance = r.chance.get(role)
        rows.append([_shown(role), best, "—" if chance is None else f"{chance:.2f}", labelled])
    source = "the prompt" if r.source == "prompt" else f"the prompt plus {r.probe_length} random tokens, twice"
    roles = [
        f"<h3>Head roles</h3><p>heads as layer.head, scored on {source}; labelled: lift over a uniform "
        f"head ≥ {r.label_threshold:g}</p>",
        _table(["role", "strongest heads", "uniform head", "labelled"], rows, "g2g-roles"),
    ]
    return (
        '<div class="g2g-analysis">'
        + "".join(f"<div>{''.join(p)}</div>" for p in (dla, roles, [decoding_panel(analysis.decoding)]))
        + "</div>"
    )


def decoding_panel(dec: DecodingResult) -> str:
    """HTML of one decoding: the settings, the chosen next token, and the top candidates after every step.
    Every token is escaped."""
    how = ", ".join(
        [
            f"temperature {dec.temperature:g}",
            f"top-k {dec.top_k or 'off'}",
            f"top-p {dec.top_p or 'off'}",
            "greedy" if dec.greedy else f"sampled with seed {dec.seed}",
        ]
    )
    steps = [
        [
            _shown(s.kind) + ("" if s.value is None else f" {s.value:g}"),
            f"{s.kept:,}",
            ", ".join(f"{escape(c.token)} {percent(c.prob)}" for c in s.candidates),
        ]
        for s in dec.steps
    ]
    return (
        f"<h3>Decoding after position {dec.position}</h3><p>{how}: next token "
        f"<b>{escape(dec.chosen.token)}</b> ({percent(dec.chosen.prob)})</p>"
        + _table(["step", "kept", "top candidates"], steps, "g2g-decoding")
    )
