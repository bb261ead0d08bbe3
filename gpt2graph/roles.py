"""Head roles: which heads attend to the previous token, the first token, themselves, or act as induction heads.

A role is a key position each query position picks out (p-1, 0, p, or the position right after an earlier
occurrence of p's token); a head's score is the mean attention its queries pay to that position, over the
query positions where the role is defined. A score means little on its own (a head attending uniformly
pays 1/(p+1) to every key), so each run also reports the scores of a uniform causal head (``chance``), and a
head is labelled only when its lift ``(score - chance) / (1 - chance)`` reaches :data:`LABEL_THRESHOLD`.

Induction needs repeated tokens. ``induction_probe=r`` appends a random sequence of r tokens twice to the
prompt and scores every role on that sequence, re-running the forward pass with our own ops on the graph's
parameters (:func:`run_ops`), so no model needs to be loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import ops
from .analysis import HeadRole, HeadRoles, Role
from .errors import InterpretError
from .schema import Dims, ParamKind, VectorKind

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["head_roles", "role_scores", "run_ops", "probe_tokens", "OpsRun", "LABEL_THRESHOLD"]

P, V = ParamKind, VectorKind
#: smallest lift over a uniform head that labels a head with its role
LABEL_THRESHOLD = 0.5


@dataclass
class OpsRun:
    """What :func:`run_ops` computed: attention patterns per layer, (n_head, n, n) each, and the logits."""

    patterns: list[Tensor]
    logits: Tensor


def run_ops(param: Callable[..., Tensor], dims: Dims, token_ids: Tensor) -> OpsRun:
    """The forward pass on ``token_ids`` with our own ops, all heads of a layer at once.

    ``param(kind, layer=None, head=None)`` returns a parameter in TransformerLens orientation
    (``graph.param`` does); ``dims`` are the model's dims. The computation is the one
    :mod:`gpt2graph.verify` checks against the model, with the heads stacked on a leading dimension.
    """
    n, H, eps = token_ids.shape[0], dims.n_head, dims.layer_norm_eps

    def heads(kind: str, L: int) -> Tensor:
        return torch.stack([param(kind, L, h) for h in range(H)])

    patterns = []
    with torch.no_grad():
        x = ops.add(ops.lookup(param(P.W_E), token_ids), ops.lookup(param(P.W_pos), torch.arange(n)))
        for L in range(dims.n_layer):
            ln1 = ops.layernorm(x, param(P.ln1_w, L), param(P.ln1_b, L), eps)
            q, k, v = (
                ops.head_projection(ln1, heads(w, L), heads(b, L)[:, None])  # (H, n, d_head)
                for w, b in ((P.W_Q, P.b_Q), (P.W_K, P.b_K), (P.W_V, P.b_V))
            )
            pattern = ops.softmax(ops.causal_scores(q, k))  # (H, n, n)
            patterns.append(pattern)
            z = pattern @ v  # ops.weighted_sum of every query row at once, without broadcasting v per row
            head_out = ops.output_projection(z, heads(P.W_O, L))  # (H, n, d_model)
            x = ops.add(x, ops.sum_heads(head_out.transpose(0, 1), param(P.b_O, L)))
            ln2 = ops.layernorm(x, param(P.ln2_w, L), param(P.ln2_b, L), eps)
            post = ops.gelu(ops.linear(ln2, param(P.W_in, L), param(P.b_in, L)))
            x = ops.add(x, ops.linear(post, param(P.W_out, L), param(P.b_out, L)))
        final = ops.layernorm(x, param(P.ln_final_w), param(P.ln_final_b), eps)
        logits = ops.unembed(final, param(P.W_U))
    return OpsRun(patterns, logits)


def _induction_targets(token_ids: Tensor) -> Tensor:
    """(n, n) bool: key j+1 is a target of query p when j < p holds the same token as p."""
    n = token_ids.shape[0]
    earlier = (token_ids[:, None] == token_ids[None, :]).tril(-1)  # [p, j]: j < p, same token
    targets = torch.zeros(n, n, dtype=torch.bool)
    targets[:, 1:] = earlier[:, :-1]
    return targets


def role_scores(patterns: Tensor, token_ids: Tensor) -> dict[Role, Tensor | None]:
    """Scores of every role for a stack of causal patterns (..., n, n): each a tensor (...,), or None
    where the role is defined at no query position."""
    n = patterns.shape[-1]
    if n < 2:
        return dict.fromkeys(Role)
    rows = patterns[..., 1:, :]  # queries p >= 1
    scores: dict[Role, Tensor | None] = {
        Role.previous_token: patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1),
        Role.first_token: rows[..., 0].mean(-1),
        Role.current_token: patterns.diagonal(dim1=-2, dim2=-1)[..., 1:].mean(-1),
    }
    targets = _induction_targets(token_ids)
    queries = targets.any(-1)
    scores[Role.induction] = (patterns * targets).sum(-1)[..., queries].mean(-1) if bool(queries.any()) else None
    return scores


def _chance(token_ids: Tensor) -> dict[Role, float | None]:
    n = token_ids.shape[0]
    uniform = torch.ones(n, n, dtype=torch.float64).tril() / torch.arange(1, n + 1, dtype=torch.float64)[:, None]
    return {r: None if s is None else float(s) for r, s in role_scores(uniform, token_ids).items()}


def probe_tokens(graph: Graph, length: int, seed: int) -> Tensor:
    """The prompt followed by ``length`` seeded random tokens, twice; checked against the context length."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise InterpretError(f"induction_probe must be a positive number of tokens, got {length!r}")
    prompt = torch.tensor(graph.tokenization.token_ids)
    total = prompt.shape[0] + 2 * length
    if total > graph.dims.n_ctx:
        raise InterpretError(
            f"induction_probe={length}: the prompt ({prompt.shape[0]} tokens) plus the random "
            f"sequence twice is {total} tokens, more than n_ctx = {graph.dims.n_ctx}; use at most "
            f"{(graph.dims.n_ctx - prompt.shape[0]) // 2}"
        )
    generator = torch.Generator().manual_seed(seed)
    random = torch.randint(0, graph.dims.n_vocab, (length,), generator=generator)
    return torch.cat([prompt, random, random])


def _layer_patterns(graph: Graph, token_ids: Tensor | None) -> Iterator[Tensor]:
    """(n_head, n, n) patterns layer by layer: from the captured run, or from re-running on ``token_ids``."""
    if token_ids is None:
        for L in range(graph.dims.n_layer):
            yield graph.hook(V.attn_pattern, L)
    else:
        yield from run_ops(graph.param, graph.dims, token_ids).patterns


def head_roles(graph: Graph, *, induction_probe: int | None = None, probe_seed: int = 0) -> HeadRoles:
    """Role scores of every head on this run, or on the prompt plus a repeated random sequence of
    ``induction_probe`` tokens (seeded by ``probe_seed``).

    Example::

        roles = head_roles(graph, induction_probe=20)
        roles.ranked("induction", 3)   # the three strongest induction heads
    """
    probe = None if induction_probe is None else probe_tokens(graph, induction_probe, probe_seed)
    token_ids = torch.tensor(graph.tokenization.token_ids) if probe is None else probe
    chance = _chance(token_ids)
    heads = []
    for L, patterns in enumerate(_layer_patterns(graph, probe)):
        scores = role_scores(patterns.double(), token_ids)
        for h in range(graph.dims.n_head):
            values = {r: None if s is None else float(s[h]) for r, s in scores.items()}
            heads.append(HeadRole(layer=L, head=h, label=_label(values, chance), **values))
    return HeadRoles(
        source="prompt" if probe is None else "probe",
        token_ids=token_ids.tolist(),
        probe_length=induction_probe,
        probe_seed=None if probe is None else probe_seed,
        chance=chance,
        label_threshold=LABEL_THRESHOLD,
        heads=heads,
    )


def _label(scores: dict[Role, float | None], chance: dict[Role, float | None]) -> Role | None:
    lifts = {
        r: (s - chance[r]) / (1 - chance[r])
        for r, s in scores.items()
        if s is not None and chance[r] is not None and chance[r] < 1
    }
    best = max(lifts, key=lifts.get, default=None)
    return best if best is not None and lifts[best] >= LABEL_THRESHOLD else None
