"""TransformerLens's ``ActivationCache``, both ways.

* :meth:`Graph.cache() <gpt2graph.graph.Graph.cache>` gives a :class:`Cache`: a read-only mapping from every
  TransformerLens hook name of the run to its activation with a batch dimension of 1, shaped as
  TransformerLens shapes it (``blocks.L.hook_resid_post`` of every block included), so code written against
  ``run_with_cache`` reads a graph unchanged.
* :func:`from_cache` turns an ``ActivationCache`` recorded without weight processing, together with its model
  (a ``TransformerBridge``, or the ``GPT2LMHeadModel`` it wraps) and the token ids, into a graph: the graph
  captures its own run of the same tokens, and every activation the cache holds is checked against it, so a
  cache recorded with processed weights (``fold_ln``, centring) or with hooks that edited activations is
  refused, naming the first hook that differs.

Example::

    logits, cache = bridge.run_with_cache(tokens)      # bridge.enable_compatibility_mode(no_processing=True)
    graph = gpt2graph.from_cache(cache, tokens)          # the model is cache.model
    graph.cache()["blocks.0.attn.hook_pattern"]          # (1, n_head, n, n), as cache[...] is
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import Gpt2GraphError

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["Cache", "from_cache", "CacheMismatchError", "ATOL", "RTOL"]

#: how far a cache's activation may be from the graph's own capture: absolute, plus relative to the largest
#: magnitude of that activation (the verification's tolerances)
ATOL, RTOL = 1e-4, 1e-5


class CacheMismatchError(Gpt2GraphError, ValueError):
    """An activation cache that is not the run of its model on its tokens."""


class Cache(Mapping[str, Tensor]):
    """Every hooked activation of a graph's run, by TransformerLens hook name, batched (batch size 1).

    Values come from the graph: captured ones as stored, derived ones (attention scores and patterns, each
    head's result, LayerNorm scales and normalised vectors) computed on first access and kept."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._sites = graph.topology.hooks()
        self._values: dict[str, Tensor] = {}

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._values:
            if name not in self._sites:
                raise KeyError(f"no hook {name!r} in this run's cache ({len(self)} hooks, e.g. {next(iter(self))!r})")
            self._values[name] = self.graph.hook(*self._sites[name])[None]
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sites)

    def __len__(self) -> int:
        return len(self._sites)

    def __repr__(self) -> str:
        d = self.graph.dims
        return (
            f"<Cache: {len(self)} hooks of {self.graph.model.name}, {self.graph.n_tokens} tokens, "
            f"{d.n_layer} layers x {d.n_head} heads; batch size 1>"
        )


def from_cache(cache: Any, tokens: Any, *, model: Any = None, batch: int = 0) -> Graph:
    """The graph of the run an ``ActivationCache`` recorded, checked against it.

    ``tokens``: the token ids the cache was recorded on (a list, or a tensor of shape (n,) or (batch, n); with
    ``bridge.to_tokens(text)`` they start with the BOS token). ``model``: the model it was recorded with
    (default: ``cache.model``), a TransformerBridge booted without weight processing or a ``GPT2LMHeadModel``.
    ``batch``: which sequence of a batched cache. Raises :class:`CacheMismatchError` when an activation of the
    cache differs from the graph's own capture by more than the verification's tolerance."""
    from .builder import build

    model = model if model is not None else getattr(cache, "model", None)
    if model is None:
        raise CacheMismatchError("the cache does not say its model: pass the model it was recorded with (model=...)")
    ids = _sequence(tokens, batch)
    graph = build(ids, model=model)
    ours = graph.cache()
    compared = 0
    for name in cache.keys():  # noqa: SIM118 (an ActivationCache is not a Mapping: its keys() is the API)
        if name not in ours:
            continue  # hooks of the bridge's own modules (hook_in, hook_out, ...) are not activations of ours
        theirs = _unbatched(cache[name], batch, getattr(cache, "has_batch_dim", True))
        own = ours[name][0]
        if tuple(theirs.shape) != tuple(own.shape):
            raise CacheMismatchError(
                f"{name}: the cache holds shape {tuple(theirs.shape)}, the run of {len(ids)} tokens has "
                f"{tuple(own.shape)}: were these the tokens it was recorded on?"
            )
        _check_close(name, theirs, own)
        compared += 1
    if not compared:
        raise CacheMismatchError("the cache holds none of the run's hooks (recorded with a names_filter?)")
    return graph


def _sequence(tokens: Any, batch: int) -> list[int]:
    t = torch.as_tensor(tokens) if not isinstance(tokens, Tensor) else tokens
    if t.ndim == 2:
        if not 0 <= batch < t.shape[0]:
            raise CacheMismatchError(f"batch {batch} is out of range for {t.shape[0]} sequences of tokens")
        t = t[batch]
    if t.ndim != 1 or t.dtype not in (torch.int64, torch.int32):
        raise CacheMismatchError(f"tokens must be token ids of shape (n,) or (batch, n), got {tuple(t.shape)}")
    return [int(i) for i in t]


def _unbatched(t: Tensor, batch: int, batched: bool) -> Tensor:
    if not batched:
        return t
    if not 0 <= batch < t.shape[0]:
        raise CacheMismatchError(f"batch {batch} is out of range for a cache of {t.shape[0]} sequences")
    return t[batch]


def _check_close(name: str, theirs: Tensor, own: Tensor) -> None:
    theirs, own = theirs.detach().to(torch.float64).cpu(), own.detach().to(torch.float64).cpu()
    finite = torch.isfinite(own)
    if not torch.equal(finite, torch.isfinite(theirs)):
        raise CacheMismatchError(f"{name}: masked (infinite) entries differ from the run's: not a causal GPT-2 run")
    diff = float((theirs - own).abs().masked_fill(~finite, 0).max()) if own.numel() else 0.0
    scale = float(own.abs().masked_fill(~finite, 0).max()) if own.numel() else 0.0
    if diff > ATOL + RTOL * scale:
        raise CacheMismatchError(
            f"{name} differs from the model's own run by up to {diff:.3g}: was the cache recorded with processed "
            "weights (fold_ln, centring) or with hooks that changed activations? Record it from a bridge booted "
            "with enable_compatibility_mode(no_processing=True)"
        )
