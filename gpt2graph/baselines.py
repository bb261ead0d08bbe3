"""Means to ablate with: the mean over the positions of one run, and means over a set of prompts.

A mean over prompts comes from any *mean source*: an object with
``mean(kind, layer, head=None, position=None) -> Tensor`` giving the mean vector of one kind of node (layer and
head as in the graph's keys; position None: over every position). Corpus statistics saved as ``*.ggc`` files
(``gpt2graph.load_corpus``) are one; :class:`GraphMeans`, the mean over a list of graphs of one model, is
another, needing nothing but the graphs. A source that also has ``check_model(graph)`` is asked to refuse a
run of another model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor

from .errors import InterpretError
from .runs import check_same_model
from .schema import VectorKind
from .topology import VECTOR_SPECS

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["MeanSource", "GraphMeans", "position_mean", "mean_source", "describe"]

V = VectorKind


@runtime_checkable
class MeanSource(Protocol):
    """Mean activations over a set of prompts."""

    def mean(self, kind: str, layer: int | None, head: int | None = None, position: int | None = None) -> Tensor: ...


def _check_not_a_row(kind: str) -> None:
    if VECTOR_SPECS[kind].head_first:
        raise InterpretError(
            f"{kind} has no mean over positions: a query's attention row has one entry per key it sees, so rows "
            "at different positions have different lengths; give a mean at one position, or ablate with 'zero'"
        )


def _vectors(graph: Graph, kind: str, layer: int | None, head: int | None) -> Tensor:
    """Every position's vector of one kind, layer and head: (n, width); attention rows padded to (n, n)."""
    whole = graph.hook(kind, layer)
    spec = VECTOR_SPECS[kind]
    if spec.head_first:
        return whole[head]  # (n queries, n keys), a row per position, zero (or -inf) past the query
    return whole[:, head] if spec.per_head else whole


def position_mean(graph: Graph, kind: str, layer: int | None, head: int | None = None) -> Tensor:
    """The mean over the positions of ``graph``'s run of the vectors of one kind, layer and head."""
    _check_not_a_row(kind)
    return _vectors(graph, kind, layer, head).mean(0)


class GraphMeans:
    """The mean of each vector over a set of runs of one model (graphs, e.g. built from a list of prompts).

    At a position, the mean is over the runs long enough to have it; with ``position=None``, over every position
    of every run.

    Example::

        means = GraphMeans([gpt2graph.build(p, model=m) for p in prompts])
        graph.intervene({"blocks.0.hook_mlp_out[3]": means})
    """

    def __init__(self, graphs: Sequence[Graph]):
        graphs = list(graphs)
        if not graphs:
            raise InterpretError("GraphMeans needs at least one graph")
        for i, g in enumerate(graphs[1:], start=1):
            check_same_model(graphs[0], g, f"graph {i} of the mean")
        self.graphs = graphs

    def __repr__(self) -> str:
        return f"mean over {len(self.graphs)} prompts"

    def mean(self, kind: str, layer: int | None, head: int | None = None, position: int | None = None) -> Tensor:
        kind = str(kind)
        if kind not in VECTOR_SPECS:
            raise InterpretError(f"unknown vector kind {kind!r}")
        if position is None:
            _check_not_a_row(kind)
            return torch.cat([_vectors(g, kind, layer, head) for g in self.graphs]).mean(0)
        rows = [_vectors(g, kind, layer, head)[position] for g in self.graphs if position < g.n_tokens]
        if not rows:
            longest = max(g.n_tokens for g in self.graphs)
            raise InterpretError(f"no graph of this mean has position {position} (the longest has {longest} tokens)")
        if VECTOR_SPECS[kind].head_first:
            rows = [r[: position + 1] for r in rows]
        return torch.stack(rows).mean(0)

    def check_model(self, graph: Graph) -> None:
        """Refuse to ablate ``graph`` with means of another model's runs."""
        check_same_model(graph, self.graphs[0], "the graphs of this mean")


def mean_source(spec: object, graph: Graph) -> MeanSource | None:
    """``spec`` as a mean source for ``graph``'s vectors: itself when it has a ``mean`` method, corpus statistics
    loaded from a ``*.ggc`` path, or None when it is neither. A source that can tell (``check_model``) first
    refuses a run of another model."""
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and spec.endswith(".ggc")):
        try:
            from .corpus import load_corpus
        except ImportError:
            raise InterpretError(
                f"{spec}: corpus statistics (*.ggc) are read by gpt2graph.load_corpus, which this installation "
                "lacks; give a GraphMeans of graphs instead"
            ) from None
        spec = load_corpus(Path(spec))
    if isinstance(spec, Tensor) or not isinstance(spec, MeanSource):  # a tensor has a .mean, of another kind
        return None
    check = getattr(spec, "check_model", None)
    if callable(check):
        check(graph)
    return spec


def describe(source: MeanSource) -> str:
    """A short text naming a mean source, for the record of a counterfactual run."""
    text = repr(source)
    return text if len(text) <= 200 else text[:197] + "..."
