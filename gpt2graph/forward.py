"""The forward pass of GPT-2, written once, with our own operations (:mod:`gpt2graph.ops`).

Everything that runs the model after capture goes through :func:`run`: verification, the induction probe
of head roles, interventions and patching. It reads like nanoGPT's ``Block.forward``, with every head of a
layer computed at once and a batch of runs side by side. Two hooks make it an instrument:

* **observe**: keep the value at any *site*, a (vector kind, layer) pair such as ``("q", 3)`` or
  ``("logits", None)``, in TransformerLens's layout with the batch first: (batch, n, width) per position,
  (batch, n, n_head, width) per head, (batch, n_head, n, n) for attention scores and patterns, (batch, n, 1)
  for LayerNorm scales.
* **intervene**: replace, add to or scale the vector of any node, at (kind, layer, head, position), in one
  run of the batch or in all of them, with an :class:`Intervention`. What is downstream sees the new value.

Cost follows what is asked: per-head outputs and attention scores and patterns are materialised only at
sites that are observed or intervened on (elsewhere the fused equivalents are used: one matrix product for
the attention output, a fused attention kernel for z), logits only at the positions asked for, and a run
may start at any block from the stream entering it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from . import ops
from .errors import Gpt2GraphError
from .schema import Dims, ParamKind, VectorKind
from .topology import BLOCK_KINDS, FINAL_KINDS, LAYERNORMS, VECTOR_SPECS, Topology

__all__ = ["Intervention", "ForwardResult", "Site", "run", "sites", "ParamSource"]

V, P = VectorKind, ParamKind
Site = tuple[str, int | None]
#: where a run gets its parameters: ``(kind, layer) -> tensor`` with heads stacked first for per-head kinds,
#: in TransformerLens orientation (``Values.stacked`` is one)
ParamSource = Callable[[str, int | None], Tensor]
_ATTENTION_ROWS = (V.attn_scores, V.attn_pattern)
_FUSED_ATTENTION = {V.attn_scores, V.attn_pattern}  # skipped (fused kernel) unless wanted
_PER_HEAD_OUTPUT = {V.head_out}  # skipped (one matrix product) unless wanted


class InterventionError(Gpt2GraphError, ValueError):
    """An intervention that names no vector of the run, or carries a value of the wrong shape."""


@dataclass(frozen=True)
class Intervention:
    """Replace, add to or scale vectors at one site.

    ``head`` and ``position`` narrow it to one head (per-head kinds) and one position (None: all);
    ``run`` to one run of a batch (None: every run). ``value`` is a tensor broadcast against the selected
    vectors (a vector of the kind's width, or a stack of them), or a number for ``mode="scale"``. For an
    attention row (scores or pattern) at one position, a value of length ``position + 1`` (the keys the query
    sees) is accepted and padded."""

    kind: str
    layer: int | None = None
    head: int | None = None
    position: int | None = None
    mode: Literal["replace", "add", "scale"] = "replace"
    value: Tensor | float = 0.0
    run: int | None = None

    @property
    def site(self) -> Site:
        return (self.kind, self.layer)


@dataclass
class ForwardResult:
    """What :func:`run` computed: the observed sites and the logits at the positions asked for
    (batch, n_positions, n_vocab), or None when no logits were asked for."""

    observed: dict[Site, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None

    def __getitem__(self, site: Site) -> Tensor:
        return self.observed[site]

    def __repr__(self) -> str:
        sites = ", ".join(f"{k}{'' if L is None else f'@{L}'}" for k, L in list(self.observed)[:4])
        more = f", ... ({len(self.observed)} sites)" if len(self.observed) > 4 else ""
        logits = "no logits" if self.logits is None else f"logits {tuple(self.logits.shape)}"
        return f"<ForwardResult: observed [{sites}{more}]; {logits}>"


def sites(dims: Dims, kinds: Iterable[str] | None = None) -> list[Site]:
    """Every site of a model with these dims (optionally only of ``kinds``), in forward order."""
    top = Topology(dims, 1)
    wanted = None if kinds is None else set(kinds)
    ordered = [(k.kind, k.layer) for k in top.vector_keys(position=0)]
    return [s for s in dict.fromkeys(ordered) if s[0] in _MODEL_KINDS and (wanted is None or s[0] in wanted)]


_MODEL_KINDS = {V.token_embedding, V.pos_embedding, V.input_embedding, V.resid_pre, V.resid_post, *BLOCK_KINDS,
                *FINAL_KINDS}  # fmt: skip


class _Sites:
    """The observe and intervene hooks of one run, applied at each site as the pass reaches it."""

    def __init__(
        self,
        observe: Iterable[str | Site] | bool,
        interventions: Sequence[Intervention],
        dims: Dims,
        n_tokens: int,
        grad: bool,
    ):
        self.all = observe is True
        given = [] if observe in (True, False) else list(observe)  # type: ignore[arg-type]
        self.kinds = {o for o in given if isinstance(o, str)}
        self.sites = {o for o in given if not isinstance(o, str)}
        unknown = {k for k in self.kinds | {s[0] for s in self.sites} if k not in _MODEL_KINDS}
        if unknown:
            raise InterventionError(
                f"cannot observe {sorted(unknown)}: the forward pass computes "
                f"{', '.join(k for k in VECTOR_SPECS if k in _MODEL_KINDS)}"
            )
        valid = set(sites(dims))
        self.edits: dict[Site, list[Intervention]] = {}
        for i in interventions:
            if i.site not in valid:
                layers = sorted({str(layer) for kind, layer in valid if kind == i.kind})
                raise InterventionError(
                    f"no {i.kind} vectors at layer {i.layer} to intervene on"
                    + (f" (layers: {', '.join(layers)})" if layers else "; the forward pass does not compute it")
                )
            if i.position is not None and not 0 <= i.position < n_tokens:
                raise InterventionError(f"position {i.position} out of range 0..{n_tokens - 1}")
            self.edits.setdefault(i.site, []).append(i)
        self.dims = dims
        self.grad = grad
        self.observed: dict[Site, Tensor] = {}

    def wants(self, kind: str, layer: int | None) -> bool:
        site = (kind, layer)
        return self.all or kind in self.kinds or site in self.sites or site in self.edits

    def __call__(self, kind: str, layer: int | None, value: Tensor) -> Tensor:
        site = (kind, layer)
        for edit in self.edits.get(site, ()):
            value = _apply(edit, value, self.dims)
        if self.all or kind in self.kinds or site in self.sites:
            if self.grad and not value.requires_grad:
                value = value.detach().requires_grad_(True)  # a leaf: what follows is differentiable in it
            self.observed[site] = value
        return value


def _apply(edit: Intervention, value: Tensor, dims: Dims) -> Tensor:
    """``value`` (TransformerLens layout, batch first) with ``edit`` applied, out of place (autograd-safe)."""
    spec = VECTOR_SPECS[edit.kind]
    runs = slice(None) if edit.run is None else edit.run
    pos = slice(None) if edit.position is None else edit.position
    head = slice(None) if edit.head is None or not spec.per_head else edit.head
    if spec.per_head and edit.head is not None and not 0 <= edit.head < dims.n_head:
        raise InterventionError(f"head {edit.head} out of range 0..{dims.n_head - 1}")
    if spec.head_first:  # attention rows: (batch, head, query, key)
        index: tuple[int | slice, ...] = (runs, head, pos)
    elif spec.per_head:
        index = (runs, pos, head)
    else:
        index = (runs, pos)
    target = value[index]
    new = edit.value
    if isinstance(new, Tensor):
        new = new.to(dtype=value.dtype, device=value.device)
        if spec.head_first and edit.position is not None and new.shape[-1] == edit.position + 1:
            new = torch.nn.functional.pad(
                new, (0, value.shape[-1] - new.shape[-1]), value=float("-inf") if edit.kind == V.attn_scores else 0.0
            )
        try:
            torch.broadcast_shapes(new.shape, target.shape)
        except RuntimeError:
            raise InterventionError(
                f"value of shape {tuple(new.shape)} does not fit {edit.kind} at layer "
                f"{edit.layer}: the selected vectors have shape {tuple(target.shape)}"
            ) from None
    if edit.mode == "replace":
        result = torch.broadcast_to(new, target.shape) if isinstance(new, Tensor) else torch.full_like(target, new)
    elif edit.mode == "add":
        result = target + new
    elif edit.mode == "scale":
        result = target * new
    else:
        raise InterventionError(f"unknown intervention mode {edit.mode!r}; expected replace, add or scale")
    value = value.clone()
    value[index] = result
    return value


def run(
    param: ParamSource,
    dims: Dims,
    tokens: Tensor,
    *,
    observe: Iterable[str | Site] | bool = (),
    interventions: Sequence[Intervention] = (),
    logits: bool | Sequence[int] = True,
    start: tuple[int, Tensor] | None = None,
    grad: bool = False,
) -> ForwardResult:
    """The forward pass on ``tokens`` (batch, n) or (n,), with our own ops.

    ``param(kind, layer)`` gives the weights (heads stacked first), e.g. ``graph.store.stacked``.
    ``observe``: kinds (every layer), sites, or True for everything. ``interventions`` are applied where
    the pass computes their site. ``logits``: True (every position), False (stop after the last block's
    stream), or the positions to unembed. ``start=(layer, stream)`` begins at block ``layer`` from the
    residual stream entering it, (batch, n, d_model), skipping the embedding and the blocks before it.
    ``grad``: make the observed sites differentiable, so that gradients of the logits (or of anything computed
    from them) can be taken with respect to them (attribution patching).

    Example::

        r = run(graph.store.stacked, graph.dims, tokens, observe=["attn_pattern"])
        r[("attn_pattern", 0)]        # (1, n_head, n, n)
    """
    tokens = tokens if tokens.ndim == 2 else tokens[None]
    if logits not in (True, False) and any(i.kind == V.logits for i in interventions):
        raise InterventionError("an intervention on the logits needs every position's logits (logits=True)")
    n = tokens.shape[1]
    hooks = _Sites(observe, interventions, dims, n, grad)
    eps = dims.layer_norm_eps

    def layernorm(which: str, layer: int | None, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        scale_kind, normalized_kind, out_kind = LAYERNORMS[which]
        scale = hooks(scale_kind, layer, ops.ln_scale(x, eps))
        normalized = hooks(normalized_kind, layer, ops.ln_normalize(x, scale))
        return hooks(out_kind, layer, ops.ln_affine(normalized, w, b))

    if start is None:
        first = 0
        embed = hooks(V.token_embedding, None, ops.lookup(param(P.W_E, None), tokens))
        pos = hooks(
            V.pos_embedding,
            None,
            ops.lookup(param(P.W_pos, None), torch.arange(n, device=tokens.device)).expand_as(embed),
        )
        x = hooks(V.input_embedding, None, ops.add(embed, pos))
    else:
        first, x = start
        x = hooks(V.resid_pre, first, x) if first else hooks(V.input_embedding, None, x)

    for L in range(first, dims.n_layer):
        if first < L:
            x = hooks(V.resid_pre, L, x)
        # attention: every head at once, (batch, n, n_head, d_head)
        ln1 = layernorm("ln1", L, x, param(P.ln1_w, L), param(P.ln1_b, L))
        q, k, v = (
            hooks(kind, L, ops.head_projection(ln1, param(w, L), param(b, L)))
            for kind, w, b in ((V.q, P.W_Q, P.b_Q), (V.k, P.W_K, P.b_K), (V.v, P.W_V, P.b_V))
        )
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # (batch, n_head, n, d_head)
        if any(hooks.wants(kind, L) for kind in _FUSED_ATTENTION):
            scores = hooks(V.attn_scores, L, ops.causal_scores(qh, kh))
            pattern = hooks(V.attn_pattern, L, ops.softmax(scores))
            z = ops.weighted_sum(pattern, vh)
        else:  # the same softmax(q k^T / sqrt(d_head)) v, without materialising the n x n matrices
            z = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
        z = hooks(V.z, L, z.transpose(1, 2))
        W_O, b_O = param(P.W_O, L), param(P.b_O, L)
        if hooks.wants(V.head_out, L):
            attn_out = ops.sum_heads(hooks(V.head_out, L, ops.output_projection(z, W_O)), b_O)
        else:
            attn_out = ops.attention_output(z, W_O, b_O)
        attn_out = hooks(V.attn_out, L, attn_out)
        x = hooks(V.resid_mid, L, ops.add(x, attn_out))
        # MLP, position by position
        ln2 = layernorm("ln2", L, x, param(P.ln2_w, L), param(P.ln2_b, L))
        pre = hooks(V.mlp_pre, L, ops.linear(ln2, param(P.W_in, L), param(P.b_in, L)))
        post = hooks(V.mlp_post, L, ops.gelu(pre))
        mlp_out = hooks(V.mlp_out, L, ops.linear(post, param(P.W_out, L), param(P.b_out, L)))
        x = ops.add(x, mlp_out)
    x = hooks(V.resid_post, dims.n_layer - 1, x)

    result = ForwardResult(hooks.observed)
    if logits is False and not any(hooks.wants(k, None) for k in FINAL_KINDS):
        return result
    final = layernorm("ln_final", None, x, param(P.ln_final_w, None), param(P.ln_final_b, None))
    rows = final if logits is True or logits is False else final[:, list(logits)]
    out = hooks(V.logits, None, ops.unembed(rows, param(P.W_U, None))) if logits is not False else None
    result.logits = out
    return result
