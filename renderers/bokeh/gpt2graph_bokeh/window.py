"""Level of detail along the positions: the canvas holds the vectors of a *window* of lanes (the positions a
view shows, every position of a whole run), and the page moves the window over them.

A short run is one window (every lane). A view of more than ``max_positions`` lanes is drawn as block
aggregates (the document's overview) while zoomed out; zoomed in, the vectors of ``max_positions``
consecutive lanes are on the canvas, and the window follows the view (or the page's window slider). The page
can put any window on the canvas because it carries, for every lane, what the rectangles need in compact
binary form: each node's statistics and colours (:func:`compact`), and per vector group the geometry and id
of its node on any lane (:func:`templates`), since a group's node on lane ``i`` is its node on lane 0 moved
to lane ``i``. What costs a full vocabulary row per vector (the logit lens of head and MLP outputs) is read
for the window the page opens on only.

The window's rows are in :class:`Window` order: vector groups one after another, each with one row per
window lane, then the parameters (:meth:`Window.rows` maps them to layout node indices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import Layout

__all__ = ["Window", "window_for", "id_pieces", "templates", "compact", "by_unit"]


@dataclass(frozen=True)
class Window:
    """Lanes ``start .. start + size - 1`` of a view of ``n`` lanes (the positions it shows)."""

    start: int
    size: int
    n: int

    @property
    def whole(self) -> bool:
        return self.size == self.n

    def rows(self, lay: Layout) -> np.ndarray:
        """Layout node index of every row of the window's node source."""
        groups = np.arange(len(lay.groups), dtype=np.int64)[:, None] * self.n
        vectors = (groups + np.arange(self.start, self.start + self.size)[None, :]).reshape(-1)
        return np.concatenate([vectors, np.arange(lay.n_vectors, lay.n_nodes)])


def window_for(n: int, max_positions: int, start: int | None = None) -> Window:
    """The window a page opens on: every lane of a short view, else ``max_positions`` of them from lane
    ``start`` (default: the last ones, where the prediction is)."""
    size = min(n, max(1, max_positions))
    first = n - size if start is None else min(max(0, start), n - size)
    return Window(first, size, n)


def id_pieces(lay: Layout) -> tuple[list[str], list[str]]:
    """Every unit's id split around the position: node ``(g, p)`` is ``head[g] + p + tail[g]``; a parameter's
    id is its ``head`` (``tail`` empty). The page makes ids from these rather than carry one per node."""
    top = lay.topology
    marker = 10**9 + 7  # a position no run has, located in the id to split it
    heads, tails = [], []
    for key in lay.groups:
        head, _, tail = top.vector_id(key._replace(position=marker)).partition(str(marker))
        heads.append(head)
        tails.append(tail)
    return heads + [top.param_id(k) for k in lay.params], tails + [""] * len(lay.params)


def templates(lay: Layout, edges: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """Per vector group, its node on lane 0: x, width, height and y relative to the lane; every lane's y; and
    the same-position edges as pairs of groups."""
    n = lay.n
    first = np.arange(len(lay.groups)) * n
    src, dst = edges
    at_first = src % n == 0
    return {
        "gx": lay.x[first],
        "gw": lay.width[first],
        "gh": lay.height[first],
        "gdy": (lay.y[first] - lay.lane_y[0]).astype(np.float32),
        "lane_y": lay.lane_y.astype(np.float32),
        "edge_src": (src[at_first] // n).astype(np.int32),
        "edge_dst": (dst[at_first] // n).astype(np.int32),
    }


def compact(stats: dict[str, np.ndarray], colours: dict[str, np.ndarray], lay: Layout) -> dict[str, np.ndarray]:
    """Every vector's statistics (float16) and colours in [0, 1] (as 0..255) for the page to fill any window
    from; parameters stay in the window's own rows. ``colours`` whose value depends only on the unit (a head's
    score) travel as :func:`by_unit` instead."""
    NV = lay.n_vectors
    out = {f"s_{name}": column[:NV].astype(np.float16).view(np.uint16) for name, column in stats.items()}
    return out | {f"q_{name}": column[:NV] for name, column in colours.items()}


def by_unit(column: np.ndarray, lay: Layout) -> dict[str, np.ndarray]:
    """A per-node column as its most common value per unit (NaN counts as a value) plus the nodes that differ
    from it: direct logit attribution colours a head by its contribution, and its output at the attributed
    position by its own."""
    n, G = lay.n, len(lay.groups)

    def most_common(values: np.ndarray) -> float:
        nan = np.isnan(values)
        kinds, counts = np.unique(values[~nan], return_counts=True)
        return np.nan if not len(kinds) or nan.sum() >= counts.max() else float(kinds[counts.argmax()])

    units = np.array(
        [most_common(row) for row in column[: lay.n_vectors].reshape(G, n)] + list(column[lay.n_vectors :]),
        dtype=np.float32,
    )
    expected = np.concatenate([np.repeat(units[:G], n), units[G:]])
    differs = ~((column == expected) | (np.isnan(column) & np.isnan(expected)))
    index = np.nonzero(differs)[0].astype(np.int32)
    return {"unit": units, "index": index, "value": column[index].astype(np.float32)}
