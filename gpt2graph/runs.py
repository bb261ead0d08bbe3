"""Two runs compared vector by vector (patching, counterfactuals from another run, means over runs) must come
from one model and, for patching, have as many tokens: checked here, once, with errors that say what differs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import RunMismatchError

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["check_same_model", "check_same_length"]


def _describe(graph: Graph) -> str:
    w = graph.model.weights
    seed = f", seed {w.seed}" if w.seed is not None else ""
    return f"{graph.model.name} ({w.status} weights{seed})"


def check_same_model(graph: Graph, other: Graph, what: str) -> None:
    """Refuse ``other`` (named ``what`` in the message) unless it ran the same model as ``graph``: the same
    dims and every parameter equal (compared, not assumed from the name: two random initialisations share one)."""
    if other.dims != graph.dims:
        diff = [
            f"{k} {getattr(other.dims, k)} vs {v}"
            for k, v in graph.dims.model_dump().items()
            if getattr(other.dims, k) != v
        ]
        raise RunMismatchError(
            f"{what} is a run of another model: {_describe(other)} vs {_describe(graph)} ({', '.join(diff)})"
        )
    mine, theirs = graph.store.params, other.store.params
    for name, tensor in mine.items():
        if not (_same_memory(theirs[name], tensor) or torch.equal(theirs[name], tensor)):
            raise RunMismatchError(
                f"{what} is a run of another model: {_describe(other)} vs {_describe(graph)}; the dims agree but "
                f"parameter {name} differs"
            )


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two views of the same numbers (runs built from one loaded model share its parameters)."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype


def check_same_length(graph: Graph, other: Graph, what: str) -> None:
    """Refuse ``other`` unless it has as many tokens as ``graph``, saying by how much it differs."""
    n, m = graph.n_tokens, other.n_tokens
    if n != m:
        more = f"{m - n} more" if m > n else f"{n - m} fewer"
        raise RunMismatchError(
            f"{what} has {m} tokens, {more} than the {n} of this run: runs are compared position by position, so "
            f"their prompts must have as many tokens ({other.tokenization.tokens_visible} vs "
            f"{graph.tokenization.tokens_visible})"
        )
