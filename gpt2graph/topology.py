"""The structure of a GPT-2 forward pass, derived from the dims and the number of tokens.

Nothing here is stored: every node and edge of a run is a pure function of ``(Dims, n_tokens)``. A node
is addressed by a :class:`Key` ``(kind, layer, head, position)``; ids are built and parsed in this one
module, so they cannot drift apart. An id is the TransformerLens hook name followed by the index into
that hook's activation (batch dimension dropped), e.g. ``blocks.3.attn.hook_q[5,2]`` is the query of
layer 3, position 5, head 2. Operation ids are ``op:`` plus the id of the one vector they produce.

The decoding stage (temperature, top-k, top-p, softmax, sample) follows the logits at every position: the
token the model would produce after each prefix. It has no TransformerLens hook, so its ids are
``decode.<kind>[position]``; its values are derived from the logits with the graph's decoding settings.

The residual stream between two blocks is one vector, so it is one node: the stream entering block L
(L >= 1) is ``resid_pre`` of block L, which TransformerLens also exposes as ``resid_post`` of block L-1
(recorded as an alias). The stream entering block 0 is the ``input_embedding``; the stream leaving the
last block is ``resid_post``.

Edges come from one table, :data:`READS`: the arguments of the operation producing each kind of vector,
relative to it. :meth:`Topology.op_inputs` (what an operation reads) and :meth:`Topology.consumers` (what
reads a node) are both computed from it, once per shape of model, so the two directions cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import NamedTuple

from .errors import NodeNotFoundError
from .schema import Category, Dims, EdgeRole, OpKind, ParamKind, Space, Stage, VectorKind

__all__ = [
    "Key",
    "VectorSpec",
    "ParamSpec",
    "VECTOR_SPECS",
    "PARAM_SPECS",
    "Topology",
    "TOKENIZE_OP_ID",
    "Read",
    "READS",
    "STREAM",
    "SAME",
    "UPTO",
    "PARAM_CONSUMER",
    "TIED",
    "DECODE_KINDS",
    "EMBED_KINDS",
    "BLOCK_KINDS",
    "FINAL_KINDS",
    "LAYERNORMS",
]

_OP_PREFIX = "op:"
TOKENIZE_OP_ID = _OP_PREFIX + "tokenize"
V, P = VectorKind, ParamKind


#: a filter on layers, heads or positions: one value, a collection of them (None inside: nodes without one),
#: or None for any
Filter = int | Iterable[int | None] | None
#: a filter on kinds: one kind, a collection, or None for any
KindFilter = str | Iterable[str] | None


class Key(NamedTuple):
    """Address of a vector or parameter node."""

    kind: str
    layer: int | None = None
    head: int | None = None
    position: int | None = None


@dataclass(frozen=True)
class VectorSpec:
    """How one kind of vector is laid out: where it sits, which hook holds it, which op makes it."""

    kind: VectorKind
    category: Category
    stage: Stage
    space: Space
    hook: str | None  # TransformerLens hook name; {L} stands for the layer
    per_layer: bool
    per_head: bool
    head_first: bool  # index is [head, position] (attention rows) rather than [position, head]
    op: OpKind
    op_stage: Stage  # stage of the operation producing it (differs for the stream between blocks)

    @property
    def hook_point(self) -> str | None:
        """The hook's own name, without the module path (``hook_q``), as TransformerLens users say it."""
        return self.hook.rpartition(".")[2] if self.hook else None


@dataclass(frozen=True)
class ParamSpec:
    kind: ParamKind
    name: str  # TransformerLens parameter name; {L} stands for the layer
    stage: Stage
    per_layer: bool
    per_head: bool


C, S, SP = Category, Stage, Space


def _v(
    kind: VectorKind,
    category: Category,
    stage: Stage,
    space: Space,
    hook: str | None,
    op: OpKind,
    *,
    layer: bool = False,
    head: bool = False,
    head_first: bool = False,
    op_stage: Stage | None = None,
) -> VectorSpec:
    return VectorSpec(kind, category, stage, space, hook, layer, head, head_first, op, op_stage or stage)


# fmt: off
VECTOR_SPECS: dict[str, VectorSpec] = {
    s.kind: s
    for s in [
        _v(V.token, C.tokenizer, S.tokenize, SP.token, None, OpKind.tokenize),
        _v(V.token_embedding, C.residual, S.embed, SP.residual, "hook_embed", OpKind.lookup),
        _v(V.pos_embedding, C.residual, S.embed, SP.residual, "hook_pos_embed", OpKind.lookup),
        _v(V.input_embedding, C.residual, S.embed, SP.residual, "blocks.0.hook_resid_pre", OpKind.add),
        _v(V.resid_pre, C.residual, S.attention, SP.residual, "blocks.{L}.hook_resid_pre", OpKind.add,
           layer=True, op_stage=S.mlp),
        _v(V.ln1_scale, C.attention, S.attention, SP.scalar, "blocks.{L}.ln1.hook_scale", OpKind.ln_scale,
           layer=True),
        _v(V.ln1_normalized, C.attention, S.attention, SP.residual, "blocks.{L}.ln1.hook_normalized",
           OpKind.ln_normalize, layer=True),
        _v(V.ln1, C.attention, S.attention, SP.residual, "blocks.{L}.ln1.hook_out", OpKind.ln_affine, layer=True),
        _v(V.q, C.attention, S.attention, SP.head, "blocks.{L}.attn.hook_q", OpKind.head_projection,
           layer=True, head=True),
        _v(V.k, C.attention, S.attention, SP.head, "blocks.{L}.attn.hook_k", OpKind.head_projection,
           layer=True, head=True),
        _v(V.v, C.attention, S.attention, SP.head, "blocks.{L}.attn.hook_v", OpKind.head_projection,
           layer=True, head=True),
        _v(V.attn_scores, C.attention, S.attention, SP.keys, "blocks.{L}.attn.hook_attn_scores",
           OpKind.scaled_dot_product, layer=True, head=True, head_first=True),
        _v(V.attn_pattern, C.attention, S.attention, SP.keys, "blocks.{L}.attn.hook_pattern", OpKind.softmax,
           layer=True, head=True, head_first=True),
        _v(V.z, C.attention, S.attention, SP.head, "blocks.{L}.attn.hook_z", OpKind.weighted_sum,
           layer=True, head=True),
        _v(V.head_out, C.attention, S.attention, SP.residual, "blocks.{L}.attn.hook_result",
           OpKind.output_projection, layer=True, head=True),
        _v(V.attn_out, C.attention, S.attention, SP.residual, "blocks.{L}.hook_attn_out", OpKind.sum, layer=True),
        _v(V.resid_mid, C.residual, S.mlp, SP.residual, "blocks.{L}.hook_resid_mid", OpKind.add, layer=True,
           op_stage=S.attention),
        _v(V.ln2_scale, C.mlp, S.mlp, SP.scalar, "blocks.{L}.ln2.hook_scale", OpKind.ln_scale, layer=True),
        _v(V.ln2_normalized, C.mlp, S.mlp, SP.residual, "blocks.{L}.ln2.hook_normalized", OpKind.ln_normalize,
           layer=True),
        _v(V.ln2, C.mlp, S.mlp, SP.residual, "blocks.{L}.ln2.hook_out", OpKind.ln_affine, layer=True),
        _v(V.mlp_pre, C.mlp, S.mlp, SP.mlp, "blocks.{L}.mlp.hook_pre", OpKind.linear, layer=True),
        _v(V.mlp_post, C.mlp, S.mlp, SP.mlp, "blocks.{L}.mlp.hook_post", OpKind.gelu, layer=True),
        _v(V.mlp_out, C.mlp, S.mlp, SP.residual, "blocks.{L}.hook_mlp_out", OpKind.linear, layer=True),
        _v(V.resid_post, C.residual, S.unembed, SP.residual, "blocks.{L}.hook_resid_post", OpKind.add,
           layer=True, op_stage=S.mlp),
        _v(V.ln_final_scale, C.unembedding, S.unembed, SP.scalar, "ln_final.hook_scale", OpKind.ln_scale),
        _v(V.ln_final_normalized, C.unembedding, S.unembed, SP.residual, "ln_final.hook_normalized",
           OpKind.ln_normalize),
        _v(V.ln_final, C.unembedding, S.unembed, SP.residual, "ln_final.hook_out", OpKind.ln_affine),
        _v(V.logits, C.unembedding, S.unembed, SP.vocab, "hook_unembed", OpKind.unembed),
        _v(V.scaled_logits, C.unembedding, S.decode, SP.vocab, None, OpKind.temperature),
        _v(V.top_k_logits, C.unembedding, S.decode, SP.vocab, None, OpKind.top_k),
        _v(V.top_p_logits, C.unembedding, S.decode, SP.vocab, None, OpKind.top_p),
        _v(V.probs, C.unembedding, S.decode, SP.vocab, None, OpKind.softmax),
        _v(V.next_token, C.unembedding, S.decode, SP.token, None, OpKind.sample),
    ]
}
# fmt: on


def _p(kind: ParamKind, name: str, stage: Stage, *, layer: bool = False, head: bool = False) -> ParamSpec:
    return ParamSpec(kind, name, stage, layer, head)


PARAM_SPECS: dict[str, ParamSpec] = {
    s.kind: s
    for s in [
        _p(P.W_E, "embed.W_E", S.embed),
        _p(P.W_pos, "pos_embed.W_pos", S.embed),
        _p(P.ln1_w, "blocks.{L}.ln1.w", S.attention, layer=True),
        _p(P.ln1_b, "blocks.{L}.ln1.b", S.attention, layer=True),
        _p(P.W_Q, "blocks.{L}.attn.W_Q", S.attention, layer=True, head=True),
        _p(P.W_K, "blocks.{L}.attn.W_K", S.attention, layer=True, head=True),
        _p(P.W_V, "blocks.{L}.attn.W_V", S.attention, layer=True, head=True),
        _p(P.b_Q, "blocks.{L}.attn.b_Q", S.attention, layer=True, head=True),
        _p(P.b_K, "blocks.{L}.attn.b_K", S.attention, layer=True, head=True),
        _p(P.b_V, "blocks.{L}.attn.b_V", S.attention, layer=True, head=True),
        _p(P.W_O, "blocks.{L}.attn.W_O", S.attention, layer=True, head=True),
        _p(P.b_O, "blocks.{L}.attn.b_O", S.attention, layer=True),
        _p(P.ln2_w, "blocks.{L}.ln2.w", S.mlp, layer=True),
        _p(P.ln2_b, "blocks.{L}.ln2.b", S.mlp, layer=True),
        _p(P.W_in, "blocks.{L}.mlp.W_in", S.mlp, layer=True),
        _p(P.b_in, "blocks.{L}.mlp.b_in", S.mlp, layer=True),
        _p(P.W_out, "blocks.{L}.mlp.W_out", S.mlp, layer=True),
        _p(P.b_out, "blocks.{L}.mlp.b_out", S.mlp, layer=True),
        _p(P.ln_final_w, "ln_final.w", S.unembed),
        _p(P.ln_final_b, "ln_final.b", S.unembed),
        _p(P.W_U, "unembed.W_U", S.unembed),
    ]
}

#: parameters that are another one transposed: GPT-2 unembeds with its token embedding table
TIED = {P.W_U: P.W_E}

#: before the first block: the tokens, their two embeddings and the stream entering block 0
EMBED_KINDS = (V.token, V.token_embedding, V.pos_embedding, V.input_embedding)
#: the vectors one block computes from the stream entering it, in forward order
BLOCK_KINDS = (
    V.ln1_scale, V.ln1_normalized, V.ln1, V.q, V.k, V.v, V.attn_scores, V.attn_pattern, V.z, V.head_out, V.attn_out,
    V.resid_mid, V.ln2_scale, V.ln2_normalized, V.ln2, V.mlp_pre, V.mlp_post, V.mlp_out,
)  # fmt: skip
#: after the last block: the final LayerNorm and the unembedding
FINAL_KINDS = (V.ln_final_scale, V.ln_final_normalized, V.ln_final, V.logits)
#: each LayerNorm's three vectors: (scale, normalized, output)
LAYERNORMS = {
    "ln1": (V.ln1_scale, V.ln1_normalized, V.ln1),
    "ln2": (V.ln2_scale, V.ln2_normalized, V.ln2),
    "ln_final": (V.ln_final_scale, V.ln_final_normalized, V.ln_final),
}
#: the decoding stage, in order (each step reads the one before; the first reads the logits)
DECODE_KINDS = (V.scaled_logits, V.top_k_logits, V.top_p_logits, V.probs, V.next_token)
#: names of the vectors no TransformerLens hook holds (ids are name[position])
_UNHOOKED: dict[str, str] = {V.token: "tokens", **{k: f"decode.{k}" for k in DECODE_KINDS}}
_UNHOOKED_KIND = {name: kind for kind, name in _UNHOOKED.items()}

# ---- what each operation reads --------------------------------------------------------------------------
#: the residual stream where an operation sits: entering its block, or leaving the last block for the final
#: LayerNorm (``input_embedding``, ``resid_pre`` or ``resid_post``)
STREAM = "stream"
#: which positions an input is read at, relative to the output's position ``p``: ``p`` itself, or ``0..p``
SAME, UPTO = "same", "upto"


@dataclass(frozen=True)
class Read:
    """One argument of the operation producing a vector, relative to that vector.

    ``kind`` is a vector kind, :data:`STREAM` or a parameter kind. Layer and head follow the output's where
    the source has them; ``previous`` reads the block before (the stream between two blocks is made by the
    block before it); ``all_heads`` reads every head of a per-head source; ``positions`` is :data:`SAME` or
    :data:`UPTO` (a query reads the keys and values of every earlier position)."""

    kind: str
    positions: str = SAME
    all_heads: bool = False
    previous: bool = False


R = Read
#: the arguments of the operation producing each vector kind, in argument order: vectors, then parameters.
#: Both directions of the structure (:meth:`Topology.op_inputs`, :meth:`Topology.consumers`) are computed
#: from this table alone.
READS: dict[str, tuple[Read, ...]] = {
    V.token: (),
    V.token_embedding: (R(V.token), R(P.W_E)),
    V.pos_embedding: (R(P.W_pos),),
    V.input_embedding: (R(V.token_embedding), R(V.pos_embedding)),
    V.resid_pre: (R(V.resid_mid, previous=True), R(V.mlp_out, previous=True)),
    V.ln1_scale: (R(STREAM),),
    V.ln1_normalized: (R(STREAM), R(V.ln1_scale)),
    V.ln1: (R(V.ln1_normalized), R(P.ln1_w), R(P.ln1_b)),
    V.q: (R(V.ln1), R(P.W_Q), R(P.b_Q)),
    V.k: (R(V.ln1), R(P.W_K), R(P.b_K)),
    V.v: (R(V.ln1), R(P.W_V), R(P.b_V)),
    V.attn_scores: (R(V.q), R(V.k, UPTO)),
    V.attn_pattern: (R(V.attn_scores),),
    V.z: (R(V.attn_pattern), R(V.v, UPTO)),
    V.head_out: (R(V.z), R(P.W_O)),
    V.attn_out: (R(V.head_out, all_heads=True), R(P.b_O)),
    V.resid_mid: (R(STREAM), R(V.attn_out)),
    V.ln2_scale: (R(V.resid_mid),),
    V.ln2_normalized: (R(V.resid_mid), R(V.ln2_scale)),
    V.ln2: (R(V.ln2_normalized), R(P.ln2_w), R(P.ln2_b)),
    V.mlp_pre: (R(V.ln2), R(P.W_in), R(P.b_in)),
    V.mlp_post: (R(V.mlp_pre),),
    V.mlp_out: (R(V.mlp_post), R(P.W_out), R(P.b_out)),
    V.resid_post: (R(V.resid_mid, previous=True), R(V.mlp_out, previous=True)),
    V.ln_final_scale: (R(STREAM),),
    V.ln_final_normalized: (R(STREAM), R(V.ln_final_scale)),
    V.ln_final: (R(V.ln_final_normalized), R(P.ln_final_w), R(P.ln_final_b)),
    V.logits: (R(V.ln_final), R(P.W_U)),
    **{kind: (R(before),) for before, kind in zip((V.logits, *DECODE_KINDS), DECODE_KINDS)},
}
#: parameter kind -> the vector kind whose operation reads it (each parameter feeds exactly one kind)
PARAM_CONSUMER: dict[str, str] = {r.kind: out for out, reads in READS.items() for r in reads if r.kind in PARAM_SPECS}
# hook template -> vector kind; the input embedding and the final resid_post are special-cased in parsing
_HOOK_KIND: dict[str, str] = {
    s.hook: s.kind for s in VECTOR_SPECS.values() if s.hook and "{L}" in s.hook and s.kind != V.resid_post
}
_HOOK_KIND.update({s.hook: s.kind for s in VECTOR_SPECS.values() if s.hook and "{L}" not in s.hook})
_PARAM_KIND: dict[str, str] = {s.name: s.kind for s in PARAM_SPECS.values()}
_ID_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?:\[(?P<index>\d+(?:,\d+)*)\])?$")
_LAYER_RE = re.compile(r"^blocks\.(\d+)\.")


def _template(name: str) -> tuple[str, int | None]:
    m = _LAYER_RE.match(name)
    if not m:
        return name, None
    return "blocks.{L}." + name[m.end() :], int(m.group(1))


@dataclass(frozen=True)
class Topology:
    """Every node and edge of one run, computed on demand from the dims and the token count."""

    dims: Dims
    n_tokens: int

    # ---- ranges -------------------------------------------------------------------------------------
    def layers_of(self, kind: str) -> list[int | None]:
        n = self.dims.n_layer
        if kind == V.resid_pre:
            return list(range(1, n))
        if kind == V.resid_post:
            return [n - 1]
        spec = VECTOR_SPECS.get(kind) or PARAM_SPECS[kind]
        return list(range(n)) if spec.per_layer else [None]

    def heads_of(self, kind: str) -> list[int | None]:
        spec = VECTOR_SPECS.get(kind) or PARAM_SPECS[kind]
        return list(range(self.dims.n_head)) if spec.per_head else [None]

    def contains(self, key: Key) -> bool:
        """True when ``key`` names a node of this run."""
        if key.kind not in VECTOR_SPECS and key.kind not in PARAM_SPECS:
            return False
        positions: Iterable[int | None] = range(self.n_tokens) if key.kind in VECTOR_SPECS else [None]
        return (
            key.layer in self.layers_of(key.kind)
            and key.head in self.heads_of(key.kind)
            and (key.position in positions)
        )

    # ---- enumeration --------------------------------------------------------------------------------
    def vector_keys(
        self, kind: KindFilter = None, layer: Filter = None, head: Filter = None, position: Filter = None
    ) -> Iterator[Key]:
        """Vector keys in forward order, filtered; each filter is a value, a collection, or None (any)."""
        kinds = _as_filter(kind, VECTOR_SPECS)
        positions = [p for p in range(self.n_tokens) if matches(position, p)]
        if self.n_tokens and not positions:
            return
        for group in _forward_groups(self.dims.n_layer):
            for k, lyr in group:
                if k not in kinds or not matches(layer, lyr):
                    continue
                for h in self.heads_of(k):
                    if matches(head, h):
                        for p in positions:
                            yield Key(k, lyr, h, p)

    def param_keys(self, kind: KindFilter = None, layer: Filter = None, head: Filter = None) -> Iterator[Key]:
        kinds = _as_filter(kind, PARAM_SPECS)
        for k in PARAM_SPECS:
            if k not in kinds:
                continue
            for lyr in self.layers_of(k):
                if matches(layer, lyr):
                    for h in self.heads_of(k):
                        if matches(head, h):
                            yield Key(k, lyr, h, None)

    def count_vectors(self) -> int:
        """Number of vector nodes: n_tokens * (13 + 12 n_layer + 7 n_layer n_head)."""
        L, H = self.dims.n_layer, self.dims.n_head
        return self.n_tokens * (13 + 12 * L + 7 * L * H)

    def count_params(self) -> int:
        """Number of parameter nodes: 5 + n_layer * (9 + 7 n_head)."""
        L, H = self.dims.n_layer, self.dims.n_head
        return 5 + L * (9 + 7 * H)

    def count_ops(self) -> int:
        """One op per vector, except that a single tokenizer op produces every token."""
        return self.count_vectors() - self.n_tokens + 1

    # ---- ids ----------------------------------------------------------------------------------------
    def vector_index(self, key: Key) -> list[int]:
        spec = VECTOR_SPECS[key.kind]
        position = _given(key.position)
        if not spec.per_head:
            return [position]
        head = _given(key.head)
        return [head, position] if spec.head_first else [position, head]

    def hook(self, key: Key) -> str | None:
        spec = VECTOR_SPECS[key.kind]
        return spec.hook.replace("{L}", str(key.layer)) if spec.hook else None

    def hook_name(self, key: Key) -> str:
        """The hook holding ``key``'s kind, for a kind that has one (every captured activation does)."""
        name = self.hook(key)
        if name is None:
            raise ValueError(f"no TransformerLens hook holds {key.kind}")
        return name

    def vector_id(self, key: Key) -> str:
        name = self.hook(key) or _UNHOOKED[key.kind]
        return f"{name}[{','.join(map(str, self.vector_index(key)))}]"

    def aliases(self, key: Key) -> list[str]:
        return [f"{hook}[{key.position}]" for hook in self._alias_hooks(key)]

    def _alias_hooks(self, key: Key) -> list[str]:
        """Other TransformerLens hooks holding the activation of ``key``'s kind and layer: the stream entering
        block L is also resid_post of block L - 1."""
        return [f"blocks.{_given(key.layer) - 1}.hook_resid_post"] if key.kind == V.resid_pre else []

    def hooks(self) -> dict[str, tuple[str, int | None]]:
        """Every TransformerLens hook name of this run, aliases included, with the (vector kind, layer) whose
        whole activation it holds, in forward order (what ``run_with_cache`` fills)."""
        out: dict[str, tuple[str, int | None]] = {}
        for key in self.vector_keys(position=0):
            hook = self.hook(key)
            if hook is not None:
                for name in (hook, *self._alias_hooks(key)):
                    out.setdefault(name, (key.kind, key.layer))
        return out

    def param_id(self, key: Key) -> str:
        name = PARAM_SPECS[key.kind].name.replace("{L}", str(key.layer))
        return name if key.head is None else f"{name}[{key.head}]"

    def node_id(self, key: Key) -> str:
        return self.vector_id(key) if key.kind in VECTOR_SPECS else self.param_id(key)

    def parse(self, node_id: str) -> tuple[str, Key]:
        """Parse an id (vector, alias, parameter or op) into ``(node_type, key)``; raise if not in this run."""
        node_type, key = "vector", None
        text = node_id
        if text.startswith(_OP_PREFIX):
            node_type, text = "operation", text.removeprefix(_OP_PREFIX)
            if text == "tokenize":
                return node_type, Key(OpKind.tokenize)
        m = _ID_RE.match(text)
        if m:
            key = self._parse_name(
                m.group("name"), [int(i) for i in m.group("index").split(",")] if m.group("index") else []
            )
        if key is None or not self.contains(key) or (node_type == "operation" and key.kind not in VECTOR_SPECS):
            raise NodeNotFoundError(f"no node {node_id!r} in this graph ({self._shape_hint()})")
        if key.kind in PARAM_SPECS:
            node_type = "parameter"
        return node_type, key

    def _parse_name(self, name: str, index: list[int]) -> Key | None:
        template, layer = _template(name)
        last = self.dims.n_layer - 1
        if name in _UNHOOKED_KIND:
            return Key(_UNHOOKED_KIND[name], None, None, index[0]) if len(index) == 1 else None
        if template in _PARAM_KIND:
            kind = _PARAM_KIND[template]
            head = index[0] if len(index) == 1 else None
            return Key(kind, layer, head) if len(index) == int(PARAM_SPECS[kind].per_head) else None
        if template == "blocks.{L}.hook_resid_pre" and layer == 0:
            template, layer = "blocks.0.hook_resid_pre", None
        elif template == "blocks.{L}.hook_resid_post" and layer is not None:
            stream, layer = (V.resid_post, layer) if layer == last else (V.resid_pre, layer + 1)
            return Key(stream, layer, None, index[0]) if len(index) == 1 else None
        hooked = _HOOK_KIND.get(template)
        if hooked is None:
            return None
        kind, spec = hooked, VECTOR_SPECS[hooked]
        if len(index) != 1 + spec.per_head:
            return None
        if not spec.per_head:
            return Key(kind, layer, None, index[0])
        head, pos = (index[0], index[1]) if spec.head_first else (index[1], index[0])
        return Key(kind, layer, head, pos)

    def site(self, name: str, layer: int | None = None) -> tuple[str, int | None]:
        """The (vector kind, layer) of a whole activation, named by its kind and layer (``"q", 3``) or by the
        TransformerLens hook that holds it (``"blocks.3.attn.hook_q"``; ``blocks.2.hook_resid_post`` is the
        stream entering block 3, as TransformerLens aliases it; ``decode.probs`` for the decoding stage)."""
        if name in VECTOR_SPECS:
            kind = name
        else:
            key = self._parse_name(name, [0]) or self._parse_name(name, [0, 0])
            if key is not None and key.kind in VECTOR_SPECS and layer not in (None, key.layer):
                at = "no layer" if key.layer is None else f"layer {key.layer}"
                raise NodeNotFoundError(f"{name} names its layer ({at}): give no layer with it, not {layer}")
            if key is None or key.kind not in VECTOR_SPECS:
                raise NodeNotFoundError(
                    f"no activation {name!r} in this graph: name a "
                    f"TransformerLens hook such as 'blocks.0.attn.hook_pattern', or a vector kind with its layer "
                    f"(kinds: {', '.join(VECTOR_SPECS)})"
                )
            kind, layer = key.kind, key.layer
        if layer not in self.layers_of(kind):
            layers = self.layers_of(kind)
            expected = "no layer" if layers == [None] else f"a layer in {layers[0]}..{layers[-1]}"
            raise NodeNotFoundError(f"{kind} at layer {layer} is not in this graph: {kind} takes {expected}")
        return kind, layer

    def _shape_hint(self) -> str:
        d = self.dims
        return (
            f"{self.n_tokens} tokens, layers 0..{d.n_layer - 1}, heads 0..{d.n_head - 1}; ids look like "
            f"'blocks.0.attn.hook_q[0,0]', 'blocks.0.attn.W_Q[0]' or 'op:hook_embed[0]'"
        )

    # ---- shapes -------------------------------------------------------------------------------------
    def vector_shape(self, key: Key) -> list[int]:
        d = self.dims
        size = {
            SP.token: 1,
            SP.scalar: 1,
            SP.residual: d.d_model,
            SP.head: d.d_head,
            SP.mlp: d.d_mlp,
            SP.vocab: d.n_vocab,
        }
        space = VECTOR_SPECS[key.kind].space
        return [_given(key.position) + 1] if space == SP.keys else [size[space]]

    def param_shape(self, key: Key) -> list[int]:
        d = self.dims
        D, Dh, Dm = d.d_model, d.d_head, d.d_mlp
        shapes: dict[str, list[int]] = {
            P.W_E: [d.n_vocab, D],
            P.W_pos: [d.n_ctx, D],
            P.ln1_w: [D],
            P.ln1_b: [D],
            P.W_Q: [D, Dh],
            P.W_K: [D, Dh],
            P.W_V: [D, Dh],
            P.b_Q: [Dh],
            P.b_K: [Dh],
            P.b_V: [Dh],
            P.W_O: [Dh, D],
            P.b_O: [D],
            P.ln2_w: [D],
            P.ln2_b: [D],
            P.W_in: [D, Dm],
            P.b_in: [Dm],
            P.W_out: [Dm, D],
            P.b_out: [D],
            P.ln_final_w: [D],
            P.ln_final_b: [D],
            P.W_U: [D, d.n_vocab],
        }
        return shapes[key.kind]

    # ---- edges --------------------------------------------------------------------------------------
    def stream(self, block: int, position: int) -> Key:
        """The residual stream entering block ``block`` (``n_layer``: the stream leaving the last block)."""
        return _stream(block, self.dims.n_layer)._replace(position=position)

    def ln_input(self, kind: str, layer: int | None, position: int) -> Key:
        """The residual stream the LayerNorm of ``kind`` (any of its three vectors) reads."""
        scale = next(ln[0] for ln in LAYERNORMS.values() if kind in ln)
        return self.op_inputs(Key(scale, layer, None, position))[0][0]

    @cached_property
    def _structure(self) -> _Structure:
        return _structure(self.dims.n_layer, self.dims.n_head)

    def unit_inputs(self, out: Key) -> tuple[tuple[Key, str | None], ...]:
        """The arguments of the operations producing the vectors of ``out``'s group (its kind, layer and head;
        the position is ignored), as ``(source, positions)``: a vector group (position None) read at
        :data:`SAME` or :data:`UPTO` positions, or a parameter key (positions None). Derived from
        :data:`READS` once per shape of model."""
        return self._structure.inputs[out[:3]]

    def op_inputs(self, out: Key) -> tuple[list[Key], list[Key]]:
        """(input vector keys, parameter keys) of the operation producing vector ``out``, in argument order."""
        vectors: list[Key] = []
        params: list[Key] = []
        p = _given(out.position)
        for (kind, layer, head, _), positions in self._structure.inputs[out[:3]]:
            if positions is None:
                params.append(Key(kind, layer, head))
            elif positions == SAME:
                vectors.append(Key(kind, layer, head, p))
            else:
                vectors += [Key(kind, layer, head, j) for j in range(p + 1)]
        return vectors, params

    def consumers(self, key: Key) -> list[Key]:
        """Output keys of the operations that read vector or parameter ``key``, in forward order: the exact
        inverse of :meth:`op_inputs`, computed from the same table."""
        n, p = self.n_tokens, key.position
        out: list[Key] = []
        first = 0 if p is None else p
        for (kind, layer, head, _), positions in self._structure.readers.get(key[:3], ()):
            if positions is None:  # a parameter: read at every position
                out += [Key(kind, layer, head, q) for q in range(n)]
            elif positions == SAME:
                out.append(Key(kind, layer, head, p))
            else:  # read by every later query
                out += [Key(kind, layer, head, q) for q in range(first, n)]
        return out

    def op_layer(self, out: Key) -> int | None:
        """Block index of the operation producing ``out`` (the stream between blocks is made by the block before)."""
        return _given(out.layer) - 1 if out.kind == V.resid_pre else out.layer

    def op_id(self, out: Key) -> str:
        """Id of the operation producing vector ``out``: ``op:`` plus its id (every token: the tokenizer's)."""
        return TOKENIZE_OP_ID if out.kind == V.token else _OP_PREFIX + self.vector_id(out)

    def edges_of_op(self, out: Key) -> list[tuple[str, str, EdgeRole, int]]:
        """(source, target, role, slot) of every edge touching the op that produces ``out``."""
        if out.kind == V.token:
            return [(TOKENIZE_OP_ID, self.vector_id(out), EdgeRole.output, _given(out.position))]
        op = self.op_id(out)
        inputs, params = self.op_inputs(out)
        edges = [(self.vector_id(k), op, EdgeRole.input, i) for i, k in enumerate(inputs)]
        edges += [(self.param_id(k), op, EdgeRole.parameter, i) for i, k in enumerate(params)]
        edges.append((op, self.vector_id(out), EdgeRole.output, 0))
        return edges


def _stream(block: int, n_layer: int) -> Key:
    """The residual stream entering ``block`` (``n_layer``: leaving the last block), without a position."""
    if block == 0:
        return Key(V.input_embedding)
    return Key(V.resid_pre, block) if block < n_layer else Key(V.resid_post, n_layer - 1)


def _forward_groups(n_layer: int) -> Iterator[Sequence[tuple[str, int | None]]]:
    """(kind, layer) of every vector group, in forward order, in one list per stage (embedding, each block,
    the end)."""
    yield [(k, None) for k in EMBED_KINDS]
    for L in range(n_layer):
        yield [(V.resid_pre, L)] * bool(L) + [(k, L) for k in BLOCK_KINDS]
    yield [(V.resid_post, n_layer - 1), *((k, None) for k in FINAL_KINDS), *((k, None) for k in DECODE_KINDS)]


#: a group of vectors (or a parameter): a key without its position
Unit = tuple[str, int | None, int | None]


@dataclass(frozen=True)
class _Structure:
    """:data:`READS` resolved for one shape of model, per group: what each group reads and who reads it."""

    inputs: dict[Unit, tuple[tuple[Key, str | None], ...]]  # by (kind, layer, head)
    readers: dict[Unit, tuple[tuple[Key, str | None], ...]]


@lru_cache(maxsize=32)
def _structure(n_layer: int, n_head: int) -> _Structure:
    inputs: dict[Unit, tuple[tuple[Key, str | None], ...]] = {}
    readers: dict[Unit, list[tuple[Key, str | None]]] = {}
    for group in _forward_groups(n_layer):
        for kind, layer in group:
            for head in range(n_head) if VECTOR_SPECS[kind].per_head else [None]:
                out = Key(kind, layer, head)
                inputs[out[:3]] = tuple(x for read in READS[kind] for x in _resolve(out, read, n_layer, n_head))
                for source, positions in inputs[out[:3]]:
                    readers.setdefault(source[:3], []).append((out, positions))
    return _Structure(inputs, {k: tuple(v) for k, v in readers.items()})


def _resolve(out: Key, read: Read, n_layer: int, n_head: int) -> Iterator[tuple[Key, str | None]]:
    """The source groups (or parameters) of one :class:`Read` of the operation producing ``out``'s group."""
    # the operation's place along the stream: block L; the stream entering block 0; after the last block
    kind = out.kind
    block = 0 if kind == V.input_embedding else n_layer if out.layer is None or kind == V.resid_post else out.layer
    if read.kind == STREAM:
        yield _stream(block, n_layer), read.positions
        return
    param = read.kind in PARAM_SPECS
    spec = PARAM_SPECS[read.kind] if param else VECTOR_SPECS[read.kind]
    layer = (block - 1 if read.previous else out.layer) if spec.per_layer else None
    heads = range(n_head) if read.all_heads else [out.head if spec.per_head else None]
    for head in heads:
        yield Key(read.kind, layer, head), None if param else read.positions


def _as_filter(value: KindFilter, universe: Iterable[str]) -> set[str]:
    if value is None:
        return set(universe)
    values = {value} if isinstance(value, str) else set(value)
    unknown = values - set(universe)
    if unknown:
        raise ValueError(f"unknown kind(s) {sorted(map(str, unknown))}; known: {', '.join(universe)}")
    return values


def matches(flt: Filter, value: int | None) -> bool:
    """Does ``value`` pass the filter ``flt`` (None: anything; an int: equal; a collection: member)?"""
    if flt is None:
        return True
    if isinstance(flt, int):
        return value == flt
    return value in flt


def _given(value: int | None) -> int:
    """A key's layer, head or position where its kind has one (the key was made by this topology)."""
    if value is None:
        raise AssertionError("a key without the layer, head or position its kind has")
    return value
