"""The live app's views beside the explorer, each a pure function of a graph: the grid of attention heads
(with the explorer's own pattern heat map for the head clicked), a node's whole vector as a strip and where its
information comes from and goes, and the analysis as figures (logit lens, direct logit attribution, head roles).

Text drawn on a canvas (labels, tick labels) is never markup; HTML is built from escaped text only
(:mod:`gpt2graph_bokeh.sanitize`), and tooltip fields are inserted by Bokeh as text (no ``{safe}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    FactorRange,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    LogColorMapper,
    Range1d,
    TapTool,
    Title,
)
from bokeh.plotting import figure

from gpt2graph.plugin import VECTOR_SPECS, EdgeRole, Key, percent, signed

from ..analysis_panel import ROLE_MODES
from ..document import _DIVERGING, _HEAT, _SEQUENTIAL, _heatmap
from ..layout import Layout, layout
from ..sanitize import escape

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["AnalysisFigures", "HeadsView", "analysis_figures", "heads_view", "node_links", "strip", "strip_figure"]

#: a grid tile shows at most this many positions a side (longer prompts: the strongest weight of each block)
TILE = 24
#: a parameter matrix is drawn at most this many cells a side (each cell the largest magnitude it covers)
MATRIX = 256
#: most nodes a panel lists on each side of a node
LISTED = 12


@dataclass
class HeadsView:
    """The heads grid and the heat map of the head picked in it."""

    grid: Any  # figure
    tiles: ColumnDataSource  # one row per head: layer, head (tap selects one)
    pattern: Any  # figure (the explorer's heat map)
    heat: ColumnDataSource
    title: Title
    packed: np.ndarray  # every head's lower triangle, (layer, head, query, key <= query)

    def show(self, graph: Graph, layer: int, head: int) -> None:
        """Point the heat map at one head."""
        n = graph.n_tokens
        size = n * (n + 1) // 2
        start = (layer * graph.dims.n_head + head) * size
        self.heat.data = {**self.heat.data, "prob": self.packed[start : start + size]}
        self.title.text = f"Attention pattern · layer {layer}, head {head}"


def _pooled(square: np.ndarray, side: int) -> np.ndarray:
    """An (n, n) pattern shrunk to at most ``side`` cells a side, each cell the largest weight of its block
    (a sharp attention stays visible); NaN (the masked future) where a block has none."""
    n = square.shape[0]
    if n <= side:
        return square
    edges = np.linspace(0, n, side + 1).astype(int)
    out = np.full((side, side), np.nan, np.float32)
    for i in range(side):
        rows = square[edges[i] : edges[i + 1]]
        for j in range(i + 1):
            block = rows[:, edges[j] : edges[j + 1]]
            if np.isfinite(block).any():
                out[i, j] = np.nanmax(block)
    return out


def heads_view(graph: Graph) -> HeadsView:
    """Every head's attention pattern as a tile in a layers x heads grid (click one for its full pattern with
    token labels, in the explorer's heat map)."""
    d, n = graph.dims, graph.n_tokens
    whole = graph.subgraph()  # the grid has a tile for every head of the run
    pattern, heat, title, _focus, packed = _heatmap(whole, layout(whole.topology))
    pattern.name, heat.name = "head-pattern", "head-heat"
    side = min(n, TILE)
    pitch = side + 1
    image = np.full((d.n_layer * pitch - 1, d.n_head * pitch - 1), np.nan, np.float32)
    q, k = np.tril_indices(n)
    size = len(q)
    for L in range(d.n_layer):
        for h in range(d.n_head):
            square = np.full((n, n), np.nan, np.float32)
            start = (L * d.n_head + h) * size
            square[q, k] = packed[start : start + size]
            image[L * pitch : L * pitch + side, h * pitch : h * pitch + side] = _pooled(square, side)
    width, height = image.shape[1], image.shape[0]
    cell = max(4, min(12, 640 // max(width, height)))
    grid = figure(
        width=min(1100, max(320, width * cell + 90)),
        height=min(900, max(240, height * cell + 60)),
        x_range=Range1d(-1, width + 1),
        y_range=Range1d(height + 1, -1),  # layer 0 at the top
        tools="tap,reset",
        toolbar_location=None,
        name="heads-grid",
        title="Every head's attention pattern (rows: queries, columns: keys); click a head",
    )
    grid.grid.visible = False
    mapper = LogColorMapper(palette=list(_HEAT), low=1e-3, high=1, nan_color="#ffffff")  # white: the masked future
    # the y axis points down (layer 0 at the top), so the image's first row, drawn at y, is at the top too
    grid.image(image=[image], x=-0.5, y=-0.5, dw=width, dh=height, color_mapper=mapper)
    layers, heads = np.divmod(np.arange(d.n_layer * d.n_head), d.n_head)
    tiles = ColumnDataSource(
        {
            "x": heads * pitch + side / 2 - 0.5,
            "y": layers * pitch + side / 2 - 0.5,
            "layer": layers.astype(np.int32),
            "head": heads.astype(np.int32),
        },
        name="head-tiles",
    )
    tile = grid.rect(
        "x",
        "y",
        width=side,
        height=side,
        source=tiles,
        fill_alpha=0,
        line_alpha=0,
        selection_line_color="#111111",
        selection_line_alpha=1,
        selection_line_width=2,
        nonselection_fill_alpha=0,
        nonselection_line_alpha=0,
    )
    grid.select_one(TapTool).renderers = [tile]
    grid.add_tools(HoverTool(renderers=[tile], tooltips="head @layer.@head (layer.head)"))
    grid.xaxis.ticker = FixedTicker(ticks=[float(h * pitch + side / 2 - 0.5) for h in range(d.n_head)])
    grid.xaxis.major_label_overrides = {float(h * pitch + side / 2 - 0.5): str(h) for h in range(d.n_head)}
    grid.yaxis.ticker = FixedTicker(ticks=[float(L * pitch + side / 2 - 0.5) for L in range(d.n_layer)])
    grid.yaxis.major_label_overrides = {float(L * pitch + side / 2 - 0.5): str(L) for L in range(d.n_layer)}
    grid.xaxis.axis_label, grid.yaxis.axis_label = "head", "layer"
    return HeadsView(grid, tiles, pattern, heat, title, packed)


def strip(graph: Graph, lay: Layout, index: int) -> tuple[np.ndarray, str]:
    """The value of node ``index`` as an image (one row for a vector; a parameter's matrix, shrunk to at most
    :data:`MATRIX` cells a side) and a caption in plain text. Tokens a decoding filter removed (-inf) are NaN."""
    key = lay.key_of(index)
    node_id = str(lay.ids[index])
    value = graph.values(node_id).detach().double()
    if key.kind in VECTOR_SPECS:
        row = value.reshape(1, -1).numpy()
        shape = "x".join(map(str, value.shape))
        caption = f"{node_id}: every one of its {row.shape[1]:,} components ({shape}), left to right"
        if key.kind == "next_token":
            token = int(value.reshape(-1)[0])
            caption = f"{node_id}: the chosen token id {token} ({graph.decode_token(token)})"
        return np.where(np.isfinite(row), row, np.nan).astype(np.float32), caption
    matrix = value.reshape(value.shape[0], -1) if value.dim() > 1 else value.reshape(1, -1)
    rows, cols = matrix.shape
    caption = f"{node_id}: {' x '.join(map(str, value.shape))}"
    if rows > MATRIX or cols > MATRIX:
        pooled = torch.nn.functional.adaptive_max_pool2d(matrix.abs()[None], (min(rows, MATRIX), min(cols, MATRIX)))
        sign = torch.nn.functional.adaptive_avg_pool2d(matrix[None], pooled.shape[1:]).sign()
        matrix = (pooled * sign)[0]
        caption += f", shrunk to {matrix.shape[0]} x {matrix.shape[1]} cells (each the largest magnitude it covers)"
    return matrix.numpy().astype(np.float32), caption


def strip_figure() -> tuple[Any, ColumnDataSource, LinearColorMapper, Title]:
    """The figure the node panel draws a node's value in (an empty image until a node is clicked)."""
    source = ColumnDataSource({"image": [np.zeros((1, 1), np.float32)], "dw": [1], "dh": [1]}, name="strip")
    mapper = LinearColorMapper(palette=list(_DIVERGING), low=-1, high=1, nan_color="#e4e4e4")
    fig = figure(
        width=1160,
        height=150,
        tools="xwheel_zoom,xpan,reset",
        active_scroll="xwheel_zoom",
        toolbar_location="right",
        name="node-strip",
        x_range=Range1d(0, 1),
        y_range=Range1d(0, 1),
    )
    title = Title(text="Click a node on the canvas: its whole value is drawn here", text_font_size="12px")
    fig.add_layout(title, "above")
    fig.yaxis.visible = False
    fig.grid.visible = False
    image = fig.image(image="image", x=0, y=0, dw="dw", dh="dh", source=source, color_mapper=mapper)
    fig.add_tools(HoverTool(renderers=[image], tooltips=[("index", "$x{0,0}"), ("value", "@image{0.0000}")]))
    fig.add_layout(ColorBar(color_mapper=mapper, width=10, title="value"), "right")
    return fig, source, mapper, title


def _listed(ids: list[str], what: str) -> str:
    shown = "".join(f"<li><code>{escape(i)}</code></li>" for i in ids[:LISTED])
    more = f"<li>… and {len(ids) - LISTED:,} more</li>" if len(ids) > LISTED else ""
    return f'<div class="g2g-label">{escape(what)}</div><ul>{shown}{more}</ul>'


def node_links(graph: Graph, node_id: str) -> str:
    """HTML: the operation that makes a node and what it reads, and the operations that read the node and
    what they make, from the graph's typed edges."""
    node = graph.node(node_id)
    top = graph.topology
    parts = []
    if node.node_type == "vector" and node.kind != "token":
        op = graph.node(top.op_id(top.parse(node_id)[1]))
        edges = [e for e in graph.edges(op.id) if e.target == op.id]
        vectors = [e.source for e in edges if e.role == EdgeRole.input]
        params = [e.source for e in edges if e.role == EdgeRole.parameter]
        parts.append(
            f"<p>Made by the operation <code>{escape(str(op.kind))}</code> from "
            f"{len(vectors):,} vector(s) and {len(params):,} parameter(s):</p>"
            + _listed(vectors + params, "comes from")
        )
    elif node.node_type == "vector":
        parts.append("<p>Made by the tokenizer from the prompt's text.</p>")
    readers = [e.target for e in graph.edges(node_id) if e.source == node_id]
    made = [top.vector_id(top.parse(r)[1]) for r in readers]  # an operation is named by what it makes
    if made:
        parts.append(f"<p>Read by {len(readers):,} operation(s), which make:</p>" + _listed(made, "goes to"))
    else:
        parts.append("<p>Nothing in the graph reads it: it is an end of the run.</p>")
    return "".join(parts)


@dataclass
class AnalysisFigures:
    """The analysis drawn: the logit lens grid (None without a lens of the stream), DLA bars, head roles."""

    lens: Any | None
    dla: Any
    roles: Any
    roles_source: ColumnDataSource


def analysis_figures(graph: Graph) -> AnalysisFigures:
    """Figures of ``graph.analysis``: read from what is stored, never recomputed."""
    a = graph.analysis
    if a is None:
        raise ValueError("the graph carries no analysis: run graph.analyze() first")
    return AnalysisFigures(_lens(graph), _dla(graph), *_roles(graph))


def _lens(graph: Graph) -> Any | None:
    """Logit lens of the residual stream: for each position (row) and point of the stream (column: after the
    embeddings, after each attention and each MLP), the most probable token, shaded by its probability."""
    lens = graph.analysis.lens
    kinds = set() if lens is None else {str(k) for k in lens.kinds}
    if not {"input_embedding", "resid_mid", "resid_post"} <= kinds:
        return None
    top, n, L = graph.topology, graph.n_tokens, graph.dims.n_layer
    # the stream entering each block (after the previous one's MLP), and leaving the last one
    columns = [("embed", lambda p: top.vector_id(top.stream(0, p)))]
    for layer in range(L):
        columns.append((f"{layer} attn", lambda p, y=layer: top.vector_id(Key("resid_mid", y, None, p))))
        columns.append((f"{layer} mlp", lambda p, y=layer: top.vector_id(top.stream(y + 1, p))))
    tokens = graph.tokenization.tokens_visible
    following = [*tokens[1:], None]
    data: dict[str, list] = {k: [] for k in ("x", "y", "top", "prob", "ink", "label", "row", "list", "next")}
    for c, (label, node) in enumerate(columns):
        for p in range(n):
            entry = lens.entry(node(p))
            best = entry.top[0]
            data["x"].append(c)
            data["y"].append(p)
            data["top"].append(best.token)
            data["prob"].append(best.prob)
            data["ink"].append("#111111" if best.prob > 0.6 else "#ffffff")  # readable on the palette's light end
            data["label"].append(label)
            data["row"].append(f"{p}: {tokens[p]}")
            data["list"].append(", ".join(f"{t.token} {percent(t.prob)}" for t in entry.top))
            data["next"].append(
                ""
                if entry.next_token_rank is None
                else f"next token {following[p]}: rank {entry.next_token_rank:,} ({percent(entry.next_token_prob)})"
            )
    fig = figure(
        width=min(1500, max(640, 110 + 70 * len(columns))),
        height=min(900, 90 + 26 * n),
        x_range=Range1d(-0.5, len(columns) - 0.5),
        y_range=Range1d(n - 0.5, -0.5),
        tools="pan,wheel_zoom,reset",
        name="lens",
        title="Logit lens of the residual stream: the most probable token at each point (shade: its probability)",
    )
    source = ColumnDataSource(data)
    mapper = LinearColorMapper(palette=list(_SEQUENTIAL), low=0, high=1)
    cells = fig.rect(
        "x", "y", 1, 1, source=source, fill_color={"field": "prob", "transform": mapper}, line_color="white"
    )
    fig.text("x", "y", text="top", source=source, text_align="center", text_baseline="middle", text_font_size="9px",
             text_color="ink")  # fmt: skip
    fig.add_tools(
        HoverTool(
            renderers=[cells], tooltips=[("position", "@row"), ("after", "@label"), ("top", "@list"), ("", "@next")]
        )
    )
    fig.xaxis.ticker = FixedTicker(ticks=list(range(len(columns))))
    fig.xaxis.major_label_overrides = {i: label for i, (label, _) in enumerate(columns)}
    fig.xaxis.major_label_orientation = 0.9
    fig.yaxis.ticker = FixedTicker(ticks=list(range(n)))
    fig.yaxis.major_label_overrides = {p: f"{p}: {t}" for p, t in enumerate(tokens)}
    fig.grid.visible = False
    fig.add_layout(ColorBar(color_mapper=mapper, width=10, title="probability"), "right")
    return fig


def _dla(graph: Graph, k: int = 12) -> Any:
    """The ``k`` largest contributions to the attributed logit (or logit difference), as signed bars."""
    d = graph.analysis.dla
    rows = d.top(k)[::-1]
    names = [r.component for r in rows]
    what = f"logit({d.token})" if d.contrast is None else f"logit({d.token}) − logit({d.contrast})"
    fig = figure(
        width=620,
        height=60 + 24 * len(rows),
        y_range=FactorRange(*names),
        tools="",
        toolbar_location=None,
        name="dla",
        title=f"Direct logit attribution to {what} after position {d.position}",
    )
    source = ColumnDataSource(
        {
            "name": names,
            "value": [r.contribution for r in rows],
            "text": [signed(r.contribution) for r in rows],
            "color": ["#c0392b" if r.contribution > 0 else "#2166ac" for r in rows],
        }
    )
    bars = fig.hbar(y="name", right="value", height=0.7, source=source, color="color")
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("component", "@name"), ("contribution", "@text")]))
    fig.xaxis.axis_label = "contribution (red raises it, blue lowers it)"
    return fig


def _roles(graph: Graph) -> tuple[Any, ColumnDataSource]:
    """Layers x heads coloured by one role score (``score`` column; the page switches the role)."""
    r = graph.analysis.roles
    d = graph.dims
    data: dict[str, list] = {"x": [], "y": [], "score": [], "label": [], **{role: [] for role in ROLE_MODES}}
    for h in r.heads:
        data["x"].append(h.head)
        data["y"].append(h.layer)
        data["label"].append(h.label or "")
        for role in ROLE_MODES:
            value = getattr(h, role)
            data[role].append(np.nan if value is None else value)
        data["score"].append(data[ROLE_MODES[0]][-1])
    source = ColumnDataSource(data, name="roles")
    fig = figure(
        width=max(320, 80 + 34 * d.n_head),
        height=max(220, 80 + 30 * d.n_layer),
        x_range=Range1d(-0.5, d.n_head - 0.5),
        y_range=Range1d(d.n_layer - 0.5, -0.5),
        tools="",
        toolbar_location=None,
        name="roles-map",
        title="Head roles: previous-token score (0 to 1)",
    )
    mapper = LinearColorMapper(palette=list(_SEQUENTIAL), low=0, high=1, nan_color="#e4e4e4")
    cells = fig.rect(
        "x", "y", 1, 1, source=source, fill_color={"field": "score", "transform": mapper}, line_color="white"
    )
    fig.add_tools(
        HoverTool(
            renderers=[cells],
            tooltips=[("head", "@y.@x"), ("score", "@score{0.000}"), ("label", "@label")],
        )
    )
    fig.xaxis.axis_label, fig.yaxis.axis_label = "head", "layer"
    fig.xaxis.ticker = FixedTicker(ticks=list(range(d.n_head)))
    fig.yaxis.ticker = FixedTicker(ticks=list(range(d.n_layer)))
    fig.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
    return fig, source
