"""The scene a layout produces and :mod:`draw` serialises: positioned shapes and measured text, with the type
sizes every part of the page shares. Nothing here knows SVG or the graph."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import colors as C
from .text import line_height, width

__all__ = [
    "Box",
    "Text",
    "Rect",
    "Path",
    "Group",
    "Scene",
    "text_at",
    "FS",
    "PAD",
    "COL_W",
    "MARKER_W",
    "CELL_W",
    "CELL_H",
]

PAD = 10
#: lane geometry shared by the layout and its panels (px): one token position, the operation marker left of
#: each strip, one cell of a strip
COL_W = 116
MARKER_W = 10
CELL_W, CELL_H = 10, 14
FS = {"title": 26, "h1": 15, "h2": 12.5, "body": 10.5, "small": 9.5, "tiny": 8, "cell": 7.5}


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def overlaps(self, other: Box) -> bool:
        return self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom


@dataclass(frozen=True)
class Text:
    """One text item of one or more lines; ``box`` is what it occupies, ``anchor`` how lines align in it."""

    box: Box
    lines: tuple[str, ...]
    size: float
    colour: str = C.TEXT
    bold: bool = False
    italic: bool = False
    anchor: str = "start"
    href: str | None = None
    tip: str | None = None


@dataclass(frozen=True)
class Rect:
    box: Box
    fill: str
    stroke: str | None = None
    stroke_width: float = 1.0
    rx: float = 0.0
    dash: str | None = None


@dataclass(frozen=True)
class Path:
    d: str
    stroke: str
    width: float = 1.0
    fill: str = "none"
    arrow: bool = False
    dash: str | None = None


@dataclass
class Group:
    """Shapes and texts drawn together; ``node`` is the graph node id the group draws (if any); ``data`` are
    ``data-*`` attributes that let a reader (or a test) find what a non-node element shows, e.g. a head."""

    parts: list[Rect | Path] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    node: str | None = None
    tip: str | None = None
    cls: str | None = None
    data: dict[str, str] = field(default_factory=dict)


@dataclass
class Scene:
    width: float
    height: float
    title: str
    description: str
    groups: list[Group]

    def texts(self) -> Iterator[Text]:
        for g in self.groups:
            yield from g.texts


def text_at(
    x: float,
    y: float,
    lines: list[str] | tuple[str, ...],
    size: float,
    *,
    anchor: str = "start",
    bold: bool = False,
    **style: Any,
) -> Text:
    """A text whose box has its top edge at ``y`` and its anchor point at ``x``. Runs of whitespace become one
    space, as SVG renders them."""
    lines = tuple(" ".join(line.split()) for line in lines)
    w = max(width(line, size, bold) for line in lines)
    left = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
    return Text(Box(left, y, w, line_height(size) * len(lines)), lines, size, bold=bold, anchor=anchor, **style)
