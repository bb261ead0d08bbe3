"""Logit lens: read any vector of the residual stream as if it were the last one.

For a vector x the lens is ``softmax(ln_final(x) @ W_U)``: the final LayerNorm (centring, its own scale,
gain and bias) then the unembedding, exactly as the model reads its final stream. The same is applied to the
vectors components write into the stream (head outputs, b_O, MLP outputs), as they are: a component's
output is normalised on its own rather than in the context of the stream it joins, so the lens shows which
tokens that write points at, not how much it moves the final logits (that is direct logit attribution).

Cost: every vector needs a full (n_vocab,) logit row for its ranks, so the work is (#vectors x d_model x
n_vocab), and the product with W_U is the floor. The residual stream (``input_embedding``, ``resid_pre``,
``resid_mid``, ``resid_post``) and each layer's b_O (one vector per layer) are read eagerly, when the lens is
computed, and stored with the graph (:data:`EAGER_KINDS`). The head and MLP outputs are 12x more rows at
GPT-2 124M (one per head): they are read lazily, one chunk of rows at a time, for the nodes a caller asks
for (:meth:`LensTable.entry`, a renderer's tooltips), and not saved; ``eager=True`` reads and stores them up
front too. Both ways run the same chunks through the same code, so an entry is the same whether it was read
eagerly or lazily.

Rows are processed in chunks of :data:`CHUNK_ELEMENTS` logits (83 rows of GPT-2), taken in forward order
across blocks, so memory stays at one chunk however long the prompt, a chunk's logits stay in the processor's
caches while they are read, and a short prompt still makes products of many rows (each reads all of W_U).

The results belong to the run: a :class:`LensTable` lives with it (``graph.lens``), next to its header
(:class:`~gpt2graph.results.LogitLens`, in ``graph.analysis.lens``), and is shared by every view.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import ops, progress
from .errors import InterpretError
from .results import LensEntry, LensKind, LogitLens, TokenProb
from .schema import ParamKind, VectorKind
from .targets import check_top_tokens, resolve_token
from .topology import Key, Topology

if TYPE_CHECKING:
    from .graph import Graph
    from .values import Values

__all__ = [
    "logit_lens",
    "lens_logits",
    "lens_blocks",
    "read_logits",
    "stored_order",
    "LensBlock",
    "LensTable",
    "EAGER_KINDS",
    "CHUNK_ELEMENTS",
]

V, P = VectorKind, ParamKind
#: logits held at once (rows x n_vocab); 2^22 fp32 values are 16 MB, 83 rows of GPT-2
CHUNK_ELEMENTS = 1 << 22
#: read when the lens is computed and stored: the residual stream, and b_O (one vector per layer); the head and
#: MLP outputs are read when first asked for
EAGER_KINDS = (LensKind.input_embedding, LensKind.resid_pre, LensKind.resid_mid, LensKind.resid_post, LensKind.b_O)
ARRAYS = ("top_ids", "top_logits", "top_probs", "next_rank", "next_prob", "target_rank", "target_prob")


def lens_logits(graph: Graph | Values, x: Tensor) -> Tensor:
    """Logit-lens logits of vectors ``x`` (..., d_model): the final LayerNorm, then W_U."""
    store = graph.store if hasattr(graph, "store") else graph
    normalized = ops.ln_normalize(x, ops.ln_scale(x, store.dims.layer_norm_eps))
    normed = ops.ln_affine(normalized, store.param(Key(P.ln_final_w)), store.param(Key(P.ln_final_b)))
    return ops.unembed(normed, store.param(Key(P.W_U)))


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


def _vectors(values: Values, block: LensBlock) -> Tensor:
    """The (rows, d_model) vectors of one block, in its row order (head outputs: the whole layer's, one
    product, so that a vector does not depend on which rows are read with it)."""
    if block.kind == LensKind.head_out:  # (n, H, d) position-major: row p * n_head + h
        return values.hook(V.head_out, block.layer).reshape(-1, values.dims.d_model)
    if block.kind == LensKind.b_O:
        return values.param(Key(P.b_O, block.layer))[None]
    return values.hook(block.kind, block.layer)


def stored_order(blocks: list[LensBlock]) -> Tensor:
    """For rows laid out block after block in forward order (how formats 1 and 2 saved every kind), the
    indices that put them in the order :class:`LensTable` stores them: the eager kinds' rows, then the rest."""
    starts, offset = [], 0
    for b in blocks:
        starts.append(offset)
        offset += len(b.node_ids)
    order = [
        torch.arange(start, start + len(b.node_ids))
        for eager in (True, False)
        for b, start in zip(blocks, starts)
        if (b.kind in EAGER_KINDS) == eager
    ]
    return torch.cat(order) if order else torch.zeros(0, dtype=torch.long)


class _Space:
    """The rows of some blocks, concatenated in forward order and read in chunks of a fixed number of rows
    (which may span blocks, so that a short prompt still makes products of many rows)."""

    def __init__(self, blocks: list[int], sizes: list[int]):
        self.blocks = blocks
        self.starts = [sum(sizes[:k]) for k in range(len(sizes))]
        self.size = sum(sizes)
        self.chunks: dict[int, dict[str, Tensor]] = {}


class LensTable:
    """The logit lens of one run: per-vector results as arrays, entries made from them on demand.

    Rows live in two spaces, each read in chunks of :attr:`rows` rows: the kinds of :data:`EAGER_KINDS`
    (read when the table is made, or loaded from the saved graph) and the head and MLP outputs (read chunk by
    chunk when an entry of theirs is first asked for, or all at once with ``eager``). The chunks are the same
    either way. ``next_rank`` is 0 and ``next_prob`` NaN where no token follows; the target arrays exist only
    when a target was chosen. Saved arrays hold the stored spaces' rows, space after space."""

    __hash__ = None  # type: ignore[assignment]  # compared by value, so not hashable

    ARRAYS = ARRAYS

    def __init__(
        self,
        header: LogitLens,
        values: Values,
        token_ids: list[int],
        vocab: list[str],
        stored: dict[str, Tensor] | None = None,
        chunk_elements: int = CHUNK_ELEMENTS,
    ):
        self.header = header
        self.values = values
        self.vocab = vocab
        self.blocks = lens_blocks(values.topology, token_ids, header.kinds)
        self.names = ARRAYS if header.target is not None else ARRAYS[:5]
        self.rows = max(1, chunk_elements // values.dims.n_vocab)
        rows = sum(len(b.node_ids) for b in self.blocks)
        if rows != header.n_entries:
            raise ValueError(f"the logit-lens header records {header.n_entries} entries, but its kinds read {rows}")
        self.spaces: list[_Space] = []
        self._where: list[tuple[_Space, int]] = [None] * len(self.blocks)  # type: ignore[list-item]
        for eager in (True, False):
            members = [i for i, b in enumerate(self.blocks) if (b.kind in EAGER_KINDS) == eager]
            space = _Space(members, [len(self.blocks[i].node_ids) for i in members])
            self.spaces.append(space)
            for i, start in zip(members, space.starts):
                self._where[i] = (space, start)
        self._stored = self._stored_spaces()
        self._vectors: dict[int, Tensor] = {}  # the blocks last read from (chunks come in runs)
        self._index: dict[str, tuple[int, int]] | None = None
        if stored is not None:
            self._take(stored)
        else:
            work = [(space, c) for space in self._stored for c in range(self._chunk_count(space))]
            for space, c in progress.steps(work, "logit lens", unit="chunk"):
                self._chunk(space, c)

    def _stored_spaces(self) -> list[_Space]:
        """The spaces whose kinds the header says are stored: the eager kinds, or every kind."""
        stored = {str(k) for k in self.header.stored_kinds}
        spaces = [s for s in self.spaces if s.size and {self.blocks[i].kind for i in s.blocks} <= stored]
        if {self.blocks[i].kind for s in spaces for i in s.blocks} != stored & {b.kind for b in self.blocks}:
            raise ValueError(
                f"logit-lens stored_kinds {sorted(stored)} must be the eager kinds it reads or all of them"
            )
        return spaces

    # ---- reading -----------------------------------------------------------------------------------------
    def _chunk_count(self, space: _Space) -> int:
        return -(-space.size // self.rows)

    def _chunk(self, space: _Space, c: int) -> dict[str, Tensor]:
        """Arrays of chunk ``c`` of ``space`` (its rows ``c * self.rows`` on), read now if they were not."""
        chunk = space.chunks.get(c)
        if chunk is None:
            lo, hi = c * self.rows, min((c + 1) * self.rows, space.size)
            xs, following = [], []
            for i, start in zip(space.blocks, space.starts):
                a, b = max(lo, start), min(hi, start + len(self.blocks[i].node_ids))
                if a < b:
                    xs.append(self._block_vectors(i)[a - start : b - start])
                    following.append(self.blocks[i].following[a - start : b - start])
            with torch.no_grad():
                logits = lens_logits(self.values, torch.cat(xs))
                chunk = read_logits(
                    logits, torch.cat(following), self.header.top_tokens, self.header.target, consume=True
                )
            space.chunks[c] = chunk
        return chunk

    def _block_vectors(self, i: int) -> Tensor:
        if i not in self._vectors:
            if len(self._vectors) >= 2:
                self._vectors.pop(next(iter(self._vectors)))
            self._vectors[i] = _vectors(self.values, self.blocks[i])
        return self._vectors[i]

    def _rows(self, space: _Space, lo: int, hi: int) -> dict[str, Tensor]:
        """Rows ``lo:hi`` of ``space``, from the chunks that hold them (read now where they were not)."""
        parts = []
        for c in range(lo // self.rows, -(-hi // self.rows)):
            chunk, first = self._chunk(space, c), c * self.rows
            parts.append({name: t[max(lo - first, 0) : hi - first] for name, t in chunk.items()})
        if len(parts) == 1:
            return parts[0]
        return {name: torch.cat([p[name] for p in parts]) for name in self.names}

    def _take(self, stored: dict[str, Tensor]) -> None:
        """Adopt saved arrays (the stored spaces' rows, space after space) as their chunks, after checking."""
        rows = sum(space.size for space in self._stored)
        if set(stored) != set(self.names):
            raise ValueError(
                f"logit-lens arrays {sorted(stored)} do not match its header (expected {sorted(self.names)})"
            )
        for name, t in stored.items():
            shape = (rows, self.header.top_tokens) if name.startswith("top_") else (rows,)
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"logit-lens array {name} has shape {tuple(t.shape)}, expected {shape} "
                    f"({self.header.n_entries} entries recorded, {rows} of them stored)"
                )
            _check_values(name, t, len(self.vocab))
        offset = 0
        for space in self._stored:
            for c in range(self._chunk_count(space)):
                size = min(self.rows, space.size - c * self.rows)
                space.chunks[c] = {
                    name: t[offset + c * self.rows : offset + c * self.rows + size] for name, t in stored.items()
                }
            offset += space.size

    def block_arrays(self, i: int) -> dict[str, Tensor]:
        """Every row of block ``i`` (of :attr:`blocks`), read now where it was not."""
        return self.block_rows(i, 0, len(self.blocks[i].node_ids))

    def block_rows(self, i: int, lo: int, hi: int) -> dict[str, Tensor]:
        """Rows ``lo:hi`` of block ``i`` (in its row order), read now where they were not: a renderer asks
        for the positions it draws (head outputs are position-major, ``n_head`` rows per position)."""
        space, start = self._where[i]
        return self._rows(space, start + lo, start + hi)

    @property
    def lazy_kinds(self) -> list[LensKind]:
        """The kinds read when first asked for (not stored)."""
        stored = {str(k) for k in self.header.stored_kinds}
        return [k for k in self.header.kinds if str(k) not in stored]

    def arrays(self) -> dict[str, Tensor]:
        """The arrays of the stored spaces, space after space (what ``save`` writes under ``lens/``)."""
        parts = [self._rows(space, 0, space.size) for space in self._stored]
        return {
            name: torch.cat([p[name] for p in parts])
            if parts
            else torch.empty((0, self.header.top_tokens) if name.startswith("top_") else (0,))
            for name in self.names
        }

    # ---- entries ------------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        def same(a: Tensor, b: Tensor) -> bool:  # exactly equal, NaN (no next token) included
            return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())

        if not isinstance(other, LensTable) or [b.node_ids for b in self.blocks] != [b.node_ids for b in other.blocks]:
            return False
        return all(
            same(a, b)
            for i in range(len(self.blocks))
            for a, b in zip(self.block_arrays(i).values(), other.block_arrays(i).values(), strict=True)
        )

    @property
    def kinds(self) -> list[LensKind]:
        return list(self.header.kinds)

    @property
    def target(self) -> int | None:
        return self.header.target

    @property
    def entries(self) -> list[LensEntry]:
        """Every vector's entry, in forward order (reads every lazy chunk: costly for a long run)."""
        return list(self.iter_entries())

    def iter_entries(self) -> Iterator[LensEntry]:
        for i, block in enumerate(self.blocks):
            a = self.block_arrays(i)
            for r in range(len(block.node_ids)):
                yield self._entry(block, a, r)

    def entry(self, node: str) -> LensEntry | None:
        """The entry of node ``node`` (reading the chunk that holds it), or None when the lens does not read it."""
        if self._index is None:
            self._index = {n: (i, r) for i, b in enumerate(self.blocks) for r, n in enumerate(b.node_ids)}
        where = self._index.get(node)
        if where is None:
            return None
        i, r = where
        space, start = self._where[i]
        c = (start + r) // self.rows
        return self._entry(self.blocks[i], self._chunk(space, c), start + r - c * self.rows, r)

    def _entry(self, block: LensBlock, a: dict[str, Tensor], row: int, block_row: int | None = None) -> LensEntry:
        rank = int(a["next_rank"][row])
        target = "target_rank" in a
        return LensEntry(
            node=block.node_ids[row if block_row is None else block_row],
            kind=block.kind,
            top=[
                TokenProb(id=t, token=self.vocab[t], prob=p, logit=v)
                for t, p, v in zip(
                    a["top_ids"][row].tolist(), a["top_probs"][row].tolist(), a["top_logits"][row].tolist()
                )
            ],
            next_token_rank=rank or None,
            next_token_prob=float(a["next_prob"][row]) if rank else None,
            target_rank=int(a["target_rank"][row]) if target else None,
            target_prob=float(a["target_prob"][row]) if target else None,
        )


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
    eager: bool = False,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> LensTable:
    """The logit lens of every residual-stream vector and every vector written into the stream.

    ``kinds`` restricts it to some :class:`LensKind` values (default: all). Each entry keeps the ``top_tokens``
    tokens, and the rank and probability of the token that follows its position and of ``target``. The
    residual stream and b_O are read now; head and MLP outputs when first asked for, or now too with
    ``eager=True``.

    Example::

        lens = logit_lens(graph, target=" Paris")
        lens.entries[-1].top[0].token   # resid_post at the last position: the model's own prediction
        lens.entry("blocks.3.attn.hook_result[7,5]")   # head 5 of block 3 at position 7, read on demand
    """
    check_top_tokens(top_tokens)
    wanted = {str(k) for k in LensKind} if kinds is None else {str(k) for k in kinds}
    unknown = wanted - {str(k) for k in LensKind}
    if unknown:
        raise InterpretError(f"unknown logit-lens kind(s) {sorted(unknown)}; known: {[str(k) for k in LensKind]}")
    if not wanted:
        raise InterpretError("kinds is empty: name at least one logit-lens kind (or skip the lens)")
    target_id = None if target is None else resolve_token(graph, target, "target")
    ordered = [kind for kind in LensKind if kind in wanted]
    header = LogitLens(
        top_tokens=min(top_tokens, graph.dims.n_vocab),
        target=target_id,
        kinds=ordered,
        stored_kinds=[k for k in ordered if eager or k in EAGER_KINDS],
        n_entries=sum(len(b.node_ids) for b in lens_blocks(graph.topology, graph.tokenization.token_ids, ordered)),
    )
    return LensTable(header, graph.store, graph.tokenization.token_ids, graph.vocab, chunk_elements=chunk_elements)


def read_logits(
    logits: Tensor, following: Tensor, k: int, target_id: int | None = None, *, consume: bool = False
) -> dict[str, Tensor]:
    """The lens arrays (:data:`ARRAYS`) of a (rows, n_vocab) logit matrix: top k, and the rank and probability
    of each row's following token (-1: none) and of ``target_id``. Each pass over the matrix costs about as
    much as a tenth of the product that made it, so there are few: top-k (whose first value is the row's
    maximum), one comparison per ranked token, and the normaliser, computed in place when ``consume`` allows
    the matrix to be overwritten."""
    top = torch.topk(logits, k, dim=-1)

    def rank_of(token_ids: Tensor) -> tuple[Tensor, Tensor]:
        own = logits.gather(1, token_ids.clamp(min=0)[:, None])
        return (logits > own).sum(-1, dtype=torch.int32) + 1, own

    has_next = following >= 0
    next_rank, next_logit = rank_of(following)
    target = None if target_id is None else rank_of(torch.full_like(following, target_id))
    peak = top.values[:, :1]  # exp(logit - max): no overflow
    shifted = logits.sub_(peak) if consume else logits - peak
    lse = shifted.exp_().sum(dim=-1, keepdim=True).log_() + peak

    def prob(own: Tensor) -> Tensor:
        return (own - lse).exp().clamp(max=1.0)[:, 0]

    out = {
        "top_ids": top.indices.to(torch.int32),
        "top_logits": top.values,
        "top_probs": (top.values - lse).exp().clamp(max=1.0),
        "next_rank": torch.where(has_next, next_rank, 0),
        "next_prob": torch.where(has_next, prob(next_logit), torch.nan),
    }
    if target is not None:
        out["target_rank"], out["target_prob"] = target[0], prob(target[1])
    return out
