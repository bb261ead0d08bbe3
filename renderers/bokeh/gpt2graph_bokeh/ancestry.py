"""Where a node's information comes from and where it goes, as compact rules the page walks in JavaScript.

A GPT-2 run has O(n^2) edges (every query reads every earlier key), too many to ship for long prompts. But
the inputs of a vector depend on its position in only two ways: an input at the *same* position, or a whole
group of inputs at positions ``0..p`` (keys and values). So the inputs of every node of a group
``(kind, layer, head)`` are a few rules ``(source unit, mode)``, which the topology states per group
(:meth:`Topology.unit_inputs`, the single source of the structure). A *unit* is a vector group (one node per
position) or one parameter.

Modes, from a node at position ``p``: ``SAME`` (position p of the source group), ``UPTO`` (positions 0..p),
``ONE`` (a parameter node); inverted for descendants: ``SAME``, ``FROM`` (positions p..n-1), ``ALL`` (every
position, from a parameter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpt2graph.plugin import SAME as SAME_POSITION
from gpt2graph.plugin import UPTO as UPTO_POSITIONS

from .layout import Layout

__all__ = ["ALL", "FROM", "ONE", "SAME", "UPTO", "Rules", "input_rules", "lane_edges", "output_rules"]

SAME, UPTO, FROM, ONE, ALL = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Rules:
    """Rules of every unit in CSR form: unit ``u`` has rules ``ptr[u]:ptr[u+1]`` of ``(src[i], mode[i])``."""

    ptr: np.ndarray  # int32, n_units + 1
    src: np.ndarray  # int32 unit index
    mode: np.ndarray  # int8


def _csr(per_unit: list[list[tuple[int, int]]]) -> Rules:
    ptr = np.zeros(len(per_unit) + 1, dtype=np.int32)
    ptr[1:] = np.cumsum([len(r) for r in per_unit])
    flat = [r for rules in per_unit for r in rules]
    return Rules(ptr, np.array([s for s, _ in flat], dtype=np.int32), np.array([m for _, m in flat], dtype=np.int8))


def input_rules(lay: Layout) -> Rules:
    """The inputs of every unit, as the topology states them (:meth:`Topology.unit_inputs`), within the view
    laid out: an input outside it is not drawn, so it is not followed. Positions are lanes: the lanes up to
    ``i`` are the positions shown up to ``positions[i]``."""
    top, G = lay.topology, len(lay.groups)
    mode = {SAME_POSITION: SAME, UPTO_POSITIONS: UPTO}
    per_unit: list[list[tuple[int, int]]] = [
        [
            (G + lay.param_index[source], ONE) if positions is None else (lay.group_index[source], mode[positions])
            for source, positions in top.unit_inputs(group)
            if source in lay.group_index or source in lay.param_index
        ]
        for group in lay.groups
    ]
    per_unit += [[] for _ in lay.params]
    return _csr(per_unit)


def output_rules(inputs: Rules) -> Rules:
    """The inverse of ``inputs``: which units read each unit, and at which positions."""
    n_units = len(inputs.ptr) - 1
    per_unit: list[list[tuple[int, int]]] = [[] for _ in range(n_units)]
    inverse = {SAME: SAME, UPTO: FROM, ONE: ALL}
    for unit in range(n_units):
        for i in range(inputs.ptr[unit], inputs.ptr[unit + 1]):
            per_unit[int(inputs.src[i])].append((unit, inverse[int(inputs.mode[i])]))
    return _csr(per_unit)


def lane_edges(inputs: Rules, lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) node indices of the edges drawn on the canvas: every input from the same position,
    including the key and value at the query's own position. Cross-position edges (O(n^2)) and parameter
    edges are drawn only for the selected node."""
    n, G = lay.n, len(lay.groups)
    src_parts, dst_parts = [], []
    positions = np.arange(n, dtype=np.int64)
    for unit in range(G):
        for i in range(inputs.ptr[unit], inputs.ptr[unit + 1]):
            src, mode = int(inputs.src[i]), int(inputs.mode[i])
            if src < G and mode in (SAME, UPTO):
                src_parts.append(src * n + positions)
                dst_parts.append(unit * n + positions)
    if not src_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(src_parts), np.concatenate(dst_parts)
