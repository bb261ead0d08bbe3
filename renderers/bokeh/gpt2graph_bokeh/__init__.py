"""gpt2graph-bokeh: the interactive explorer renderer, a self-contained HTML page built with Bokeh.

    gpt2graph render run.gg -r bokeh -o run.html
    graph.render("bokeh", "run.html", color_by="norm")
    gpt2graph_bokeh.show(graph)          # inline in Jupyter, else in the web browser

The page inlines BokehJS (``resources=INLINE``), so it opens from disk with no network and no server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import bokeh.io
from bokeh.embed import file_html
from bokeh.resources import INLINE

from gpt2graph.plugin import Option, atomic_write, check_options

from .analysis_panel import ANALYSIS_MODES
from .corpus import build_corpus_page, corpus_title
from .document import COLOR_MODES, build_explorer, default_title

if TYPE_CHECKING:
    from gpt2graph.plugin import CorpusStats, Graph

__all__ = ["BokehRenderer", "build_explorer", "show", "write_html"]

__version__ = "0.1.0"


def write_html(graph: Graph, path: str | Path, **options: Any) -> Path:
    """Build the explorer and write it as one HTML file, atomically."""
    options = check_options(BokehRenderer.options, options, "bokeh")  # the same rules as graph.render("bokeh")
    root = build_explorer(graph, **options)
    path = Path(path)
    atomic_write(path, file_html(root, INLINE, title=options.get("title") or default_title(graph)).encode("utf-8"))
    return path


def show(graph: Graph, **options: Any) -> Path | None:
    """Display the explorer: inline in a Jupyter notebook, elsewhere opened in the web browser (the same as
    ``graph.show("bokeh", **options)``)."""
    return graph.show("bokeh", **options)


def _show_inline(graph: Graph, **options: Any) -> None:
    """The explorer in a notebook's output. BokehJS is inlined (so it works offline) once per notebook session,
    by the first call; later cells carry only their own document."""
    from bokeh.io.state import curstate

    if not curstate().notebook:
        bokeh.io.output_notebook(resources=INLINE, hide_banner=True)
    root = build_explorer(graph, **options)
    bokeh.io.show(root)
    if root in curstate().document.roots:  # shown: the session's document need not keep every explorer alive
        curstate().document.remove_root(root)


class BokehRenderer:
    """The ``bokeh`` renderer plugin: every vector of a run on one zoomable, explorable canvas."""

    name = "bokeh"
    description = "interactive HTML explorer (Bokeh): hover, click to trace ancestry, attention heat maps"
    suffixes = (".html",)
    options: ClassVar[dict[str, Option]] = {
        "title": Option(str, None, "title of the page", default_text="made from the model's name"),
        "color_by": Option(
            str,
            "category",
            "initial colouring: category (the legend's), norm or mean (scaled "
            "within each kind); with an analysis also dla, a head role score (previous_token, "
            "first_token, current_token, induction) or copying",
            choices=COLOR_MODES + ANALYSIS_MODES,
        ),
        "max_positions": Option(
            int,
            32,
            "level of detail: above this many positions in view, blocks are drawn instead of single vectors",
            minimum=1,
        ),
        "window": Option(
            int,
            None,
            "a run longer than max_positions opens on the vectors of max_positions positions from this one; the "
            "page moves the window, the lens of head and MLP outputs is read for this one",
            minimum=0,
            default_text="the last max_positions positions",
        ),
        "logit_lens": Option(
            bool,
            True,
            "logit lens in the tooltips: top tokens and the next token's rank, read "
            "from a stored analysis for every vector it covers, else computed for the residual "
            "stream",
        ),
    }

    def render(self, graph: Graph, path: Path, **options: Any) -> Path:
        return write_html(graph, path, **options)

    def show(self, graph: Graph, **options: Any) -> None:
        _show_inline(graph, **options)

    def render_corpus(self, stats: CorpusStats, path: Path) -> Path:
        """Corpus statistics: head-role heat maps, lens accuracy by stream, loss by position, with hover."""
        root = build_corpus_page(stats)
        atomic_write(Path(path), file_html(root, INLINE, title=corpus_title(stats)).encode("utf-8"))
        return Path(path)
