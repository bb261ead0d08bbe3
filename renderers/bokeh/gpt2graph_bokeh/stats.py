"""Value statistics of every node and the logit lens of the residual stream, read from whole-layer tensors
(``graph.summaries``, ``graph.hook``) rather than node by node, so a long prompt costs a few tensor
operations per layer; a logit lens the graph already carries is read instead, for every vector it covers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from gpt2graph.plugin import (
    DECODE_KINDS,
    SUMMARY_FIELDS,
    TIED,
    VECTOR_SPECS,
    Key,
    LensTable,
    VectorKind,
    lens_logits,
    percent,
    read_logits,
)

from .layout import Layout

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["LENS_KINDS", "levels", "lens_text", "node_stats", "relative"]

V = VectorKind
#: residual-stream vectors, whose logit lens the page computes when the graph carries none
LENS_KINDS = (V.input_embedding, V.resid_pre, V.resid_mid, V.resid_post)


def node_stats(graph: Graph, lay: Layout) -> dict[str, np.ndarray]:
    """float32 columns ``norm, mean, std, min, max`` in node order (vectors, then parameters), as each node's
    ``summary`` has them."""
    out = {name: np.zeros(lay.n_nodes, dtype=np.float32) for name in SUMMARY_FIELDS}
    lanes = torch.as_tensor(lay.positions)
    decoding = None
    with torch.no_grad():
        # the groups of one kind and layer (its heads) are consecutive: one call covers them all
        g = 0
        while g < len(lay.groups):
            kind, layer = lay.groups[g].kind, lay.groups[g].layer
            run = _run(lay.groups, g)
            if kind in DECODE_KINDS:  # the whole decoding stage comes from one pass
                decoding = decoding or graph.decoding_summaries()
                stats = decoding[kind]
            else:
                stats = graph.summaries(kind, layer)
            spec = VECTOR_SPECS[kind]
            for name, column in stats.items():
                if spec.per_head:  # heads first, as the groups are
                    column = (column if spec.head_first else column.T)[[k.head for k in run]]
                start = g * lay.n
                out[name][start : start + len(run) * lay.n] = column[..., lanes].reshape(-1).numpy()
            g += len(run)
        # parameters likewise by kind and layer, every head at once
        i = 0
        while i < len(lay.params):
            kind, layer = lay.params[i].kind, lay.params[i].layer
            run = _run(lay.params, i)
            if kind in TIED:  # the same numbers as the parameter it is tied to, transposed
                tied = lay.n_vectors + lay.param_index[Key(TIED[kind])]
                stats = {name: out[name][tied] for name in SUMMARY_FIELDS}
            else:  # every head of the layer, summarised once per loaded model
                rows = [k.head for k in run] if run[0].head is not None else [0]
                stats = {name: v[rows].numpy() for name, v in graph.store.param_summaries(kind, layer).items()}
            for name in SUMMARY_FIELDS:
                out[name][lay.n_vectors + i : lay.n_vectors + i + len(run)] = stats[name]
            i += len(run)
    return out


def _run(keys: list[Key], start: int) -> list[Key]:
    """The keys from ``start`` on that share its kind and layer (its heads)."""
    kind, layer = keys[start].kind, keys[start].layer
    end = start
    while end < len(keys) and (keys[end].kind, keys[end].layer) == (kind, layer):
        end += 1
    return keys[start:end]


def relative(values: np.ndarray, unit_kind: np.ndarray, signed: bool) -> np.ndarray:
    """``values`` scaled within each kind to [0, 1] for colouring: min..max, or for signed statistics
    -max|v|..+max|v| so that 0.5 is zero. Kinds differ by orders of magnitude (logits vs queries), so one
    scale for all would paint everything but the largest kind the same colour."""
    out = np.full(values.shape, 0.5, dtype=np.float32)
    for kind in np.unique(unit_kind):
        sel = unit_kind == kind
        v = values[sel].astype(np.float64)
        if signed:
            span = np.abs(v).max()
            out[sel] = 0.5 + 0.5 * v / span if span > 0 else 0.5
        else:
            lo, hi = v.min(), v.max()
            out[sel] = (v - lo) / (hi - lo) if hi > lo else 0.5
    return out


def levels(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as colour levels 0..255 (uint8): a byte per node rather than four, and no coarser than
    the palettes (256 colours at most)."""
    return np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)


def _line(
    graph: Graph,
    top: list[tuple[int, float]],
    following: int,
    rank: int,
    prob: float,
    target: tuple[int, int, float] | None = None,
) -> str:
    """One vector's lens as text: ``Ġthe 12.5%, Ġa 8.1% · next token Ġare: rank 153 (0.0012%)``, then the
    target's rank when the stored lens has one. ``following`` is -1 where no token follows."""
    text = ", ".join(f"{graph.decode_token(t)} {percent(p)}" for t, p in top)
    if following >= 0:
        text += f" · next token {graph.decode_token(following)}: rank {rank:,} ({percent(prob)})"
    if target is not None:
        t, r, p = target
        text += f" · target {graph.decode_token(t)}: rank {r:,} ({percent(p)})"
    return text


def _lines(graph: Graph, logits: Tensor, following: Tensor, k: int) -> list[str]:
    """:func:`_line` of each row of logits, read by the core's logit lens (:func:`gpt2graph.lens.read_logits`)."""
    a = {name: t.tolist() for name, t in read_logits(logits, following, k).items()}
    columns = (a["top_ids"], a["top_probs"], following.tolist(), a["next_rank"], a["next_prob"])
    return [_line(graph, list(zip(ids, ps, strict=True)), f, r, q) for ids, ps, f, r, q in zip(*columns, strict=True)]


#: rows of logits held at once (rows x n_vocab floats): about 100 MB for GPT-2
_LENS_ROWS = 512


def lens_text(graph: Graph, lay: Layout, positions: np.ndarray | None = None) -> dict[int, str]:
    """Node index -> its logit lens as text (see :func:`_line`), and for the logits the model's own prediction.

    The graph's logit lens (``graph.lens``) is read as is: the residual stream and b_O at every position, head
    and MLP outputs (which it reads on demand, a vocabulary row each) at ``positions`` only (default: every
    position shown); the residual-stream kinds it does not read (or all of them, without one) are computed
    here, all groups in a few large products (each reads W_U once, the expensive part). Only the view's
    nodes have lines."""
    n, lanes, top_tokens = lay.n, torch.as_tensor(lay.positions), 3
    lens = graph.lens
    shown = lay.positions if positions is None else positions
    out = {} if lens is None else _stored_lines(graph, lay, lens, top_tokens, shown)
    stored = set() if lens is None else {str(kind) for kind in lens.kinds}
    following = torch.tensor([*graph.tokenization.token_ids[1:], -1])[lanes]
    rows, vectors = [], []
    for g, key in enumerate(lay.groups):
        nodes = range(g * n, (g + 1) * n)
        if key.kind == V.logits:
            out.update(zip(nodes, _lines(graph, graph.logits[lanes], following, top_tokens), strict=True))
        elif key.kind in LENS_KINDS and key.kind not in stored:
            rows += nodes
            vectors.append(graph.hook(key.kind, key.layer)[lanes])
    if vectors:
        x, after = torch.cat(vectors), following.repeat(len(vectors))
        with torch.no_grad():
            for start in range(0, len(rows), _LENS_ROWS):
                chunk = slice(start, start + _LENS_ROWS)
                lines = _lines(graph, lens_logits(graph, x[chunk]), after[chunk], top_tokens)
                out.update(zip(rows[chunk], lines, strict=True))
    return out


def _stored_lines(graph: Graph, lay: Layout, lens: LensTable, top_tokens: int, positions: np.ndarray) -> dict[int, str]:
    """Node index -> :func:`_line` of the view's vectors the graph's lens reads (its lazy kinds between the
    first and the last of ``positions`` only), straight from its arrays block by block, without making an
    entry object per vector."""
    k = min(top_tokens, lens.header.top_tokens)
    top = lay.topology
    out = {}
    span = range(int(positions.min()), int(positions.max()) + 1) if len(positions) else range(0)
    for i, block in enumerate(lens.blocks):
        per = len(block.node_ids) // graph.n_tokens if block.kind in lens.lazy_kinds else 0
        lo, hi = (span.start * per, span.stop * per) if per else (0, len(block.node_ids))
        a = {name: t.tolist() for name, t in lens.block_rows(i, lo, hi).items()}
        following = block.following[lo:hi].tolist()
        for r, node in enumerate(block.node_ids[lo:hi]):
            index = lay.find(top.parse(node)[1])
            if index is None:  # outside the view
                continue
            target = None if lens.target is None else (lens.target, a["target_rank"][r], a["target_prob"][r])
            top_ = list(zip(a["top_ids"][r][:k], a["top_probs"][r][:k], strict=True))
            out[index] = _line(graph, top_, following[r], a["next_rank"][r], a["next_prob"][r], target)
    return out
