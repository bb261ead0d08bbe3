"""The poster's own colours: text and rules, a diverging scale for signed values and a sequential one for
attention weights, kept in one place so the legend and the drawing cannot disagree. The category colours are
every renderer's (:data:`gpt2graph.plugin.CATEGORY_COLOURS`)."""

from __future__ import annotations

import itertools

__all__ = [
    "diverging",
    "sequential",
    "ink_on",
    "TEXT",
    "MUTED",
    "RULE",
    "WARNING",
    "DIVERGING_STOPS",
    "SEQUENTIAL_STOPS",
    "MASKED",
]

TEXT = "#1f2328"
MUTED = "#57606a"
RULE = "#c9ced6"
WARNING = "#c62828"
MASKED = "#e6e8eb"

#: signed values: blue (negative) - near white (zero) - red (positive)
DIVERGING_STOPS = [
    (-1.0, (33, 92, 160)),
    (-0.5, (140, 180, 218)),
    (0.0, (246, 246, 246)),
    (0.5, (236, 160, 120)),
    (1.0, (178, 40, 38)),
]
#: attention weights 0..1: white to deep orange
SEQUENTIAL_STOPS = [(0.0, (255, 250, 243)), (0.35, (249, 190, 120)), (0.7, (224, 112, 35)), (1.0, (127, 49, 8))]


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def _ramp(stops, t: float) -> str:
    t = min(max(t, stops[0][0]), stops[-1][0])
    for (t0, c0), (t1, c1) in itertools.pairwise(stops):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return _hex(tuple(a + (b - a) * f for a, b in zip(c0, c1, strict=True)))
    return _hex(stops[-1][1])


def diverging(t: float) -> str:
    """Colour of a value already divided by its scale (clamped to -1..1)."""
    return _ramp(DIVERGING_STOPS, t)


def sequential(t: float) -> str:
    """Colour of a weight in 0..1."""
    return _ramp(SEQUENTIAL_STOPS, t)


def ink_on(fill: str) -> str:
    """Dark or white text, whichever reads on ``fill``."""
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return TEXT if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"
