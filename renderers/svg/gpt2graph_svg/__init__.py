"""gpt2graph-svg: a static, printable SVG infographic of a gpt2graph run.

It draws what the hand-drawn "A Vector-Level View of GPT-2" draws, from a live run: the prompt and its
tokens, the embedding lookups, the residual stream through the blocks (expanded ones in full: LayerNorm,
per-head q/k/v, causal scores and attention pattern, z, per-head W_O, the MLP), the final LayerNorm, the tied
unembedding, and decoding to the next token, with callouts from the glossary data beside each part. A graph
carrying an analysis (``graph.analyze()``) adds the logit lens, direct logit attribution and a map of heads
coloured by DLA or a role score, and its numbers in every tooltip.

Registered as the ``svg`` renderer through the ``gpt2graph.renderers`` entry point::

    graph.render("svg", "out.svg", layers=[0, 11], head=3)
    gpt2graph render run.gg -r svg -o out.svg --option layers=0,11 --option head=3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt2graph.plugin import Option, RendererError, atomic_write

from .circuit_view import circuit_scene
from .corpus import corpus_scene
from .draw import element_id, to_svg
from .layout import layout
from .patching import patching_scene
from .readout import HEAD_COLOURS, decoding, decoding_view
from .scene import Scene

__all__ = ["SvgRenderer", "scene", "element_id", "__version__"]
__version__ = "0.1.0"

MAX_DEFAULT_POSITIONS = 12
#: what the renderer draws: the forward pass, or the causal experiments stored on the run
VIEWS = ("graph", "patching", "circuit")


class SvgRenderer:
    """The ``svg`` renderer: ``render(graph, path, **options)`` writes one SVG file atomically."""

    name = "svg"
    description = "static SVG infographic: a vector-level view of the forward pass, annotated and printable"
    suffixes = (".svg",)
    options = {
        "layers": Option(
            list[int],
            [0],
            "blocks drawn in full; the others are elided with a marker ('all' for every block, '' for none)",
            minimum=0,
        ),
        "head": Option(
            int, 0, "the head drawn in full in each expanded block; the others are stacked behind it", minimum=0
        ),
        "positions": Option(
            list[int],
            None,
            "token positions shown",
            minimum=0,
            default_text=f"all, or the first 4 and the last 8 when there are more than {MAX_DEFAULT_POSITIONS}",
        ),
        "callouts": Option(bool, True, "show glossary callouts and annotations beside the parts they explain"),
        "title": Option(str, "", "title of the infographic", default_text="derived from the prompt"),
        "temperature": Option(
            float, None, "decoding temperature (> 0)", default_text="the stored analysis's decoding, else 1"
        ),
        "top_k": Option(int, None, "keep the k most probable tokens when decoding", minimum=1, default_text="no top-k"),
        "top_p": Option(float, None, "nucleus threshold of the decoding, in (0, 1]", default_text="no top-p"),
        "seed": Option(
            int, None, "draw the next token with this seed", minimum=0, default_text="greedy (the most probable)"
        ),
        "head_color": Option(
            str,
            None,
            "colour of the head map (needs an analysis)",
            choices=HEAD_COLOURS,
            default_text="dla when the graph carries an analysis",
        ),
        "view": Option(
            str,
            "graph",
            "what to draw: the forward pass (graph), the patching sweeps stored on it as heat maps (patching), or "
            "the circuit stored on it (circuit); the last two draw what a view holds of them and use only the "
            "callouts and title options",
            choices=VIEWS,
        ),
    }

    def render(self, graph: Any, path: str | Path, **options: Any) -> Path:
        path = Path(path)
        data = to_svg(scene(graph, **options))
        atomic_write(path, data)
        return path

    def render_corpus(self, stats: Any, path: str | Path) -> Path:
        """Corpus statistics: head-role heat maps, lens accuracy by layer, loss by position."""
        path = Path(path)
        atomic_write(path, to_svg(corpus_scene(stats)))
        return path

    def show(self, graph: Any, **options: Any) -> None:
        """The infographic in a Jupyter notebook's output, inline (``graph.show("svg")``)."""
        from IPython.display import SVG, display  # a notebook has IPython

        display(SVG(data=to_svg(scene(graph, **options))))


def scene(
    graph: Any,
    *,
    layers: list[int] | None = (0,),
    head: int = 0,
    positions: list[int] | None = None,
    callouts: bool = True,
    title: str = "",
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    head_color: str | None = None,
    view: str = "graph",
) -> Scene:
    """Validate the options against the graph and lay it out (a pure function: no file is touched).
    Decoding options, when given, draw the run with those settings; left unset, the graph's own (and its stored
    analysis's table, if any; see :func:`readout.decoding`). ``view``: the forward pass, or the patching sweeps or
    circuit stored on the run (:mod:`.patching`, :mod:`.circuit_view`).

    A view (``graph.subgraph(...)``) is drawn as it is: its layers are the blocks expanded (the others elided),
    its first head the one drawn in full, its positions the lanes; the options choose only on the axes the
    view leaves whole. The causal views draw the cells and circuit components the view holds, and say what
    they leave out."""
    if view == "patching":
        return patching_scene(graph, callouts=callouts, title=title)
    if view == "circuit":
        return circuit_scene(graph, callouts=callouts, title=title)
    d, n = graph.dims, graph.n_tokens
    _in_range("layer", layers or [], d.n_layer)
    _in_range("head", [head], d.n_head)
    if positions is not None and not positions:
        raise RendererError("option 'positions' is empty: give at least one token position")
    _in_range("position", positions or [], n)
    chosen = graph.selection.filled(layers, head, positions)
    layers = list(range(d.n_layer)) if chosen.layers is None else sorted(chosen.layers)
    head = min(chosen.heads)
    if chosen.positions is not None:
        positions = sorted(chosen.positions)
    else:
        positions = list(range(n)) if n <= MAX_DEFAULT_POSITIONS else [*range(4), *range(n - 8, n)]
    if graph.analysis is None and head_color is not None:
        raise RendererError(
            "option 'head_color' needs interpretability results on the graph: build with "
            "--analyze (or call graph.analyze()) first"
        )
    if graph.analysis is not None and head_color is None:
        head_color = "dla"
    decoded = decoding_view(graph, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    result, stored = decoding(decoded, custom=decoded is not graph)
    return layout(
        decoded,
        layers=layers,
        head=head,
        positions=positions,
        decoding=result,
        decoding_stored=stored,
        head_color=head_color,
        callouts=callouts,
        title=title,
    )


def _in_range(what: str, values: list[int], limit: int) -> None:
    bad = sorted({v for v in values if not 0 <= v < limit})
    if bad:
        raise RendererError(
            f"{what} {', '.join(map(str, bad))} does not exist: this model has {what}s 0 to {limit - 1}"
        )
