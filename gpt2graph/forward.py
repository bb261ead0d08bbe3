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
  One intervention may also carry many (run, head, position) triples at once (a patching sweep sets one
  vector per run of a batch), or a function of the site's value and of what the run observed so far.

Besides the graph's vector kinds, four sites exist only here, for edge-level work (edge attribution patching,
circuits): ``q_input``, ``k_input``, ``v_input`` (batch, n, n_head, d_model), the residual stream copied once
per head and per use before ln1 (TransformerLens's ``hook_q_input``...), and ``mlp_in`` (batch, n, d_model),
the stream as the MLP reads it before ln2 (``hook_mlp_in``). Observing or intervening on them makes every
head of that layer read its own copy, so a gradient or a patch reaches one head's query, key or value alone;
ln1's own sites are then per copy, and cannot be observed there.

Cost follows what is asked: per-head outputs and attention scores and patterns are materialised only at
sites that are observed or intervened on (elsewhere the fused equivalents are used: one matrix product for
the attention output, a fused attention kernel for z), logits only at the positions asked for, and a run
may start at any block from the stream entering it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from . import ops
from .errors import Gpt2GraphError
from .schema import Dims, ParamKind, VectorKind
from .topology import BLOCK_KINDS, FINAL_KINDS, LAYERNORMS, VECTOR_SPECS, Topology

__all__ = [
    "Intervention", "InterventionError", "ForwardResult", "Site", "run", "sites", "ParamSource", "MODEL_KINDS",
    "SPLIT_INPUTS", "MLP_IN",
]  # fmt: skip

V, P = VectorKind, ParamKind
Site = tuple[str, int | None]
#: where a run gets its parameters: ``(kind, layer) -> tensor`` with heads stacked first for per-head kinds,
#: in TransformerLens orientation (``Values.stacked`` is one)
ParamSource = Callable[[str, int | None], Tensor]
_ATTENTION_ROWS = (V.attn_scores, V.attn_pattern)
_FUSED_ATTENTION = {V.attn_scores, V.attn_pattern}  # skipped (fused kernel) unless wanted
#: the residual stream copied per head for its query, key and value (sites of the executor only)
SPLIT_INPUTS: dict[str, str] = {V.q: "q_input", V.k: "k_input", V.v: "v_input"}
#: the residual stream as the MLP reads it, apart from the residual connection (a site of the executor only)
MLP_IN = "mlp_in"
Index = int | Sequence[int] | Tensor | None


class InterventionError(Gpt2GraphError, ValueError):
    """An intervention that names no vector of the run, or carries a value of the wrong shape."""


@dataclass(frozen=True)
class Intervention:
    """Replace, add to or scale vectors at one site.

    ``head`` and ``position`` narrow it to one head (per-head kinds) and one position (None: all);
    ``run`` to one run of a batch (None: every run). ``value`` is a tensor broadcast against the selected
    vectors (a vector of the kind's width, or a stack of them), or a number for ``mode="scale"``. For an
    attention row (scores or pattern) at one position, a value of length ``position + 1`` (the keys the query
    sees) is accepted and padded.

    ``run``, ``head`` and ``position`` may also be sequences of equal length k (integers broadcast against
    them): k vectors are set at once, one per (run, head, position) triple, from a value of shape
    (k, width). ``mode="apply"`` takes a function ``value(site_value, observed) -> new_site_value`` of the
    whole site (batch first) and of the sites observed so far in this run."""

    kind: str
    layer: int | None = None
    head: Index = None
    position: Index = None
    mode: Literal["replace", "add", "scale", "apply"] = "replace"
    value: Tensor | float | Callable[[Tensor, dict[Site, Tensor]], Tensor] = 0.0
    run: Index = None

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
    return [s for s in dict.fromkeys(ordered) if s[0] in MODEL_KINDS and (wanted is None or s[0] in wanted)]


#: the vector kinds the forward pass computes (every kind of the graph but the tokens and the decoding stage)
MODEL_KINDS = {V.token_embedding, V.pos_embedding, V.input_embedding, V.resid_pre, V.resid_post, *BLOCK_KINDS,
                *FINAL_KINDS}  # fmt: skip
_EDGE_SITES = {*SPLIT_INPUTS.values(), MLP_IN}
#: (per head, head before position) of every site's layout after the batch dimension
_LAYOUT: dict[str, tuple[bool, bool]] = {
    **{k: (VECTOR_SPECS[k].per_head, VECTOR_SPECS[k].head_first) for k in MODEL_KINDS},
    **dict.fromkeys(SPLIT_INPUTS.values(), (True, False)),
    MLP_IN: (False, False),
}


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
        unknown = (self.kinds | {s[0] for s in self.sites} | {i.kind for i in interventions}) - set(_LAYOUT)
        if unknown:
            raise InterventionError(
                f"cannot observe or intervene on {sorted(unknown)}: the forward pass computes "
                f"{', '.join(k for k in VECTOR_SPECS if k in MODEL_KINDS)}, and {', '.join(sorted(_EDGE_SITES))}"
            )
        valid = {*sites(dims), *((kind, L) for L in range(dims.n_layer) for kind in _EDGE_SITES)}
        self.edits: dict[Site, list[Intervention]] = {}
        for i in interventions:
            if i.site not in valid:
                layers = sorted({str(layer) for kind, layer in valid if kind == i.kind})
                raise InterventionError(
                    f"no {i.kind} vectors at layer {i.layer} to intervene on (layers: {', '.join(layers)})"
                )
            _selector(i.position, "position", n_tokens)  # out of range: an error before the run, never ignored
            self.edits.setdefault(i.site, []).append(i)
        self.dims = dims
        self.grad = grad
        self.observed: dict[Site, Tensor] = {}

    def wants(self, kind: str, layer: int | None) -> bool:
        site = (kind, layer)
        every = self.all and kind not in _EDGE_SITES  # observe=True means the graph's vectors
        return every or kind in self.kinds or site in self.sites or site in self.edits

    def split(self, layer: int) -> bool:
        """Does every head of ``layer`` read its own copy of the stream (a q/k/v input site is wanted)?"""
        if not any(self.wants(kind, layer) for kind in SPLIT_INPUTS.values()):
            return False
        clash = [
            k for k in LAYERNORMS["ln1"] if (k, layer) in self.edits or (k, layer) in self.sites or k in self.kinds
        ]
        if clash:
            raise InterventionError(
                f"layer {layer}: ln1 is computed once per head and per q/k/v input when a q/k/v input is "
                f"observed or intervened on, so {', '.join(clash)} cannot be asked for there"
            )
        return True

    def __call__(self, kind: str, layer: int | None, value: Tensor) -> Tensor:
        site = (kind, layer)
        for edit in self.edits.get(site, ()):
            if edit.mode != "apply":
                value = _apply(edit, value, self.dims)
            elif callable(edit.value):
                value = edit.value(value, self.observed)
            else:
                raise InterventionError("mode 'apply' takes a function value(site_value, observed)")
        if self.all or kind in self.kinds or site in self.sites:
            if self.grad and not value.requires_grad:
                value = value.detach().requires_grad_(True)  # a leaf: what follows is differentiable in it
            self.observed[site] = value
        return value


def _selector(index: Index, what: str, limit: int) -> slice | int | Tensor:
    """One axis of an intervention as an index: all (None), one integer, or a tensor of integers."""
    if index is None:
        return slice(None)
    chosen = torch.as_tensor(index, dtype=torch.long)
    if chosen.numel() and (int(chosen.min()) < 0 or int(chosen.max()) >= limit):
        bad = next(int(i) for i in chosen.flatten() if not 0 <= i < limit)
        raise InterventionError(f"{what} {bad} out of range 0..{limit - 1}")
    return int(chosen) if chosen.ndim == 0 else chosen


def _apply(edit: Intervention, value: Tensor, dims: Dims) -> Tensor:
    """``value`` (TransformerLens layout, batch first) with ``edit`` applied, out of place (autograd-safe)."""
    per_head, head_first = _LAYOUT[edit.kind]
    runs = _selector(edit.run, "run", value.shape[0])
    pos = _selector(edit.position, "position", value.shape[2 if head_first else 1])
    head = _selector(edit.head if per_head else None, "head", dims.n_head)
    if head_first:  # attention rows: (batch, head, query, key)
        index: tuple[int | slice | Tensor, ...] = (runs, head, pos)
    elif per_head:
        index = (runs, pos, head)
    else:
        index = (runs, pos)
    target = value[index]
    new = edit.value
    if callable(new):
        raise InterventionError(f"a function is a value only for mode 'apply', not {edit.mode!r}")
    if isinstance(new, Tensor):
        new = new.to(dtype=value.dtype, device=value.device)
        if head_first and isinstance(edit.position, int) and new.shape[-1] == edit.position + 1:
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
        raise InterventionError(f"unknown intervention mode {edit.mode!r}; expected replace, add, scale or apply")
    value = value.clone()
    value[index] = result
    return value


def _joins(layers: int | Sequence[int], batch: int, n_layer: int) -> dict[int, tuple[int, int]]:
    """Block -> (first run, end) of the runs that start there; runs must start in increasing order of block."""
    per_run = [layers] * batch if isinstance(layers, int) else [int(L) for L in layers]
    if len(per_run) != batch:
        raise InterventionError(f"start gives {len(per_run)} layers for a batch of {batch} runs")
    if any(b < a for a, b in itertools.pairwise(per_run)) or not all(0 <= L < n_layer for L in per_run):
        raise InterventionError(f"start layers must be in 0..{n_layer - 1} and in increasing order, got {per_run}")
    joins: dict[int, tuple[int, int]] = {}
    for i, L in enumerate(per_run):
        joins[L] = (joins.get(L, (i, i))[0], i + 1)
    return joins


def run(
    param: ParamSource,
    dims: Dims,
    tokens: Tensor,
    *,
    observe: Iterable[str | Site] | bool = (),
    interventions: Sequence[Intervention] = (),
    logits: bool | Sequence[int] = True,
    start: tuple[int | Sequence[int], Tensor] | None = None,
    grad: bool = False,
) -> ForwardResult:
    """The forward pass on ``tokens`` (batch, n) or (n,), with our own ops.

    ``param(kind, layer)`` gives the weights (heads stacked first), e.g. ``graph.store.stacked``.
    ``observe``: kinds (every layer), sites, or True for everything. ``interventions`` are applied where
    the pass computes their site. ``logits``: True (every position), False (stop after the last block's
    stream), or the positions to unembed. ``start=(layer, stream)`` begins at block ``layer`` from the
    residual stream entering it, (batch, n, d_model), skipping the embedding and the blocks before it. With one
    layer per run, in increasing order, each run joins the batch at its own block (so runs patched at different
    blocks share one batch): at block L the batch holds the runs started so far, a prefix of the whole.
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

    def layernorm(which: str, layer: int | None, x: Tensor, w: Tensor, b: Tensor, hooked: bool = True) -> Tensor:
        site = hooks if hooked else lambda _kind, _layer, value: value
        scale_kind, normalized_kind, out_kind = LAYERNORMS[which]
        scale = site(scale_kind, layer, ops.ln_scale(x, eps))
        normalized = site(normalized_kind, layer, ops.ln_normalize(x, scale))
        return site(out_kind, layer, ops.ln_affine(normalized, w, b))

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
        layers, streams = start
        joins = _joins(layers, streams.shape[0], dims.n_layer)
        first = min(joins)
        x = streams[slice(*joins[first])]
        x = hooks(V.resid_pre, first, x) if first else hooks(V.input_embedding, None, x)
        joins.pop(first)

    for L in range(first, dims.n_layer):
        if first < L:
            if start is not None and L in joins:  # runs that start at this block join the batch
                x = torch.cat([x, streams[slice(*joins[L])]])
            x = hooks(V.resid_pre, L, x)
        # attention: every head at once, (batch, n, n_head, d_head)
        projections = ((V.q, P.W_Q, P.b_Q), (V.k, P.W_K, P.b_K), (V.v, P.W_V, P.b_V))
        if hooks.split(L):  # each head's query, key and value read their own copy of the stream

            def read(kind: str, L: int = L, x: Tensor = x) -> Tensor:
                copy = hooks(SPLIT_INPUTS[kind], L, x.unsqueeze(2).expand(-1, -1, dims.n_head, -1))
                return layernorm("ln1", L, copy, param(P.ln1_w, L), param(P.ln1_b, L), hooked=False)

            q, k, v = (
                hooks(kind, L, ops.head_projection(read(kind), param(w, L), param(b, L), per_head_input=True))
                for kind, w, b in projections
            )
        else:
            ln1 = layernorm("ln1", L, x, param(P.ln1_w, L), param(P.ln1_b, L))
            q, k, v = (hooks(kind, L, ops.head_projection(ln1, param(w, L), param(b, L))) for kind, w, b in projections)
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
        # MLP, position by position; it reads the stream through a view of its own when that is a site
        mlp_in = hooks(MLP_IN, L, x.view_as(x)) if hooks.wants(MLP_IN, L) else x
        ln2 = layernorm("ln2", L, mlp_in, param(P.ln2_w, L), param(P.ln2_b, L))
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
