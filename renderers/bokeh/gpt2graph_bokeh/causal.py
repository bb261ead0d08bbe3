"""The causal experiments stored on a run, in the explorer: the circuit overlaid on the canvas (each edge a
segment from the writer's output to the reader's input at the scored position, its width following its score;
clicking it shows its score and its two components), and the patching sweeps as heat maps with the exact
numbers on hover. Read from ``graph.header.circuit`` and ``graph.header.patching``; nothing is recomputed.

Models the tests look up by name: ``circuit-edges`` (edge source), ``circuit-panel`` (the Div the clicked edge
is described in), ``patching-<i>`` (the heat map of sweep i) and ``patching-cells-<i>`` (its source).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from bokeh.layouts import column
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJS,
    Div,
    FixedTicker,
    GlyphRenderer,
    HoverTool,
    InlineStyleSheet,
    LinearColorMapper,
    Range1d,
    TapTool,
)
from bokeh.models.layouts import LayoutDOM
from bokeh.palettes import RdBu11
from bokeh.plotting import figure

from gpt2graph.plugin import PatchSweep, PredictionCircuit, percent, reader_key, signed, writer_key

from .layout import Layout
from .sanitize import escape

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["Overlay", "circuit_overlay", "patching_panel", "causal_panels"]

#: the normalised patching metric: blue below 0 (as corrupted), red towards 1 (as clean)
_SCALE = tuple(RdBu11)  # Bokeh's RdBu runs from blue to red
#: edges that carry the prediction (ablating them lowers the metric) and edges that work against it
_LOWERS, _RAISES = RdBu11[1], RdBu11[-2]
_MAX_WIDTH = 7.0  # px, the strongest edge
_HINT = (
    '<p class="g2g-hint">The circuit (edge attribution patching) is drawn over the canvas at the position its '
    "metric is read, from each writer's output to the reader's input (a head's q, k or v; an MLP's ln2; the "
    "final LayerNorm). Click an edge for its score and its two components.</p>"
)


class Overlay:
    """The circuit's edges on the canvas and the Div a clicked edge is described in."""

    def __init__(self, source: ColumnDataSource, renderer: GlyphRenderer, panel: Div):
        self.source, self.renderer, self.panel = source, renderer, panel


def _component_text(circuit: PredictionCircuit, cid: str, node: str) -> str:
    c = next(c for c in circuit.components if c.id == cid)
    what = {
        "embed": "the token and position embedding",
        "head": f"head {c.head} of layer {c.layer}",
        "mlp": f"the MLP of layer {c.layer}",
        "logits": "the logits",
    }[str(c.type)]
    return f"<b>{escape(cid)}</b>: {escape(what)} (<code>{escape(node)}</code>)"


def circuit_overlay(fig: Any, tap: TapTool, graph: Graph, lay: Layout, css: str) -> Overlay | None:
    """Draw the stored circuit on the canvas ``fig`` (tapped with ``tap``), or None when the run has none. A view
    (``graph.subgraph(...)``) draws the edges whose writer and reader nodes it holds, and says how many it leaves
    out."""
    circuit = graph.header.circuit
    if circuit is None or not circuit.edges:
        return None
    p, top = circuit.position, graph.topology
    by_id = {c.id: c for c in circuit.components}
    scale = max(abs(e.score) for e in circuit.edges) or 1.0
    cols: dict[str, list] = {k: [] for k in ("x0", "y0", "x1", "y1", "width", "color", "score", "label", "html")}
    ends = [(e, writer_key(by_id[e.source], p), reader_key(by_id[e.target], e.input, p)) for e in circuit.edges]
    shown = [(e, w, r) for e, w, r in ends if top.vector_id(w) in graph and top.vector_id(r) in graph]
    for e, writer, read in shown:
        w, r = lay.index(writer), lay.index(read)
        reader = e.target + (f" ({e.input} input)" if e.input else "")
        cols["x0"].append(float(lay.x[w] + lay.width[w] / 2))
        cols["y0"].append(float(lay.y[w]))
        cols["x1"].append(float(lay.x[r] - lay.width[r] / 2))
        cols["y1"].append(float(lay.y[r]))
        cols["width"].append(1.5 + (_MAX_WIDTH - 1.5) * abs(e.score) / scale)
        cols["color"].append(_LOWERS if e.score < 0 else _RAISES)
        cols["score"].append(e.score)
        cols["label"].append(f"{e.source} → {reader}")
        effect = "lowers" if e.score < 0 else "raises"
        cols["html"].append(
            f"<h3>{escape(e.source)} → {escape(reader)}</h3>"
            f"<p>score <b>{e.score:.6g}</b>: ablating this edge alone {effect} the metric by about "
            f"{escape(signed(abs(e.score)))} (edge attribution patching, an estimate).</p>"
            f"<p>writer: {_component_text(circuit, e.source, top.vector_id(lay.key_of(w)))}"
            f"<br>reader: {_component_text(circuit, e.target, top.vector_id(lay.key_of(r)))}</p>"
        )
    source = ColumnDataSource({k: np.array(v) for k, v in cols.items()}, name="circuit-edges")
    renderer = fig.segment(
        "x0",
        "y0",
        "x1",
        "y1",
        source=source,
        line_width="width",
        line_color="color",
        line_alpha=0.85,
        name="circuit-edge-glyphs",
        level="overlay",
    )
    renderer.nonselection_glyph = None
    fig.add_tools(HoverTool(renderers=[renderer], tooltips=[("edge", "@label"), ("score", "@score{0.000000}")]))
    tap.renderers = [*tap.renderers, renderer]
    f = circuit.faithfulness
    intro = (
        f"<h3>Circuit: {len(circuit.edges)} edges, {escape(percent(f.recovered))} of the clean metric "
        f"recovered</h3><p>against <span class='g2g-prompt'>{escape(circuit.corrupted_text)}</span>, every other "
        f"edge {escape(str(f.ablation))}: clean {escape(signed(f.clean_value))}, all ablated "
        f"{escape(signed(f.ablated_value))}, circuit {escape(signed(f.circuit_value))}.</p>{_HINT}"
    )
    if len(shown) < len(circuit.edges):
        intro += (
            f"<p class='g2g-hint'>{len(circuit.edges) - len(shown)} of the edges join nodes outside this view "
            "and are not drawn.</p>"
        )
    panel = Div(
        text=intro,
        width=1160,
        name="circuit-panel",
        stylesheets=[InlineStyleSheet(css=css)],
        styles={"border": "1px solid #ddd", "padding": "6px", "background": "#fff"},
    )
    source.selected.js_on_change(
        "indices",
        CustomJS(
            args={"panel": panel, "source": source, "intro": intro},
            code="const i = source.selected.indices; panel.text = i.length ? source.data.html[i[0]] + intro : intro",
        ),
    )
    return Overlay(source, renderer, panel)


def patching_panel(index: int, sweep: PatchSweep) -> LayoutDOM:
    """One sweep as a heat map: rows and columns as stored, colour the normalised metric, hover the numbers."""
    rows, cols = sweep.rows, sweep.cols
    r, c = np.meshgrid(np.arange(len(rows.labels)), np.arange(len(cols.labels)), indexing="ij")
    source = ColumnDataSource(
        {
            "r": r.ravel(),
            "c": c.ravel(),
            "row": np.array([rows.labels[i] for i in r.ravel()]),
            "col": np.array([cols.labels[j] for j in c.ravel()]),
            "normalized": np.array(sweep.normalized, dtype=np.float64).ravel(),
            "raw": np.array(sweep.raw, dtype=np.float64).ravel(),
        },
        name=f"patching-cells-{index}",
    )
    cell = 34
    fig = figure(
        width=max(480, 200 + cell * len(cols.labels)),
        height=max(300, 220 + cell * len(rows.labels)),
        x_range=Range1d(-0.5, len(cols.labels) - 0.5),
        y_range=Range1d(len(rows.labels) - 0.5, -0.5),
        tools="hover,save",
        toolbar_location="right",
        title=f"{sweep.kind} · {sweep.method} · {sweep.direction}",
        name=f"patching-{index}",
        x_axis_label=cols.name,
        y_axis_label=rows.name,
    )
    fig.grid.visible = False
    mapper = LinearColorMapper(palette=list(_SCALE), low=-1, high=1)
    fig.rect(
        "c",
        "r",
        width=1,
        height=1,
        source=source,
        line_color="#ffffff",
        fill_color={"field": "normalized", "transform": mapper},
    )
    hover = fig.select_one(HoverTool)
    hover.tooltips = [
        (rows.name, "@row"),
        (cols.name, "@col"),
        ("normalised", "@normalized{0.000000}"),
        ("metric", "@raw{0.000000}"),
    ]
    for axis, labels in ((fig.xaxis, cols.labels), (fig.yaxis, rows.labels)):
        axis.ticker = FixedTicker(ticks=list(range(len(labels))))
        axis.major_label_overrides = dict(enumerate(labels))
    fig.xaxis.major_label_orientation = 0.9
    fig.add_layout(
        ColorBar(
            color_mapper=mapper,
            ticker=FixedTicker(ticks=[-1, 0, 1]),
            major_label_overrides={-1: "−1", 0: "0 = corrupted", 1: "1 = clean"},
            height=10,
            orientation="horizontal",
            title="normalised metric",
        ),
        "below",
    )
    note = Div(
        text=f"<span class='g2g-hint'>{escape(sweep.metric_text)}: clean {escape(signed(sweep.clean_value))}, "
        f"corrupted {escape(signed(sweep.corrupted_value))} "
        f"(<span class='g2g-prompt'>{escape(sweep.corrupted_text)}</span>); "
        f"{'one patched run per cell' if sweep.method == 'activation' else 'gradient estimate of every cell'}</span>",
        width=fig.width,
    )
    return column(fig, note)


def causal_panels(graph: Graph, overlay: Overlay | None, css: str, sweeps: bool = True) -> list[LayoutDOM]:
    """What goes under the canvas: the circuit's panel, then (unless ``sweeps`` is False) a heading and one heat
    map per stored sweep."""
    out: list[LayoutDOM] = [] if overlay is None else [overlay.panel]
    stored = graph.header.patching if sweeps else []
    if stored:
        out.append(
            Div(
                text="<h3>Patching sweeps</h3><p class='g2g-hint'>Each cell: the metric with that vector (or head) "
                "patched, normalised so that 0 is the corrupted run and 1 the clean run; hover for the numbers.</p>",
                width=1160,
                stylesheets=[InlineStyleSheet(css=css)],
            )
        )
        out += [patching_panel(i, s) for i, s in enumerate(stored)]
    return out
