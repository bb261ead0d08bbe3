"""Values of a run: captured activations and model parameters, kept as tensors.

Like TransformerLens's ``ActivationCache`` this is a thin wrapper over ``dict[str, Tensor]``: it adds
lookup by node key and TransformerLens-shaped views, nothing else. Activations are keyed by TL hook names
with the batch dimension dropped; parameters by their Hugging Face state-dict names (the model's own
tensors, not copies). Per-head parameters are views into the fused HF weights.

Stored activations, for n tokens (shapes without batch):

=====================================  ==================  ==========================================
name                                   shape               what
=====================================  ==================  ==========================================
tokens                                 (n,)                token ids
hook_embed, hook_pos_embed             (n, d_model)        W_E and W_pos rows
blocks.L.hook_resid_pre                (n, d_model)        stream entering block L (L=0: input emb.)
blocks.L.ln1.hook_normalized           (n, d_model)        LayerNorm 1 output
blocks.L.attn.qkv                      (n, 3 d_model)      queries, keys, values of all heads (fused)
blocks.L.attn.hook_z                   (n, d_model)        z of all heads, head-major
blocks.L.hook_attn_out                 (n, d_model)        sum of head outputs plus b_O
blocks.L.hook_resid_mid                (n, d_model)
blocks.L.ln2.hook_normalized           (n, d_model)
blocks.L.mlp.hook_pre / hook_post      (n, d_mlp)          before / after GELU
blocks.L.hook_mlp_out                  (n, d_model)
blocks.{last}.hook_resid_post          (n, d_model)
ln_final.hook_normalized               (n, d_model)
hook_unembed                           (n, n_vocab)        logits
=====================================  ==================  ==========================================

Derived on demand, never stored: attention scores and patterns (from q and k; O(n^2) per head, so only
for the rows or heads asked for) and head outputs z^h @ W_O^h (from z). The decoding stage depends on
the graph's decoding settings, not only on the run, so :class:`~gpt2graph.graph.Graph` derives it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import ops
from .schema import Dims, ParamKind, ValueSummary, VectorKind
from .topology import PARAM_SPECS, VECTOR_SPECS, Key, Topology

__all__ = ["Values", "activation_names", "param_names", "summarize"]

V, P = VectorKind, ParamKind
_QKV_OFFSET = {V.q: 0, V.k: 1, V.v: 2, P.W_Q: 0, P.W_K: 1, P.W_V: 2, P.b_Q: 0, P.b_K: 1, P.b_V: 2}
#: parameter kind -> HF state-dict name ({L} = layer)
_HF_PARAM = {
    P.W_E: "transformer.wte.weight",
    P.W_pos: "transformer.wpe.weight",
    P.ln1_w: "transformer.h.{L}.ln_1.weight",
    P.ln1_b: "transformer.h.{L}.ln_1.bias",
    P.W_Q: "transformer.h.{L}.attn.c_attn.weight",
    P.W_K: "transformer.h.{L}.attn.c_attn.weight",
    P.W_V: "transformer.h.{L}.attn.c_attn.weight",
    P.b_Q: "transformer.h.{L}.attn.c_attn.bias",
    P.b_K: "transformer.h.{L}.attn.c_attn.bias",
    P.b_V: "transformer.h.{L}.attn.c_attn.bias",
    P.W_O: "transformer.h.{L}.attn.c_proj.weight",
    P.b_O: "transformer.h.{L}.attn.c_proj.bias",
    P.ln2_w: "transformer.h.{L}.ln_2.weight",
    P.ln2_b: "transformer.h.{L}.ln_2.bias",
    P.W_in: "transformer.h.{L}.mlp.c_fc.weight",
    P.b_in: "transformer.h.{L}.mlp.c_fc.bias",
    P.W_out: "transformer.h.{L}.mlp.c_proj.weight",
    P.b_out: "transformer.h.{L}.mlp.c_proj.bias",
    P.ln_final_w: "transformer.ln_f.weight",
    P.ln_final_b: "transformer.ln_f.bias",
    P.W_U: "transformer.wte.weight",
}


def activation_names(dims: Dims) -> list[str]:
    """Names of the stored activation tensors of a run with these dims."""
    names = ["tokens", "hook_embed", "hook_pos_embed"]
    for L in range(dims.n_layer):
        names += [
            f"blocks.{L}.{n}"
            for n in (
                "hook_resid_pre",
                "ln1.hook_normalized",
                "attn.qkv",
                "attn.hook_z",
                "hook_attn_out",
                "hook_resid_mid",
                "ln2.hook_normalized",
                "mlp.hook_pre",
                "mlp.hook_post",
                "hook_mlp_out",
            )
        ]
    return [*names, f"blocks.{dims.n_layer - 1}.hook_resid_post", "ln_final.hook_normalized", "hook_unembed"]


def param_names(dims: Dims) -> list[str]:
    """HF state-dict names of the stored parameters (W_U is tied to W_E and not stored twice)."""
    names = {
        name.replace("{L}", str(L))
        for kind, name in _HF_PARAM.items()
        for L in (range(dims.n_layer) if PARAM_SPECS[kind].per_layer else [0])
    }
    return sorted(names)


def activation_shape(name: str, dims: Dims, n: int) -> tuple[int, ...]:
    if name == "tokens":
        return (n,)
    width = {
        "attn.qkv": 3 * dims.d_model,
        "mlp.hook_pre": dims.d_mlp,
        "mlp.hook_post": dims.d_mlp,
        "hook_unembed": dims.n_vocab,
    }
    return (n, next((w for suffix, w in width.items() if name.endswith(suffix)), dims.d_model))


def summarize(x: Tensor) -> ValueSummary:
    """L2 norm, mean, population std, min and max of one vector; tokens a decoding filter removed (-inf)
    are left out, so a filtered distribution is summarised over the tokens still in the running."""
    x = x.double()
    x = x[x != float("-inf")] if x.numel() > 1 else x
    return ValueSummary(
        norm=float(x.norm()),
        mean=float(x.mean()),
        std=float(x.std(correction=0)),
        min=float(x.min()),
        max=float(x.max()),
    )


class Values:
    """Activations and parameters of one run, addressed by topology keys."""

    def __init__(self, activations: dict[str, Tensor], params: dict[str, Tensor], topology: Topology):
        self.activations = activations
        self.params = params
        self.topology = topology
        self.dims = topology.dims

    # ---- parameters ---------------------------------------------------------------------------------
    def param(self, key: Key) -> Tensor:
        """A parameter in TransformerLens orientation; per-head parameters are views into the fused weight."""
        kind, L, h = key.kind, key.layer, key.head
        full = self.params[_HF_PARAM[kind].replace("{L}", str(L))]
        if kind == P.W_U:
            return full.T
        d, dh = self.dims.d_model, self.dims.d_head
        if kind in (P.W_Q, P.W_K, P.W_V):
            start = _QKV_OFFSET[kind] * d + h * dh
            return full[:, start : start + dh]
        if kind in (P.b_Q, P.b_K, P.b_V):
            start = _QKV_OFFSET[kind] * d + h * dh
            return full[start : start + dh]
        if kind == P.W_O:
            return full[h * dh : (h + 1) * dh]
        return full

    # ---- activations --------------------------------------------------------------------------------
    def hook(self, kind: str, layer: int | None = None) -> Tensor:
        """The whole activation of one kind and layer, shaped as TransformerLens's hook (no batch dim).

        q/k/v/z: (n, n_head, d_head); head_out: (n, n_head, d_model); attn_scores/attn_pattern:
        (n_head, n, n), computed here for this layer only; others: (n, width).
        """
        n, H, dh = self.topology.n_tokens, self.dims.n_head, self.dims.d_head
        b = f"blocks.{layer}."
        if kind in (V.q, V.k, V.v):
            d = self.dims.d_model
            off = _QKV_OFFSET[kind] * d
            return self.activations[b + "attn.qkv"][:, off : off + d].view(n, H, dh)
        if kind == V.z:
            return self.activations[b + "attn.hook_z"].view(n, H, dh)
        if kind == V.head_out:
            W_O = self.params[f"transformer.h.{layer}.attn.c_proj.weight"].view(H, dh, -1)
            # heads on the batch dimension: (H, n, d_head) @ (H, d_head, d_model), W_O never broadcast per position
            return ops.output_projection(self.hook(V.z, layer).transpose(0, 1), W_O).transpose(0, 1)
        if kind in (V.attn_scores, V.attn_pattern):
            return torch.stack([self.head_matrix(kind, layer, h) for h in range(H)])
        if kind == V.input_embedding:
            return self.activations["blocks.0.hook_resid_pre"]
        if kind == V.token:
            return self.activations["tokens"]
        return self.activations[self.topology.hook(Key(kind, layer, None, 0))]

    def head_matrix(self, kind: str, layer: int, head: int) -> Tensor:
        """Scores or pattern of one head as an (n, n) matrix (masked entries -inf for scores, 0 for patterns)."""
        q, k = self.hook(V.q, layer)[:, head], self.hook(V.k, layer)[:, head]
        scores = ops.causal_scores(q, k)
        return scores if kind == V.attn_scores else ops.softmax(scores)

    def vector(self, key: Key) -> Tensor:
        """The value of one vector node."""
        kind, L, h, p = key
        if kind in (V.attn_scores, V.attn_pattern):
            q = self.hook(V.q, L)[p, h]
            keys = self.hook(V.k, L)[: p + 1, h]
            scores = ops.scaled_dot_product(q, keys)
            return scores if kind == V.attn_scores else ops.softmax(scores)
        if kind == V.head_out:
            return ops.output_projection(self.hook(V.z, L)[p, h], self.param(Key(P.W_O, L, h)))
        if kind == V.token:
            return self.activations["tokens"][p : p + 1]
        if VECTOR_SPECS[kind].per_head:
            return self.hook(kind, L)[p, h]
        return self.hook(kind, L)[p]

    def logits(self) -> Tensor:
        return self.activations["hook_unembed"]
