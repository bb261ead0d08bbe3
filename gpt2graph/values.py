"""Values of a run: captured activations and model parameters, kept as tensors.

Like TransformerLens's ``ActivationCache`` this is a thin wrapper over ``dict[str, Tensor]``: it adds
lookup by node key and TransformerLens-shaped views, nothing else. Activations are stored under their
TransformerLens hook names (:func:`Topology.hook`), in the hook's layout without the batch dimension;
parameters under their Hugging Face state-dict names (the model's own tensors, not copies). Per-head
parameters are views into the fused HF weights.

Captured from the model (:data:`CAPTURED_KINDS`), for n tokens: ``tokens`` (n,), the token ids; the
embeddings, every residual-stream vector, LayerNorm output, MLP vector, ``attn_out`` and ``ln_final`` as
(n, width); q, k, v and z as (n, n_head, d_head). A saved graph stores only the residual stream and z
(:data:`STORED_KINDS`, 0.11 MB per token at GPT-2 124M); the rest of the captured kinds is recomputed from
them when first read, with the very calls the model makes (:func:`gpt2graph.capture.replay`), so they are the
same numbers, bit for bit, and verification still compares our own operations against the model's.

Derived on demand, never captured: attention scores and patterns (from q and k; O(n^2) per head, so only
for the rows or heads asked for), head outputs z^h @ W_O^h (from z), each LayerNorm's scale and
normalised vector (from the stream it reads; the model computes them but exposes only the output), and the
logits ``hook_unembed`` (n, n_vocab), ``ln_final @ W_E^T`` as the model's tied ``lm_head`` computes them
(0.2 MB per token at GPT-2's vocabulary: more than all stored kinds), computed once when first read. The
decoding stage depends on the graph's decoding settings, not only on the run, so
:class:`~gpt2graph.graph.Graph` derives it.

A counterfactual run (:mod:`gpt2graph.intervene`) follows the same rule: it stores what cannot be derived and
derives the rest. A vector it replaced cannot be derived again from what it reads, so the whole layer of that
kind is stored too, under its hook name (and, for :data:`PASSED_OVER_KINDS`, the layers computed past it); a
held tensor always wins over a derivation.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from . import ops
from .schema import Dims, ParamKind, ValueSummary, VectorKind
from .topology import LAYERNORMS, PARAM_SPECS, VECTOR_SPECS, Key, Topology

__all__ = [
    "Values",
    "Stamp",
    "CAPTURED_KINDS",
    "STORED_KINDS",
    "PASSED_OVER_KINDS",
    "TOKENS",
    "SUMMARY_FIELDS",
    "LOGIT_ROWS",
    "activation_names",
    "activation_shapes",
    "param_names",
    "summarize",
    "summaries",
    "param_shapes",
    "same_stamp",
    "stamp",
]

V, P = VectorKind, ParamKind
_QKV_OFFSET: dict[str, int] = {P.W_Q: 0, P.W_K: 1, P.W_V: 2, P.b_Q: 0, P.b_K: 1, P.b_V: 2}
#: the vector kinds captured from the model; all others are derived from these
CAPTURED_KINDS = (
    V.token_embedding, V.pos_embedding, V.input_embedding, V.resid_pre, V.ln1, V.q, V.k, V.v, V.z, V.attn_out,
    V.resid_mid, V.ln2, V.mlp_pre, V.mlp_post, V.mlp_out, V.resid_post, V.ln_final,
)  # fmt: skip
#: the statistics a vector is summarised by (:class:`~gpt2graph.schema.ValueSummary`)
SUMMARY_FIELDS = ("norm", "mean", "std", "min", "max")
#: the captured kinds a saved graph stores: the residual stream and what fused attention computes; the others
#: are one or a few of the model's own calls away from these
STORED_KINDS = (V.input_embedding, V.resid_pre, V.z, V.resid_mid, V.resid_post)
#: derived kinds that no derivation reads: what consumes them is computed past them (a LayerNorm's output from
#: the stream in one call, the pattern from q and k, ``attn_out`` from z), so a counterfactual run that replaced
#: one must store its consumers too (:func:`gpt2graph.intervene.stored_derived`)
PASSED_OVER_KINDS = (
    *(kind for scale, normalized, _ in LAYERNORMS.values() for kind in (scale, normalized)),
    V.attn_scores,
    V.head_out,
)
#: the name the token ids are stored under (no TransformerLens hook holds them)
TOKENS = "tokens"
#: positions whose logits are derived at once (64 x GPT-2's vocabulary: 13 MB)
LOGIT_ROWS = 64
#: tensors, each with its in-place version counter: what a derived value depends on
Stamp = tuple[tuple[Tensor, int], ...]
#: statistics of parameters already summarised, by (id of the HF tensor, kind): (the tensor, its version then,
#: the statistics); an entry goes with its tensor
_PARAM_STATS: dict[tuple[int, str], tuple[weakref.ref[Tensor], int, dict[str, Tensor]]] = {}
_LN_OF: dict[str, tuple[str, str, str]] = {kind: kinds for kinds in LAYERNORMS.values() for kind in kinds}
#: parameter kind -> HF state-dict name ({L} = layer)
_HF_PARAM: dict[str, str] = {
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


def activation_shapes(
    dims: Dims, n: int, kinds: Iterable[str] = STORED_KINDS, derived: Iterable[tuple[str, int | None]] = ()
) -> dict[str, tuple[int, ...]]:
    """Name and shape of every stored activation of an ``n``-token run (or of ``kinds``, e.g.
    :data:`CAPTURED_KINDS`): ``tokens`` and, for each kind and layer, its hook name with the hook's layout
    without the batch dimension; plus the ``derived`` sites (kind, layer) a counterfactual run stores."""
    top = Topology(dims, n)
    shapes: dict[str, tuple[int, ...]] = {TOKENS: (n,)}
    sites = [(kind, layer) for kind in kinds for layer in top.layers_of(kind)]
    for kind, layer in [*sites, *derived]:
        spec, key = VECTOR_SPECS[kind], Key(kind, layer, None, 0)
        if spec.head_first:  # attention rows: (n_head, n queries, n keys)
            shapes[top.hook_name(key)] = (dims.n_head, n, n)
            continue
        width = tuple(top.vector_shape(key))
        shapes[top.hook_name(key)] = (n, dims.n_head, *width) if spec.per_head else (n, *width)
    return shapes


def activation_names(dims: Dims) -> list[str]:
    """Names of the stored activation tensors of a run with these dims."""
    return list(activation_shapes(dims, 0))


def param_names(dims: Dims) -> list[str]:
    """HF state-dict names of the stored parameters (W_U is tied to W_E and not stored twice)."""
    names = {
        name.replace("{L}", str(L))
        for kind, name in _HF_PARAM.items()
        for L in (range(dims.n_layer) if PARAM_SPECS[kind].per_layer else [0])
    }
    return sorted(names)


def summaries(x: Tensor, keep: Tensor | None = None, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """The statistics of :data:`SUMMARY_FIELDS` of every vector along the last dimension of ``x`` at once,
    counting only the entries where ``keep`` (broadcast against ``x``) is true; computed in ``dtype`` (float64,
    as node summaries are; float32 halves the time and memory of a whole weight matrix).

    The arithmetic is numpy's, on the tensors' own memory: a renderer asks for hundreds of these, and torch's
    thread pool makes each small reduction take milliseconds whenever the machine is busy."""
    a = x.detach().numpy().astype(torch.empty(0, dtype=dtype).numpy().dtype, copy=False)
    k = None if keep is None else np.broadcast_to(keep.numpy(), a.shape)
    if k is not None and k.all():
        k = None
    if k is None:
        count: np.ndarray | int = a.shape[-1]
        mean = a.mean(-1)
        centred = a - mean[..., None]
        low, high = a.min(-1), a.max(-1)
    else:
        count = k.sum(-1)
        mean = np.where(k, a, 0.0).sum(-1) / count
        centred = np.where(k, a - mean[..., None], 0.0)
        low, high = np.where(k, a, np.inf).min(-1), np.where(k, a, -np.inf).max(-1)
    std = np.sqrt((centred * centred).sum(-1) / count)  # two passes, as a population std
    norm = np.sqrt(count * (std * std + mean * mean))  # sum of squares = count (variance + mean^2)
    stats = {"norm": norm, "mean": mean, "std": std, "min": low, "max": high}
    return {name: torch.from_numpy(np.asarray(v, dtype=a.dtype)) for name, v in stats.items()}


def param_shapes(dims: Dims) -> dict[str, tuple[int, ...]]:
    """Shape of every stored parameter, by HF state-dict name: the fused attention weights as HF keeps them
    (c_attn holds Q | K | V; Conv1D weights are (inputs, outputs))."""
    D, M = dims.d_model, dims.d_mlp
    by_kind: dict[str, tuple[int, ...]] = {
        P.W_E: (dims.n_vocab, D),
        P.W_U: (dims.n_vocab, D),  # tied: the same tensor as W_E
        P.W_pos: (dims.n_ctx, D),
        P.W_Q: (D, 3 * D),
        P.b_Q: (3 * D,),
        P.W_O: (D, D),
        P.W_in: (D, M),
        P.b_in: (M,),
        P.W_out: (M, D),
    }
    shares: dict[str, str] = {P.W_K: P.W_Q, P.W_V: P.W_Q, P.b_K: P.b_Q, P.b_V: P.b_Q}  # fused into c_attn
    shapes = {}
    for kind, name in _HF_PARAM.items():
        fused = shares.get(kind, kind)
        for L in range(dims.n_layer) if PARAM_SPECS[kind].per_layer else [0]:
            shapes[name.replace("{L}", str(L))] = by_kind.get(fused, (D,))
    return shapes


def summarize(x: Tensor) -> ValueSummary:
    """L2 norm, mean, population std, min and max of one vector; tokens a decoding filter removed (-inf)
    are left out, so a filtered distribution is summarised over the tokens still in the running."""
    stats = summaries(x, x != -torch.inf if x.numel() > 1 else None)
    return ValueSummary(**{name: float(v) for name, v in stats.items()})


class Values:
    """Activations and parameters of one run, addressed by topology keys."""

    def __init__(
        self,
        activations: dict[str, Tensor],
        params: dict[str, Tensor],
        topology: Topology,
        interventions: Sequence[Tensor] = (),
    ):
        self.activations = activations
        self.params = params
        self.topology = topology
        self.dims = topology.dims
        #: the values a counterfactual run put in place of its replaced vectors, in the order of its header's
        #: records (empty for a captured run)
        self.interventions = list(interventions)
        self._logits: tuple[Stamp, Tensor, list[bool]] | None = None  # (derived from, logits, blocks done)
        self._digest: tuple[Stamp, str] | None = None  # (the parameter tensors hashed, their weight-store digest)

    # ---- parameters ---------------------------------------------------------------------------------
    def param(self, key: Key) -> Tensor:
        """A parameter in TransformerLens orientation; per-head parameters are views into the fused weight."""
        if key.head is not None:
            return self.stacked(key.kind, key.layer)[key.head]
        full = self.params[_HF_PARAM[key.kind].replace("{L}", str(key.layer))]
        return full.T if key.kind == P.W_U else full

    def stacked(self, kind: str, layer: int | None = None) -> Tensor:
        """A parameter with every head at once, stacked on a leading dimension (views, no copies): W_Q, W_K,
        W_V (n_head, d_model, d_head), b_Q, b_K, b_V (n_head, d_head), W_O (n_head, d_head, d_model). Other
        parameters as :meth:`param` gives them."""
        if not PARAM_SPECS[kind].per_head:
            return self.param(Key(kind, layer))
        # the fused HF weights: c_attn (d_model, 3 d_model) holds Q | K | V, each head-major; c_proj's rows
        # are head-major too
        H, d, dh = self.dims.n_head, self.dims.d_model, self.dims.d_head
        full = self.params[_HF_PARAM[kind].replace("{L}", str(layer))]
        if kind == P.W_O:
            return full.view(H, dh, d)
        start = _QKV_OFFSET[kind] * d
        if kind in (P.b_Q, P.b_K, P.b_V):
            return full[start : start + d].view(H, dh)
        return full[:, start : start + d].view(d, H, dh).transpose(0, 1)

    def param_summaries(self, kind: str, layer: int | None = None) -> dict[str, Tensor]:
        """The statistics of :data:`SUMMARY_FIELDS` of a parameter, in float32 (W_E alone has 38M entries): one
        row per head for per-head kinds (shape (n_head,)), else shape (1,). Computed once per parameter tensor
        while it is unchanged: graphs built from one loaded model share its tensors
        (:func:`gpt2graph.builder.parameters`), so a server summarises each weight matrix once, not per prompt."""
        full = self.params[_HF_PARAM[kind].replace("{L}", str(layer))]
        key = (id(full), str(kind))
        held = _PARAM_STATS.get(key)
        if held is not None and held[0]() is full and held[1] == full._version:
            return held[2]
        stacked = self.stacked(kind, layer)
        rows = stacked.reshape(stacked.shape[0] if PARAM_SPECS[kind].per_head else 1, -1)
        with torch.no_grad():
            stats = summaries(rows, dtype=torch.float32)
        _PARAM_STATS[key] = (weakref.ref(full, lambda _ref: _PARAM_STATS.pop(key, None)), full._version, stats)
        return stats

    # ---- activations --------------------------------------------------------------------------------
    def hook(self, kind: str, layer: int | None = None) -> Tensor:
        """The whole activation of one kind and layer, shaped as TransformerLens's hook (no batch dim).

        q/k/v/z: (n, n_head, d_head); head_out: (n, n_head, d_model); attn_scores/attn_pattern:
        (n_head, n, n), computed here for this layer only; LayerNorm scales (n, 1); others: (n, width).
        """
        if kind == V.token:
            return self.activations[TOKENS]
        name = self.topology.hook_name(Key(kind, layer, None, 0))
        held = self.activations.get(name)
        if held is not None:
            return held
        if kind == V.logits:
            return self.logits()
        if kind == V.head_out:
            return ops.output_projection(self.hook(V.z, layer), self.stacked(P.W_O, layer))
        if kind in (V.attn_scores, V.attn_pattern):
            scores = ops.causal_scores(self.hook(V.q, layer).transpose(0, 1), self.hook(V.k, layer).transpose(0, 1))
            return scores if kind == V.attn_scores else ops.softmax(scores)
        if kind in _LN_OF and kind not in CAPTURED_KINDS:  # a LayerNorm's scale or normalised vector
            scale_kind, _normalized_kind, _ = _LN_OF[kind]
            x = self.hook(*self._ln_input(kind, layer))
            scale = ops.ln_scale(x, self.dims.layer_norm_eps)
            return scale if kind == scale_kind else ops.ln_normalize(x, scale)
        if kind in CAPTURED_KINDS:  # not held (a loaded graph, a counterfactual run): recomputed, then kept
            from .capture import replay

            for recomputed, value in replay(self, kind, layer).items():  # q, k and v come together
                self.activations.setdefault(recomputed, value)  # a counterfactual's replaced q stays
        return self.activations[name]

    def is_stored(self, kind: str, layer: int | None) -> bool:
        """Is this kind and layer held as a tensor (captured, stored, or recomputed and kept) rather than derived
        each time it is read? Always for :data:`STORED_KINDS`; for a kind derived from q, k, z or a stream, only in
        a counterfactual run that replaced some of its vectors or what it is computed from."""
        return kind == V.token or self.topology.hook_name(Key(kind, layer, None, 0)) in self.activations

    def _ln_input(self, kind: str, layer: int | None) -> tuple[str, int | None]:
        key = self.topology.ln_input(kind, layer, 0)
        return key.kind, key.layer

    def head_matrix(self, kind: str, layer: int, head: int) -> Tensor:
        """Scores or pattern of one head as an (n, n) matrix (masked entries -inf for scores, 0 for patterns)."""
        if self.is_stored(kind, layer):
            return self.hook(kind, layer)[head]
        scores = ops.causal_scores(self.hook(V.q, layer)[:, head], self.hook(V.k, layer)[:, head])
        return scores if kind == V.attn_scores else ops.softmax(scores)

    def vector(self, key: Key) -> Tensor:
        """The value of one vector node."""
        kind, L, h, p = key
        assert p is not None, "a vector key has a position"
        if kind != V.token and self.is_stored(kind, L):
            whole = self.hook(kind, L)
            return whole[h, p, : p + 1] if VECTOR_SPECS[kind].head_first else whole[p, h] if h is not None else whole[p]
        if kind in (V.attn_scores, V.attn_pattern):
            q = self.hook(V.q, L)[p, h]
            keys = self.hook(V.k, L)[: p + 1, h]
            scores = ops.scaled_dot_product(q, keys)
            return scores if kind == V.attn_scores else ops.softmax(scores)
        if kind == V.head_out:
            return ops.output_projection(self.hook(V.z, L)[p, h], self.param(Key(P.W_O, L, h)))
        if kind == V.token:
            return self.activations[TOKENS][p : p + 1]
        if kind == V.logits:
            return self.logits(p)
        if kind in _LN_OF and kind not in CAPTURED_KINDS:
            scale_kind, _, _ = _LN_OF[kind]
            x = self.vector(self.topology.ln_input(kind, L, p))
            scale = ops.ln_scale(x, self.dims.layer_norm_eps)
            return scale if kind == scale_kind else ops.ln_normalize(x, scale)
        if VECTOR_SPECS[kind].per_head:
            return self.hook(kind, L)[p, h]
        return self.hook(kind, L)[p]

    def logits(self, position: int | None = None) -> Tensor:
        """(n, n_vocab) logits, or one position's (n_vocab,): ``ln_final @ W_E^T``, the product the model's tied
        ``lm_head`` computes (not our :func:`ops.unembed`, which verification checks against it). Derived in
        blocks of :data:`LOGIT_ROWS` positions, each when first read and then kept while ``ln_final`` and
        W_E are unchanged (in-place edits included): one position costs one block, every position one
        product, and a row is the same numbers however it was reached. A counterfactual run that replaced logits
        holds them instead."""
        held = self.activations.get(self.topology.hook_name(Key(V.logits, None, None, 0)))
        if held is not None:
            return held if position is None else held[position]
        ln_final = self.hook(V.ln_final)
        W_E = self.params[_HF_PARAM[P.W_E]]
        now = stamp(ln_final, W_E)
        if self._logits is None or not same_stamp(self._logits[0], now):
            n = ln_final.shape[0]
            self._logits = (now, torch.empty(n, W_E.shape[0], dtype=ln_final.dtype), [False] * -(-n // LOGIT_ROWS))
        _, logits, done = self._logits
        if position is not None:
            position = range(logits.shape[0])[position]  # negative counts from the end; IndexError past it
        blocks = range(len(done)) if position is None else [position // LOGIT_ROWS]
        for b in blocks:
            if not done[b]:
                rows = slice(b * LOGIT_ROWS, (b + 1) * LOGIT_ROWS)
                with torch.no_grad():
                    logits[rows] = torch.nn.functional.linear(ln_final[rows], W_E)
                done[b] = True
        return logits if position is None else logits[position]

    def weights_digest(self) -> str:
        """The weight-store key of the parameters (:func:`gpt2graph.weightstore.digest`), hashed once and kept
        while they are unchanged."""
        from .weightstore import digest

        now = stamp(*(self.params[name] for name in sorted(self.params)))
        if self._digest is None or not same_stamp(self._digest[0], now):
            self._digest = (now, digest(self.params))
        return self._digest[1]

    def know_digest(self, sha256: str) -> None:
        """Record the digest of the parameters as they are now (checked by whoever read them)."""
        self._digest = (stamp(*(self.params[name] for name in sorted(self.params))), sha256)


def stamp(*tensors: Tensor) -> Stamp:
    """Each tensor with its in-place version counter: what a value derived from them depends on."""
    return tuple((t, t._version) for t in tensors)


def same_stamp(a: Stamp, b: Stamp) -> bool:
    """Whether two stamps are of the same tensors (identity), none of them edited since."""
    return len(a) == len(b) and all(x is y and u == v for (x, u), (y, v) in zip(a, b))
