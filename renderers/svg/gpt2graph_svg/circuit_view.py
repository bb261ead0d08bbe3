"""The circuit behind a prediction (``graph.header.circuit``), drawn in the poster's style reduced to the
circuit's components: the embedding, the heads (each with its query, key and value inputs as ports) and MLPs in
forward order, and the logits, joined by the circuit's edges at widths following their scores, each labelled
with its score, with callouts explaining edge attribution patching and how faithfulness was measured.

Components are groups carrying the graph node through which they write (``data-node``: a head's output at the
scored position, ...) and ``data-component``; edges carry ``data-source``, ``data-target``, ``data-input`` and
``data-score``. Nothing is recomputed: everything drawn is what the run stores.
"""

from __future__ import annotations

from typing import Any

from gpt2graph.plugin import (
    CATEGORY_COLOURS,
    CircuitEdge,
    Component,
    Key,
    PredictionCircuit,
    RendererError,
    VectorKind,
    percent,
    signed,
    tint,
    writer_key,
)

from . import colors as C
from .causal_page import MARGIN, Page
from .scene import FS, Box, Group, Path, Rect, Scene, text_at
from .text import width

__all__ = ["circuit_scene"]

COLUMN = 220  # from one column of components to the next (px)
BOX_W = 118
HEAD_H, BOX_H = 90, 46  # a head has three input ports, below its name; other components one
PORT_TOP, PORT_STEP = 44, 16  # a head's q, k and v ports, from its top
GAP = 26  # between components of a column
MAX_EDGE = 9.0  # stroke width of the strongest edge (px)
_CATEGORY = {"embed": "residual", "head": "attention", "mlp": "mlp", "logits": "unembedding"}
_PORTS = ("q", "k", "v")
#: edges that carry the prediction (ablating them lowers the metric) and edges that work against it
_LOWERS, _RAISES = C.diverging(-0.85), C.diverging(0.85)


def circuit_scene(graph: Any, *, callouts: bool = True, title: str = "") -> Scene:
    """Lay the stored circuit out (a pure function of the graph)."""
    circuit: PredictionCircuit | None = graph.header.circuit
    if circuit is None:
        raise RendererError(
            "view 'circuit' draws the circuit stored on the graph, and it has none: run graph.circuit(...) "
            "(or gpt2graph circuit ... -o run.gg) first"
        )
    page = Page(graph, callouts)
    f = circuit.faithfulness
    metric = (
        f"logit({circuit.answer}) − logit({circuit.wrong})"
        if circuit.metric == "logit_diff"
        else f"p({circuit.answer})"
    )
    page.header(
        title or "The circuit behind the prediction",
        [
            f"clean: {graph.tokenization.text!r}    corrupted: {circuit.corrupted_text!r}",
            f"metric {metric} at position {circuit.position}: clean {signed(circuit.clean_value)}, corrupted "
            f"{signed(circuit.corrupted_value)}",
            f"{len(circuit.edges)} edges of {circuit.n_scored} scored "
            + (f"(the top {circuit.top}" if circuit.top is not None else f"(|score| >= {circuit.threshold:g}")
            + f", {circuit.n_selected} selected before pruning); faithfulness measured with every other edge "
            f"{f.ablation}: {percent(f.recovered)} of the clean metric recovered",
        ],
        980,
    )
    boxes = _place(circuit, graph.dims.n_layer, 0.0)
    headroom = max((0.75 * _lift(boxes[e.source], boxes[e.target]) for e in circuit.edges), default=0.0)
    top = page.y + 30 + headroom  # room for the arcs of edges that pass over columns
    boxes = {k: Box(b.x, b.y + top, b.w, b.h) for k, b in boxes.items()}
    bottom = max((b.bottom for b in boxes.values()), default=page.y)
    scale = max((abs(e.score) for e in circuit.edges), default=1.0) or 1.0
    last = graph.n_tokens - 1
    components = [_component(graph, c, boxes[c.id], last, metric) for c in circuit.components]
    taken = [t.box for g in components for t in g.texts] + list(boxes.values())
    curves, labels = [], []
    for edge in sorted(circuit.edges, key=lambda e: -abs(e.score)):  # the strongest choose their label's place first
        curve, label = _edge(edge, boxes, scale, taken)
        curves.append(curve)
        labels.append(label)
    page.groups += [*curves[::-1], *components, *labels]  # the strongest curves on top; every label above them
    right = max((b.right for b in boxes.values()), default=MARGIN)
    page.right = max(page.right, right)
    y = _legend(page, MARGIN, bottom + 30, scale) + 16
    _summary(page, MARGIN + 420, bottom + 30, circuit)
    x = MARGIN
    for entry, note in (
        ("edge-attribution-patching", "Edge widths and labels here are these scores."),
        ("circuit-faithfulness", f"Here: {percent(f.recovered)} recovered, measured with {f.ablation} ablation."),
        ("circuit", ""),
    ):
        page.callout(entry, x, y, 320, "residual", note)
        x += 340
    page.right = max(page.right, x)
    height = max(g_bottom(g) for g in page.groups)
    return Scene(
        page.right + MARGIN,
        height + MARGIN,
        title or "The circuit behind the prediction",
        f"Circuit of {graph.model.name} on {graph.tokenization.text!r}",
        page.groups,
    )


def g_bottom(g: Group) -> float:
    """The lowest point a group draws (its texts and rectangles)."""
    parts = [p.box.bottom for p in g.parts if isinstance(p, Rect)]
    return max([t.box.bottom for t in g.texts] + parts + [0.0])


def _stage(c: Component, n_layer: int) -> int:
    if c.type == "embed":
        return -1
    if c.type == "logits":
        return 2 * n_layer
    return 2 * c.layer + (c.type == "mlp")


def _place(circuit: PredictionCircuit, n_layer: int, top: float) -> dict[str, Box]:
    """A column per stage that has components (embedding, each layer's heads, its MLP, logits), the components
    of a column stacked and the columns centred on one another."""
    stages = sorted({_stage(c, n_layer) for c in circuit.components})
    columns: dict[int, list[Component]] = {s: [] for s in stages}
    for c in circuit.components:
        columns[_stage(c, n_layer)].append(c)

    def height(cs: list[Component]) -> float:
        return sum(HEAD_H if c.type == "head" else BOX_H for c in cs) + GAP * (len(cs) - 1)

    tallest = max((height(cs) for cs in columns.values()), default=0.0)
    boxes = {}
    for i, stage in enumerate(stages):
        y = top + (tallest - height(columns[stage])) / 2
        for c in columns[stage]:
            h = HEAD_H if c.type == "head" else BOX_H
            boxes[c.id] = Box(MARGIN + 40 + i * COLUMN, y, BOX_W, h)
            y += h + GAP
    return boxes


def _port_y(box: Box, port: str | None) -> float:
    return box.y + PORT_TOP + PORT_STEP * _PORTS.index(port) if port else box.y + box.h / 2


def _component(graph: Any, c: Component, box: Box, last: int, metric: str) -> Group:
    colour = CATEGORY_COLOURS[_CATEGORY[c.type]]
    name, detail = {
        "embed": (c.id, "token + position"),
        "head": (c.id, f"head {c.head} of layer {c.layer}"),
        "mlp": (c.id, f"MLP of layer {c.layer}"),
        "logits": (c.id, metric),
    }[c.type]
    key = Key(VectorKind.logits, None, None, last) if c.type == "logits" else writer_key(c, last)
    group = Group(
        parts=[Rect(box, tint(colour, 0.16), colour, 1.6, 6)],
        texts=[text_at(box.x + 10, box.y + 7, [name], FS["h2"], bold=True, colour=colour)],
        node=graph.topology.vector_id(key),
        tip=f"{name}: {detail}",
        cls="circuit-component",
        data={"component": c.id, "type": str(c.type)},
    )
    group.texts.append(text_at(box.x + 10, box.y + 24, [detail], FS["tiny"], colour=C.MUTED))
    ports = _PORTS if c.type == "head" else (None,) if c.type != "embed" else ()
    for port in ports:
        y = _port_y(box, port)
        group.parts.append(Rect(Box(box.x - 5, y - 5, 10, 10), "#ffffff", colour, 1.4, 5))
        if port:
            group.texts.append(text_at(box.x + 9, y - 5, [f"{port} input"], FS["tiny"], colour=colour))
    if c.type != "logits":
        group.parts.append(Rect(Box(box.right - 3, box.y + box.h / 2 - 3, 6, 6), colour, rx=3))
    return group


def _edge(edge: CircuitEdge, boxes: dict[str, Box], scale: float, taken: list[Box]) -> tuple[Group, Group]:
    """The edge as a curve from the writer's output to the reader's port, its width following |score|, and its
    score as a label where it overlaps nothing placed before (``taken``, which it joins)."""
    a, b = boxes[edge.source], boxes[edge.target]
    p0, p3 = (a.right + 3, a.y + a.h / 2), (b.x - 5, _port_y(b, edge.input))
    bend = max(40.0, (p3[0] - p0[0]) / 2)
    lift = _lift(a, b)
    p1, p2 = (p0[0] + bend, p0[1] - lift), (p3[0] - bend, p3[1] - lift)
    colour = _LOWERS if edge.score < 0 else _RAISES
    stroke = 1.0 + (MAX_EDGE - 1.0) * abs(edge.score) / scale
    label = signed(edge.score, 3)
    lw = width(label, FS["tiny"]) + 6
    label_box = _label_box(p0, p1, p2, p3, lw, taken)
    taken.append(label_box)
    reader = edge.target + (f" ({edge.input} input)" if edge.input else "")
    tip = (
        f"{edge.source} → {reader}: score {edge.score:.6g}, the estimated change of the metric if this edge alone "
        "carried its ablated value"
    )
    data = {"source": edge.source, "target": edge.target, "input": edge.input or "", "score": repr(edge.score)}
    curve = Group(
        parts=[Path(f"M{p0[0]},{p0[1]} C{p1[0]},{p1[1]} {p2[0]},{p2[1]} {p3[0]},{p3[1]}", colour, stroke)],
        tip=tip,
        cls="circuit-edge",
        data=data,
    )
    text = text_at(
        label_box.x + lw / 2, label_box.y + 1, [label], FS["tiny"], anchor="middle", bold=True, colour=colour
    )
    return curve, Group(
        [Rect(label_box, "#ffffff", colour, 0.6, 3)], [text], tip=tip, cls="circuit-edge-label", data=data
    )


def _lift(a: Box, b: Box) -> float:
    """How far an edge from box ``a`` to box ``b`` arcs up: not at all between neighbouring columns, above the
    components of the columns it passes over otherwise (the curve's top is 3/4 of this above its ends)."""
    skipped = round((b.x - a.x) / COLUMN) - 1
    return 0.0 if skipped < 1 else 36.0 + 22.0 * skipped


def _label_box(p0, p1, p2, p3, w: float, taken: list[Box]) -> Box:
    """A box for an edge's label on the curve (or just beside it) that overlaps no box taken; the midpoint when
    every place is taken."""

    def at(t: float, dy: float) -> Box:
        u = 1 - t
        x = u**3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t**3 * p3[0]
        y = u**3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t**3 * p3[1]
        return Box(x - w / 2, y - 6 + dy, w, 12)

    for dy in (0, -14, 14, -28, 28):
        for t in (0.5, 0.38, 0.62, 0.26, 0.74, 0.14, 0.86):
            box = at(t, dy)
            if not any(box.overlaps(other) for other in taken):
                return box
    return at(0.5, 0)


def _legend(page: Page, x: float, y: float, scale: float) -> float:
    group = Group(cls="circuit-legend")
    group.texts.append(text_at(x, y, ["How to read it"], FS["h2"], bold=True))
    y += 20
    for colour, text in (
        (_LOWERS, "ablating the edge lowers the metric: it carries the clean prediction"),
        (_RAISES, "ablating the edge raises the metric: it works against the prediction"),
    ):
        group.parts.append(Path(f"M{x},{y + 6} L{x + 40},{y + 6}", colour, 4))
        group.texts.append(text_at(x + 50, y, [text], FS["small"]))
        y += 18
    for w, text in ((1.0, "0"), (MAX_EDGE / 2, signed(scale / 2, 3)), (MAX_EDGE, signed(scale, 3))):
        group.parts.append(Path(f"M{x},{y + 6} L{x + 40},{y + 6}", C.MUTED, w))
        group.texts.append(text_at(x + 50, y, [f"|score| {text.lstrip('+−')}"], FS["small"], colour=C.MUTED))
        y += 16
    note = "Edges into a head end at its q, k or v port; every head, MLP and the logits read the residual stream."
    group.texts.append(text_at(x, y + 2, [note], FS["tiny"], colour=C.MUTED))
    page.groups.append(group)
    return y + 16


def _summary(page: Page, x: float, y: float, circuit: PredictionCircuit) -> None:
    f = circuit.faithfulness
    rows = [
        ("clean run", f.clean_value),
        (f"every edge {f.ablation}", f.ablated_value),
        ("only the circuit clean", f.circuit_value),
    ]
    group = Group(cls="faithfulness", data={"recovered": repr(f.recovered)})
    group.texts.append(text_at(x, y, [f"Faithfulness: {percent(f.recovered)} recovered"], FS["h2"], bold=True))
    y += 20
    for name, value in rows:
        group.texts.append(text_at(x, y, [name], FS["small"], colour=C.MUTED))
        group.texts.append(text_at(x + 190, y, [signed(value)], FS["small"], anchor="end"))
        y += 15
    group.texts.append(
        text_at(x, y + 2, ["(circuit − all ablated) / (clean − all ablated), measured"], FS["tiny"], colour=C.MUTED)
    )
    page.groups.append(group)
