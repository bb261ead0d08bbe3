"""Tooltips: what hovering a node of the poster says (its id, where it sits, its statistics, and what the
analysis knows about it), as plain text for an SVG ``<title>``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .readout import Readout

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["Tips"]


class Tips:
    """The tooltip of each kind of node of one graph."""

    def __init__(self, graph: Graph, readout: Readout):
        self.g = graph
        self.readout = readout
        self.tokens = list(graph.tokenization.tokens_visible)

    def vector(self, node_id: str) -> str:
        n = self.g.node(node_id)
        where = [
            f"layer {n.layer}" if n.layer is not None else "",
            f"head {n.head}" if n.head is not None else "",
            f"position {n.position} ({self.tokens[n.position]})" if n.position is not None else "",
        ]
        s = n.summary
        stats = (
            f"norm {s.norm:.4g} · mean {s.mean:.3g} · std {s.std:.3g} · min {s.min:.3g} · max {s.max:.3g}" if s else ""
        )
        return "\n".join(
            x
            for x in [
                node_id,
                f"{n.kind} · " + " · ".join(w for w in where if w),
                f"shape {n.shape}" + (f" · hook {n.hook}" if n.hook else ""),
                stats,
                *self.readout.notes(node_id),
            ]
            if x
        )

    def operation(self, op_id: str) -> str:
        op = self.g.node(op_id)
        edges = self.g.edges(op_id)
        ins = [e.source for e in edges if e.role == "input"]
        params = [e.source for e in edges if e.role == "parameter"]
        shown = ", ".join(ins[:4]) + (f" and {len(ins) - 4} more" if len(ins) > 4 else "")
        lines = [op_id, f"{op.kind} ({op.stage})", f"inputs: {shown}" if ins else ""]
        if params:
            lines.append("parameters: " + ", ".join(params))
        return "\n".join(x for x in lines if x)

    def parameter(self, node_id: str) -> str:
        p = self.g.node(node_id)
        extra = f" · tied to {p.tied_to}" + (" (transposed)" if p.transposed else "") if p.tied_to else ""
        return "\n".join(
            [
                f"{node_id}\nparameter {p.kind} · shape {p.shape} · {p.n_params:,} values{extra}",
                *self.readout.notes(node_id),
            ]
        )
