"""A :class:`~gpt2graph_svg.scene.Scene` as an SVG document, built with ElementTree: every text and attribute
value is escaped by the serialiser, so text from the user (the prompt, annotations) can never become markup.

Elements that draw a graph node carry the node id in ``data-node`` and a unique XML id ``n-<escaped id>``
(see :func:`element_id`); their ``<title>`` is the tooltip.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from . import colors as C
from .scene import Group, Path, Rect, Scene, Text
from .text import FONT_FAMILY, ascent, line_height

__all__ = ["to_svg", "element_id", "SVG_NS", "XLINK_NS"]

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

_UNSAFE = re.compile(r"[^A-Za-z0-9._]")


def element_id(node_id: str) -> str:
    """XML id for a graph node id: ``n-`` then the id with every character outside ``[A-Za-z0-9._]`` written
    as ``-`` and its code point in hex, e.g. ``blocks.0.attn.hook_q[1,3]`` -> ``n-blocks.0.attn.hook_q-5b1-2c3-5d``.
    Node ids contain ``[``, ``,`` and ``:``, which an XML id may not."""
    return "n-" + _UNSAFE.sub(
        lambda m: f"-{ord(m.group()):02x}" if ord(m.group()) < 256 else f"-u{ord(m.group()):06x}", node_id
    )


def _n(v: float) -> str:
    """Coordinates with at most two decimals, so the same scene always serialises to the same bytes."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _num_path(d: str) -> str:
    return re.sub(r"-?\d+\.\d+", lambda m: _n(float(m.group())), d)


def _rect(parent: ET.Element, r: Rect) -> None:
    attrs = {"x": _n(r.box.x), "y": _n(r.box.y), "width": _n(r.box.w), "height": _n(r.box.h), "fill": r.fill}
    if r.rx:
        attrs["rx"] = _n(r.rx)
    if r.stroke:
        attrs.update({"stroke": r.stroke, "stroke-width": _n(r.stroke_width)})
    if r.dash:
        attrs["stroke-dasharray"] = r.dash
    ET.SubElement(parent, "rect", attrs)


def _path(parent: ET.Element, p: Path) -> None:
    attrs = {"d": _num_path(p.d), "fill": p.fill, "stroke": p.stroke, "stroke-width": _n(p.width)}
    if p.dash:
        attrs["stroke-dasharray"] = p.dash
    if p.arrow:
        attrs["marker-end"] = "url(#arrow)"
    ET.SubElement(parent, "path", attrs)


def _text(parent: ET.Element, t: Text) -> None:
    if t.href:
        parent = ET.SubElement(parent, "a", {"href": t.href, f"{{{XLINK_NS}}}href": t.href, "target": "_blank"})
        if t.tip:
            ET.SubElement(parent, "title").text = t.tip
    x = {"start": t.box.x, "middle": t.box.x + t.box.w / 2, "end": t.box.right}[t.anchor]
    attrs = {"x": _n(x), "y": _n(t.box.y + ascent(t.size)), "font-size": _n(t.size)}
    if t.anchor != "start":
        attrs["text-anchor"] = t.anchor
    if t.bold:
        attrs["font-weight"] = "bold"
    if t.italic:
        attrs["font-style"] = "italic"
    if t.colour != C.TEXT:
        attrs["fill"] = t.colour
    if t.href:
        attrs["text-decoration"] = "underline"
    el = ET.SubElement(parent, "text", attrs)
    if len(t.lines) == 1:
        el.text = t.lines[0]
        return
    for i, line in enumerate(t.lines):
        span = ET.SubElement(el, "tspan", {"x": _n(x), "dy": "0" if i == 0 else _n(line_height(t.size))})
        span.text = line


def _group(parent: ET.Element, g: Group) -> None:
    attrs = {}
    if g.node is not None:
        attrs = {"id": element_id(g.node), "data-node": g.node}
    if g.cls:
        attrs["class"] = g.cls
    attrs.update({f"data-{k}": v for k, v in g.data.items()})
    el = ET.SubElement(parent, "g", attrs) if attrs or g.tip else parent
    if g.tip:
        ET.SubElement(el, "title").text = g.tip
    for part in g.parts:
        (_rect if isinstance(part, Rect) else _path)(el, part)
    for t in g.texts:
        _text(el, t)


def to_svg(scene: Scene) -> bytes:
    """The SVG document for ``scene``, as UTF-8 bytes; the same scene always gives the same bytes."""
    root = ET.Element(
        f"{{{SVG_NS}}}svg",
        {
            "width": _n(scene.width),
            "height": _n(scene.height),
            "viewBox": f"0 0 {_n(scene.width)} {_n(scene.height)}",
            "font-family": FONT_FAMILY,
            "fill": C.TEXT,
            "role": "img",
        },
    )
    ET.SubElement(root, "title").text = scene.title
    ET.SubElement(root, "desc").text = scene.description
    defs = ET.SubElement(root, "defs")
    marker = ET.SubElement(
        defs,
        "marker",
        {
            "id": "arrow",
            "viewBox": "0 0 10 10",
            "refX": "9",
            "refY": "5",
            "markerWidth": "7",
            "markerHeight": "7",
            "orient": "auto-start-reverse",
        },
    )
    ET.SubElement(marker, "path", {"d": "M0,1 L10,5 L0,9 z", "fill": "context-stroke", "stroke": "none"})
    ET.SubElement(root, "rect", {"width": "100%", "height": "100%", "fill": "#ffffff"})
    for g in scene.groups:
        _group(root, g)
    body = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")
