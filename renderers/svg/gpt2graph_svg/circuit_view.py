"""The circuit behind a prediction (``graph.header.circuit``), drawn in the poster's style reduced to the
circuit's components: the embedding, the heads (each with its query, key and value inputs as ports) and MLPs in
forward order, and the logits, joined by the circuit's edges at widths following their scores, each labelled
with its score, with callouts explaining edge attribution patching and how faithfulness was measured.

It is a page of the shared engine (:mod:`.engine`): the title block, a *Circuit* panel whose gutter tells how to
read it and whose diagram is the circuit, a *Faithfulness* panel, callouts level with what they explain, the
footer. A view (``graph.subgraph(...)``) is drawn as it is: the components whose nodes it holds (a component's
node is the vector it writes through at the scored position, the logits for the logits), the edges between
them, and how many edges lead outside it, in total and on each component.

Components are groups carrying that node (``data-node``) and ``data-component``; edges carry ``data-source``,
``data-target``, ``data-input`` and ``data-score``. Nothing is recomputed: everything drawn is what the run
stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpt2graph.plugin import (
    CATEGORY_COLOURS,
    CircuitEdge,
    Component,
    Key,
    PredictionCircuit,
    RendererError,
    VectorKind,
    component_stage,
    percent,
    signed,
    tint,
    writer_key,
)

from . import colors as C
from .content import Callout, Content, view_text
from .engine import MIN_DIAGRAM_W, Frame, Page
from .furniture import footer, title_block
from .scene import FS, Box, Group, Path, Rect, Scene, text_at
from .text import fit, line_height, width

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["circuit_scene"]

COLUMN = 210  # from one column of components to the next (px)
BOX_W = 132
HEAD_H, BOX_H = 98, 50  # a head has three input ports under its name; other components one
NOTE_TOP = 35  # a component's count of the edges leading outside the view, from its top
PORT_TOP, PORT_STEP = 54, 16  # a head's q, k and v ports, from its top
GAP = 26  # between components of a column
_SAMPLES = 64  # points along an edge checked against the components it passes
_CLEAR = 10.0  # px an edge keeps above a component it passes over
INSET = 14  # the first column's distance from the diagram's left edge (room for the ports)
MAX_EDGE = 9.0  # stroke width of the strongest edge (px)
LABEL_H = 12  # an edge's score label
_CATEGORY = {"embed": "residual", "head": "attention", "mlp": "mlp", "logits": "unembedding"}
_PORTS = ("q", "k", "v")
#: edges that carry the prediction (ablating them lowers the metric) and edges that work against it
_LOWERS, _RAISES = C.diverging(-0.85), C.diverging(0.85)
Point = tuple[float, float]


@dataclass(frozen=True)
class Held:
    """What of the circuit a view holds: the components whose nodes are in it, the edges between them, and for
    each of those components the edges it shares with a component outside."""

    components: list[Component]
    edges: list[CircuitEdge]
    outside: dict[str, list[CircuitEdge]]

    @classmethod
    def of(cls, graph: Graph, circuit: PredictionCircuit) -> Held:
        inside = {c.id for c in circuit.components if node_of(graph, c, circuit.position) in graph}
        outside: dict[str, list[CircuitEdge]] = {cid: [] for cid in inside}
        for e in circuit.edges:
            if (e.source in inside) != (e.target in inside):
                outside[e.source if e.source in inside else e.target].append(e)
        return cls(
            [c for c in circuit.components if c.id in inside],
            [e for e in circuit.edges if e.source in inside and e.target in inside],
            outside,
        )

    @property
    def leaving(self) -> int:
        """How many edges join a component of the view to one outside it."""
        return sum(len(es) for es in self.outside.values())


def node_of(graph: Graph, c: Component, position: int) -> str:
    """The graph node a component is drawn at: the vector it writes through at ``position`` (the logits for
    the logits)."""
    key = Key(VectorKind.logits, None, None, position) if c.type == "logits" else writer_key(c, position)
    return graph.topology.vector_id(key)


def circuit_scene(graph: Graph, *, callouts: bool = True, title: str = "") -> Scene:
    """Lay the stored circuit out as the view holds it (a pure function of the graph)."""
    circuit: PredictionCircuit | None = graph.header.circuit
    if circuit is None:
        raise RendererError(
            "view 'circuit' draws the circuit stored on the graph, and it has none: run graph.circuit(...) "
            "(or gpt2graph circuit ... -o run.gg) first"
        )
    held = Held.of(graph, circuit)
    drawing = Drawing(graph, circuit, held)
    page = Page(Frame(diagram_w=max(MIN_DIAGRAM_W, drawing.width + INSET)), Content(graph, callouts))
    f = circuit.faithfulness
    title = title or "The circuit behind the prediction"
    metric = circuit.metric_text
    title_block(
        page,
        graph,
        title,
        [
            f"corrupted: “{circuit.corrupted_text}” · metric {metric} at position {circuit.position}: clean "
            f"{signed(circuit.clean_value)}, corrupted {signed(circuit.corrupted_value)}",
            f"{len(circuit.edges)} edges of {circuit.n_scored} scored "
            + (f"(the top {circuit.top}" if circuit.top is not None else f"(|score| >= {circuit.threshold:g}")
            + f", {circuit.n_selected} selected before pruning); faithfulness measured with every other edge "
            f"{f.ablation}: {percent(f.recovered)} of the clean metric recovered",
        ],
    )
    content = page.content
    shown = f"{len(held.components)} of {len(circuit.components)} components, {len(held.edges)} of {len(circuit.edges)}"
    with (
        page.panel("residual", "Circuit", f"{shown} edges, in forward order from the embedding to the logits"),
        page.band(
            "residual",
            _callouts(
                content,
                ("edge-attribution-patching", "Edge widths and labels here are these scores."),
                ("circuit", ""),
            ),
        ),
    ):
        top = page.y + 4
        gutter = _key(page, top, drawing.scale, graph, held, circuit)
        page.y = max(gutter, drawing.draw(page, page.frame.diagram_x + INSET, top)) + 10
    with (
        page.panel(
            "residual",
            "Faithfulness",
            f"measured: the model run with every edge outside the circuit {f.ablation}",
        ),
        page.band(
            "residual",
            _callouts(
                content,
                (
                    "circuit-faithfulness",
                    f"Here: {percent(f.recovered)} recovered, measured with {f.ablation} ablation.",
                ),
            ),
        ),
    ):
        page.y = _summary(page, page.frame.diagram_x, page.y + 4, circuit) + 8
    page.y = max(page.y, page.callout_y)
    footer(page)
    return page.scene(title, f"Circuit of {graph.model.name} on {graph.tokenization.text!r}")


def _callouts(content: Content, *entries: tuple[str, str]) -> Callable[[], list[Callout]]:
    return lambda: [c for entry, note in entries for c in content.glossary_callout(entry, note)]


class Drawing:
    """The circuit's components and edges, placed relative to the diagram's top left corner: a column per stage
    that has components (the embedding, each layer's heads, its MLP, the logits), the components of a column
    stacked and the columns centred on one another; an edge that passes over columns arcs above them, and its
    score label sits where it overlaps no component and no other label."""

    def __init__(self, graph: Graph, circuit: PredictionCircuit, held: Held):
        self.graph, self.circuit, self.held = graph, circuit, held
        self.metric = circuit.metric_text
        self.scale = max((abs(e.score) for e in circuit.edges), default=1.0) or 1.0
        self.boxes = _place(held.components, graph.dims.n_layer)
        taken = [Box(b.x - 6, b.y, b.w + 9, b.h) for b in self.boxes.values()]  # its ports and output included
        self.edges: list[tuple[CircuitEdge, tuple[Point, Point, Point, Point], Box]] = []
        for e in sorted(held.edges, key=lambda e: -abs(e.score)):  # the strongest choose their label's place first
            a, b = self.boxes[e.source], self.boxes[e.target]
            between = [o for o in self.boxes.values() if a.right < o.x and o.right < b.x]  # the columns it passes
            curve = _curve(a, b, e.input, between)
            label = _label_box(curve, width(signed(e.score, 3), FS["tiny"], True) + 6, taken)
            taken.append(label)
            self.edges.append((e, curve, label))
        ys = [b.y for b in taken] + [p[1] for _, curve, _ in self.edges for p in curve]
        self.top = min(ys, default=0.0)  # arcs and labels rise above the components
        self.bottom = max([b.bottom for b in taken] + [p[1] for _, curve, _ in self.edges for p in curve], default=0.0)
        self.width = max((b.right for b in taken), default=0.0) + 6

    def draw(self, page: Page, x: float, y: float) -> float:
        """Draw it with its top left corner at (x, y); returns its bottom."""
        if not self.held.components:
            n = len(self.circuit.components)
            t = page.wrapped(
                x,
                y,
                f"None of the circuit's {n} components is inside this view: each is drawn at its node at the "
                f"scored position {self.circuit.position}.",
                page.frame.diagram_right - x,
                FS["body"],
                colour=C.MUTED,
            )
            page.label(t)
            return t.box.bottom
        dy = y - self.top

        def at(b: Box) -> Box:
            return Box(x + b.x, dy + b.y, b.w, b.h)

        def pt(p: Point) -> str:
            return f"{x + p[0]},{dy + p[1]}"

        labels = []
        for e, (p0, p1, p2, p3), label in reversed(self.edges):  # the strongest curves on top
            colour = _LOWERS if e.score < 0 else _RAISES
            reader = e.target + (f" ({e.input} input)" if e.input else "")
            tip = (
                f"{e.source} → {reader}: score {e.score:.6g}, the estimated change of the metric if this edge "
                "alone carried its ablated value"
            )
            data = {"source": e.source, "target": e.target, "input": e.input or "", "score": repr(e.score)}
            stroke = 1.0 + (MAX_EDGE - 1.0) * abs(e.score) / self.scale
            page.under(
                Group(
                    [Path(f"M{pt(p0)} C{pt(p1)} {pt(p2)} {pt(p3)}", colour, stroke)],
                    tip=tip,
                    cls="circuit-edge",
                    data=data,
                )
            )
            box = at(label)
            text = text_at(
                box.x + box.w / 2,
                box.y + 1,
                [signed(e.score, 3)],
                FS["tiny"],
                anchor="middle",
                bold=True,
                colour=colour,
            )
            labels.append(
                Group([Rect(box, "#ffffff", colour, 0.6, 3)], [text], tip=tip, cls="circuit-edge-label", data=data)
            )
        for c in self.held.components:
            page.front.append(self._component(c, at(self.boxes[c.id])))
        page.front.extend(labels)  # every label above the curves and the components
        return dy + self.bottom

    def _component(self, c: Component, box: Box) -> Group:
        colour = CATEGORY_COLOURS[_CATEGORY[c.type]]
        detail = {
            "embed": "token + position",
            "head": f"head {c.head} of layer {c.layer}",
            "mlp": f"MLP of layer {c.layer}",
            "logits": self.metric,
        }[c.type]
        inner = box.w - 16
        outside = self.held.outside[c.id]
        tip = f"{c.id}: {detail}"
        if outside:
            tip += "; edges leading outside this view: " + ", ".join(
                f"{e.source} → {e.target}{f' ({e.input} input)' if e.input else ''} {signed(e.score, 3)}"
                for e in outside
            )
        group = Group(
            parts=[Rect(box, tint(colour, 0.16), colour, 1.6, 6)],
            texts=[
                text_at(box.x + 8, box.y + 7, [fit(c.id, inner, FS["h2"], True)], FS["h2"], bold=True, colour=colour),
                text_at(box.x + 8, box.y + 24, [fit(detail, inner, FS["tiny"])], FS["tiny"], colour=C.MUTED),
            ],
            node=node_of(self.graph, c, self.circuit.position),
            tip=tip,
            cls="circuit-component",
            data={"component": c.id, "type": str(c.type), "outside": str(len(outside))},
        )
        if outside:
            note = f"{len(outside)} edge{'s' * (len(outside) > 1)} outside the view"
            group.texts.append(
                text_at(box.x + 8, box.y + NOTE_TOP, [fit(note, inner, FS["tiny"])], FS["tiny"], italic=True)
            )
        ports = _PORTS if c.type == "head" else (None,) if c.type != "embed" else ()
        for port in ports:
            y = _port_y(box, port)
            group.parts.append(Rect(Box(box.x - 5, y - 5, 10, 10), "#ffffff", colour, 1.4, 5))
            if port:
                group.texts.append(text_at(box.x + 9, y - 5, [f"{port} input"], FS["tiny"], colour=colour))
        if c.type != "logits":
            group.parts.append(Rect(Box(box.right - 3, box.y + box.h / 2 - 3, 6, 6), colour, rx=3))
        return group


def _place(components: list[Component], n_layer: int) -> dict[str, Box]:
    """A column per stage that has components, the components of a column stacked and the columns centred on one
    another, from (0, 0)."""
    columns: dict[int, list[Component]] = {}
    for c in components:
        columns.setdefault(component_stage(c, n_layer), []).append(c)

    def height(cs: list[Component]) -> float:
        return sum(HEAD_H if c.type == "head" else BOX_H for c in cs) + GAP * (len(cs) - 1)

    tallest = max((height(cs) for cs in columns.values()), default=0.0)
    boxes = {}
    for i, stage in enumerate(sorted(columns)):
        y = (tallest - height(columns[stage])) / 2
        for c in columns[stage]:
            h = HEAD_H if c.type == "head" else BOX_H
            boxes[c.id] = Box(i * COLUMN, y, BOX_W, h)
            y += h + GAP
    return boxes


def _port_y(box: Box, port: str | None) -> float:
    return box.y + PORT_TOP + PORT_STEP * _PORTS.index(port) if port else box.y + box.h / 2


def _curve(a: Box, b: Box, port: str | None, between: list[Box]) -> tuple[Point, Point, Point, Point]:
    """From the writer's output (right of ``a``) to the reader's port (left of ``b``): straight across between
    neighbouring columns; over the components of the columns it passes (``between``) otherwise, or under them
    where that is the shorter way round, clearing each by :data:`_CLEAR`. The curve is shifted by L times
    3t(1 - t) at parameter t, so the shift a component needs is read off at the points of the curve over it."""
    p0, p3 = (a.right + 3, a.y + a.h / 2), (b.x - 5, _port_y(b, port))
    bend = max(40.0, (p3[0] - p0[0]) / 2)
    skipped = round((b.x - a.x) / COLUMN) - 1
    least = 0.0 if skipped < 1 else 36.0 + 22.0 * skipped
    up, down = least, least  # how far it must rise to pass over, or sink to pass under
    x1, x2 = p0[0] + bend, p3[0] - bend
    for i in range(1, _SAMPLES):
        t = i / _SAMPLES
        u = 1 - t
        x = u**3 * p0[0] + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * p3[0]
        y = (u**3 + 3 * u * u * t) * p0[1] + (3 * u * t * t + t**3) * p3[1]  # the curve's y, not shifted
        for o in between:
            if o.x - _CLEAR <= x <= o.right + _CLEAR:
                up = max(up, (y - (o.y - _CLEAR)) / (3 * t * u))
                down = max(down, (o.bottom + _CLEAR - y) / (3 * t * u))
    lift = up if up <= down else -down
    return p0, (x1, p0[1] - lift), (x2, p3[1] - lift), p3


def _label_box(curve: tuple[Point, Point, Point, Point], w: float, taken: list[Box]) -> Box:
    """A box for an edge's label on the curve (or just beside it) that overlaps no box taken; the midpoint when
    every place is taken."""
    p0, p1, p2, p3 = curve

    def at(t: float, dy: float) -> Box:
        u = 1 - t
        x = u**3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t**3 * p3[0]
        y = u**3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t**3 * p3[1]
        return Box(x - w / 2, y - LABEL_H / 2 + dy, w, LABEL_H)

    for dy in (0, -14, 14, -28, 28, -42, 42, -56, 56):
        for t in (0.5, 0.38, 0.62, 0.26, 0.74, 0.14, 0.86):
            box = at(t, dy)
            if not any(box.overlaps(other) for other in taken):
                return box
    return at(0.5, 0)


def _key(page: Page, y: float, scale: float, graph: Graph, held: Held, circuit: PredictionCircuit) -> float:
    """The gutter: what of the circuit this view holds (for a view), then how to read the drawing; returns its
    bottom."""
    x, w = page.frame.gutter_x, page.frame.gutter_w
    if len(held.components) < len(circuit.components):
        t = page.wrapped(
            x,
            y,
            f"This view ({view_text(graph.selection)}) holds {len(held.components)} of the circuit's "
            f"{len(circuit.components)} components and {len(held.edges)} of its {len(circuit.edges)} edges; "
            f"{held.leaving} edge{'s' * (held.leaving != 1)} lead{'s' * (held.leaving == 1)} outside it"
            + (" (each component counts its own, its tooltip names them)." if held.leaving else "."),
            w,
            FS["small"],
            bold=True,
        )
        data = {
            "components": str(len(held.components)),
            "edges": str(len(held.edges)),
            "outside": str(held.leaving),
        }
        page.front.append(Group(texts=[t], cls="view-note", data=data))
        y = t.box.bottom + 10
    group = Group(cls="circuit-legend")
    group.texts.append(text_at(x, y, ["How to read it"], FS["h2"], bold=True))
    y += line_height(FS["h2"]) + 4
    for colour, text in (
        (_LOWERS, "ablating the edge lowers the metric: it carries the clean prediction"),
        (_RAISES, "ablating the edge raises the metric: it works against the prediction"),
    ):
        t = page.wrapped(x + 38, y, text, w - 38, FS["small"])
        group.parts.append(Path(f"M{x},{y + 6} L{x + 30},{y + 6}", colour, 4))
        group.texts.append(t)
        y = t.box.bottom + 4
    for stroke, value in ((1.0, 0.0), (MAX_EDGE / 2, scale / 2), (MAX_EDGE, scale)):
        group.parts.append(Path(f"M{x},{y + 6} L{x + 30},{y + 6}", C.MUTED, stroke))
        group.texts.append(
            text_at(x + 38, y, [f"|score| {signed(value, 3).lstrip('+−')}"], FS["small"], colour=C.MUTED)
        )
        y += line_height(FS["small"]) + 4
    t = page.wrapped(
        x,
        y + 2,
        "Edges into a head end at its q, k or v port; every head, MLP and the logits read the residual stream, "
        "the sum of what every earlier component wrote.",
        w,
        FS["tiny"],
        colour=C.MUTED,
    )
    group.texts.append(t)
    page.front.append(group)
    return t.box.bottom


def _summary(page: Page, x: float, y: float, circuit: PredictionCircuit) -> float:
    """The three measured values and the share recovered; returns its bottom."""
    f = circuit.faithfulness
    rows = [
        ("clean run", f.clean_value),
        (f"every edge {f.ablation}", f.ablated_value),
        ("only the circuit clean", f.circuit_value),
    ]
    group = Group(cls="faithfulness", data={"recovered": repr(f.recovered)})
    group.texts.append(text_at(x, y, [f"Faithfulness: {percent(f.recovered)} recovered"], FS["h2"], bold=True))
    y += line_height(FS["h2"]) + 4
    name_w = max(width(name, FS["small"]) for name, _ in rows) + 70
    for name, value in rows:
        group.texts.append(text_at(x, y, [name], FS["small"], colour=C.MUTED))
        group.texts.append(text_at(x + name_w, y, [signed(value)], FS["small"], anchor="end"))
        y += line_height(FS["small"]) + 3
    t = text_at(x, y + 2, ["(circuit − all ablated) / (clean − all ablated), measured"], FS["tiny"], colour=C.MUTED)
    group.texts.append(t)
    page.front.append(group)
    return t.box.bottom
