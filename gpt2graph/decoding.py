"""Decoding the next token from the logits, step by step, with the distribution after every step.

The steps are the graph's decoding stage (:mod:`gpt2graph.ops`: ``temperature``, ``top_k``, ``top_p``,
``softmax``, ``sample``), applied in the order Hugging Face's ``generate`` applies them: divide the logits by
the temperature, keep the top k (every token tied with the k-th logit stays), keep the nucleus (the smallest
set of most probable tokens whose mass reaches p), then take the most probable token (greedy) or draw one with
a seeded generator. Probabilities are computed in float64 from the model's logits, so the tables are exact to
the printed digits, and the decoding nodes' values are computed by the same :func:`decode_steps`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import ops
from .errors import InterpretError
from .results import DecodingResult, DecodingStep, DecodingStepKind, TokenProb
from .schema import DecodingSettings, VectorKind
from .targets import check_seed, resolve_position
from .topology import DECODE_KINDS

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["decode_next", "decode_step", "decode_steps", "settings", "check_options"]

S, V = DecodingStepKind, VectorKind


def decode_step(kind: str, x: Tensor, decoding: DecodingSettings) -> Tensor:
    """One operation of the decoding stage: the vector of ``kind`` from the one before it (the logits for
    the first), in float64."""
    if kind == V.scaled_logits:
        return ops.temperature(x.double(), decoding.temperature)
    if kind == V.top_k_logits:
        return ops.top_k(x, decoding.top_k)
    if kind == V.top_p_logits:
        return ops.top_p(x, decoding.top_p)
    if kind == V.probs:
        return ops.softmax(x)
    if kind == V.next_token:
        return ops.sample(x, decoding.seed)
    raise ValueError(f"{kind!r} is not a decoding kind; expected one of {', '.join(DECODE_KINDS)}")


def decode_steps(logits: Tensor, decoding: DecodingSettings, until: str = V.next_token) -> dict[str, Tensor]:
    """The decoding vectors of ``logits`` (..., n_vocab) by kind, up to ``until``: scaled_logits,
    top_k_logits, top_p_logits (filtered tokens at -inf), probs, next_token (..., 1)."""
    out: dict[str, Tensor] = {}
    x = logits
    for kind in DECODE_KINDS:
        out[kind] = x = decode_step(kind, x, decoding)
        if kind == until:
            break
    return out


def settings(
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, seed: int | None = None
) -> DecodingSettings:
    """Checked :class:`DecodingSettings` (an option out of range is an :class:`InterpretError` saying which)."""
    check_options(temperature, top_k, top_p, seed)
    return DecodingSettings(
        temperature=float(temperature), top_k=top_k, top_p=None if top_p is None else float(top_p), seed=seed
    )


def check_options(temperature: float, top_k: int | None, top_p: float | None, seed: int | None) -> None:
    """Raise :class:`InterpretError` with a clear message for any option out of its range."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise InterpretError(
            f"temperature must be a finite number > 0, got {temperature!r} (for the most "
            "probable token, decode greedily: leave the seed unset)"
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InterpretError(f"top-k must be an integer >= 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise InterpretError(f"top-p must be in (0, 1], got {top_p!r}")
    if seed is not None:
        check_seed(seed)


def _step(graph: Graph, kind: DecodingStepKind, value: float | None, logits: Tensor, n: int) -> DecodingStep:
    probs = torch.softmax(logits, dim=-1)
    kept = int(torch.isfinite(logits).sum())  # filtered tokens have logit -inf
    top = torch.topk(probs, min(n, kept))
    return DecodingStep(
        kind=kind,
        value=value,
        kept=kept,
        candidates=[
            TokenProb(id=i, token=graph.decode_token(i), prob=min(p, 1.0), logit=float(logits[i]))
            for i, p in zip(top.indices.tolist(), top.values.tolist())
        ],
    )


def decode_next(
    graph: Graph,
    *,
    position: int = -1,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    candidates: int = 5,
) -> DecodingResult:
    """Decode the token after ``position``: temperature, top-k, top-p, then greedy (``seed=None``) or a
    sample drawn with ``torch.Generator().manual_seed(seed)``. Each step's table keeps ``candidates`` rows.

    Example::

        d = decode_next(graph, temperature=0.7, top_p=0.9, seed=0)
        [s.kept for s in d.steps], d.chosen.token
    """
    decoding = settings(temperature, top_k, top_p, seed)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise InterpretError(f"candidates must be a positive integer, got {candidates!r}")
    p = resolve_position(graph, position)
    logits = graph.store.logits(p)
    vectors = decode_steps(logits, decoding)
    steps = [
        _step(graph, S.softmax, None, logits.double(), candidates),
        _step(graph, S.temperature, decoding.temperature, vectors[V.scaled_logits], candidates),
    ]
    if top_k is not None:
        steps.append(_step(graph, S.top_k, float(top_k), vectors[V.top_k_logits], candidates))
    if top_p is not None:
        steps.append(_step(graph, S.top_p, decoding.top_p, vectors[V.top_p_logits], candidates))
    final, probs = vectors[V.top_p_logits], vectors[V.probs]
    chosen = int(vectors[V.next_token][0])
    return DecodingResult(
        position=p,
        temperature=decoding.temperature,
        top_k=top_k,
        top_p=decoding.top_p,
        greedy=seed is None,
        seed=seed,
        steps=steps,
        chosen=TokenProb(
            id=chosen, token=graph.decode_token(chosen), prob=min(float(probs[chosen]), 1.0), logit=float(final[chosen])
        ),
    )
