"""Where everything goes: a pure function from a graph (and the options) to a :class:`Scene` of positioned
shapes and measured text. Nothing here knows SVG; :mod:`draw` turns a scene into a document.

The page reads top to bottom as the forward pass runs. Three columns (:class:`~.engine.Frame`): a gutter
naming each row of vectors (with its shape computed from the run), the diagram (one lane per token position,
one strip of coloured cells per vector), and the callouts beside the band they explain. Every band is as tall
as the taller of its diagram and its callouts, so a callout always sits level with the part it explains.

The parts: the page engine (:mod:`.engine`), rows of vectors on lanes (:mod:`.rows`), their tooltips
(:mod:`.tips`), the forward pass (:mod:`.sections`), the panels after it (:mod:`.panels`, :mod:`.heads`), and the title,
legend and footer (:mod:`.furniture`). Every text item carries the box it occupies (measured with the font the
SVG names); ``Scene.texts()`` lists them all so that a test can check that no two overlap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpt2graph.plugin import DecodingResult

from .content import Content
from .engine import Frame, Page
from .furniture import footer, legend_block, title_block
from .heads import HeadMap
from .panels import Panels
from .readout import Readout
from .rows import Lanes, Rows
from .scene import Scene
from .sections import ForwardPass
from .tips import Tips

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["layout"]


def layout(
    graph: Graph,
    *,
    layers: list[int],
    head: int,
    positions: list[int],
    decoding: DecodingResult,
    decoding_stored: bool = False,
    head_color: str | None = None,
    callouts: bool = True,
    title: str = "",
) -> Scene:
    """The positioned scene for ``graph``. Arguments are already validated by the renderer; ``decoding`` is the
    decoding to draw (stored in the analysis or computed), ``head_color`` the head map's metric (None: no map,
    which needs an analysis)."""
    title = title or f"GPT-2, vector by vector: “{_short(graph.tokenization.text)}”"
    lanes = Lanes.of(positions)
    page = Page(Frame(diagram_w=lanes.width), Content(graph, callouts))
    readout = Readout(graph)
    rows = Rows(page, lanes, graph, Tips(graph, readout))
    heads = None if head_color is None else HeadMap(page, graph, readout, head_color, layers, head)
    forward = ForwardPass(page, rows, graph, layers, head, heads.chip if heads is not None else None)
    panels = Panels(page, lanes, graph, readout, forward, decoding, decoding_stored)

    title_block(page, graph, title)
    legend_block(page)
    lanes_top = page.y
    forward.input()
    forward.embeddings()
    forward.blocks()
    forward.unembedding()
    panels.decoding()
    if graph.analysis is not None:
        panels.lens()
        panels.dla()
    if heads is not None:
        heads.panel()
    forward.gap_markers(lanes_top)
    forward.residual_lane()
    page.y = max(page.y, page.callout_y)
    footer(page)
    model = graph.model
    description = (
        f"Vector-level view of one forward pass of {model.name} ({model.weights.status} weights) on the prompt "
        f"{graph.tokenization.text!r}."
    )
    return page.scene(title, description)


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
