"""Logit lens: read any vector of the residual stream as if it were the last one.

For a vector x the lens is ``softmax(ln_final(x) @ W_U)``: the final LayerNorm (centring, its own scale,
gain and bias) then the unembedding, exactly as the model reads its final stream. The same is applied to the
vectors components write into the stream (head outputs, b_O, MLP outputs), as they are: a component's
output is normalised on its own rather than in the context of the stream it joins, so the lens shows which
tokens that write points at, not how much it moves the final logits (that is direct logit attribution).

Cost: every vector needs a full (n_vocab,) logit row for its ranks, so the work is
(#vectors x d_model x n_vocab). Rows are processed in chunks (whole layers of positions and heads at once),
so memory stays at one chunk of logits however long the prompt.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import ops
from .analysis import LensEntry, LensKind, LogitLens, TokenProb
from .errors import InterpretError
from .schema import ParamKind, VectorKind
from .targets import resolve_token
from .topology import Key

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["logit_lens", "lens_logits", "CHUNK_ELEMENTS"]

V, P = VectorKind, ParamKind
#: logits held at once (rows x n_vocab); 2^25 fp32 values are 128 MB, about 670 rows of GPT-2
CHUNK_ELEMENTS = 1 << 25


def lens_logits(graph: Graph, x: Tensor) -> Tensor:
    """Logit-lens logits of vectors ``x`` (..., d_model): the final LayerNorm, then W_U."""
    normed = ops.layernorm(x, graph.param(P.ln_final_w), graph.param(P.ln_final_b), graph.dims.layer_norm_eps)
    return ops.unembed(normed, graph.param(P.W_U))


def _blocks(graph: Graph, kinds: set[str]) -> Iterator[tuple[LensKind, list[str], Tensor, Tensor]]:
    """(kind, node ids, next-token ids (-1: none), vectors) for each whole layer of one kind, in forward order."""
    top, n, H = graph.topology, graph.n_tokens, graph.dims.n_head
    ids = torch.tensor(graph.tokenization.token_ids)
    following = torch.cat([ids[1:], torch.tensor([-1])])

    def per_position(kind: str, layer: int | None, x: Tensor) -> tuple[LensKind, list[str], Tensor, Tensor]:
        return LensKind(kind), [top.vector_id(Key(kind, layer, None, p)) for p in range(n)], following, x

    for L in range(graph.dims.n_layer):
        stream = V.input_embedding if L == 0 else V.resid_pre
        if stream in kinds:
            yield per_position(stream, None if L == 0 else L, graph.hook(stream, None if L == 0 else L))
        if V.head_out in kinds:
            heads = graph.hook(V.head_out, L)  # (n, H, d_model): z^h W_O^h of every head
            node_ids = [top.vector_id(Key(V.head_out, L, h, p)) for p in range(n) for h in range(H)]
            yield LensKind.head_out, node_ids, following.repeat_interleave(H), heads.reshape(n * H, -1)
        if P.b_O in kinds:
            yield LensKind.b_O, [top.param_id(Key(P.b_O, L))], torch.tensor([-1]), graph.param(P.b_O, L)[None]
        for kind in (V.resid_mid, V.mlp_out):
            if kind in kinds:
                yield per_position(kind, L, graph.hook(kind, L))
    if V.resid_post in kinds:
        last = graph.dims.n_layer - 1
        yield per_position(V.resid_post, last, graph.hook(V.resid_post, last))


def logit_lens(graph: Graph, *, top_k: int = 5, target: int | str | None = None,
               kinds: Iterable[str] | None = None, chunk_elements: int = CHUNK_ELEMENTS) -> LogitLens:
    """The logit lens of every residual-stream vector and every vector written into the stream.

    ``kinds`` restricts it to some :class:`LensKind` values (default: all). Each entry keeps the ``top_k``
    tokens, and the rank and probability of the token that follows its position and of ``target``.

    Example::

        lens = logit_lens(graph, target=" Paris")
        lens.entries[-1].top[0].token   # resid_post at the last position: the model's own prediction
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InterpretError(f"top_k must be a positive integer, got {top_k!r}")
    wanted = {str(k) for k in LensKind} if kinds is None else {str(k) for k in kinds}
    unknown = wanted - {str(k) for k in LensKind}
    if unknown:
        raise InterpretError(f"unknown logit-lens kind(s) {sorted(unknown)}; known: {[str(k) for k in LensKind]}")
    target_id = None if target is None else resolve_token(graph, target, "target")
    k = min(top_k, graph.dims.n_vocab)
    rows = max(1, chunk_elements // graph.dims.n_vocab)
    entries: list[LensEntry] = []
    with torch.no_grad():
        for kind, node_ids, following, x in _blocks(graph, wanted):
            for start in range(0, x.shape[0], rows):
                stop = start + rows
                entries += _read(graph, kind, node_ids[start:stop], following[start:stop], x[start:stop], k,
                                 target_id)
    return LogitLens(top_k=k, target=target_id, entries=entries)


def _read(graph: Graph, kind: LensKind, node_ids: list[str], following: Tensor, x: Tensor, k: int,
          target_id: int | None) -> list[LensEntry]:
    """Lens entries of one chunk of vectors: one (rows, n_vocab) logit matrix, read without copying it."""
    logits = lens_logits(graph, x)
    peak = logits.amax(dim=-1, keepdim=True)  # logsumexp by hand: one pass fewer than torch.logsumexp on CPU
    lse = (logits - peak).exp_().sum(dim=-1, keepdim=True).log_() + peak
    top = torch.topk(logits, k, dim=-1)
    top_p = (top.values - lse).exp().clamp(max=1.0)

    def rank_prob(token_ids: Tensor) -> tuple[list[int], list[float]]:
        own = logits.gather(1, token_ids.clamp(min=0)[:, None])
        return ((logits > own).sum(-1, dtype=torch.int32) + 1).tolist(), (own - lse).exp().clamp(max=1.0)[:, 0].tolist()

    next_rank, next_prob = rank_prob(following)
    has_next = (following >= 0).tolist()
    if target_id is not None:
        target_rank, target_prob = rank_prob(torch.full_like(following, target_id))
    vocab = graph.vocab
    out = []
    for i, (node, ids, probs, values) in enumerate(zip(node_ids, top.indices.tolist(), top_p.tolist(),
                                                       top.values.tolist())):
        out.append(LensEntry(
            node=node, kind=kind,
            top=[TokenProb(id=t, token=vocab[t], prob=p, logit=v) for t, p, v in zip(ids, probs, values)],
            next_token_rank=next_rank[i] if has_next[i] else None,
            next_token_prob=next_prob[i] if has_next[i] else None,
            target_rank=target_rank[i] if target_id is not None else None,
            target_prob=target_prob[i] if target_id is not None else None,
        ))
    return out
