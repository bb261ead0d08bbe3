"""Value statistics of every node and the logit lens of the residual stream, computed from whole-layer
tensors (``graph.hook``) rather than node by node, so a long prompt costs a few tensor operations per layer;
a logit lens the graph already carries is read instead, for every vector it covers.

The statistics are those of :func:`gpt2graph.values.summarize` (L2 norm, mean, population std, min, max),
computed in float64 like it; an attention row of query position ``p`` has ``p + 1`` entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from gpt2graph import ops
from gpt2graph.lens import lens_blocks, lens_logits, read_logits
from gpt2graph.results import LogitLens
from gpt2graph.schema import VectorKind
from gpt2graph.topology import DECODE_KINDS, VECTOR_SPECS, Key

from .layout import Layout
from .numbers import percent

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["LENS_KINDS", "STATS", "attention", "lens_text", "node_stats", "relative"]

V = VectorKind
STATS = ("norm", "mean", "std", "min", "max")
#: residual-stream vectors, whose logit lens the page computes when the graph carries none
LENS_KINDS = (V.input_embedding, V.resid_pre, V.resid_mid, V.resid_post)


def _masked_stats(x: np.ndarray, mask: np.ndarray | None) -> list[np.ndarray]:
    """Statistics over the last dimension of ``x``, counting only entries where ``mask`` (broadcast).

    numpy rather than torch: these are many small operations, and torch's thread pool makes each of them
    slow (milliseconds) whenever the machine is busy. Parameter slices are copied in numpy for the same reason."""
    if mask is None:
        mean = x.mean(-1)
        return [np.sqrt((x * x).sum(-1)), mean, x.std(-1), x.min(-1), x.max(-1)]
    count = mask.sum(-1)
    zeroed = np.where(mask, x, 0.0)
    mean = zeroed.sum(-1) / count
    var = (np.where(mask, x - mean[..., None], 0.0) ** 2).sum(-1) / count
    return [
        np.sqrt((zeroed * zeroed).sum(-1)),
        mean,
        np.sqrt(var),
        np.where(mask, x, np.inf).min(-1),
        np.where(mask, x, -np.inf).max(-1),
    ]


def attention(graph: Graph, layer: int) -> tuple[Tensor, Tensor]:
    """(scores, pattern) of every head of ``layer``, (n_head, n, n), in one batched computation."""
    Q, K = (graph.hook(kind, layer).transpose(0, 1) for kind in (V.q, V.k))  # (H, n, d_head)
    scores = ops.causal_scores(Q, K)
    return scores, ops.softmax(scores)


def _layer_values(graph: Graph, kind: str, layer: int | None, attn: dict[int, tuple[Tensor, Tensor]]) -> Tensor:
    """One kind of one layer as (rows, width) in node order: heads first, then positions. ``attn`` keeps a
    layer's scores and pattern, which are computed together."""
    if kind in (V.attn_scores, V.attn_pattern):
        if layer not in attn:
            attn.clear()
            attn[layer] = attention(graph, layer)
        return attn[layer][0 if kind == V.attn_scores else 1]  # (H, n query, n key)
    if kind == V.head_out:
        return graph.hook(V.head_out, layer).transpose(0, 1)
    whole = graph.hook(kind, layer)
    if kind == V.token:
        return whole.reshape(-1, 1)
    return whole.transpose(0, 1) if VECTOR_SPECS[kind].per_head else whole


def node_stats(graph: Graph, lay: Layout) -> dict[str, np.ndarray]:
    """float32 columns ``norm, mean, std, min, max`` in node order (vectors, then parameters)."""
    n = graph.n_tokens
    out = {name: np.zeros(lay.n_nodes, dtype=np.float32) for name in STATS}
    causal = np.tril(np.ones((n, n), dtype=bool))
    attn: dict[int, tuple[Tensor, Tensor]] = {}
    with torch.no_grad():
        # the groups of one kind and layer (its heads) are consecutive: one operation covers them all
        g = 0
        while g < len(lay.groups):
            kind, layer = lay.groups[g].kind, lay.groups[g].layer
            values = _layer_values(graph, kind, layer, attn).numpy().astype(np.float64)
            # attention rows see only earlier keys; decoding filters set dropped tokens to -inf: both are left out
            mask = (
                causal
                if kind in (V.attn_scores, V.attn_pattern)
                else np.isfinite(values)
                if kind in DECODE_KINDS
                else None
            )
            rows = values[..., 0].size
            for name, column in zip(STATS, _masked_stats(values, mask), strict=True):
                out[name][g * n : g * n + rows] = column.reshape(-1)
            g += rows // n
        # parameters likewise by kind and layer, the heads' slices stacked
        i = 0
        while i < len(lay.params):
            kind, layer = lay.params[i].kind, lay.params[i].layer
            run = [k for k in lay.params[i : i + graph.dims.n_head] if (k.kind, k.layer) == (kind, layer)]
            if kind == "W_U":  # tied: W_E transposed, with the same statistics
                stats = [out[name][lay.n_vectors + lay.params.index(Key("W_E"))] for name in STATS]
            else:  # float32: W_E alone has 38M entries
                flat = np.stack([graph.param(*k[:3]).numpy().reshape(-1) for k in run])
                stats = _masked_stats(flat, None)
            for name, column in zip(STATS, stats, strict=True):
                out[name][lay.n_vectors + i : lay.n_vectors + i + len(run)] = column
            i += len(run)
    return out


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
    a = {name: t.tolist() for name, t in read_logits(graph, logits, following, k).items()}
    columns = (a["top_ids"], a["top_probs"], following.tolist(), a["next_rank"], a["next_prob"])
    return [_line(graph, list(zip(ids, ps, strict=True)), f, r, q) for ids, ps, f, r, q in zip(*columns, strict=True)]


#: rows of logits held at once (rows x n_vocab floats): about 100 MB for GPT-2
_LENS_ROWS = 512


def lens_text(graph: Graph, lay: Layout, top_tokens: int = 3) -> dict[int, str]:
    """Node index -> its logit lens as text (see :func:`_line`), and for the logits the model's own prediction.

    A logit lens stored with the graph (``graph.analysis.lens``) is read as is, for every vector it read (head
    and MLP outputs and b_O too), and never recomputed; the residual-stream kinds it did not read (or all of
    them, without one) are computed here, all groups in a few large products (each reads W_U once, the
    expensive part)."""
    n = graph.n_tokens
    lens = None if graph.analysis is None else graph.analysis.lens
    out = {} if lens is None else _stored_lines(graph, lay, lens, top_tokens)
    stored = set() if lens is None else {str(kind) for kind in lens.kinds}
    following = torch.tensor([*graph.tokenization.token_ids[1:], -1])
    rows, vectors = [], []
    for g, key in enumerate(lay.groups):
        nodes = range(g * n, (g + 1) * n)
        if key.kind == V.logits:
            out.update(zip(nodes, _lines(graph, graph.logits, following, top_tokens), strict=True))
        elif key.kind in LENS_KINDS and key.kind not in stored:
            rows += nodes
            vectors.append(graph.hook(key.kind, key.layer))
    if vectors:
        x, after = torch.cat(vectors), following.repeat(len(vectors))
        with torch.no_grad():
            for start in range(0, len(rows), _LENS_ROWS):
                chunk = slice(start, start + _LENS_ROWS)
                lines = _lines(graph, lens_logits(graph, x[chunk]), after[chunk], top_tokens)
                out.update(zip(rows[chunk], lines, strict=True))
    return out


def _stored_lines(graph: Graph, lay: Layout, lens: LogitLens, top_tokens: int) -> dict[int, str]:
    """Node index -> :func:`_line` of every vector a stored lens read, straight from its arrays (rows in the
    order :func:`gpt2graph.lens.lens_blocks` gives), without making an entry object per vector."""
    blocks = lens_blocks(lay.topology, graph.tokenization.token_ids, lens.kinds)
    a = {name: t.tolist() for name, t in lens.arrays().items()}
    k = min(top_tokens, lens.top_tokens)
    following = torch.cat([b.following for b in blocks]).tolist()
    node_ids = (node for b in blocks for node in b.node_ids)
    out = {}
    for i, node in enumerate(node_ids):
        target = None if lens.target is None else (lens.target, a["target_rank"][i], a["target_prob"][i])
        top = list(zip(a["top_ids"][i][:k], a["top_probs"][i][:k], strict=True))
        out[lay.id_index[node]] = _line(graph, top, following[i], a["next_rank"][i], a["next_prob"][i], target)
    return out
