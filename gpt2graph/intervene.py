"""Counterfactual runs: the same model on the same tokens, with some vectors replaced.

``graph.intervene({node_id: value, ...})`` re-runs the model through the forward executor with each named
vector replaced, so that everything downstream of it sees the new value, and returns the result as a new
:class:`~gpt2graph.graph.Graph`: a run of its own, which can be verified, saved, rendered, patched or intervened
on again. A value is one of

* a tensor of the node's shape;
* ``"zero"``: zero ablation;
* ``"mean"``: the mean of that kind of vector (same layer and head) over the positions of this run;
* another graph: the same node in another run of the same model on as many tokens (patching);
* a mean over a set of prompts: a mean source (see :mod:`gpt2graph.baselines`), or the path of corpus
  statistics (``*.ggc``).

The new run's header records every replaced node and where its value came from
(:class:`~gpt2graph.causal.Counterfactual`); the values themselves are kept with the run, so it can be
re-executed. A derived vector that was replaced (an attention pattern, a head's output, a LayerNorm scale) can no
longer be derived from what it reads, so its layer is stored too (:func:`stored_derived`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from . import forward
from .baselines import describe, mean_source, position_mean
from .causal import Baseline, Counterfactual, InterventionRecord
from .errors import InterpretError
from .forward import Intervention, InterventionError, Site
from .runs import check_same_length, check_same_model
from .schema import VectorKind
from .topology import DECODE_KINDS, VECTOR_SPECS, Key, Topology
from .values import DERIVED_KINDS, STORED_KINDS, TOKENS, Values

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["intervene", "execute", "executor_interventions", "stored_derived", "node_key"]

V = VectorKind


def node_key(graph: Graph, node_id: str) -> Key:
    """The key of a vector node the forward pass computes, or an error saying why ``node_id`` cannot be changed."""
    if not isinstance(node_id, str):
        raise InterventionError(f"node ids are strings, got {node_id!r}")
    node_type, key = graph.topology.parse(node_id)
    if node_type == "parameter":
        raise InterventionError(f"{node_id!r} is a parameter: interventions replace vectors of a run, not weights")
    if node_type == "operation":
        raise InterventionError(f"{node_id!r} is an operation; intervene on the vector it produces: {node_id[3:]!r}")
    instead = graph.topology.vector_id
    if key.kind == V.token:
        raise InterventionError(
            f"{node_id!r} is a token id, which no vector operation reads as a number: intervene on its embedding "
            f"{instead(Key(V.token_embedding, None, None, key.position))}, or build the other prompt and patch from it"
        )
    if key.kind in DECODE_KINDS:
        raise InterventionError(
            f"{node_id!r} belongs to the decoding stage, derived from the logits by the decoding settings: "
            f"intervene on {instead(Key(V.logits, None, None, key.position))}, or choose settings with with_decoding()"
        )
    return key


def _value(graph: Graph, key: Key, spec: Any) -> tuple[Tensor, Baseline, str | None]:
    """The new value of the node at ``key`` from what the user gave, with its baseline and source."""
    kind, layer, head, position = key
    if isinstance(spec, Tensor):
        return spec, Baseline.value, None
    if isinstance(spec, str) and spec == "zero":
        return torch.zeros_like(graph.vector_value(key)), Baseline.zero, None
    if isinstance(spec, str) and spec == "mean":
        return position_mean(graph, kind, layer, head), Baseline.mean, None
    from .graph import Graph

    if isinstance(spec, Graph):
        check_same_model(graph, spec, "the other run")
        check_same_length(graph, spec, "the other run")
        return spec.vector_value(key), Baseline.graph, f"{spec.model.name}: {spec.tokenization.text!r}"
    source = mean_source(spec, graph)
    if source is not None:
        return source.mean(kind, layer, head, position), Baseline.prompts, describe(source)
    raise InterventionError(
        f"cannot intervene with {type(spec).__name__} {spec!r}: give a tensor of the node's shape, 'zero', 'mean', "
        "another graph, a mean source (an object with .mean(kind, layer, head, position)) or a *.ggc path"
    )


def intervene(graph: Graph, changes: Mapping[str, Any]) -> Graph:
    """A counterfactual run of ``graph`` with the vectors named in ``changes`` replaced (see the module docstring).

    Example::

        ablated = graph.intervene({"blocks.1.attn.hook_result[4,0]": "zero"})
        ablated.logits[-1] - graph.logits[-1]    # what head 0 of layer 1 at position 4 contributed
        ablated.verify().ok
    """
    if not isinstance(changes, Mapping) or not changes:
        raise InterventionError("intervene takes a non-empty mapping {node_id: value}")
    records, values = [], []
    for node_id, spec in changes.items():
        key = node_key(graph, node_id)
        current = graph.vector_value(key)
        try:
            new, baseline, source = _value(graph, key, spec)
        except InterpretError as exc:
            raise InterventionError(f"{node_id}: {exc}") from None
        if tuple(new.shape) != tuple(current.shape):
            raise InterventionError(
                f"value of shape {tuple(new.shape)} does not fit {node_id}: a {key.kind} vector has shape "
                f"{tuple(current.shape)}"
            )
        new = new.detach().to(dtype=current.dtype, device=current.device).clone()
        records.append(
            InterventionRecord(
                node=graph.topology.vector_id(key),
                kind=key.kind,
                layer=key.layer,
                head=key.head,
                position=key.position,
                baseline=baseline,
                source=source,
                norm_before=float(current.double().norm()),
                norm_after=float(new.double().norm()),
            )
        )
        values.append(new)
    before = graph.header.counterfactual
    records = [*(before.interventions if before else []), *records]
    values = [*graph.store.interventions, *values]
    counterfactual = Counterfactual(
        base_created=graph.header.created, base_values_sha256=graph.header.values_sha256, interventions=records
    )
    store = graph.store
    tokens = store.activations[TOKENS]
    activations = execute(store, graph.topology, tokens, executor_interventions(records, values))
    header = graph.header.model_copy(
        update={
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "values_sha256": None,
            "analysis": None,
            "patching": [],
            "circuit": None,
            "counterfactual": counterfactual,
        }
    )
    from .graph import Graph

    return Graph(header, Values(activations, store.params, graph.topology, values), graph.vocab)


def executor_interventions(records: Iterable[InterventionRecord], values: Iterable[Tensor]) -> list[Intervention]:
    """The recorded replacements as the forward executor's interventions (every run of a batch)."""
    out = []
    for r, value in zip(records, values):
        key = Key(r.kind, r.layer, r.head, r.position)
        out.append(Intervention(key.kind, key.layer, key.head, key.position, value=value))
    return out


def stored_derived(topology: Topology, sites: Iterable[Site]) -> list[Site]:
    """The derived sites a run intervened at ``sites`` must store: each replaced derived kind, and the derived
    kinds computed from it in turn (a replaced score changes the pattern), found through the topology."""
    out: list[Site] = []
    frontier = [s for s in sites if s[0] in DERIVED_KINDS]
    while frontier:
        kind, layer = frontier.pop()
        if (kind, layer) in out:
            continue
        out.append((kind, layer))
        head = 0 if VECTOR_SPECS[kind].per_head else None
        for c in topology.consumers(Key(kind, layer, head, 0)):
            if c.kind in DERIVED_KINDS:
                frontier.append((c.kind, c.layer))
    return sorted(out, key=lambda s: (str(s[0]), -1 if s[1] is None else s[1]))


def execute(store: Values, topology: Topology, tokens: Tensor, interventions: list[Intervention]) -> dict[str, Tensor]:
    """Every stored activation of the run on ``tokens`` with ``interventions``, by hook name, as a captured run
    stores them, plus the derived sites the interventions replaced."""
    dims = topology.dims
    derived = stored_derived(topology, [i.site for i in interventions])
    observe = [*forward.sites(dims, STORED_KINDS), *derived]
    with torch.no_grad():
        result = forward.run(store.stacked, dims, tokens, observe=observe, interventions=interventions)
    activations = {
        topology.hook_name(Key(kind, layer, None, 0)): value[0].contiguous()
        for (kind, layer), value in result.observed.items()
    }
    activations[TOKENS] = tokens
    return activations
