"""Head roles: which heads attend to the previous token, the first token, themselves, or act as induction heads.

A role is a key position each query position picks out (p-1, 0, p, or the position right after an earlier
occurrence of p's token); a head's score is the mean attention its queries pay to that position, over the
query positions where the role is defined. A score means little on its own (a head attending uniformly
pays 1/(p+1) to every key), so each run also reports the scores of a uniform causal head (``chance``), and a
head is labelled only when its lift ``(score - chance) / (1 - chance)`` reaches :data:`LABEL_THRESHOLD`.

Induction needs repeated tokens. ``induction_probe=r`` appends a random sequence of r tokens twice to the
prompt and scores every role on that sequence, re-running the forward pass on the graph's parameters
through the forward executor (:func:`gpt2graph.forward.run`), so no model needs to be loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import forward
from .errors import InterpretError
from .results import HeadRole, HeadRoles, Role
from .schema import VectorKind

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["head_roles", "role_scores", "probe_tokens", "LABEL_THRESHOLD"]

V = VectorKind
#: smallest lift over a uniform head that labels a head with its role
LABEL_THRESHOLD = 0.5


def _induction_targets(token_ids: Tensor) -> Tensor:
    """(n, n) bool: key j+1 is a target of query p when j < p holds the same token as p."""
    n = token_ids.shape[0]
    earlier = (token_ids[:, None] == token_ids[None, :]).tril(-1)  # [p, j]: j < p, same token
    targets = torch.zeros(n, n, dtype=torch.bool)
    targets[:, 1:] = earlier[:, :-1]
    return targets


def role_scores(patterns: Tensor, token_ids: Tensor, targets: Tensor | None = None) -> dict[Role, Tensor | None]:
    """Scores of every role for a stack of causal patterns (..., n, n): each a tensor (...,) in float64, or
    None where the role is defined at no query position. Only the entries a role reads are widened to
    float64, so a layer of a long run costs about one pass over its patterns. ``targets``:
    ``_induction_targets(token_ids)``, when the caller scores many stacks on the same tokens."""
    n = patterns.shape[-1]
    if n < 2:
        return dict.fromkeys(Role)
    rows = patterns[..., 1:, :]  # queries p >= 1
    scores: dict[Role, Tensor | None] = {
        Role.previous_token: patterns.diagonal(offset=-1, dim1=-2, dim2=-1).double().mean(-1),
        Role.first_token: rows[..., 0].double().mean(-1),
        Role.current_token: patterns.diagonal(dim1=-2, dim2=-1)[..., 1:].double().mean(-1),
    }
    targets = _induction_targets(token_ids) if targets is None else targets
    queries = targets.any(-1)
    if bool(queries.any()):
        # per query, the attention paid to its targets: a row-by-row dot product with the target mask
        paid = torch.einsum("...pj,pj->...p", patterns[..., queries, :], targets[queries].to(patterns.dtype))
        scores[Role.induction] = paid.double().mean(-1)
    else:
        scores[Role.induction] = None
    return scores


def _chance(token_ids: Tensor) -> dict[Role, float | None]:
    n = token_ids.shape[0]
    uniform = torch.ones(n, n, dtype=torch.float64).tril() / torch.arange(1, n + 1, dtype=torch.float64)[:, None]
    return {r: None if s is None else float(s) for r, s in role_scores(uniform, token_ids).items()}


def probe_tokens(graph: Graph, length: int, seed: int) -> Tensor:
    """The prompt followed by ``length`` seeded random tokens, twice; checked against the context length."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise InterpretError(
            f"{{induction_probe}} must be a positive number of tokens, got {length!r}",
            arguments={"induction_probe": None},
        )
    prompt = torch.tensor(graph.tokenization.token_ids)
    total = prompt.shape[0] + 2 * length
    if total > graph.dims.n_ctx:
        raise InterpretError(
            f"{{induction_probe}}: the prompt ({prompt.shape[0]} tokens) plus the random "
            f"sequence twice is {total} tokens, more than n_ctx = {graph.dims.n_ctx}; use at most "
            f"{(graph.dims.n_ctx - prompt.shape[0]) // 2}",
            arguments={"induction_probe": length},
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
        with torch.no_grad():
            run = forward.run(graph.store.stacked, graph.dims, token_ids, observe=[V.attn_pattern], logits=False)
        for L in range(graph.dims.n_layer):
            yield run[(V.attn_pattern, L)][0]


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
    targets = _induction_targets(token_ids)
    heads = []
    for L, patterns in enumerate(_layer_patterns(graph, probe)):
        scores = role_scores(patterns, token_ids, targets)
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
        r: (s - c) / (1 - c) for r, s in scores.items() if s is not None and (c := chance[r]) is not None and c < 1
    }
    best = max(lifts, key=lambda r: lifts[r], default=None)
    return best if best is not None and lifts[best] >= LABEL_THRESHOLD else None
