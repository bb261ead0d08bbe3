"""Where every node of a run sits on the explorer's canvas: pure geometry from the topology, no values.

The canvas reads left to right in forward order. Each token position is a horizontal *lane*; the residual
stream runs along it through every block. Inside a block, the per-position vectors (LayerNorm outputs,
attention output, MLP vectors) are tall bars, and each head's vectors are small cells, one row per head, so a
lane is ``n_head`` rows high. Parameters sit in a strip above lane 0, directly over the column they feed.

A view (``graph.subgraph(...)``) is laid out as it is: only its groups, parameters and positions have nodes,
at the places they have in the whole run (a lane per position shown). Nodes are numbered the way
:meth:`Topology.vector_keys` enumerates them: vectors come in *groups* of one ``(kind, layer, head)`` with one
node per lane, so node ``g * n + i`` is lane ``i`` (position ``positions[i]``) of group ``g``; parameter nodes
follow, in :meth:`Topology.param_keys` order.

Example::

    lay = layout(graph.topology, graph.selection)
    lay.x[lay.index(Key("q", 0, 3, 1))]      # x of blocks.0.attn.hook_q[1,3]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from gpt2graph.plugin import (
    BLOCK_KINDS,
    DECODE_KINDS,
    FINAL_KINDS,
    PARAM_CONSUMER,
    PARAM_SPECS,
    READS,
    VECTOR_SPECS,
    Key,
    Selection,
    Topology,
    VectorKind,
)

__all__ = ["BLOCK_WIDTH", "COLUMN_LABELS", "LANE_GAP", "Layout", "layout"]

V = VectorKind

LANE_GAP = 2.0  # empty rows between two lanes
PARAM_GAP = 2.5  # rows between the parameter strip and lane 0
CELL = 0.8  # side of a head cell
STREAM = "stream"  # the column where the residual stream enters a block

#: kinds a wider gap separates from the column before them: the start of each step of the block
_WIDE_GAP = {V.ln1_scale, V.q, V.attn_scores, V.z, V.attn_out, V.resid_mid, V.ln2_scale, V.mlp_pre, V.ln_final_scale,
             V.scaled_logits, V.next_token}  # fmt: skip


def _columns(kinds: tuple[str, ...]) -> dict[str, float]:
    """x of each kind's column, in the forward order the topology gives, relative to the stream column."""
    columns, x = {}, 0.0
    for kind in kinds:
        x += 1.25 if kind in _WIDE_GAP else 1.0
        columns[kind] = x
    return columns


#: x of each column inside a block, relative to the stream entering it
BLOCK_COLUMNS: dict[str, float] = {STREAM: 0.0, **_columns(BLOCK_KINDS)}
BLOCK_WIDTH = BLOCK_COLUMNS[BLOCK_KINDS[-1]] + 1.25
#: columns before block 0 and after the last block, relative to the stream entering block 0 / leaving the last
EMBED_COLUMNS = {V.token: -3.0, V.token_embedding: -1.5, V.pos_embedding: -1.5}
FINAL_COLUMNS = _columns((*FINAL_KINDS, *DECODE_KINDS))

#: bar widths by kind (wider bars for wider vectors); head kinds are CELL wide
_BAR_WIDTH = {
    V.mlp_pre: 0.7,
    V.mlp_post: 0.7,
    V.logits: 0.9,
    V.token: 0.6,
    V.ln1_scale: 0.3,
    V.ln2_scale: 0.3,
    V.ln_final_scale: 0.3,
    V.scaled_logits: 0.9,
    V.top_k_logits: 0.9,
    V.top_p_logits: 0.9,
    V.probs: 0.9,
    V.next_token: 0.6,
}
_DEFAULT_BAR = 0.5

#: the two embedding lookups share a column (token embedding over positional embedding), so their tables sit
#: one over the other
_STACKED = {V.token_embedding: "top", V.pos_embedding: "bottom"}


def _param_place(kind: str) -> tuple[str, str]:
    """The column a parameter sits over (that of the vector its operation produces) and where: the weight
    (left) and bias (right) of a pair side by side, a lone parameter in the centre."""
    column = PARAM_CONSUMER[kind]
    if column in _STACKED:
        return column, _STACKED[column]
    params = [r.kind for r in READS[column] if r.kind in PARAM_SPECS]
    return column, "centre" if len(params) == 1 else ("left", "right")[params.index(kind)]


_SIDE_DX = {"left": -0.12, "right": 0.26, "centre": 0.0, "top": 0.0, "bottom": 0.0}
_SIDE_WIDTH = {"left": 0.45, "right": 0.2, "centre": 0.5, "top": 0.5, "bottom": 0.5}

#: short labels of the columns, shown along the top axis when zoomed in
COLUMN_LABELS: dict[str, str] = {
    V.token: "token",
    V.token_embedding: "embed",
    STREAM: "resid",
    V.ln1_scale: "σ",
    V.ln1_normalized: "norm",
    V.ln1: "ln1",
    V.q: "q",
    V.k: "k",
    V.v: "v",
    V.attn_scores: "scores",
    V.attn_pattern: "pattern",
    V.z: "z",
    V.head_out: "result",
    V.attn_out: "attn_out",
    V.resid_mid: "resid_mid",
    V.ln2_scale: "σ",
    V.ln2_normalized: "norm",
    V.ln2: "ln2",
    V.mlp_pre: "mlp_pre",
    V.mlp_post: "mlp_post",
    V.mlp_out: "mlp_out",
    V.ln_final_scale: "σ",
    V.ln_final_normalized: "norm",
    V.ln_final: "ln_final",
    V.logits: "logits",
    V.scaled_logits: "÷T",
    V.top_k_logits: "top-k",
    V.top_p_logits: "top-p",
    V.probs: "probs",
    V.next_token: "next",
}


@dataclass(frozen=True)
class Layout:
    """Positions and sizes of every node (numpy float32 arrays in node order) plus the canvas landmarks."""

    topology: Topology
    groups: list[Key]  # one (kind, layer, head) per vector group; position left as None
    params: list[Key]
    positions: np.ndarray  # the token position of each lane
    x: np.ndarray
    y: np.ndarray
    width: np.ndarray
    height: np.ndarray
    lane_y: np.ndarray  # centre of each position's lane
    lane_pitch: float
    block_x: np.ndarray  # x of the stream entering block L, for L in 0..n_layer (the last: leaving the last block)
    columns: list[tuple[float, str]]  # (x, label) of every column, for the top axis
    param_strip: tuple[float, float]  # (bottom, top) y of the parameter strip

    @property
    def n(self) -> int:
        """Number of lanes: the positions shown."""
        return len(self.positions)

    @property
    def n_vectors(self) -> int:
        return len(self.groups) * self.n

    @property
    def n_nodes(self) -> int:
        return self.n_vectors + len(self.params)

    def index(self, key: Key) -> int:
        """Node index of a vector key (with its position) or a parameter key."""
        if key.kind in PARAM_SPECS:
            return self.n_vectors + self.param_index[key]
        return self.group_index[key._replace(position=None)] * self.n + self.lane[key.position]

    def key_of(self, index: int) -> Key:
        """The vector (with its position) or parameter key of a node index."""
        if index >= self.n_vectors:
            return self.params[index - self.n_vectors]
        return self.groups[index // self.n]._replace(position=int(self.positions[index % self.n]))

    @cached_property
    def lane(self) -> dict[int, int]:
        """The lane of each position shown."""
        return {int(p): i for i, p in enumerate(self.positions)}

    @cached_property
    def group_index(self) -> dict[Key, int]:
        return {g: i for i, g in enumerate(self.groups)}

    @cached_property
    def param_index(self) -> dict[Key, int]:
        return {k: i for i, k in enumerate(self.params)}

    @cached_property
    def ids(self) -> np.ndarray:
        """Every node's id in node order, as one numpy string array (Bokeh serialises it in one piece)."""
        top = self.topology
        return np.array(
            [top.vector_id(k._replace(position=int(p))) for k in self.groups for p in self.positions]
            + [top.param_id(k) for k in self.params]
        )

    @cached_property
    def id_index(self) -> dict[str, int]:
        """Node index of every node id, for results keyed by id (the analysis)."""
        return {str(node_id): i for i, node_id in enumerate(self.ids)}

    @property
    def x_range(self) -> tuple[float, float]:
        return (
            float(self.block_x[0] + EMBED_COLUMNS[V.token] - 1.5),
            float(self.block_x[-1] + max(FINAL_COLUMNS.values()) + 1.5),
        )

    @property
    def y_range(self) -> tuple[float, float]:
        n_head = self.topology.dims.n_head
        return float(self.lane_y[-1] - n_head / 2 - 1), float(self.param_strip[1] + 1)

    def block_span(self, layer: int) -> tuple[float, float, float]:
        """(left, middle between attention and MLP, right) x of block ``layer``'s shaded band."""
        x0 = float(self.block_x[layer])
        return (
            x0 + BLOCK_COLUMNS[BLOCK_KINDS[0]] - 0.6,
            x0 + (BLOCK_COLUMNS[V.resid_mid] + BLOCK_COLUMNS[V.ln2_scale]) / 2,
            x0 + BLOCK_COLUMNS[V.mlp_out] + 0.6,
        )


def _column_x(kind: str, layer: int | None, block_x: np.ndarray) -> float:
    """x of the column holding vectors of ``kind`` in block ``layer``."""
    if kind in EMBED_COLUMNS:
        return float(block_x[0] + EMBED_COLUMNS[kind])
    if kind == V.input_embedding:
        return float(block_x[0])
    if kind == V.resid_pre:
        return float(block_x[layer])
    if kind == V.resid_post:
        return float(block_x[-1])
    if kind in FINAL_COLUMNS:
        return float(block_x[-1] + FINAL_COLUMNS[kind])
    return float(block_x[layer] + BLOCK_COLUMNS[kind])


def layout(topology: Topology, selection: Selection | None = None) -> Layout:
    """Lay out every vector and parameter of ``topology`` in ``selection`` (None: all), from the dims, the token
    count and the selection alone."""
    selection = selection or Selection()
    d = topology.dims
    positions = np.array(
        sorted(selection.positions) if selection.positions is not None else range(topology.n_tokens), dtype=np.int64
    )
    n, H = len(positions), d.n_head
    pitch = H + LANE_GAP
    lane_y = -np.arange(n, dtype=np.float64) * pitch
    block_x = np.arange(d.n_layer + 1, dtype=np.float64) * BLOCK_WIDTH
    groups = [k._replace(position=None) for k in topology.vector_keys(position=0) if selection.admits(*k[1:3], None)]
    params = [k for k in topology.param_keys() if selection.admits(*k[1:3], None)]

    xs, ys, ws, hs = [], [], [], []
    bar_h = H - 0.4
    for kind, layer, head, _ in groups:
        x = _column_x(kind, layer, block_x)
        if VECTOR_SPECS[kind].per_head:
            y = lane_y + H / 2 - (head + 0.5)
            w, h = CELL, CELL
        elif kind in (V.token_embedding, V.pos_embedding):
            # the two lookups share a column: token embedding over positional embedding
            y = lane_y + (bar_h / 4 if kind == V.token_embedding else -bar_h / 4)
            w, h = _DEFAULT_BAR, bar_h / 2 - 0.2
        else:
            y = lane_y
            w, h = _BAR_WIDTH.get(kind, _DEFAULT_BAR), (bar_h * 0.6 if kind in (V.token, V.next_token) else bar_h)
        xs.append(np.full(n, x))
        ys.append(y)
        ws.append(np.full(n, w))
        hs.append(np.full(n, h))

    strip_bottom = float(lane_y[0] + H / 2 + PARAM_GAP)
    strip_top = strip_bottom + H
    px, py, pw, ph = [], [], [], []
    for kind, layer, head, _ in params:
        column, side = _param_place(kind)
        x = _column_x(column, layer, block_x)
        if head is not None:
            y, h = strip_top - (head + 0.5), CELL
        elif side in ("top", "bottom"):
            y, h = strip_bottom + (0.75 if side == "top" else 0.25) * H, H / 2 - 0.4
        else:
            y, h = (strip_bottom + strip_top) / 2, H - 0.4
        px.append(x + _SIDE_DX[side])
        py.append(y)
        pw.append(_SIDE_WIDTH[side])
        ph.append(h)

    def cat(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
        return np.concatenate([*vectors, np.asarray(weights)]).astype(np.float32)

    columns = [
        (float(block_x[0] + EMBED_COLUMNS[V.token]), COLUMN_LABELS[V.token]),
        (float(block_x[0] + EMBED_COLUMNS[V.token_embedding]), COLUMN_LABELS[V.token_embedding]),
    ]
    for L in range(d.n_layer):
        columns += [(float(block_x[L] + dx), COLUMN_LABELS[k]) for k, dx in BLOCK_COLUMNS.items()]
    columns += [(float(block_x[-1]), COLUMN_LABELS[STREAM])]
    columns += [(float(block_x[-1] + dx), COLUMN_LABELS[k]) for k, dx in FINAL_COLUMNS.items()]

    return Layout(
        topology=topology,
        groups=groups,
        params=params,
        positions=positions,
        x=cat(xs, px),
        y=cat(ys, py),
        width=cat(ws, pw),
        height=cat(hs, ph),
        lane_y=lane_y,
        lane_pitch=pitch,
        block_x=block_x,
        columns=columns,
        param_strip=(strip_bottom, strip_top),
    )
