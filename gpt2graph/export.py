"""Export a graph (or a subgraph view) to networkx."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .results import Role

if TYPE_CHECKING:
    import networkx

    from .graph import Graph
    from .results import Analysis

__all__ = ["to_networkx"]


def to_networkx(graph: Graph) -> networkx.DiGraph[str]:
    """A ``DiGraph`` with one node per graph node (attributes: the node's schema fields, with ``summary``
    flattened to ``norm``/``mean``/``std``/``min``/``max``) and one edge per typed edge (``role``, ``slot``).
    Graph-level attributes carry the model name, weights status, dims and tokens."""
    import networkx as nx

    g: networkx.DiGraph[str] = nx.DiGraph(
        model=graph.model.name,
        weights=graph.model.weights.status,
        dims=graph.dims.model_dump(),
        tokens=list(graph.tokenization.tokens_visible),
        token_ids=list(graph.tokenization.token_ids),
    )
    for node in graph.iter_nodes():
        attrs = node.model_dump(exclude={"id", "summary"})
        summary = getattr(node, "summary", None)
        if summary is not None:
            attrs.update(summary.model_dump())
        g.add_node(node.id, **attrs)
    for edge in graph.iter_edges():
        g.add_edge(edge.source, edge.target, role=edge.role, slot=edge.slot)
    if graph.analysis is not None:
        _add_analysis(g, graph.analysis)
    return g


def _add_analysis(g: networkx.DiGraph[str], analysis: Analysis) -> None:
    """Logit lens and DLA on the nodes they describe; head roles and circuit scores on every node of that
    head (q, k, v, scores, pattern, z, head_out and its parameters); decoding as a graph attribute."""
    if analysis.lens is not None:
        for e in analysis.lens.entries:
            if e.node in g:
                g.nodes[e.node].update(
                    lens_top=[t.token for t in e.top],
                    lens_top_prob=[t.prob for t in e.top],
                    lens_next_rank=e.next_token_rank,
                    lens_next_prob=e.next_token_prob,
                    lens_target_rank=e.target_rank,
                    lens_target_prob=e.target_prob,
                )
    for a in analysis.dla.contributions:
        if a.component in g:
            g.nodes[a.component]["dla"] = a.contribution
    per_head = {
        (h.layer, h.head): {f"role_{r}": getattr(h, r) for r in Role} | {"role_label": h.label}
        for h in analysis.roles.heads
    }
    for c in analysis.circuits.heads:
        per_head[(c.layer, c.head)]["ov_copying_score"] = c.ov_copying_score
    for _node, attrs in g.nodes(data=True):
        key = (attrs.get("layer"), attrs.get("head"))
        if key in per_head:
            attrs.update(per_head[key])
    g.graph["decoding"] = analysis.decoding.model_dump()
    g.graph["dla"] = {k: v for k, v in analysis.dla.model_dump().items() if k != "contributions"}
