"""The circuit behind a prediction: edge attribution patching, a pruned circuit, and its measured faithfulness.

Components write into the residual stream (the embedding, every head, every MLP) or read from it (every head,
its query, key and value inputs separately; every MLP; the logits). An *edge* is one writer's output read by a
later reader: the stream a reader sees is the sum of every earlier writer's output (and of constant biases), so
the edge is that writer's term in it.

* **Edge attribution patching** (Syed, Rager and Conmy, https://arxiv.org/abs/2310.10348) scores every edge at
  once: (a_ablated - a_clean) . d metric / d input, summed over positions, the first-order change of the metric
  when only that edge carries the ablated value. The gradient with respect to each reader's own input comes from
  one forward and one backward pass of the clean run in which every head reads its own copy of the stream
  (the executor's ``q_input``, ``k_input``, ``v_input`` and ``mlp_in`` sites).
* **The circuit** is grown from the logits, adding the edge of largest |score| into a component already in it
  until at least ``top`` edges survive pruning what cannot affect the metric (or every edge above a ``threshold``
  that leads to the logits; see :class:`~gpt2graph.causal.PredictionCircuit`). The last edge added can give
  several earlier ones a path at once, so a circuit may have a few more than ``top`` edges.
* **Faithfulness** is measured, not assumed: the model runs with every edge outside the circuit carrying its
  ablated value (each reader's input is its stream plus, for each such edge, ablated minus actual output of the
  writer in this very run), and the share of the clean metric recovered is reported.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from . import forward
from .baselines import mean_source
from .causal import (
    Ablation,
    CircuitEdge,
    Component,
    ComponentType,
    Faithfulness,
    HeadInput,
    PatchDirection,
    PredictionCircuit,
)
from .errors import InterpretError
from .forward import MLP_IN, SPLIT_INPUTS, Intervention, Site
from .patching import Setup, receiving_edits, setup
from .schema import VectorKind
from .topology import Key
from .values import TOKENS

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "EdgeScores", "edge_attribution", "find_circuit", "faithfulness", "faithfulness_runs", "components", "Reader",
    "WRITES", "writer_key", "reader_key", "component_stage",
]  # fmt: skip

V = VectorKind
_INPUTS = (HeadInput.q, HeadInput.k, HeadInput.v)
_SITE_OF_INPUT = {HeadInput.q: SPLIT_INPUTS[V.q], HeadInput.k: SPLIT_INPUTS[V.k], HeadInput.v: SPLIT_INPUTS[V.v]}


#: the vector each kind of writer adds to the residual stream (one per position)
WRITES = {ComponentType.embed: V.input_embedding, ComponentType.head: V.head_out, ComponentType.mlp: V.mlp_out}


def writer_key(c: Component, position: int) -> Key:
    """The graph's vector through which component ``c`` writes into the stream at ``position``."""
    return Key(WRITES[c.type], c.layer, c.head, position)


def reader_key(c: Component, input: HeadInput | str | None, position: int) -> Key:
    """The graph's vector through which component ``c`` reads the stream at ``position``: a head's query, key or
    value, the MLP's LayerNorm output (what W_in reads), the final LayerNorm's output for the logits."""
    if c.type == ComponentType.head:
        return Key(str(input), c.layer, c.head, position)
    return Key(V.ln2, c.layer, None, position) if c.type == ComponentType.mlp else Key(V.ln_final, None, None, position)


def _component(type_: ComponentType, layer: int | None = None, head: int | None = None) -> Component:
    ids = {
        ComponentType.embed: "embed",
        ComponentType.head: f"L{layer}H{head}",
        ComponentType.mlp: f"MLP{layer}",
        ComponentType.logits: "logits",
    }
    return Component(id=ids[type_], type=type_, layer=layer, head=head)


def components(n_layer: int, n_head: int) -> list[Component]:
    """Every component in forward order: embed, then per layer its heads and its MLP, then logits."""
    out = [_component(ComponentType.embed)]
    for L in range(n_layer):
        out += [_component(ComponentType.head, L, h) for h in range(n_head)]
        out.append(_component(ComponentType.mlp, L))
    return [*out, _component(ComponentType.logits)]


def component_stage(c: Component, n_layer: int) -> int:
    """When a component reads or writes, in forward order: heads of layer L at 2L, its MLP at 2L+1, the embedding
    before (-1) and the logits after everything (2 * n_layer). A writer feeds a reader when its stage is earlier;
    a drawing of a circuit puts the components of one stage in one column."""
    if c.type == ComponentType.embed:
        return -1
    if c.type == ComponentType.logits:
        return 2 * n_layer
    assert c.layer is not None, "a head or an MLP is in a layer"
    return 2 * c.layer + (c.type == ComponentType.mlp)


@dataclass(frozen=True)
class Reader:
    """One input of a reading component: a head's q, k or v, an MLP's input, or the logits' input."""

    component: Component
    input: HeadInput | None = None


def _writers(n_layer: int, n_head: int) -> list[Component]:
    return [c for c in components(n_layer, n_head) if c.type != ComponentType.logits]


def _readers(n_layer: int, n_head: int) -> list[Reader]:
    out = []
    for c in components(n_layer, n_head):
        if c.type == ComponentType.head:
            out += [Reader(c, i) for i in _INPUTS]
        elif c.type in (ComponentType.mlp, ComponentType.logits):
            out.append(Reader(c))
    return out


def _outputs(graph: Graph, writers: list[Component]) -> Tensor:
    """What each writer adds to the stream in ``graph``'s run: (n_writers, n, d_model)."""
    whole = {(WRITES[c.type], c.layer): graph.hook(WRITES[c.type], c.layer) for c in writers}
    return torch.stack([_of(whole[(WRITES[c.type], c.layer)], c) for c in writers])


def _of(whole: Tensor, c: Component) -> Tensor:
    """One writer's output from its whole site, (..., n, d_model) or per head (..., n, n_head, d_model)."""
    return whole[..., c.head, :] if c.type == ComponentType.head else whole


def _ablated_outputs(s: Setup, ablation: Any, writers: list[Component]) -> tuple[Tensor, Ablation]:
    """What each writer's output is replaced by on an ablated edge: its corrupted output, its mean over the
    clean run's positions, or a mean over prompts."""
    if isinstance(ablation, str) and ablation == "corrupted":
        return _outputs(s.corrupted, writers), Ablation.corrupted
    clean = _outputs(s.clean, writers)
    if isinstance(ablation, str) and ablation == "mean":
        return clean.mean(1, keepdim=True).expand_as(clean), Ablation.mean
    source = mean_source(ablation, s.clean)
    if source is None:
        raise InterpretError(
            f"unknown ablation {ablation!r}: give 'corrupted', 'mean', a mean source or a *.ggc path of corpus means"
        )
    n = s.clean.n_tokens
    rows = [torch.stack([source.mean(WRITES[c.type], c.layer, c.head, p) for p in range(n)]) for c in writers]
    return torch.stack(rows).to(clean.dtype), Ablation.prompts


def _reader_site(r: Reader, n_layer: int) -> Site:
    if r.component.type == ComponentType.head:
        assert r.input is not None, "a head is read through its q, k or v input"
        return (_SITE_OF_INPUT[r.input], r.component.layer)
    if r.component.type == ComponentType.mlp:
        return (MLP_IN, r.component.layer)
    return (V.resid_post, n_layer - 1)


@dataclass
class EdgeScores:
    """Edge attribution patching scores of every edge: ``scores[i, j]`` for writer ``writers[i]`` read by
    ``readers[j]`` (0 where the writer comes after the reader: no such edge)."""

    setup: Setup
    ablation: Ablation
    writers: list[Component]
    readers: list[Reader]
    scores: Tensor  # (n_writers, n_readers), float64
    valid: Tensor  # (n_writers, n_readers), bool: is there an edge
    ablated: Tensor  # (n_writers, n, d_model): what each writer's output becomes on an ablated edge

    def edges(self) -> list[CircuitEdge]:
        """Every edge with its score, largest |score| first."""
        i, j = torch.nonzero(self.valid, as_tuple=True)
        order = torch.argsort(self.scores[i, j].abs(), descending=True, stable=True)
        return [self._edge(int(i[k]), int(j[k])) for k in order]

    def _edge(self, i: int, j: int) -> CircuitEdge:
        r = self.readers[j]
        return CircuitEdge(
            source=self.writers[i].id, target=r.component.id, input=r.input, score=float(self.scores[i, j])
        )


def edge_attribution(
    clean: Graph,
    corrupted: Graph | str | Sequence[int],
    *,
    answer: int | str,
    wrong: int | str | None = None,
    metric: str = "logit_diff",
    ablation: Any = "corrupted",
) -> EdgeScores:
    """Score every edge between components by edge attribution patching (see the module docstring)."""
    s = setup(
        clean, corrupted, answer=answer, wrong=wrong, metric=metric, direction=PatchDirection.noising, positions=None
    )
    d = clean.dims
    writers, readers = _writers(d.n_layer, d.n_head), _readers(d.n_layer, d.n_head)
    ablated, kind = _ablated_outputs(s, ablation, writers)
    sites = list(dict.fromkeys(_reader_site(r, d.n_layer) for r in readers))
    with torch.enable_grad():
        out = forward.run(
            clean.store.stacked,
            d,
            clean.store.activations[TOKENS],
            observe=sites,
            interventions=receiving_edits(clean),
            logits=[clean.n_tokens - 1],
            grad=True,
        )
        assert out.logits is not None, "logits were asked for"
        value = s.score(out.logits[0, 0])
        grads = dict(zip(sites, torch.autograd.grad(value, [out[site] for site in sites], allow_unused=True)))
    columns = []  # the gradient each reader sees, (n, d_model)
    for r in readers:
        site = _reader_site(r, d.n_layer)
        g = grads[site]
        g = torch.zeros_like(out[site]) if g is None else g
        columns.append(g[0, :, r.component.head] if r.input is not None else g[0])
    G = torch.stack(columns).double().flatten(1)  # (readers, n d)
    delta = (ablated - _outputs(clean, writers)).double().flatten(1)  # (writers, n d)
    stages_w = torch.tensor([component_stage(c, d.n_layer) for c in writers])
    stages_r = torch.tensor([component_stage(r.component, d.n_layer) for r in readers])
    valid = stages_w[:, None] < stages_r[None, :]
    scores = (delta @ G.T).masked_fill(~valid, 0.0)
    return EdgeScores(s, kind, writers, readers, scores, valid, ablated)


def _reaching(kept: list[tuple[int, int]], e: EdgeScores) -> set[str]:
    """Components whose output reaches the logits through ``kept`` edges (the logits included)."""
    reaching = {"logits"}
    for c in reversed(e.writers):  # readers come after their writers: one backward pass suffices
        if any(e.writers[i].id == c.id and e.readers[j].component.id in reaching for i, j in kept):
            reaching.add(c.id)
    return reaching


def _select(e: EdgeScores, top: int | None, threshold: float | None) -> list[tuple[int, int]]:
    """Edges by decreasing |score| that lead to the logits through selected edges: grown greedily from the logits,
    each the best edge into a component already in the circuit, until at least ``top`` of them survive
    :func:`_prune` (the last edge added can make several earlier ones effective, so there may be more; or
    none is left); or every edge above ``threshold`` whose reader reaches the logits through such edges. An edge
    that leads nowhere could not change the metric."""
    into: dict[str, list[tuple[float, int, int]]] = {}
    for i, j in zip(*(t.tolist() for t in torch.nonzero(e.valid, as_tuple=True))):
        into.setdefault(e.readers[j].component.id, []).append((-abs(float(e.scores[i, j])), i, j))
    if threshold is not None:
        candidates = [(i, j) for edges in into.values() for m, i, j in edges if -m >= threshold]
        reaching = _reaching(candidates, e)
        return sorted(
            ((i, j) for i, j in candidates if e.readers[j].component.id in reaching),
            key=lambda ij: -abs(float(e.scores[ij])),
        )
    assert top is not None, "a circuit is chosen by top or by threshold"
    heap = list(into.get("logits", []))
    heapq.heapify(heap)
    chosen: list[tuple[int, int]] = []
    joined = {"logits"}
    while heap and (len(chosen) < top or len(_prune(chosen, e)) < top):  # until top edges survive pruning
        _, i, j = heapq.heappop(heap)
        chosen.append((i, j))
        writer = e.writers[i].id
        if writer not in joined:
            joined.add(writer)
            for edge in into.get(writer, []):
                heapq.heappush(heap, edge)
    return chosen


def _prune(edges: list[tuple[int, int]], e: EdgeScores) -> list[tuple[int, int]]:
    """With corrupted ablation, drop (until nothing changes) the edges whose writer, other than the embedding,
    reads nothing through a kept edge: its inputs are all corrupted, so its output is exactly its corrupted output,
    the value an ablated edge carries; and then the edges that no longer lead to the logits. Neither changes the
    metric. (With a mean ablation a writer fed only means does not output its mean: nothing is pruned.)"""
    if e.ablation != Ablation.corrupted:
        return edges
    kept = list(edges)
    while True:
        fed = {e.readers[j].component.id for _, j in kept}
        kept_writers = [(i, j) for i, j in kept if e.writers[i].type == ComponentType.embed or e.writers[i].id in fed]
        reaching = _reaching(kept_writers, e)
        new = [(i, j) for i, j in kept_writers if e.readers[j].component.id in reaching]
        if new == kept:
            return kept
        kept = new


def faithfulness_runs(e: EdgeScores, keeps: list[Tensor]) -> Tensor:
    """The metric of runs of the clean model in which every edge not kept carries its ablated value: one run per
    boolean (n_writers, n_readers) mask in ``keeps``, batched."""
    s, d = e.setup, e.setup.clean.dims
    clean = s.clean
    n, B = clean.n_tokens, len(keeps)
    ablate = torch.stack([(~k & e.valid) for k in keeps]).to(e.ablated.dtype)  # (B, writers, readers)
    columns: dict[Site, list[int]] = {}
    for j, r in enumerate(e.readers):
        columns.setdefault(_reader_site(r, d.n_layer), []).append(j)

    def actual(observed: dict[Site, Tensor], count: int) -> Tensor:
        """The first ``count`` writers' outputs in this run: (B, count, n, d_model)."""
        return torch.stack([_of(observed[(WRITES[c.type], c.layer)], c) for c in e.writers[:count]], 1)

    def patch(site: Site, readers: list[int]) -> Intervention:
        stage = component_stage(e.readers[readers[0]].component, d.n_layer)
        count = sum(1 for c in e.writers if component_stage(c, d.n_layer) < stage)  # writers are in forward order

        def apply(value: Tensor, observed: dict[Site, Tensor]) -> Tensor:
            diff = e.ablated[:count] - actual(observed, count)  # (B, writers, n, d)
            shift = torch.einsum("bsnd,bsr->bnrd", diff, ablate[:, :count, readers])  # (B, n, readers, d)
            return value + (shift if value.ndim == 4 else shift[:, :, 0])

        return Intervention(site[0], site[1], mode="apply", value=apply)

    edits = [*receiving_edits(clean), *(patch(site, js) for site, js in columns.items())]
    observe = list(dict.fromkeys((WRITES[c.type], c.layer) for c in e.writers))
    with torch.no_grad():
        out = forward.run(
            clean.store.stacked,
            d,
            clean.store.activations[TOKENS].expand(B, n),
            observe=observe,
            interventions=edits,
            logits=[n - 1],
        )
    assert out.logits is not None, "logits were asked for"
    return s.score(out.logits[:, 0]).double()


def faithfulness(e: EdgeScores, keep: Tensor) -> Faithfulness:
    """The share of the clean metric recovered with only the edges in ``keep`` clean, measured."""
    empty = torch.zeros_like(e.valid)
    ablated_value, circuit_value = faithfulness_runs(e, [empty, keep]).tolist()
    clean_value = e.setup.clean_value
    span = clean_value - ablated_value
    return Faithfulness(
        ablation=e.ablation,
        clean_value=clean_value,
        ablated_value=ablated_value,
        circuit_value=circuit_value,
        recovered=(circuit_value - ablated_value) / span if span else float("nan"),
    )


def find_circuit(
    clean: Graph,
    corrupted: Graph | str | Sequence[int],
    *,
    answer: int | str,
    wrong: int | str | None = None,
    top: int | None = None,
    threshold: float | None = None,
    metric: str = "logit_diff",
    ablation: Any = "corrupted",
) -> PredictionCircuit:
    """The circuit behind ``clean``'s prediction against ``corrupted`` (a graph, or a prompt run through
    ``clean``'s model): the ``top`` edges by |score| that lead to the logits (or those with |score| >=
    ``threshold`` that do), pruned, with their components and measured faithfulness; stored on the clean run
    (``graph.header.circuit``). ``ablation``: what edges outside the circuit carry ('corrupted', 'mean', a mean
    source or a *.ggc path). ``Graph.circuit`` is this function.

    Example::

        circuit = clean.circuit(corrupted, answer=" Mary", wrong=" John", top=20)
        circuit.faithfulness.recovered, circuit.to_networkx()
    """
    if (top is None) == (threshold is None):
        raise InterpretError("give exactly one of top (a number of edges) and threshold (a minimum |score|)")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise InterpretError(f"top must be a positive number of edges, got {top!r}")
    if threshold is not None and not threshold >= 0:
        raise InterpretError(f"threshold must be a score >= 0, got {threshold!r}")
    e = edge_attribution(clean, corrupted, answer=answer, wrong=wrong, metric=metric, ablation=ablation)
    selected = _select(e, top, threshold)
    kept = sorted(_prune(selected, e), key=lambda ij: -abs(float(e.scores[ij])))
    keep = torch.zeros_like(e.valid)
    for a, b in kept:
        keep[a, b] = True
    used = {e.writers[a].id for a, _ in kept} | {e.readers[b].component.id for _, b in kept}
    s = e.setup
    result = PredictionCircuit(
        metric=s.metric,
        answer_id=s.answer,
        answer=clean.decode_token(s.answer),
        wrong_id=s.wrong,
        wrong=None if s.wrong is None else clean.decode_token(s.wrong),
        position=clean.n_tokens - 1,
        corrupted_text=s.corrupted.tokenization.text,
        clean_value=s.clean_value,
        corrupted_value=s.corrupted_value,
        top=top,
        threshold=threshold,
        n_scored=int(e.valid.sum()),
        n_selected=len(selected),
        components=[c for c in components(clean.dims.n_layer, clean.dims.n_head) if c.id in used],
        edges=[e._edge(a, b) for a, b in kept],
        faithfulness=faithfulness(e, keep),
    )
    clean._store(circuit=result)
    return result
