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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import ops
from .errors import InterpretError
from .results import LensEntry, LensKind, LogitLens, TokenProb
from .schema import ParamKind, VectorKind
from .targets import check_top_tokens, resolve_token
from .topology import Key, Topology

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "logit_lens",
    "lens_logits",
    "lens_blocks",
    "read_logits",
    "attach",
    "LensBlock",
    "LensTable",
    "CHUNK_ELEMENTS",
]

V, P = VectorKind, ParamKind
#: logits held at once (rows x n_vocab); 2^25 fp32 values are 128 MB, about 670 rows of GPT-2
CHUNK_ELEMENTS = 1 << 25


def lens_logits(graph: Graph, x: Tensor) -> Tensor:
    """Logit-lens logits of vectors ``x`` (..., d_model): the final LayerNorm, then W_U."""
    normalized = ops.ln_normalize(x, ops.ln_scale(x, graph.dims.layer_norm_eps))
    normed = ops.ln_affine(normalized, graph.param(P.ln_final_w), graph.param(P.ln_final_b))
    return ops.unembed(normed, graph.param(P.W_U))


@dataclass(frozen=True)
class LensBlock:
    """One whole layer of one kind of vector the lens reads: its node ids and the token following each."""

    kind: LensKind
    layer: int | None
    node_ids: list[str]
    following: Tensor  # next token id per row; -1 where there is none (last position, b_O)


def lens_blocks(topology: Topology, token_ids: list[int], kinds: Iterable[str]) -> list[LensBlock]:
    """The rows the lens reads, block by block in forward order: a pure function of the structure, so a saved
    lens needs no node ids of its own."""
    kinds = {str(k) for k in kinds}
    n, H = topology.n_tokens, topology.dims.n_head
    following = torch.cat([torch.tensor(token_ids[1:], dtype=torch.long), torch.tensor([-1])])

    def stream(kind: str, layer: int | None) -> LensBlock:
        return LensBlock(
            LensKind(kind), layer, [topology.vector_id(Key(kind, layer, None, p)) for p in range(n)], following
        )

    blocks = []
    for L in range(topology.dims.n_layer):
        entering = V.input_embedding if L == 0 else V.resid_pre
        if entering in kinds:
            blocks.append(stream(entering, None if L == 0 else L))
        if V.head_out in kinds:
            blocks.append(
                LensBlock(
                    LensKind.head_out,
                    L,
                    [topology.vector_id(Key(V.head_out, L, h, p)) for p in range(n) for h in range(H)],
                    following.repeat_interleave(H),
                )
            )
        if P.b_O in kinds:
            blocks.append(LensBlock(LensKind.b_O, L, [topology.param_id(Key(P.b_O, L))], torch.tensor([-1])))
        for kind in (V.resid_mid, V.mlp_out):
            if kind in kinds:
                blocks.append(stream(kind, L))
    if V.resid_post in kinds:
        blocks.append(stream(V.resid_post, topology.dims.n_layer - 1))
    return blocks


def _vectors(graph: Graph, block: LensBlock) -> Tensor:
    """The (rows, d_model) vectors of one block, in its row order."""
    if block.kind == LensKind.head_out:
        return graph.hook(V.head_out, block.layer).reshape(-1, graph.dims.d_model)  # (n, H, d) position-major
    if block.kind == LensKind.b_O:
        return graph.param(P.b_O, block.layer)[None]
    return graph.hook(block.kind, block.layer)


class LensTable:
    """The per-vector lens results as arrays (what is saved), with the node ids and kinds of their rows.

    ``next_rank`` is 0 and ``next_prob`` NaN where no token follows; the target arrays exist only when a
    target was chosen. :class:`LensEntry` objects are made from the arrays on demand."""

    __hash__ = None  # type: ignore[assignment]  # compared by value, so not hashable

    ARRAYS = ("top_ids", "top_logits", "top_probs", "next_rank", "next_prob", "target_rank", "target_prob")

    def __init__(self, blocks: list[LensBlock], arrays: dict[str, Tensor], vocab: list[str]):
        self.node_ids = [i for b in blocks for i in b.node_ids]
        self.kinds = [b.kind for b in blocks for _ in b.node_ids]
        self.arrays = arrays
        self.vocab = vocab
        self._entries: list[LensEntry] | None = None
        self._index: dict[str, int] | None = None

    def __eq__(self, other: object) -> bool:
        def same(a: Tensor, b: Tensor) -> bool:  # exactly equal, NaN (no next token) included
            return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())

        return (
            isinstance(other, LensTable)
            and self.node_ids == other.node_ids
            and self.arrays.keys() == other.arrays.keys()
            and all(same(a, other.arrays[name]) for name, a in self.arrays.items())
        )

    def entries(self) -> list[LensEntry]:
        if self._entries is None:
            self._entries = [self._entry(i) for i in range(len(self.node_ids))]
        return self._entries

    def entry(self, node: str) -> LensEntry | None:
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.node_ids)}
        i = self._index.get(node)
        return None if i is None else (self._entries[i] if self._entries is not None else self._entry(i))

    def _entry(self, i: int) -> LensEntry:
        a = self.arrays
        rank = int(a["next_rank"][i])
        target = "target_rank" in a
        return LensEntry(
            node=self.node_ids[i],
            kind=self.kinds[i],
            top=[
                TokenProb(id=t, token=self.vocab[t], prob=p, logit=v)
                for t, p, v in zip(a["top_ids"][i].tolist(), a["top_probs"][i].tolist(), a["top_logits"][i].tolist())
            ],
            next_token_rank=rank or None,
            next_token_prob=float(a["next_prob"][i]) if rank else None,
            target_rank=int(a["target_rank"][i]) if target else None,
            target_prob=float(a["target_prob"][i]) if target else None,
        )


def attach(
    lens: LogitLens, topology: Topology, token_ids: list[int], arrays: dict[str, Tensor], vocab: list[str]
) -> None:
    """Give a loaded ``lens`` its arrays, after checking they are the ones its header describes (ValueError)."""
    blocks = lens_blocks(topology, token_ids, lens.kinds)
    rows = sum(len(b.node_ids) for b in blocks)
    expected = set(LensTable.ARRAYS) if lens.target is not None else set(LensTable.ARRAYS[:5])
    if set(arrays) != expected:
        raise ValueError(f"logit-lens arrays {sorted(arrays)} do not match its header (expected {sorted(expected)})")
    for name, t in arrays.items():
        shape = (rows, lens.top_tokens) if name.startswith("top_") else (rows,)
        if tuple(t.shape) != shape or rows != lens.n_entries:
            raise ValueError(
                f"logit-lens array {name} has shape {tuple(t.shape)}, expected {shape} "
                f"({lens.n_entries} entries recorded)"
            )
        _check_values(name, t, len(vocab))
    lens._table = LensTable(blocks, arrays, vocab)


def _check_values(name: str, t: Tensor, n_vocab: int) -> None:
    """A loaded lens array holds what the lens writes: token ids, ranks (0: no next token), probabilities (NaN:
    no next token) and finite logits (ValueError)."""
    integer = name in ("top_ids", "next_rank", "target_rank")
    if t.dtype.is_floating_point == integer:
        raise ValueError(f"logit-lens array {name} is {str(t.dtype).removeprefix('torch.')}")
    if name == "top_ids":
        ok = bool(((t >= 0) & (t < n_vocab)).all())
    elif integer:
        ok = bool(((t >= 0) & (t <= n_vocab)).all()) and (name != "target_rank" or bool((t >= 1).all()))
    elif name == "top_logits":
        ok = bool(torch.isfinite(t).all())
    else:
        ok = bool((((t >= 0) & (t <= 1)) | (t.isnan() if name == "next_prob" else False)).all())
    if not ok:
        raise ValueError(f"logit-lens array {name} holds values a logit lens cannot produce")


def logit_lens(
    graph: Graph,
    *,
    top_tokens: int = 5,
    target: int | str | None = None,
    kinds: Iterable[str] | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> LogitLens:
    """The logit lens of every residual-stream vector and every vector written into the stream.

    ``kinds`` restricts it to some :class:`LensKind` values (default: all). Each entry keeps the ``top_tokens``
    tokens, and the rank and probability of the token that follows its position and of ``target``.

    Example::

        lens = logit_lens(graph, target=" Paris")
        lens.entries[-1].top[0].token   # resid_post at the last position: the model's own prediction
    """
    check_top_tokens(top_tokens)
    wanted = {str(k) for k in LensKind} if kinds is None else {str(k) for k in kinds}
    unknown = wanted - {str(k) for k in LensKind}
    if unknown:
        raise InterpretError(f"unknown logit-lens kind(s) {sorted(unknown)}; known: {[str(k) for k in LensKind]}")
    if not wanted:
        raise InterpretError("kinds is empty: name at least one logit-lens kind (or skip the lens)")
    target_id = None if target is None else resolve_token(graph, target, "target")
    k = min(top_tokens, graph.dims.n_vocab)
    rows = max(1, chunk_elements // graph.dims.n_vocab)
    blocks = lens_blocks(graph.topology, graph.tokenization.token_ids, wanted)
    parts: list[dict[str, Tensor]] = []
    with torch.no_grad():
        for block in blocks:
            x = _vectors(graph, block)
            for start in range(0, x.shape[0], rows):
                stop = start + rows
                parts.append(
                    read_logits(graph, lens_logits(graph, x[start:stop]), block.following[start:stop], k, target_id)
                )
    names = LensTable.ARRAYS if target_id is not None else LensTable.ARRAYS[:5]
    arrays = {name: torch.cat([p[name] for p in parts]) for name in names}
    lens = LogitLens(
        top_tokens=k,
        target=target_id,
        kinds=[kind for kind in LensKind if kind in wanted],
        n_entries=sum(len(b.node_ids) for b in blocks),
    )
    lens._table = LensTable(blocks, arrays, graph.vocab)
    return lens


def read_logits(
    graph: Graph, logits: Tensor, following: Tensor, k: int, target_id: int | None = None
) -> dict[str, Tensor]:
    """The lens arrays (:attr:`LensTable.ARRAYS`) of a (rows, n_vocab) logit matrix, read without copying it:
    top k, and the rank and probability of each row's following token (-1: none) and of ``target_id``."""
    peak = logits.amax(dim=-1, keepdim=True)  # logsumexp by hand: one pass fewer than torch.logsumexp on CPU
    lse = (logits - peak).exp_().sum(dim=-1, keepdim=True).log_() + peak
    top = torch.topk(logits, k, dim=-1)

    def rank_prob(token_ids: Tensor) -> tuple[Tensor, Tensor]:
        own = logits.gather(1, token_ids.clamp(min=0)[:, None])
        return (logits > own).sum(-1, dtype=torch.int32) + 1, (own - lse).exp().clamp(max=1.0)[:, 0]

    has_next = following >= 0
    next_rank, next_prob = rank_prob(following)
    out = {
        "top_ids": top.indices.to(torch.int32),
        "top_logits": top.values,
        "top_probs": (top.values - lse).exp().clamp(max=1.0),
        "next_rank": torch.where(has_next, next_rank, 0),
        "next_prob": torch.where(has_next, next_prob, torch.nan),
    }
    if target_id is not None:
        out["target_rank"], out["target_prob"] = rank_prob(torch.full_like(following, target_id))
    return out
