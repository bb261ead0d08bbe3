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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
    "DECODE_KINDS",
    "BLOCK_KINDS",
    "FINAL_KINDS",
    "LAYERNORMS",
]

TOKENIZE_OP_ID = "op:tokenize"
V, P = VectorKind, ParamKind


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


@dataclass(frozen=True)
class ParamSpec:
    kind: ParamKind
    name: str  # TransformerLens parameter name; {L} stands for the layer
    stage: Stage
    per_layer: bool
    per_head: bool


C, S, SP = Category, Stage, Space


def _v(kind, category, stage, space, hook, op, *, layer=False, head=False, head_first=False, op_stage=None):
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


def _p(kind, name, stage, *, layer=False, head=False):
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

_PROJECTION_PARAMS = {V.q: (P.W_Q, P.b_Q), V.k: (P.W_K, P.b_K), V.v: (P.W_V, P.b_V)}

# single consumer of each remaining vector kind (same layer, head, position)
_NEXT = {
    V.token: V.token_embedding,
    V.token_embedding: V.input_embedding,
    V.pos_embedding: V.input_embedding,
    V.q: V.attn_scores,
    V.attn_scores: V.attn_pattern,
    V.attn_pattern: V.z,
    V.z: V.head_out,
    V.attn_out: V.resid_mid,
    V.ln1_scale: V.ln1_normalized,
    V.ln1_normalized: V.ln1,
    V.ln2_scale: V.ln2_normalized,
    V.ln2_normalized: V.ln2,
    V.ln_final_scale: V.ln_final_normalized,
    V.ln_final_normalized: V.ln_final,
    V.ln2: V.mlp_pre,
    V.mlp_pre: V.mlp_post,
    V.mlp_post: V.mlp_out,
    V.ln_final: V.logits,
    V.logits: V.scaled_logits,
    V.scaled_logits: V.top_k_logits,
    V.top_k_logits: V.top_p_logits,
    V.top_p_logits: V.probs,
    V.probs: V.next_token,
}
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
_UNHOOKED = {V.token: "tokens", **{k: f"decode.{k}" for k in DECODE_KINDS}}
_UNHOOKED_KIND = {name: kind for kind, name in _UNHOOKED.items()}
# parameter kind -> the vector kind its operation produces (at every position)
_PARAM_CONSUMER = {
    P.W_E: V.token_embedding,
    P.W_pos: V.pos_embedding,
    P.ln1_w: V.ln1,
    P.ln1_b: V.ln1,
    P.W_Q: V.q,
    P.b_Q: V.q,
    P.W_K: V.k,
    P.b_K: V.k,
    P.W_V: V.v,
    P.b_V: V.v,
    P.W_O: V.head_out,
    P.b_O: V.attn_out,
    P.ln2_w: V.ln2,
    P.ln2_b: V.ln2,
    P.W_in: V.mlp_pre,
    P.b_in: V.mlp_pre,
    P.W_out: V.mlp_out,
    P.b_out: V.mlp_out,
    P.ln_final_w: V.ln_final,
    P.ln_final_b: V.ln_final,
    P.W_U: V.logits,
}

# hook template -> vector kind; the input embedding and the final resid_post are special-cased in parsing
_HOOK_KIND = {s.hook: s.kind for s in VECTOR_SPECS.values() if s.hook and "{L}" in s.hook and s.kind != V.resid_post}
_HOOK_KIND.update({s.hook: s.kind for s in VECTOR_SPECS.values() if s.hook and "{L}" not in s.hook})
_PARAM_KIND = {s.name: s.kind for s in PARAM_SPECS.values()}
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
    def vector_keys(self, kind=None, layer=None, head=None, position=None) -> Iterator[Key]:
        """Vector keys in forward order, filtered; each filter is a value, a collection, or None (any)."""
        kinds = _as_filter(kind, VECTOR_SPECS)
        positions = [p for p in range(self.n_tokens) if matches(position, p)]
        if self.n_tokens and not positions:
            return
        for group in self._forward_groups():
            for k, lyr in group:
                if k not in kinds or not matches(layer, lyr):
                    continue
                for h in self.heads_of(k):
                    if matches(head, h):
                        for p in positions:
                            yield Key(k, lyr, h, p)

    def _forward_groups(self) -> Iterator[list[tuple[str, int | None]]]:
        yield [(V.token, None), (V.token_embedding, None), (V.pos_embedding, None), (V.input_embedding, None)]
        last = self.dims.n_layer - 1
        for L in range(self.dims.n_layer):
            group = [(V.resid_pre, L)] if L else []
            yield group + [(k, L) for k in BLOCK_KINDS]
        yield [(V.resid_post, last), *((k, None) for k in FINAL_KINDS), *((k, None) for k in DECODE_KINDS)]

    def param_keys(self, kind=None, layer=None, head=None) -> Iterator[Key]:
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
        if not spec.per_head:
            return [key.position]
        return [key.head, key.position] if spec.head_first else [key.position, key.head]

    def hook(self, key: Key) -> str | None:
        spec = VECTOR_SPECS[key.kind]
        return spec.hook.replace("{L}", str(key.layer)) if spec.hook else None

    def vector_id(self, key: Key) -> str:
        name = self.hook(key) or _UNHOOKED[key.kind]
        return f"{name}[{','.join(map(str, self.vector_index(key)))}]"

    def aliases(self, key: Key) -> list[str]:
        if key.kind == V.resid_pre:
            return [f"blocks.{key.layer - 1}.hook_resid_post[{key.position}]"]
        return []

    def param_id(self, key: Key) -> str:
        name = PARAM_SPECS[key.kind].name.replace("{L}", str(key.layer))
        return name if key.head is None else f"{name}[{key.head}]"

    def node_id(self, key: Key) -> str:
        return self.vector_id(key) if key.kind in VECTOR_SPECS else self.param_id(key)

    def parse(self, node_id: str) -> tuple[str, Key]:
        """Parse an id (vector, alias, parameter or op) into ``(node_type, key)``; raise if not in this run."""
        node_type, key = "vector", None
        text = node_id
        if text.startswith("op:"):
            node_type, text = "operation", text[3:]
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
            kind, layer = (V.resid_post, layer) if layer == last else (V.resid_pre, layer + 1)
            return Key(kind, layer, None, index[0]) if len(index) == 1 else None
        kind = _HOOK_KIND.get(template)
        if kind is None:
            return None
        spec = VECTOR_SPECS[kind]
        if len(index) != 1 + spec.per_head:
            return None
        if not spec.per_head:
            return Key(kind, layer, None, index[0])
        head, pos = (index[0], index[1]) if spec.head_first else (index[1], index[0])
        return Key(kind, layer, head, pos)

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
        return [key.position + 1] if space == SP.keys else [size[space]]

    def param_shape(self, key: Key) -> list[int]:
        d = self.dims
        D, Dh, Dm = d.d_model, d.d_head, d.d_mlp
        return {
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
        }[key.kind]

    # ---- edges --------------------------------------------------------------------------------------
    def stream_in(self, layer: int, position: int) -> Key:
        """The residual stream entering block ``layer``."""
        return Key(V.resid_pre, layer, None, position) if layer else Key(V.input_embedding, None, None, position)

    def ln_input(self, kind: str, layer: int | None, position: int) -> Key:
        """The residual stream the LayerNorm of ``kind`` (any of its three vectors) reads."""
        if kind in LAYERNORMS["ln1"]:
            return self.stream_in(layer, position)
        if kind in LAYERNORMS["ln2"]:
            return Key(V.resid_mid, layer, None, position)
        return Key(V.resid_post, self.dims.n_layer - 1, None, position)

    def op_inputs(self, out: Key) -> tuple[list[Key], list[Key]]:
        """(input vector keys, parameter keys) of the operation producing vector ``out``, in argument order."""
        kind, L, h, p = out
        last = self.dims.n_layer - 1
        if kind == V.token:
            return [], []
        if kind == V.token_embedding:
            return [Key(V.token, None, None, p)], [Key(P.W_E)]
        if kind == V.pos_embedding:
            return [], [Key(P.W_pos)]
        if kind == V.input_embedding:
            return [Key(V.token_embedding, None, None, p), Key(V.pos_embedding, None, None, p)], []
        if kind in (V.resid_pre, V.resid_post):
            prev = L - 1 if kind == V.resid_pre else last
            return [Key(V.resid_mid, prev, None, p), Key(V.mlp_out, prev, None, p)], []
        if kind in (V.ln1_scale, V.ln2_scale, V.ln_final_scale):
            return [self.ln_input(kind, L, p)], []
        if kind in (V.ln1_normalized, V.ln2_normalized, V.ln_final_normalized):
            scale = {V.ln1_normalized: V.ln1_scale, V.ln2_normalized: V.ln2_scale}.get(kind, V.ln_final_scale)
            return [self.ln_input(kind, L, p), Key(scale, L, None, p)], []
        if kind == V.ln1:
            return [Key(V.ln1_normalized, L, None, p)], [Key(P.ln1_w, L), Key(P.ln1_b, L)]
        if kind in _PROJECTION_PARAMS:
            w, b = _PROJECTION_PARAMS[kind]
            return [Key(V.ln1, L, None, p)], [Key(w, L, h), Key(b, L, h)]
        if kind == V.attn_scores:
            return [Key(V.q, L, h, p)] + [Key(V.k, L, h, j) for j in range(p + 1)], []
        if kind == V.attn_pattern:
            return [Key(V.attn_scores, L, h, p)], []
        if kind == V.z:
            return [Key(V.attn_pattern, L, h, p)] + [Key(V.v, L, h, j) for j in range(p + 1)], []
        if kind == V.head_out:
            return [Key(V.z, L, h, p)], [Key(P.W_O, L, h)]
        if kind == V.attn_out:
            return [Key(V.head_out, L, j, p) for j in range(self.dims.n_head)], [Key(P.b_O, L)]
        if kind == V.resid_mid:
            return [self.stream_in(L, p), Key(V.attn_out, L, None, p)], []
        if kind == V.ln2:
            return [Key(V.ln2_normalized, L, None, p)], [Key(P.ln2_w, L), Key(P.ln2_b, L)]
        if kind == V.mlp_pre:
            return [Key(V.ln2, L, None, p)], [Key(P.W_in, L), Key(P.b_in, L)]
        if kind == V.mlp_post:
            return [Key(V.mlp_pre, L, None, p)], []
        if kind == V.mlp_out:
            return [Key(V.mlp_post, L, None, p)], [Key(P.W_out, L), Key(P.b_out, L)]
        if kind == V.ln_final:
            return [Key(V.ln_final_normalized, None, None, p)], [Key(P.ln_final_w), Key(P.ln_final_b)]
        if kind == V.logits:
            return [Key(V.ln_final, None, None, p)], [Key(P.W_U)]
        if kind in DECODE_KINDS:
            before = V.logits if kind == DECODE_KINDS[0] else DECODE_KINDS[DECODE_KINDS.index(kind) - 1]
            return [Key(before, None, None, p)], []
        raise AssertionError(f"unhandled kind {kind}")

    def consumers(self, key: Key) -> list[Key]:
        """Output keys of the operations that read vector or parameter ``key`` (the inverse of op_inputs)."""
        kind, L, h, p = key
        n, H = self.n_tokens, self.dims.n_head
        if kind in _PARAM_CONSUMER:
            out = _PARAM_CONSUMER[kind]
            return [Key(out, L, h, q) for q in range(n)]
        if kind in (V.input_embedding, V.resid_pre):
            layer = 0 if kind == V.input_embedding else L
            reads = [Key(k, layer, None, p) for k in LAYERNORMS["ln1"][:2]]
            return [*reads, Key(V.resid_mid, layer, None, p)]
        if kind == V.resid_mid:
            return [*(Key(k, L, None, p) for k in LAYERNORMS["ln2"][:2]), self._stream_out(L, p)]
        if kind == V.resid_post:
            return [Key(k, None, None, p) for k in LAYERNORMS["ln_final"][:2]]
        if kind == V.mlp_out:
            return [self._stream_out(L, p)]
        if kind == V.ln1:
            return [Key(k, L, j, p) for k in (V.q, V.k, V.v) for j in range(H)]
        if kind in (V.k, V.v):
            return [Key(V.attn_scores if kind == V.k else V.z, L, h, q) for q in range(p, n)]
        if kind == V.head_out:
            return [Key(V.attn_out, L, None, p)]
        nxt = _NEXT.get(kind)
        return [Key(nxt, L if VECTOR_SPECS[nxt].per_layer else None, h, p)] if nxt else []

    def _stream_out(self, layer: int, position: int) -> Key:
        """The residual stream leaving block ``layer``."""
        if layer == self.dims.n_layer - 1:
            return Key(V.resid_post, layer, None, position)
        return Key(V.resid_pre, layer + 1, None, position)

    def op_layer(self, out: Key) -> int | None:
        """Block index of the operation producing ``out`` (the stream between blocks is made by the block before)."""
        return out.layer - 1 if out.kind == V.resid_pre else out.layer

    def edges_of_op(self, out: Key) -> list[tuple[str, str, EdgeRole, int]]:
        """(source, target, role, slot) of every edge touching the op that produces ``out``."""
        if out.kind == V.token:
            return [(TOKENIZE_OP_ID, self.vector_id(out), EdgeRole.output, out.position)]
        op = "op:" + self.vector_id(out)
        inputs, params = self.op_inputs(out)
        edges = [(self.vector_id(k), op, EdgeRole.input, i) for i, k in enumerate(inputs)]
        edges += [(self.param_id(k), op, EdgeRole.parameter, i) for i, k in enumerate(params)]
        edges.append((op, self.vector_id(out), EdgeRole.output, 0))
        return edges


def _as_filter(value, universe) -> set:
    if value is None:
        return set(universe)
    values = {value} if isinstance(value, str) else set(value)
    unknown = values - set(universe)
    if unknown:
        raise ValueError(f"unknown kind(s) {sorted(map(str, unknown))}; known: {', '.join(universe)}")
    return values


def matches(flt, value) -> bool:
    """Does ``value`` pass the filter ``flt`` (None: anything; an int: equal; a collection: member)?"""
    if flt is None:
        return True
    if isinstance(flt, int):
        return value == flt
    return value in flt
