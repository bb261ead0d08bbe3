"""What the graph's stored analysis adds to the explorer: colour columns per head metric, a DLA line per
component node, and the analysis panel (direct logit attribution, head roles, decoding). Everything is read
from ``graph.analysis``; nothing is recomputed here.

A head's metric colours every node of that head (its q, k, v, scores, pattern, z, output and weight slices),
so a head lights up as a unit wherever it is looked at. Direct logit attribution colours the components at
the attributed position by their own contribution and the rest of each attributed head by the head's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpt2graph.analysis import Analysis

from .layout import Layout
from .sanitize import escape

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["ANALYSIS_MODES", "MODE_TITLE", "ROLE_MODES", "metric_columns", "analysis_panel"]

ROLE_MODES = ("previous_token", "first_token", "current_token", "induction")
#: colour modes an analysed graph adds: signed DLA, then scores in [0, 1]
ANALYSIS_MODES = ("dla", *ROLE_MODES, "copying")
#: how the colour bar names each mode
MODE_TITLE = {"dla": "direct logit attribution (red raises the logit, blue lowers it)",
              "previous_token": "previous-token score", "first_token": "first-token (sink) score",
              "current_token": "current-token score", "induction": "induction score",
              "copying": "OV copying score"}


def _unit_heads(lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Layer and head (-1: none) of every node."""
    n = lay.topology.n_tokens
    units = [*lay.groups, *lay.params]
    layer = np.array([-1 if k.layer is None else k.layer for k in units], dtype=np.int32)
    head = np.array([-1 if k.head is None else k.head for k in units], dtype=np.int32)
    per_node = np.concatenate([np.repeat(np.arange(len(lay.groups)), n),
                               np.arange(len(lay.groups), len(units))])
    return layer[per_node], head[per_node]


def metric_columns(analysis: Analysis, lay: Layout, ids: np.ndarray) -> dict[str, np.ndarray]:
    """``c_<mode>`` float32 columns in [0, 1] (NaN: the metric says nothing about the node) for every
    analysis colour mode, and ``dla_text``, the tooltip line of each component node; ``ids`` are the node
    ids in layout order."""
    layer, head = _unit_heads(lay)
    d = lay.topology.dims
    index = {str(node_id): i for i, node_id in enumerate(ids)}

    def per_head(score: np.ndarray) -> np.ndarray:  # (n_layer, n_head) -> every node of each head
        out = np.full(layer.shape, np.nan, dtype=np.float32)
        mask = head >= 0
        out[mask] = score[layer[mask], head[mask]]
        return out

    cols: dict[str, np.ndarray] = {}
    for role in ROLE_MODES:
        score = np.full((d.n_layer, d.n_head), np.nan)
        for h in analysis.roles.heads:
            value = getattr(h, role)
            score[h.layer, h.head] = np.nan if value is None else value
        cols[f"c_{role}"] = per_head(score)
    copying = np.full((d.n_layer, d.n_head), np.nan)
    for c in analysis.circuits.heads:
        copying[c.layer, c.head] = c.ov_copying_score
    cols["c_copying"] = per_head(copying)

    head_dla = np.full((d.n_layer, d.n_head), np.nan)
    raw = np.full(layer.shape, np.nan, dtype=np.float32)
    for a in analysis.dla.contributions:
        if a.kind == "head_out":
            head_dla[a.layer, a.head] = a.contribution
        if a.component in index:
            raw[index[a.component]] = a.contribution
    dla = per_head(head_dla)
    own = ~np.isnan(raw)
    dla[own] = raw[own]  # a component's own contribution over its head's
    span = np.nanmax(np.abs(dla)) if own.any() else 0.0
    cols["c_dla"] = (0.5 + 0.5 * dla / span if span > 0 else np.where(np.isnan(dla), np.nan, 0.5)).astype(np.float32)
    cols["dla_text"] = _dla_text(analysis, raw)
    return cols


def _dla_text(analysis: Analysis, raw: np.ndarray) -> np.ndarray:
    """Each node's direct contribution to the attributed logit, as a tooltip line (empty when none)."""
    d = analysis.dla
    what = f"logit({d.token})" if d.contrast is None else f"logit({d.token}) − logit({d.contrast})"
    return np.array(["" if np.isnan(v) else f"direct effect on {what} at position {d.position}: {v:+.4f}"
                     for v in raw])


def _table(header: list[str], rows: list[list[str]], cls: str) -> str:
    """An HTML table of already escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="g2g-table {cls}"><tr>{head}</tr>{body}</table>'


def analysis_panel(graph: Graph, k: int = 8) -> str:
    """HTML of the analysis: the largest DLA contributors, the strongest heads per role against the uniform
    baseline, and the decoding table of every step. Every text from the run is escaped."""
    a = graph.analysis
    assert a is not None
    d = a.dla
    what = (f"logit of <b>{escape(d.token)}</b>" if d.contrast is None else
            f"logit difference <b>{escape(d.token)}</b> − <b>{escape(d.contrast)}</b>")
    parts = [f'<h3>Direct logit attribution</h3><p>{what} after position {d.position}: model value '
             f'{d.model_value:+.4f}, sum of all {len(d.contributions)} contributions {d.total:+.4f} '
             f'(residual error {d.residual_error:.1e})</p>',
             _table(["component", "contribution"], [[escape(c.component), f"{c.contribution:+.4f}"]
                                                    for c in d.top(k)], "g2g-dla")]
    r = a.roles
    rows = []
    for role in ROLE_MODES:
        best = r.ranked(role, 3)
        chance = r.chance.get(role)
        heads = ", ".join(f"L{h.layer}H{h.head} {getattr(h, role):.2f}" + (" ✓" if h.label == role else "")
                          for h in best if getattr(h, role) is not None) or "—"
        rows.append([escape(role.replace("_", "-")), heads, "—" if chance is None else f"{chance:.2f}"])
    source = "the prompt" if r.source == "prompt" else f"the prompt plus {r.probe_length} random tokens, twice"
    parts += [f'<h3>Head roles</h3><p>scored on {source}; ✓: labelled (lift over a uniform head ≥ '
              f'{r.label_threshold:g})</p>', _table(["role", "strongest heads", "uniform head"], rows, "g2g-roles")]
    dec = a.decoding
    how = ", ".join([f"temperature {dec.temperature:g}", f"top-k {dec.top_k or 'off'}", f"top-p {dec.top_p or 'off'}",
                     "greedy" if dec.greedy else f"sampled with seed {dec.seed}"])
    steps = [[escape(s.kind.replace("_", "-")) + ("" if s.value is None else f" {s.value:g}"), f"{s.kept:,}",
              ", ".join(f"{escape(c.token)} {c.prob:.1%}" for c in s.candidates)] for s in dec.steps]
    parts += [f'<h3>Decoding after position {dec.position}</h3><p>{how}: next token '
              f'<b>{escape(dec.chosen.token)}</b> ({dec.chosen.prob:.1%})</p>',
              _table(["step", "kept", "top candidates"], steps, "g2g-decoding")]
    return "".join(parts)
