"""The walkthrough: a guided tour of the forward pass, one step per callout of the annotation data.

The built-in callouts come in the order the data lists them, which is the forward pass as the poster reads
it, top to bottom. Each step highlights the nodes its callout targets (the selectors the glossary matches; an
operation shows on the vector it makes), shows its text with the template fields of this run filled in, and
adds live numbers read from this run's values (:func:`facts`). The callouts of a user's annotation files are
steps too, each placed before the first built-in step that sits further along the forward pass.

Example::

    steps = tour(graph, layout(graph.topology))
    steps[0].title, len(steps[0].nodes), facts(graph, lay, steps[0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from gpt2graph.plugin import DECODE_KINDS, VECTOR_SPECS, VectorKind, decode_next, percent, template_values

from ..knowledge import _selected_nodes, _specific, _uses
from ..layout import Layout

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["TourStep", "facts", "tour"]

V = VectorKind
#: most tokens listed by a step's numbers
_LISTED = 16


@dataclass(frozen=True)
class TourStep:
    """One callout as a step of the tour: its text for this run and the canvas nodes it is about."""

    id: str
    title: str
    body: str  # Markdown
    caption: str | None
    nodes: np.ndarray  # int32 node indices on the canvas, ascending
    kinds: tuple[str, ...]  # kinds of those nodes (vectors, then parameters), in forward order
    origin: str  # FILE:LINE:COL where the callout is defined


def tour(graph: Graph, lay: Layout) -> list[TourStep]:
    """Every callout of ``graph``'s glossary (built-in and the user's) as a step, in forward order: by the
    leftmost node it highlights; callouts that select no node of this run come last, in file order."""
    glossary = graph.glossary
    annotations = glossary.annotations
    specific = {a.id for a in annotations if _specific(a)}
    by_layer, by_head = _uses(annotations, "layer"), _uses(annotations, "head")
    top, n = lay.topology, lay.n
    found: dict[str, list[np.ndarray]] = {a.id: [] for a in annotations}

    hits: dict[tuple, list[str]] = {}
    units = [*lay.groups, *lay.params]
    for u, key in enumerate(units):
        cache_key = (key.kind, key.layer if by_layer else None, key.head if by_head else None)
        if cache_key not in hits:
            vector = key.kind in VECTOR_SPECS
            node_id = top.node_id(key._replace(position=0) if vector else key)
            ids = [a.id for a in graph.annotations_for(node_id)]
            if vector and key.kind != V.token:  # an operation shows on the vector it produces
                ids += [a.id for a in graph.annotations_for(top.op_id(key._replace(position=0)))]
            hits[cache_key] = [i for i in dict.fromkeys(ids) if i not in specific]
        rows = np.arange(u * n, (u + 1) * n) if u < len(lay.groups) else np.array([lay.n_vectors + u - len(lay.groups)])
        for annotation_id in hits[cache_key]:
            found[annotation_id].append(rows)
    for a in annotations:
        if a.id in specific:
            found[a.id] += [np.array([index]) for index, _ in _selected_nodes(graph, lay, a)]

    values = template_values(graph)
    user_files = {u.source for u in graph.header.user_data}
    builtin, users = [], []
    for a in annotations:
        nodes = np.unique(np.concatenate(found[a.id])).astype(np.int32) if found[a.id] else np.zeros(0, np.int32)
        origin = glossary.origins.get(("annotations", a.id), "")
        step = TourStep(
            id=a.id,
            title=a.title.format_map(values),
            body=a.body.format_map(values),
            caption=None if a.caption is None else a.caption.format_map(values),
            nodes=nodes,
            kinds=_kinds(lay, nodes),
            origin=origin,
        )
        (users if origin.rsplit(":", 2)[0] in user_files else builtin).append(step)
    steps, anchors = list(builtin), [_along(lay, b) for b in builtin]
    for step in users:
        where = _along(lay, step)
        i = next((i for i, a in enumerate(anchors) if a > where), len(steps))
        steps.insert(i, step)
        anchors.insert(i, where)
    return steps


def _along(lay: Layout, step: TourStep) -> float:
    """How far along the forward pass a step's first node sits: its x on the canvas, with a block's nodes
    moved to block 0 (a callout on block 5's heads belongs with the built-in step on heads). No node: the end."""
    if not len(step.nodes):
        return np.inf
    n, G = lay.n, len(lay.groups)
    layers = np.array([-1 if k.layer is None else k.layer for k in [*lay.groups, *lay.params]])
    units = np.where(step.nodes < lay.n_vectors, step.nodes // n, step.nodes - lay.n_vectors + G)
    layer = layers[units]
    shift = np.where(layer >= 0, lay.block_x[np.maximum(layer, 0)] - lay.block_x[0], 0.0)
    return float((lay.x[step.nodes] - shift).min())


def _kinds(lay: Layout, nodes: np.ndarray) -> tuple[str, ...]:
    """Kinds of ``nodes``: vector kinds in forward order, then parameter kinds."""
    n, G = lay.n, len(lay.groups)
    vectors = nodes[nodes < lay.n_vectors] // n
    params = nodes[nodes >= lay.n_vectors] - lay.n_vectors + G
    units = [*lay.groups, *lay.params]
    return tuple(dict.fromkeys(str(units[u].kind) for u in [*np.unique(vectors), *np.unique(params)]))


def facts(graph: Graph, lay: Layout, step: TourStep) -> list[str]:
    """Numbers of this run for a step, as plain lines: read from the values of the first vector kind the step
    highlights (at the last position, where the next token is predicted), or the shapes of its parameters."""
    vectors = [k for k in step.kinds if k in VECTOR_SPECS]
    if not vectors:
        first = {}
        for i in step.nodes[step.nodes >= lay.n_vectors]:
            key = lay.key_of(int(i))
            first.setdefault(key.kind, key)
        return [
            f"{kind}: {' x '.join(map(str, shape))} = {int(np.prod(shape)):,} numbers"
            + ("" if key.layer is None else " in each block" if key.head is None else " for each head")
            for kind, key in first.items()
            for shape in [lay.topology.param_shape(key)]
        ]
    kind = vectors[0]
    n = graph.n_tokens
    p = n - 1
    tokens = graph.tokenization.tokens_visible
    at = f"at the last position ({p}: {tokens[p]})"
    with torch.no_grad():
        if kind == V.token:
            ids = graph.tokenization.token_ids
            listed = " · ".join(f"{t} = {i}" for t, i in zip(tokens[:_LISTED], ids[:_LISTED]))
            return [f"{n} tokens: {listed}" + (" …" if n > _LISTED else "")]
        if kind in (V.attn_scores, V.attn_pattern):
            return _attention_facts(graph, p, tokens)
        if kind == V.logits:
            top = torch.topk(graph.logits[p], min(3, graph.dims.n_vocab))
            listed = ", ".join(f"{graph.decode_token(int(i))} {v:.3g}" for v, i in zip(top.values, top.indices))
            return [f"highest logits {at}: {listed}"]
        if kind in DECODE_KINDS:
            return _decoding_facts(graph, p)
        if kind in (V.mlp_pre, V.mlp_post):
            layers = graph.topology.layers_of(kind)
            active = [float((graph.hook(V.mlp_post, L)[p] > 0).double().mean()) for L in layers]
            return [
                f"share of the {graph.dims.d_mlp} neurons with a positive output {at}, layer by layer: "
                + " · ".join(f"{L}: {percent(a)}" for L, a in zip(layers, active))
            ]
        if VECTOR_SPECS[kind].per_head:
            return [_largest_head(graph, kind, p, at)]
        layers = graph.topology.layers_of(kind)
        what = "value" if kind in (V.ln1_scale, V.ln2_scale, V.ln_final_scale) else "norm"
        numbers = [_norm(graph.hook(kind, L)[p]) for L in layers]
        if layers == [None]:
            return [f"{what} of {kind} {at}: {numbers[0]:.4g}"]
        return [
            f"{what} of {kind} {at}, layer by layer: " + " · ".join(f"{L}: {x:.4g}" for L, x in zip(layers, numbers))
        ]


def _norm(x: torch.Tensor) -> float:
    return float(x.double().norm()) if x.numel() > 1 else float(x.double().reshape(-1)[0])


def _largest_head(graph: Graph, kind: str, p: int, at: str) -> str:
    """The head whose vector of ``kind`` is longest at position ``p``, over every layer."""
    best = (-1.0, 0, 0)
    for L in graph.topology.layers_of(kind):
        norms = graph.hook(kind, L)[p].double().norm(dim=-1)  # (n_head,)
        h = int(norms.argmax())
        best = max(best, (float(norms[h]), L, h))
    norm, L, h = best
    return f"longest {kind} {at}: head {L}.{h} (layer.head), norm {norm:.4g}"


def _attention_facts(graph: Graph, p: int, tokens: list[str]) -> list[str]:
    """Where the last position looks: the sharpest head, and the mean weight on the first token."""
    best = (-1.0, 0, 0, 0)
    first = []
    for L in range(graph.dims.n_layer):
        row = graph.hook(V.attn_pattern, L)[:, p, : p + 1]  # (n_head, p + 1)
        first.append(row[:, 0].double())
        weight, key = row.max(dim=-1)
        h = int(weight.argmax())
        best = max(best, (float(weight[h]), L, h, int(key[h])))
    weight, L, h, key = best
    return [
        f"sharpest head at the last position: {L}.{h} (layer.head) puts {percent(weight)} of its attention on position "
        f"{key} ({tokens[key]})",
        f"mean attention of all heads from the last position to position 0 ({tokens[0]}): "
        f"{percent(float(torch.cat(first).mean()))}",
    ]


def _decoding_facts(graph: Graph, p: int) -> list[str]:
    """This run's decoding of the next token, with the page's current settings."""
    s = graph.decoding
    d = decode_next(graph, position=p, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed)
    kept = " · ".join(f"{step.kind}: {step.kept:,} kept" for step in d.steps)
    how = "greedy" if d.greedy else f"sampled with seed {d.seed}"
    return [kept, f"next token ({how}): {d.chosen.token} with probability {percent(d.chosen.prob)}"]
