"""Export a graph (or a subgraph view) to networkx."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx

    from .graph import Graph

__all__ = ["to_networkx"]


def to_networkx(graph: Graph) -> networkx.DiGraph:
    """A ``DiGraph`` with one node per graph node (attributes: the node's schema fields, with ``summary``
    flattened to ``norm``/``mean``/``std``/``min``/``max``) and one edge per typed edge (``role``, ``slot``).
    Graph-level attributes carry the model name, weights status, dims and tokens."""
    import networkx as nx

    g = nx.DiGraph(model=graph.model.name, weights=graph.model.weights.status, dims=graph.dims.model_dump(),
                   tokens=list(graph.tokenization.tokens_visible), token_ids=list(graph.tokenization.token_ids))
    for node in graph.iter_nodes():
        attrs = node.model_dump(exclude={"id", "summary"})
        summary = getattr(node, "summary", None)
        if summary is not None:
            attrs.update(summary.model_dump())
        g.add_node(node.id, **attrs)
    for edge in graph.iter_edges():
        g.add_edge(edge.source, edge.target, role=edge.role, slot=edge.slot)
    return g
