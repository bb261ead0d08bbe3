"""Decoding the next token from the logits, step by step, with the distribution after every step.

The steps are applied in the order Hugging Face's ``generate`` applies them: divide the logits by the
temperature, keep the top k (every token tied with the k-th logit stays), keep the nucleus (the most probable
tokens, most probable first, while the mass before them is below p: the smallest set whose mass reaches p),
then take the most probable token (greedy) or draw one with a seeded generator. Probabilities are computed
in float64 from the model's logits, so the tables are exact to the printed digits.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .analysis import DecodingResult, DecodingStep, DecodingStepKind, TokenProb
from .errors import InterpretError
from .targets import resolve_position

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["decode_next", "apply_temperature", "apply_top_k", "apply_top_p", "check_options"]

S = DecodingStepKind


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Sharpen (< 1) or flatten (> 1) the distribution: logits / T."""
    return logits / temperature


def apply_top_k(logits: Tensor, k: int) -> Tensor:
    """Logits outside the k largest set to -inf; ties with the k-th largest are kept."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: Tensor, p: float) -> Tensor:
    """Logits outside the nucleus set to -inf: tokens, most probable first, are kept while the probability
    mass before them is below ``p``; the most probable token is always kept, and p = 1 keeps every token
    (rounding in the cumulative sum must not drop the tail)."""
    if p >= 1:
        return logits
    probs = torch.softmax(logits, dim=-1)
    order = torch.sort(probs, dim=-1, descending=True, stable=True).indices
    sorted_probs = probs.gather(-1, order)
    before = sorted_probs.cumsum(-1) - sorted_probs
    drop_sorted = before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def check_options(temperature: float, top_k: int | None, top_p: float | None, seed: int | None) -> None:
    """Raise :class:`InterpretError` with a clear message for any option out of its range."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise InterpretError(f"temperature must be a finite number > 0, got {temperature!r} (for the most "
                             "probable token, decode greedily: leave the seed unset)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InterpretError(f"top-k must be an integer >= 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0 < top_p <= 1):
        raise InterpretError(f"top-p must be in (0, 1], got {top_p!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InterpretError(f"seed must be an integer (or None for greedy decoding), got {seed!r}")


def _step(graph: Graph, kind: DecodingStepKind, value: float | None, logits: Tensor, n: int) -> DecodingStep:
    probs = torch.softmax(logits, dim=-1)
    kept = int(torch.isfinite(logits).sum())  # filtered tokens have logit -inf
    top = torch.topk(probs, min(n, kept))
    return DecodingStep(kind=kind, value=value, kept=kept, candidates=[
        TokenProb(id=i, token=graph.decode_token(i), prob=min(p, 1.0), logit=float(logits[i]))
        for i, p in zip(top.indices.tolist(), top.values.tolist())])


def decode_next(graph: Graph, *, position: int = -1, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, seed: int | None = None, candidates: int = 5) -> DecodingResult:
    """Decode the token after ``position``: temperature, top-k, top-p, then greedy (``seed=None``) or a
    sample drawn with ``torch.Generator().manual_seed(seed)``. Each step's table keeps ``candidates`` rows.

    Example::

        d = decode_next(graph, temperature=0.7, top_p=0.9, seed=0)
        [s.kept for s in d.steps], d.chosen.token
    """
    check_options(temperature, top_k, top_p, seed)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise InterpretError(f"candidates must be a positive integer, got {candidates!r}")
    p = resolve_position(graph, position)
    logits = graph.logits[p].double()
    steps = [_step(graph, S.softmax, None, logits, candidates)]
    logits = apply_temperature(logits, float(temperature))
    steps.append(_step(graph, S.temperature, float(temperature), logits, candidates))
    if top_k is not None:
        logits = apply_top_k(logits, top_k)
        steps.append(_step(graph, S.top_k, float(top_k), logits, candidates))
    if top_p is not None:
        logits = apply_top_p(logits, float(top_p))
        steps.append(_step(graph, S.top_p, float(top_p), logits, candidates))
    probs = torch.softmax(logits, dim=-1)
    if seed is None:
        chosen = int(probs.argmax())
    else:
        chosen = int(torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed)))
    return DecodingResult(
        position=p, temperature=float(temperature), top_k=top_k, top_p=None if top_p is None else float(top_p),
        greedy=seed is None, seed=seed, steps=steps,
        chosen=TokenProb(id=chosen, token=graph.decode_token(chosen), prob=min(float(probs[chosen]), 1.0),
                         logit=float(logits[chosen])),
    )
