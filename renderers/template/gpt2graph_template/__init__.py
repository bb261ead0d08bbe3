"""A complete gpt2graph renderer in a few dozen lines: the graph (or part of it) as Graphviz DOT source.

Copy this package to start your own; see README.md. ``dot -Tsvg out.dot -o out.svg`` draws the result.
"""

from __future__ import annotations

import json
from pathlib import Path

# a renderer receives a Graph; everything else it may use from gpt2graph is in gpt2graph.plugin
from gpt2graph import Graph
from gpt2graph.plugin import CATEGORY_COLOURS, Option, RendererError, atomic_write, tint


class DotRenderer:
    name = "dot"
    description = "Graphviz DOT source of the graph (example third-party renderer)"
    suffixes = (".dot", ".gv")
    options = {
        "layers": Option(list[int], [0], "blocks to include ('all' for every block)", minimum=0),
        "heads": Option(list[int], [0], "heads to include ('all' for every head)", minimum=0),
        "positions": Option(list[int], None, "token positions to include", minimum=0, default_text="all"),
    }

    def render(self, graph: Graph, path: Path, *, layers=(0,), heads=(0,), positions=None) -> Path:
        # draw the view given: the options choose only on the axes the view leaves whole
        chosen = graph.selection.filled(layers, heads, positions)
        try:
            part = graph.subgraph(chosen.layers, chosen.heads, chosen.positions)
        except ValueError as exc:  # a layer, head or position out of range
            raise RendererError(f"renderer 'dot': {exc}") from exc
        lines = [
            f"digraph {_q(graph.model.name)} {{",
            "  rankdir=TB;",
            '  node [shape=box, style="rounded,filled", fontname="DejaVu Sans"];',
        ]
        for node in part.nodes():
            label = node.id if node.node_type != "operation" else node.kind
            fill = tint(CATEGORY_COLOURS[node.category], 0.25)  # every renderer's colours, as a light fill
            lines.append(f"  {_q(node.id)} [label={_q(label)}, fillcolor={_q(fill)}];")
        for edge in part.edges():
            lines.append(f"  {_q(edge.source)} -> {_q(edge.target)};")
        lines.append("}")
        atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"))
        return path


def _q(text: str) -> str:
    """A DOT quoted string: JSON's escaping of quotes and backslashes is valid DOT."""
    return json.dumps(text, ensure_ascii=False)
