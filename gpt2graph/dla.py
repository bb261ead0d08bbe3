"""Direct logit attribution: how much each component writes, directly, into one logit.

The final residual stream at a position is a sum of components: the token and positional embeddings, every
head's output z^h W_O^h, every b_O, every MLP's mlp_post W_out, every b_out. The final LayerNorm is linear
except for its scale s = sqrt(var(x) + eps); freezing s at the value it has on this run makes the logit
exactly ``sum_c (c - mean(c)) / s * w . W_U[:, t]  +  b . W_U[:, t]``, one term per component plus the bias
term of ln_final. Those terms are the attributions; they are checked to add up to the model's own logit.
Centring is linear, so it is applied to the direction (once) rather than to every component.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import ops
from .errors import Gpt2GraphError
from .results import Attribution, ComponentKind, DLAResult
from .schema import ParamKind, VectorKind
from .targets import resolve_pair, resolve_position
from .topology import Key

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["direct_logit_attribution", "AttributionError", "TOLERANCE"]

V, P, C = VectorKind, ParamKind, ComponentKind
#: largest accepted |model logit - sum of contributions|
TOLERANCE = 1e-4


class AttributionError(Gpt2GraphError, ArithmeticError):
    """The contributions do not add up to the model's logit: the captured run and the weights disagree."""


def _components(graph: Graph, p: int) -> tuple[list[tuple[str, ComponentKind, int | None, int | None]], Tensor]:
    """Every term of the final residual stream at position ``p``: (id, kind, layer, head) and a
    (n_components, d_model) float64 matrix, in forward order."""
    top, H = graph.topology, graph.dims.n_head
    labels: list[tuple[str, ComponentKind, int | None, int | None]] = [
        (top.vector_id(Key(V.token_embedding, None, None, p)), C.token_embedding, None, None),
        (top.vector_id(Key(V.pos_embedding, None, None, p)), C.pos_embedding, None, None),
    ]
    rows = [graph.hook(V.token_embedding)[p], graph.hook(V.pos_embedding)[p]]
    for L in range(graph.dims.n_layer):
        labels += [(top.vector_id(Key(V.head_out, L, h, p)), C.head_out, L, h) for h in range(H)]
        # z^h W_O^h of every head at this position only, (n_head, d_model)
        rows += list(ops.output_projection(graph.hook(V.z, L)[p], graph.store.stacked(P.W_O, L)))
        b_out = graph.param(P.b_out, L)
        labels += [
            (top.param_id(Key(P.b_O, L)), C.b_O, L, None),
            (top.vector_id(Key(V.mlp_out, L, None, p)), C.mlp_out, L, None),
            (top.param_id(Key(P.b_out, L)), C.b_out, L, None),
        ]
        rows += [graph.param(P.b_O, L), graph.hook(V.mlp_out, L)[p] - b_out, b_out]
    return labels, torch.stack([r.double() for r in rows])


def direct_logit_attribution(
    graph: Graph, *, position: int = -1, token: int | str | None = None, contrast: int | str | None = None
) -> DLAResult:
    """Attribute the logit of ``token`` (default: the model's prediction) at ``position`` (default: the last)
    to every component, or the logit difference ``token - contrast`` when ``contrast`` is given.

    Example::

        dla = direct_logit_attribution(graph, token=" Paris", contrast=" London")
        dla.top(3)   # the three components that move the difference most
    """
    p = resolve_position(graph, position)
    logits = graph.store.logits(p)
    t, u = resolve_pair(graph, p, token, contrast)
    W_U = graph.param(P.W_U)
    direction = W_U[:, t].double() if u is None else W_U[:, t].double() - W_U[:, u].double()
    model_value = float(logits[t]) - (0.0 if u is None else float(logits[u]))

    final = graph.hook(V.resid_post, graph.dims.n_layer - 1)[p].double()
    scale = float(torch.sqrt(final.var(correction=0) + graph.dims.layer_norm_eps))
    readout = graph.param(P.ln_final_w).double() * direction
    readout = (readout - readout.mean()) / scale  # (c - mean c) . r  ==  c . (r - mean r)
    labels, rows = _components(graph, p)
    values = (rows @ readout).tolist()
    values.append(float(graph.param(P.ln_final_b).double() @ direction))
    labels.append((graph.topology.param_id(Key(P.ln_final_b)), C.ln_final_b, None, None))

    total = sum(values)
    error = model_value - total
    what = f"logit of token {t}" if u is None else f"logit difference {t} - {u}"
    if not abs(error) <= TOLERANCE:
        raise AttributionError(
            f"direct logit attribution at position {p}: the contributions sum to {total:.6f} "
            f"but the model's {what} is {model_value:.6f} (error {error:.2e} > {TOLERANCE:g})"
        )
    return DLAResult(
        position=p,
        token_id=t,
        token=graph.decode_token(t),
        contrast_id=u,
        contrast=None if u is None else graph.decode_token(u),
        metric="logit" if u is None else "logit_difference",
        ln_scale=scale,
        model_value=model_value,
        total=total,
        residual_error=error,
        tolerance=TOLERANCE,
        contributions=[
            Attribution(component=c, kind=k, layer=L, head=h, contribution=v) for (c, k, L, h), v in zip(labels, values)
        ],
    )
