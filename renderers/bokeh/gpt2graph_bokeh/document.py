"""The explorer as a Bokeh layout, built by one pure function from a graph (writing HTML is elsewhere).

What is on the page:

* the canvas (:mod:`.layout`): every vector and parameter as a rectangle, the edges within each position,
  token labels along the position axis, block and column labels along the top and bottom;
* hover: id, kind, shape, layer/head/position, value statistics, the glossary summary of its kind and the
  logit lens (of the residual stream; with a stored analysis, of every vector it read, and each component's
  direct logit attribution);
* click: ancestors (red outline) and descendants (blue outline) highlighted, the node's direct inputs and
  outputs drawn (across positions too), and the side panel filled with the node and its glossary entries,
  annotations and sources;
* the attention pattern of one head with token labels, chosen with the layer/head sliders or by clicking any
  vector or weight of a head;
* colour by legend category or by a value statistic (scaled within each kind); with an analysis, by direct
  logit attribution, a head role score or the OV copying score (:mod:`.analysis_panel`), and the analysis panel
  (DLA, head roles, decoding) under the canvas, and each head's summary in the panel of its nodes;
* above a ``max_positions`` prompt length, an overview of blocks replaces the vectors until the view is
  zoomed in to that many positions; then the vectors of a window of that many positions are drawn, the
  window following the view or its slider (level of detail, :mod:`.window`); attention patterns are pooled
  into cells of consecutive positions;
* with causal experiments stored on the run (:mod:`.causal`), the circuit over the canvas (click an edge for its
  score and components; drawn from the layout, whichever window is on the canvas) and the patching sweeps as
  heat maps under it.

Models the tests and the page's script look up by name: ``nodes`` (node source: the window's rows),
``edges``, ``ids``, ``units``, ``lens`` and ``dla`` (shared sources), ``ancestors`` and ``descendants`` (index
filters), ``links``, ``heat`` (pattern source), ``attn-layer`` and ``attn-head`` (sliders), ``window``,
``color-by``, ``panel``, ``overview``, ``analysis``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    CDSView,
    ColorBar,
    ColumnDataSource,
    CustomJS,
    CustomJSHover,
    Div,
    FixedTicker,
    GlyphRenderer,
    HoverTool,
    IndexFilter,
    InlineStyleSheet,
    Legend,
    LegendItem,
    LinearAxis,
    LinearColorMapper,
    LogColorMapper,
    NoOverlap,
    RadioButtonGroup,
    Range1d,
    Rect,
    Slider,
    TapTool,
    Title,
)
from bokeh.models.layouts import LayoutDOM
from bokeh.palettes import Oranges256, RdBu11, Viridis256
from bokeh.plotting import figure

from gpt2graph.plugin import (
    CATEGORY_COLOURS,
    DECODE_KINDS,
    VECTOR_SPECS,
    Category,
    Key,
    RendererError,
    VectorKind,
    decode_next,
)

from .analysis_panel import ANALYSIS_MODES, Metrics, analysis_panel, head_panels, metrics
from .ancestry import Rules, input_rules, lane_edges, output_rules
from .causal import causal_panels, circuit_overlay
from .knowledge import Knowledge, knowledge
from .layout import BLOCK_WIDTH, Layout, layout
from .sanitize import escape
from .stats import lens_text, levels, node_stats, relative
from .window import Window, by_unit, compact, id_pieces, templates, window_for

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["COLOR_MODES", "DecodingUpdate", "Explorer", "build_explorer", "decoding_rows", "make_explorer"]

COLOR_MODES = ("category", "norm", "mean")
HIGHLIGHT = {"ancestor": "#d62728", "descendant": "#1f77b4", "selected": "#111111"}
_NO_METRIC = "#e4e4e4"
_SEQUENTIAL = tuple(Viridis256)
# blue (negative) to red (positive) through a grey zero that stays visible on the white canvas
_DIVERGING = (*RdBu11[:5], "#cfcfcf", *RdBu11[6:])
# attention weights on a log scale: near-uniform rows of a long prompt (1/n each) still show
_HEAT = tuple(Oranges256[::-1])

_CSS = """
:host { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 13px; color: #222; }
.g2g-node { border-bottom: 1px solid #ddd; padding-bottom: 6px; margin-bottom: 6px; }
.g2g-id { font-family: ui-monospace, monospace; font-weight: 600; font-size: 14px; word-break: break-all; }
.g2g-stats td { padding: 0 8px 0 0; font-variant-numeric: tabular-nums; }
.g2g-stats td:nth-child(odd) { color: #777; }
.g2g-lens, .g2g-trace { margin-top: 4px; }
.g2g-label { color: #777; font-size: 11px; text-transform: uppercase; letter-spacing: .04em; }
.g2g-swatch { display: inline-block; width: 10px; height: 10px; border: 2px solid; margin: 0 4px -2px 0; }
.g2g-callout { background: #f6f8fa; border-left: 3px solid #4c78a8; padding: 4px 8px; margin: 6px 0; }
.g2g-callout-title { font-weight: 600; }
.g2g-caption { font-family: ui-monospace, monospace; color: #555; font-size: 12px; }
.g2g-summary { font-style: italic; }
.g2g-sources, .g2g-see { font-size: 12px; color: #555; margin: 4px 0; }
.g2g-op { margin: 6px 0; padding: 4px 8px; background: #fdf6ec; }
details { margin: 2px 0; } summary { cursor: pointer; color: #1f4e79; }
h3 { margin: 8px 0 2px 0; font-size: 15px; }
p { margin: 4px 0; line-height: 1.4; }
code { background: #f0f0f0; padding: 0 2px; border-radius: 2px; }
.g2g-warning { background: #fff3cd; border: 1px solid #e0b200; padding: 6px 10px; border-radius: 4px; margin: 4px 0; }
.g2g-title { font-size: 18px; font-weight: 600; }
.g2g-prompt { font-family: ui-monospace, monospace; background: #f6f8fa; padding: 1px 4px; white-space: pre-wrap; }
.g2g-hint { color: #555; }
.g2g-table { border-collapse: collapse; font-size: 12px; margin: 2px 0 6px 0; }
.g2g-table th { text-align: left; color: #777; font-weight: 500; padding-right: 8px; }
.g2g-table td { padding: 1px 8px 1px 0; font-variant-numeric: tabular-nums; vertical-align: top; }
.g2g-analysis { display: flex; gap: 18px; align-items: flex-start; }
.g2g-analysis > div { flex: 1 1 0; min-width: 0; }
"""

_TOOLTIP = """
<div style="max-width: 380px; font-size: 12px">
  <div style="font-family: monospace; font-weight: bold">@unit{id}</div>
  <div>@unit{kind} · shape @unit{shape} · @unit{where}@pos{token}</div>
  <div>norm @norm{0.000} · mean @mean{0.000} · std @std{0.000} · min @min{0.000} · max @max{0.000}</div>
  <div style="color: #444">@unit{lens}</div>
  DLA_LINE<div style="color: #555; margin-top: 3px">@unit{gloss}</div>
</div>
"""
_DLA_LINE = '<div style="color: #7a2048">@unit{dla}</div>\n  '

_OVERVIEW_TOOLTIP = """
<div style="font-size: 12px">
  <b>@label</b><br>@where<br><span style="color: #555">click to zoom in to the vectors</span>
</div>
"""


def default_title(graph: Graph) -> str:
    """The page's title when none is given."""
    return f"{graph.model.name}: every vector of one forward pass"


def _script() -> str:
    return resources.files(__package__).joinpath("explorer.js").read_text(encoding="utf-8")


def _unit_tables(graph: Graph, lay: Layout) -> dict[str, np.ndarray]:
    """Per-unit kind, layer, head (-1: none), shape and logit-lens label, for tooltips and the panel header.
    numpy arrays, strings too: Bokeh serialises those in one piece rather than item by item."""
    top = lay.topology
    shapes = [
        "(position+1,)" if VECTOR_SPECS[k.kind].space == "keys" else str(tuple(top.vector_shape(k))) for k in lay.groups
    ] + [str(tuple(top.param_shape(k))) for k in lay.params]
    units = [*lay.groups, *lay.params]
    labels = ["predicts" if k.kind == "logits" else "logit lens" for k in units]  # shown only beside a lens
    return {
        "unit_kind": np.array([str(k.kind) for k in units]),
        "unit_layer": np.array([-1 if k.layer is None else k.layer for k in units], dtype=np.int32),
        "unit_head": np.array([-1 if k.head is None else k.head for k in units], dtype=np.int32),
        "unit_shape": np.array(shapes),
        "lens_label": np.array(labels),
    }


@dataclass(frozen=True)
class _Values:
    """What colours and describes every node of the run (layout order): statistics, the colour columns of
    the value modes, and the analysis's columns."""

    stats: dict[str, np.ndarray]
    colours: dict[str, np.ndarray]  # c_<mode> in [0, 1]
    metric: Metrics | None


def _values(graph: Graph, lay: Layout, metric: Metrics | None) -> _Values:
    stats = node_stats(graph, lay)
    unit_kind = np.array([str(k.kind) for k in [*lay.groups, *lay.params]])
    n, G = lay.n, len(lay.groups)
    kind = unit_kind[np.concatenate([np.repeat(np.arange(G), n), np.arange(G, G + len(lay.params))])]
    colours = {
        "c_norm": levels(relative(stats["norm"], kind, signed=False)),
        "c_mean": levels(relative(stats["mean"], kind, signed=True)),
    }
    return _Values(stats, colours, metric)


def _node_source(graph: Graph, lay: Layout, window: Window, values: _Values) -> ColumnDataSource:
    """One row per vector of the window and per parameter (:meth:`Window.rows` order), numpy columns
    wherever possible. A window of a long run shows its statistics as the page carries them for every
    position (float16, :func:`~.window.compact`), so that it reads like any window the page moves to."""
    rows = window.rows(lay)
    G, W = len(lay.groups), window.size
    categories = list(CATEGORY_COLOURS)
    unit_cat = np.array(
        [categories.index(VECTOR_SPECS[k.kind].category) for k in lay.groups]
        + [categories.index(Category.parameter)] * len(lay.params),
        dtype=np.int8,
    )
    unit = np.concatenate(
        [np.repeat(np.arange(G, dtype=np.int32), W), np.arange(G, G + len(lay.params), dtype=np.int32)]
    )
    positions = np.tile(lay.positions[window.start : window.start + W].astype(np.int32), G)
    stats = {name: column[rows] for name, column in values.stats.items()}
    colours = {name: column[rows] for name, column in values.colours.items()}
    if not window.whole:
        vector = rows < lay.n_vectors
        for column in stats.values():
            column[vector] = column[vector].astype(np.float16).astype(np.float32)
    data = {
        "x": lay.x[rows],
        "y": lay.y[rows],
        "w": lay.width[rows],
        "h": lay.height[rows],
        "unit": unit,
        "pos": np.concatenate([positions, np.full(len(lay.params), -1, np.int32)]),
        "cat": unit_cat[unit],
        **stats,
        **colours,
    }
    if values.metric is not None:
        data.update({name: c[rows] for name, c in values.metric.columns.items() if name.startswith("c_")})
    return ColumnDataSource(data, name="nodes")


def _heads_shown(graph: Graph) -> tuple[list[int], list[int]]:
    """The layers and heads of the view, whose attention patterns the page carries."""
    sel, d = graph.selection, graph.dims
    layers = sorted(sel.layers) if sel.layers is not None else list(range(d.n_layer))
    return layers, sorted(sel.heads) if sel.heads is not None else list(range(d.n_head))


def _cells(graph: Graph, lay: Layout, bins: int) -> tuple[int, np.ndarray]:
    """(lanes per cell, each cell's label) of the heat map: a lane per cell, labelled by its token, for a view
    of at most ``bins`` lanes; else cells of consecutive lanes, labelled by their first and last position."""
    n, tokens = lay.n, graph.tokenization.tokens_visible
    size = -(-n // bins)
    first = lay.positions[::size]
    if size == 1:
        return 1, np.array([tokens[p] for p in first])
    last = lay.positions[np.minimum(np.arange(len(first)) * size + size, n) - 1]
    return size, np.array([f"{a}-{b}" for a, b in zip(first, last, strict=True)])


def _pattern_data(graph: Graph, lay: Layout, bins: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Lower triangles of every shown head's pattern between the shown positions (lanes), packed as (layer,
    head, query, key<=query) float32, and the heat-map source columns for one head (``qpos`` and ``kpos``:
    the cells' first positions). A view of more than ``bins`` lanes has its patterns pooled into cells of
    consecutive lanes (the attention a cell's queries pay, on average, to each cell of keys), or every head's
    n x n would dwarf the page."""
    n = lay.n
    size, labels = _cells(graph, lay, bins)
    m = len(labels)  # cells per side
    q, k = np.tril_indices(m)
    layers, heads = _heads_shown(graph)
    shown = None if n == graph.n_tokens else lay.positions
    pattern = VectorKind.attn_pattern
    per_layer = []
    for L in layers:
        p = graph.hook(pattern, L).numpy()
        p = p if len(heads) == graph.dims.n_head else p[heads]
        p = p if shown is None else p[:, shown[:, None], shown[None, :]]
        if size > 1:
            padded = np.zeros((len(heads), m * size, m * size), dtype=np.float32)
            padded[:, :n, :n] = p
            queries = np.minimum(size, n - np.arange(m) * size)  # per cell (the last may be short)
            # summed over a cell's keys, averaged over its queries: a row of the whole run still sums to one
            p = padded.reshape(len(heads), m, size, m, size).sum(axis=(2, 4)) / queries[None, :, None]
        per_layer.append(p[:, q, k].reshape(-1))
    packed = np.concatenate(per_layer)
    first = lay.positions[::size]
    heat = {
        "q": q.astype(np.int32),
        "k": k.astype(np.int32),
        "qpos": first[q].astype(np.int32),
        "kpos": first[k].astype(np.int32),
        "prob": packed[: len(q)].astype(np.float32),
        "qtok": labels[q],
        "ktok": labels[k],
    }
    return packed.astype(np.float32), heat


def _token_labels(graph: Graph, lay: Layout) -> list[str]:
    """A label per lane: its position and token."""
    tokens = graph.tokenization.tokens_visible
    return [f"{p}: {tokens[p]}" for p in lay.positions]


def _header(graph: Graph, lay: Layout, title: str) -> Div:
    model, d, top = graph.model, graph.dims, graph.topology
    counts = f"{top.count_vectors():,} vectors, {top.count_params():,} parameter tensors"
    if lay.n_nodes < top.count_vectors() + top.count_params():  # a view: what of the run it shows
        layers, heads = _heads_shown(graph)
        counts = (
            f"a view of layers {', '.join(map(str, layers))}, heads {', '.join(map(str, heads))}, "
            f"positions {', '.join(map(str, lay.positions))}: {lay.n_vectors:,} of {top.count_vectors():,} vectors, "
            f"{len(lay.params):,} of {top.count_params():,} parameter tensors"
        )
    parts = [
        f'<div class="g2g-title">{escape(title)}</div>',
        (
            f"<div>{escape(model.name)} · {d.n_layer} layers × {d.n_head} heads · d_model {d.d_model} · "
            f"{graph.n_tokens} tokens · {counts} · prompt "
            f'<span class="g2g-prompt">{escape(graph.tokenization.text)}</span></div>'
        ),
    ]
    if graph.random_weights:
        seed = f" (seed {model.weights.seed})" if model.weights.seed is not None else ""
        parts.append(
            '<div class="g2g-warning"><b>Random weights</b>: this run used a randomly initialised '
            f"model{seed}, not trained GPT-2. Its activations, attention patterns and predictions "
            "carry no learned meaning; only the structure is real.</div>"
        )
    parts.append(
        '<div class="g2g-hint">Scroll to zoom, drag to pan. Hover a rectangle (a vector or a weight) '
        "for what it is; click it to trace where its information comes from "
        f'(<span style="color:{HIGHLIGHT["ancestor"]}">red</span>) and where it goes '
        f'(<span style="color:{HIGHLIGHT["descendant"]}">blue</span>); click empty space to clear.</div>'
    )
    return Div(text="".join(parts), stylesheets=[InlineStyleSheet(css=_CSS)], width=1600, name="header")


_INTRO = (
    '<p class="g2g-hint">Click a vector or a weight to see what it is, where it comes from and where it '
    "goes. Each horizontal lane is one token position; the residual stream runs along it from the "
    "embeddings (left) through every block to the logits (right). Weights sit in the strip at the top.</p>"
)


def _overview(lay: Layout, colours: dict[str, np.ndarray], graph: Graph) -> ColumnDataSource:
    """Level-of-detail rectangles: per position, the embedding, each block's attention and MLP, the
    unembedding and the decoding, coloured by the vector they write (attention and MLP output, the embedding
    sum, the logits, the probabilities); the weights (a few per block, whatever the prompt length) stay as they
    are. ``colours``: every colour mode's column (``cat``, ``c_<mode>``) for every node, in layout order."""
    n, H = lay.n, graph.dims.n_head
    xs, ws, reps, labels = [], [], [], []

    def add(x0: float, x1: float, rep_kind: str, layer: int | None, label: str) -> None:
        xs.append((x0 + x1) / 2)
        ws.append(x1 - x0)
        reps.append(lay.group_index[Key(rep_kind, layer)])
        labels.append(label)

    add(lay.block_x[0] - 3.6, lay.block_x[0] + 0.5, "input_embedding", None, "embedding")
    for L in _heads_shown(graph)[0]:
        left, middle, right = lay.block_span(L)
        add(left, middle - 0.2, "attn_out", L, f"block {L}: attention")
        add(middle + 0.2, right, "mlp_out", L, f"block {L}: MLP")
    add(lay.block_x[-1] - 0.5, lay.block_x[-1] + 3.1, "logits", None, "unembedding")
    add(lay.block_x[-1] + 3.2, lay.block_x[-1] + 8.5, "probs", None, "decoding")
    blocks = (np.array(reps)[None, :] * n + np.arange(n)[:, None]).reshape(-1)  # position-major
    weights = np.arange(lay.n_vectors, lay.n_nodes)
    tokens = graph.tokenization.tokens_visible
    data = {
        "x": np.concatenate([np.tile(np.array(xs, np.float32), n), lay.x[weights]]),
        "y": np.concatenate([np.repeat(lay.lane_y.astype(np.float32), len(xs)), lay.y[weights]]),
        "w": np.concatenate([np.tile(np.array(ws, np.float32), n), lay.width[weights]]),
        "h": np.concatenate([np.full(blocks.shape, H - 0.4, np.float32), lay.height[weights]]),
        "label": np.array(labels * n + [lay.topology.param_id(k) for k in lay.params]),
        "where": np.array(
            [f"position {p}: {tokens[p]}" for p in lay.positions for _ in xs]
            + ["a weight, shared by every position"] * len(weights)
        ),
    }
    index = np.concatenate([blocks, weights])
    data["node"] = index.astype(np.int32)  # the node each rectangle takes its colours from
    for name, values in colours.items():  # every colour mode's column, in layout order
        data[name] = values[index]
    return ColumnDataSource(data, name="overview")


@dataclass
class _Canvas:
    """The main figure and the models the page's script drives."""

    fig: Any
    nodes: ColumnDataSource
    edges: ColumnDataSource
    node_r: GlyphRenderer
    overlays: list[GlyphRenderer]  # ancestors, descendants
    links: ColumnDataSource
    detail: list[GlyphRenderer]  # what the overview replaces when zoomed out
    glyphs: list[Rect]  # every glyph filled by the colour mode
    tap: TapTool


def _canvas(graph: Graph, lay: Layout, nodes: ColumnDataSource, fill: dict, ins: Rules, window: Window) -> _Canvas:
    """The figure with its background, the stream, the edges (the window's), the nodes and the highlight
    overlays."""
    d = graph.dims
    x0, x1 = lay.x_range
    y0, y1 = lay.y_range
    fig = figure(
        width=1160,
        height=780,
        x_range=Range1d(x0, x1, bounds=(x0 - 20, x1 + 20)),
        y_range=Range1d(y0, y1, bounds=(y0 - 20, y1 + 20)),
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        toolbar_location="right",
        name="canvas",
    )
    fig.grid.visible = False
    fig.outline_line_color = "#cccccc"

    # a tinted band per block, attention and MLP halves apart; a grey strip behind the weights
    bands: dict[str, list] = {"left": [], "right": [], "color": []}
    for L in range(d.n_layer):
        left, middle, right = lay.block_span(L)
        bands["left"] += [left, middle]
        bands["right"] += [middle, right]
        bands["color"] += ["#fdf3e7", "#eef6ec"]
    fig.quad(
        left="left", right="right", bottom=y0, top=y1, color="color", source=ColumnDataSource(bands), level="underlay"
    )
    fig.quad(
        left=x0,
        right=x1,
        bottom=lay.param_strip[0] - 0.6,
        top=lay.param_strip[1] + 0.6,
        color="#f4f4f4",
        level="underlay",
    )
    # the residual stream of each position: a faint wide line under its nodes
    fig.segment(
        x0=float(lay.block_x[0]),
        x1=float(lay.block_x[-1]),
        y0="y",
        y1="y",
        line_width=6,
        line_color=CATEGORY_COLOURS[Category.residual],
        line_alpha=0.15,
        source=ColumnDataSource({"y": lay.lane_y.astype(np.float32)}),
    )

    src, dst = lane_edges(ins, lay)
    inside = (src % lay.n >= window.start) & (src % lay.n < window.start + window.size)
    src, dst = src[inside], dst[inside]  # the window's lanes: the page draws the others' when it moves there
    x, y, w = lay.x, lay.y, lay.width
    edges = ColumnDataSource(
        {"x0": x[src] + w[src] / 2, "y0": y[src], "x1": x[dst] - w[dst] / 2, "y1": y[dst]}, name="edges"
    )
    edge_r = fig.segment("x0", "y0", "x1", "y1", source=edges, line_color="#8a8a8a", line_alpha=0.35, line_width=0.7)

    def rect(**kw: Any) -> Rect:
        return Rect(x="x", y="y", width="w", height="h", fill_color=fill, **kw)

    node_glyph = rect(line_color=None)  # no outlines: stroking every rectangle costs a third of the first render
    selected_glyph = rect(line_color=HIGHLIGHT["selected"], line_width=3)
    faded_glyph = rect(fill_alpha=0.15, line_color=None)
    node_r = fig.add_glyph(
        nodes, node_glyph, selection_glyph=selected_glyph, nonselection_glyph=faded_glyph, name="node-glyphs"
    )
    overlays, glyphs = [], [node_glyph, selected_glyph, faded_glyph]
    for role in ("ancestor", "descendant"):
        glyph = rect(line_color=HIGHLIGHT[role], line_width=1.6)
        view = CDSView(filter=IndexFilter(indices=[], name=f"{role}s"))
        overlays.append(
            GlyphRenderer(
                data_source=nodes,
                glyph=glyph,
                selection_glyph=glyph,
                nonselection_glyph=glyph,
                view=view,
                name=f"{role}-highlight",
            )
        )
        glyphs.append(glyph)
    fig.renderers.extend(overlays)
    links = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": [], "color": []}, name="links")
    link_r = fig.segment("x0", "y0", "x1", "y1", source=links, line_color="color", line_width=1.6, line_alpha=0.8)
    tap = TapTool(renderers=[node_r])
    fig.add_tools(tap)
    return _Canvas(fig, nodes, edges, node_r, overlays, links, [node_r, edge_r, *overlays, link_r], glyphs, tap)


def _hover(canvas: _Canvas, graph: Graph, lay: Layout, know: Knowledge, shared: dict[str, ColumnDataSource]) -> None:
    """Tooltips: data fields are escaped by Bokeh (no ``{safe}``), the markup around them is ours. ``shared``:
    the sources the page's script reads too (units, ids, lens lines, DLA lines), carried once."""
    lane = np.full(graph.n_tokens, -1, np.int32)  # the lane of each position (-1: not in the view)
    lane[lay.positions] = np.arange(lay.n, dtype=np.int32)
    unit_hover = CustomJSHover(
        args={
            **shared,
            "tips": know.tips,
            "unit_tip": know.unit_tip,
            "nodes": canvas.nodes,
            "n": len(lane),
            "lane": lane,
            "G": len(shared["units"].data["unit_kind"]) - len(lay.params),
        },
        code="""
        const k = value, u = units.data, p = nodes.data.pos[special_vars.index]
        if (format == "id") return p < 0 ? ids.data.head[k] : ids.data.head[k] + p + ids.data.tail[k]  // see window.py
        if (format == "kind") return u.unit_kind[k]
        if (format == "shape") return u.unit_shape[k]
        if (format == "gloss") return tips[unit_tip[k]]
        if (format == "lens" || format == "dla") {  // few nodes have one: binary search by index in the run
            const source = format == "lens" ? lens : dla, i = k < G ? k * n + lane[p] : G * n + (k - G)
            const nodes_with = source.data.node
            let lo = 0, hi = nodes_with.length - 1
            while (lo <= hi) {
                const mid = (lo + hi) >> 1
                const label = format == "lens" ? u.lens_label[k] + ": " : ""
                if (nodes_with[mid] == i) return label + source.data.text[mid]
                if (nodes_with[mid] < i) lo = mid + 1; else hi = mid - 1
            }
            return ""
        }
        const where = []
        if (u.unit_layer[k] >= 0) where.push("layer " + u.unit_layer[k])
        if (u.unit_head[k] >= 0) where.push("head " + u.unit_head[k])
        return where.length ? where.join(" · ") + " · " : ""
    """,
    )
    pos_hover = CustomJSHover(
        args={"tokens": graph.tokenization.tokens_visible},
        code="""
        return value >= 0 ? "position " + value + " (" + tokens[value] + ")" : "every position (a weight)"
    """,
    )
    tooltip = _TOOLTIP.replace("DLA_LINE", _DLA_LINE if graph.analysis is not None else "")
    canvas.fig.add_tools(
        HoverTool(renderers=[canvas.node_r], tooltips=tooltip, formatters={"@unit": unit_hover, "@pos": pos_hover})
    )


def _axes(fig: Any, graph: Graph, lay: Layout) -> None:
    """Tokens along the lanes, blocks below, columns above; labels that would collide are dropped."""
    d = graph.dims
    lanes = [float(y) for y in lay.lane_y]
    strip = float(sum(lay.param_strip) / 2)
    fig.yaxis.ticker = FixedTicker(ticks=sorted([strip, *lanes]))  # NoOverlap expects ascending ticks
    fig.yaxis.major_label_overrides = {strip: "weights", **dict(zip(lanes, _token_labels(graph, lay), strict=True))}
    fig.yaxis.major_label_policy = NoOverlap()
    fig.yaxis.axis_label = "position: token"
    blocks = [
        float(lay.block_x[0] - 1.5),
        *(lay.block_span(L)[1] for L in range(d.n_layer)),
        float(lay.block_x[-1] + 1.25),
    ]
    fig.xaxis.ticker = FixedTicker(ticks=blocks)
    fig.xaxis.major_label_overrides = dict(
        zip(blocks, ["embed", *(f"block {L}" for L in range(d.n_layer)), "unembed"], strict=True)
    )
    fig.xaxis.major_label_policy = NoOverlap()
    fig.add_layout(
        LinearAxis(
            ticker=FixedTicker(ticks=[x for x, _ in lay.columns]),
            major_label_overrides=dict(lay.columns),
            major_label_policy=NoOverlap(min_distance=6),
            major_label_orientation=0.9,
            major_label_text_font_size="10px",
        ),
        "above",
    )


def _legends(
    canvas: _Canvas, mappers: dict, color_by: str, metric: Metrics | None
) -> tuple[Legend, dict[str, ColorBar]]:
    """The category legend and one colour bar per value statistic or analysis metric; the colour mode shows
    one of them."""
    present = set(np.unique(canvas.nodes.data["cat"]).tolist())
    # a swatch per category from a one-point renderer that draws nothing (NaN position): a swatch taken from a
    # row of the node renderer vanishes whenever that row is culled, and an empty renderer draws no swatch
    swatches = {
        name: canvas.fig.rect(x=[np.nan], y=[np.nan], width=0, height=0, fill_color=color, line_color=None)
        for i, (name, color) in enumerate(CATEGORY_COLOURS.items())
        if i in present
    }
    legend = Legend(
        items=[LegendItem(label=str(name), renderers=[r]) for name, r in swatches.items()],
        orientation="horizontal",
        visible=color_by == "category",
        label_text_font_size="11px",
        location="top_left",
    )
    canvas.fig.add_layout(legend, "below")
    bar_labels = {  # in colour levels (0..255)
        "norm": {0: "smallest", 255: "largest"},
        "mean": {0: "most negative", 127.5: "0", 255: "most positive"},
    }
    titles = {"norm": "norm, scaled within each kind", "mean": "mean, scaled within each kind"}
    if metric is not None:
        bar_labels.update(metric.ticks)
        titles.update(metric.titles)
    # ticks ascending: the bar's NoOverlap label policy drops labels of ticks out of order
    bars = {
        mode: ColorBar(
            color_mapper=mappers[mode],
            title=titles[mode],
            ticker=FixedTicker(ticks=sorted(labels)),
            major_label_overrides=labels,
            orientation="horizontal",
            height=10,
            width=400,
            visible=color_by == mode,
            location="top_left",
        )
        for mode, labels in bar_labels.items()
    }
    for bar in bars.values():
        canvas.fig.add_layout(bar, "below")
    return legend, bars


def _heatmap(
    graph: Graph, lay: Layout, bins: int
) -> tuple[Any, ColumnDataSource, Title, ColumnDataSource, np.ndarray, int]:
    """(figure, pattern source, title, focus-row source, every shown head's packed pattern, lanes per cell) of
    the attention panel: a row and a column per cell (a lane each unless the view has more than ``bins``)."""
    patterns, heat_data = _pattern_data(graph, lay, bins)
    size, cell_labels = _cells(graph, lay, bins)
    n = len(cell_labels)  # cells per side
    heat = ColumnDataSource(heat_data, name="heat")
    focus = ColumnDataSource({"x": [], "y": [], "w": []}, name="heat-focus")
    fig = figure(
        width=430,
        height=430,
        x_range=Range1d(-0.5, n - 0.5),
        y_range=Range1d(n - 0.5, -0.5),
        tools="pan,wheel_zoom,reset",
        name="heatmap",
        x_axis_label="key position (attended to)",
        y_axis_label="query position (attending)",
    )
    layers, heads = _heads_shown(graph)
    title = Title(text=f"Attention pattern · layer {layers[0]}, head {heads[0]}", text_font_size="13px")
    fig.add_layout(title, "above")
    fig.grid.visible = False
    mapper = LogColorMapper(palette=list(_HEAT), low=1e-3, high=1)
    cells = fig.rect(
        "k", "q", width=1, height=1, source=heat, line_color=None, fill_color={"field": "prob", "transform": mapper}
    )
    fig.add_layout(
        ColorBar(
            color_mapper=mapper,
            ticker=FixedTicker(ticks=[0.001, 0.01, 0.1, 1]),
            major_label_overrides={0.001: "≤0.001", 0.01: "0.01", 0.1: "0.1", 1: "1"},
            width=10,
            title="weight",
        ),
        "right",
    )
    fig.rect(
        "x", "y", width="w", height=1, source=focus, fill_color=None, line_color=HIGHLIGHT["selected"], line_width=2
    )
    fig.add_tools(
        HoverTool(
            renderers=[cells],
            tooltips=[
                ("query", "@qpos: @qtok" if size == 1 else "positions @qtok"),
                ("key", "@kpos: @ktok" if size == 1 else "positions @ktok"),
                ("weight", "@prob{0.000}"),
            ],
        )
    )
    if size == 1:
        labels = {float(c): f"{t} ({p})" for c, (p, t) in enumerate(zip(lay.positions, cell_labels, strict=True))}
    else:
        labels = {float(c): str(t) for c, t in enumerate(cell_labels)}
        fig.xaxis.axis_label = f"key positions (attended to), {size} per cell: attention summed over a cell's keys"
        fig.yaxis.axis_label = f"query positions (attending), {size} per cell: averaged over a cell's queries"
    for axis in (fig.xaxis, fig.yaxis):
        axis.ticker = FixedTicker(ticks=list(labels))
        axis.major_label_overrides = labels
        axis.major_label_policy = NoOverlap()
    fig.xaxis.major_label_orientation = 1.2
    return fig, heat, title, focus, patterns, size


@dataclass(frozen=True)
class DecodingUpdate:
    """New numbers of the decoding stage for other decoding settings, computed apart from the document (a
    worker thread may make it) and applied to it with :meth:`Explorer.apply`."""

    rows: np.ndarray  # node indices whose statistics change
    stats: dict[str, np.ndarray]  # float32 per summary field, aligned with rows
    analysis: str | None  # the analysis panel with its decoding table redone


@dataclass
class Explorer:
    """The explorer's layout and the models a live page drives from Python (``gpt2graph serve``): the canvas,
    its node source, the node layout, the level-of-detail overview and the analysis panel. A live page makes
    it with ``every_position=True``, so that the node source's rows are the layout's nodes."""

    root: LayoutDOM
    layout: Layout
    figure: Any  # the canvas
    nodes: ColumnDataSource
    overview: ColumnDataSource | None
    analysis: Div | None

    def decoding_update(self, graph: Graph, positions: list[int] | None = None) -> DecodingUpdate:
        """What the decoding settings of ``graph`` (a ``with_decoding`` view of the same run) change, at these
        positions (all: None): the decoding vectors' statistics and the analysis panel's decoding table. No
        forward pass: the decoding stage is derived from the stored logits, in one pass."""
        lay, n = self.layout, self.layout.n
        positions = [int(p) for p in lay.positions] if positions is None else [p for p in positions if p in lay.lane]
        summaries = graph.decoding_summaries(positions)
        first = decoding_rows(lay).start
        lanes = np.array([lay.lane[p] for p in positions], dtype=np.int64)
        rows = np.concatenate([first + g * n + lanes for g in range(len(DECODE_KINDS))])
        stats = {
            name: np.concatenate([summaries[k][name].reshape(-1).numpy() for k in DECODE_KINDS]).astype(np.float32)
            for name in summaries[DECODE_KINDS[0]]
        }
        analysis = None
        if self.analysis is not None and graph.analysis is not None:
            a, dec = graph.analysis, graph.decoding
            again = decode_next(
                graph,
                position=a.decoding.position,
                temperature=dec.temperature,
                top_k=dec.top_k,
                top_p=dec.top_p,
                seed=dec.seed,
                candidates=a.options.top_tokens,
            )
            analysis = analysis_panel(a.model_copy(update={"decoding": again}))
        return DecodingUpdate(rows, stats, analysis)

    def apply(self, update: DecodingUpdate) -> None:
        """Show a :class:`DecodingUpdate` (on the document's thread): the nodes' statistics, their colours
        (scaled within each decoding kind, so over every position), the overview and the analysis panel."""
        lay, nodes = self.layout, self.nodes
        if len(nodes.data["x"]) != lay.n_nodes:
            raise RendererError("a decoding update needs the explorer of every position (every_position=True)")
        block = decoding_rows(lay)
        whole = update.rows.size == block.stop - block.start
        patch = {
            name: [(block, values)] if whole else [(int(r), float(v)) for r, v in zip(update.rows, values)]
            for name, values in update.stats.items()
        }
        columns = {}
        for name in ("norm", "mean"):
            column = np.array(nodes.data[name][block], dtype=np.float32)
            column[update.rows - block.start] = update.stats[name]
            columns[name] = column
        kinds = np.repeat(np.array([str(k) for k in DECODE_KINDS]), lay.n)
        patch["c_norm"] = [(block, levels(relative(columns["norm"], kinds, signed=False)))]
        patch["c_mean"] = [(block, levels(relative(columns["mean"], kinds, signed=True)))]
        nodes.patch(patch)
        if self.overview is not None:
            index = np.asarray(self.overview.data["node"])
            self.overview.data = {
                **self.overview.data,
                **{c: np.asarray(nodes.data[c])[index] for c in ("c_norm", "c_mean")},
            }
        if update.analysis is not None and self.analysis is not None:
            self.analysis.text = update.analysis

    def follow_decoding(self, graph: Graph, positions: list[int] | None = None) -> None:
        """Redraw what depends on the decoding settings, for ``graph``'s (see :meth:`decoding_update`)."""
        self.apply(self.decoding_update(graph, positions))


def decoding_rows(lay: Layout) -> slice:
    """Rows of the node source of every lane (``every_position=True``) holding the decoding stage (its groups
    come last among the vectors)."""
    n = lay.n
    first = min(lay.group_index[Key(kind)] for kind in DECODE_KINDS)
    return slice(first * n, (first + len(DECODE_KINDS)) * n)


def _slider(what: str, values: list[int]) -> Slider:
    """The slider choosing the heat map's layer or head among ``values`` (a lone value: disabled)."""
    return Slider(
        start=values[0],
        end=max(values[-1], values[0] + 1),
        value=values[0],
        step=1,
        title=what,
        width=200,
        name=f"attn-{what}",
        disabled=len(values) == 1,
    )


def build_explorer(graph: Graph, **options: Any) -> LayoutDOM:
    """The whole explorer page as a Bokeh layout (pure: reads the graph, writes nothing); options as for
    :func:`make_explorer`."""
    return make_explorer(graph, **options).root


def make_explorer(
    graph: Graph,
    *,
    title: str | None = None,
    color_by: str = "category",
    max_positions: int = 32,
    window: int | None = None,
    every_position: bool = False,
    logit_lens: bool = True,
    sweeps: bool = True,
) -> Explorer:
    """The explorer of ``graph`` with handles on the models a live page updates.

    A view (``graph.subgraph(...)``) is drawn as it is: only its nodes are on the page, and what a node is
    computed from or feeds is traced within it. A view of more than ``max_positions`` lanes (positions shown)
    opens on the window of lanes starting at ``window`` (default: the last ones), see :mod:`.window`;
    ``every_position`` puts every lane's vectors in the node source instead (a live page that patches rows by
    node index, on prompts it keeps short). ``sweeps=False`` leaves the stored patching sweeps' heat maps out (a
    page that draws them elsewhere); the stored circuit is drawn on the canvas either way."""
    if color_by in ANALYSIS_MODES and graph.analysis is None:
        raise RendererError(
            f"color_by={color_by!r} needs the interpretability results on the graph: build with "
            "--analyze (or call graph.analyze()) first"
        )
    if color_by not in COLOR_MODES + ANALYSIS_MODES:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_MODES + ANALYSIS_MODES)}, got {color_by!r}")
    modes = COLOR_MODES + (ANALYSIS_MODES if graph.analysis is not None else ())
    d = graph.dims
    title = title or default_title(graph)
    lay = layout(graph.topology, graph.selection)
    n = lay.n
    win = Window(0, n, n) if every_position else window_for(n, max_positions, window)
    ins = input_rules(lay)
    outs = output_rules(ins)
    know = knowledge(graph, lay)
    units = _unit_tables(graph, lay)
    lens_lines = lens_text(graph, lay, lay.positions[win.start : win.start + win.size]) if logit_lens else {}
    lens_nodes = np.array(sorted(lens_lines), dtype=np.int32)
    lens = ColumnDataSource({"node": lens_nodes, "text": [lens_lines[int(i)] for i in lens_nodes]}, name="lens")
    values = _values(graph, lay, None if graph.analysis is None else metrics(graph.analysis, lay))

    mappers = {
        "category": LinearColorMapper(
            palette=list(CATEGORY_COLOURS.values()), low=-0.5, high=len(CATEGORY_COLOURS) - 0.5
        ),
        "norm": LinearColorMapper(palette=list(_SEQUENTIAL), low=0, high=255),  # colour levels (stats.levels)
        "mean": LinearColorMapper(palette=list(_DIVERGING), low=0, high=255),
    }
    if graph.analysis is not None:  # nodes a metric says nothing about stay a light grey
        mappers["dla"] = LinearColorMapper(palette=list(_DIVERGING), low=0, high=1, nan_color=_NO_METRIC)
        mappers.update(
            {
                mode: LinearColorMapper(palette=list(_SEQUENTIAL), low=0, high=1, nan_color=_NO_METRIC)
                for mode in ANALYSIS_MODES[1:]
            }
        )
    fill = {"field": "cat" if color_by == "category" else f"c_{color_by}", "transform": mappers[color_by]}
    canvas = _canvas(graph, lay, _node_source(graph, lay, win, values), fill, ins, win)
    heads, tails = id_pieces(lay)
    texts = np.array([]) if values.metric is None else values.metric.columns["dla_text"]
    with_dla = np.nonzero(texts != "")[0]
    shared = {
        "units": ColumnDataSource(units, name="units"),
        "ids": ColumnDataSource({"head": heads, "tail": tails}, name="ids"),
        "lens": lens,
        "dla": ColumnDataSource({"node": with_dla.astype(np.int32), "text": texts[with_dla]}, name="dla"),
    }
    _hover(canvas, graph, lay, know, shared)
    _axes(canvas.fig, graph, lay)
    legend, colorbars = _legends(canvas, mappers, color_by, values.metric)

    overview = overview_r = window_w = None
    long_run = n > max_positions
    if long_run:  # level of detail: blocks while more than max_positions lanes are in view
        overview = _overview(lay, _colour_columns(lay, values), graph)
        glyph = Rect(x="x", y="y", width="w", height="h", fill_color=fill, line_color="#ffffff", line_width=0.5)
        overview_r = canvas.fig.add_glyph(overview, glyph, name="overview-blocks")
        canvas.glyphs.append(glyph)
        canvas.fig.add_tools(HoverTool(renderers=[overview_r], tooltips=_OVERVIEW_TOOLTIP))
        canvas.tap.renderers = [canvas.node_r, overview_r]
        for r in canvas.detail:
            r.visible = False
    if not win.whole:
        window_w = Slider(
            start=0,
            end=n - win.size,
            value=win.start,
            step=1,
            title=f"vectors of {win.size} positions from",
            width=400,
            name="window",
        )

    overlay = circuit_overlay(canvas.fig, canvas.tap, graph, lay, _CSS)  # the stored circuit, if any
    if overlay is not None:  # drawn with the vectors it joins: hidden while blocks stand for them
        canvas.detail.append(overlay.renderer)
        overlay.renderer.visible = not long_run
    heat_fig, heat, heat_title, focus, patterns, cell = _heatmap(graph, lay, max_positions)
    layers, heads = _heads_shown(graph)
    layer_w, head_w = _slider("layer", layers), _slider("head", heads)
    color_w = RadioButtonGroup(labels=list(modes), active=modes.index(color_by), name="color-by")
    panel = Div(
        text=_INTRO,
        width=430,
        height=330,
        name="panel",
        stylesheets=[InlineStyleSheet(css=_CSS)],
        styles={"overflow-y": "auto", "border": "1px solid #ddd", "padding": "6px", "background": "#fff"},
    )

    meta = {
        "n_tokens": n,
        "n_vectors": lay.n_vectors,
        "n_groups": len(lay.groups),
        "n_head": d.n_head,
        "window": [win.start, win.size],
        "positions": lay.positions.astype(np.int32),
        "heat_layers": layers,
        "heat_heads": heads,
        "in_ptr": ins.ptr,
        "in_src": ins.src,
        "in_mode": ins.mode,
        "out_ptr": outs.ptr,
        "out_src": outs.src,
        "out_mode": outs.mode,
        "tokens": graph.tokenization.tokens_visible,
        "panels": know.panels,
        "unit_panel": know.unit_panel,
        "node_panel_keys": np.array(list(know.node_panel), dtype=np.int32),
        "node_panel_values": np.array(list(know.node_panel.values()), dtype=np.int32),
        "intro": _INTRO,
        "colors": HIGHLIGHT,
        "color_modes": list(modes),
        "max_positions": max_positions,
        "heat_cell": cell,
        "lane_pitch": lay.lane_pitch,
        "block_width": BLOCK_WIDTH,
        "head_panels": [] if graph.analysis is None else head_panels(graph.analysis),
    }
    if not win.whole:  # what the page fills any window from
        meta |= _window_data(lay, values, ins)
    explorer = CustomJS(
        code=_script(),
        args={
            "meta": meta,
            "nodes": canvas.nodes,
            "edges": canvas.edges,
            **shared,
            "overview": overview,
            "overview_r": overview_r,
            "window_w": window_w,
            "anc_filter": canvas.overlays[0].view.filter,
            "desc_filter": canvas.overlays[1].view.filter,
            "link_source": canvas.links,
            "panel": panel,
            "heat": heat,
            "heat_title": heat_title,
            "focus": focus,
            "patterns": patterns,
            "layer_w": layer_w,
            "head_w": head_w,
            "color_w": color_w,
            "glyphs": canvas.glyphs,
            "mappers": mappers,
            "legend": legend,
            "colorbars": colorbars,
            "detail_renderers": canvas.detail,
            "x_range": canvas.fig.x_range,
            "y_range": canvas.fig.y_range,
        },
    )
    canvas.nodes.selected.js_on_change("indices", explorer)
    if long_run:
        overview.selected.js_on_change("indices", explorer)
        canvas.fig.y_range.js_on_change("start", explorer)
        canvas.fig.y_range.js_on_change("end", explorer)
    if window_w is not None:
        window_w.js_on_change("value", explorer)
    for widget in (layer_w, head_w):
        widget.js_on_change("value", explorer)
    color_w.js_on_change("active", explorer)

    controls = row(
        Div(text='<span class="g2g-label">colour by</span>', stylesheets=[InlineStyleSheet(css=_CSS)]),
        color_w,
        *([window_w] if window_w is not None else []),
    )
    main = column(canvas.fig)
    analysis = None
    if graph.analysis is not None:  # under the canvas, its three parts side by side
        analysis = Div(
            text=analysis_panel(graph.analysis, view=graph),
            width=1160,
            name="analysis",
            stylesheets=[InlineStyleSheet(css=_CSS)],
            styles={"border": "1px solid #ddd", "padding": "6px", "background": "#fff"},
        )
        main.children.append(analysis)
    main.children += causal_panels(graph, overlay, _CSS, sweeps)  # the stored circuit's panel, the heat maps
    side = column(panel, row(layer_w, head_w), heat_fig)
    root = column(_header(graph, lay, title), controls, row(main, side), name="explorer")
    return Explorer(root, lay, canvas.fig, canvas.nodes, overview, analysis)


def _colour_columns(lay: Layout, values: _Values) -> dict[str, np.ndarray]:
    """Every colour mode's column for every node, in layout order: ``cat`` and ``c_<mode>``."""
    categories = list(CATEGORY_COLOURS)
    unit_cat = np.array(
        [categories.index(VECTOR_SPECS[k.kind].category) for k in lay.groups]
        + [categories.index(Category.parameter)] * len(lay.params),
        dtype=np.int8,
    )
    n, G = lay.n, len(lay.groups)
    unit = np.concatenate([np.repeat(np.arange(G), n), np.arange(G, G + len(lay.params))])
    columns = {"cat": unit_cat[unit], **values.colours}
    if values.metric is not None:
        columns |= {name: c for name, c in values.metric.columns.items() if name.startswith("c_")}
    return columns


def _window_data(lay: Layout, values: _Values, ins: Rules) -> dict[str, Any]:
    """What the page needs to put any window of a long run on the canvas (see :mod:`.window`)."""
    data: dict[str, Any] = templates(lay, lane_edges(ins, lay))
    data |= compact(values.stats, values.colours, lay)
    if values.metric is not None:
        for name, column in values.metric.columns.items():
            if name.startswith("c_"):
                data |= {f"{name}_{part}": v for part, v in by_unit(column, lay).items()}
    return data
