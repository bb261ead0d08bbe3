"""The live page: one Bokeh document per browser session, driven by Python callbacks on the server.

What happens where:

* typing: the prompt's tokens, from the tokenizer alone (no forward pass), on every keystroke;
* Run / Next token / a step of the list / Analyse / Patch / a download: a job in a worker thread (one at a time per
  page, with a progress indicator), whose result is attached to the document on the server's loop;
* a decoding control: the decoding stage recomputed from the stored logits (no forward pass): the table and the
  predicted position at once, on the loop; every other position in a worker, the latest settings only;
* a click on a node (the explorer's own selection), a head tile, a walkthrough step: quick, on the loop.

Everything drawn from a graph is built by the explorer (:func:`gpt2graph_bokeh.document.make_explorer`) and
:mod:`.views`; everything written is escaped (:mod:`.markup`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from weakref import WeakSet

import numpy as np
from bokeh.events import DocumentReady
from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    CDSView,
    ColumnDataSource,
    CustomJS,
    GlyphRenderer,
    IndexFilter,
    RadioButtonGroup,
    Rect,
    Select,
    Slider,
    Spinner,
    TabPanel,
    Tabs,
    TextAreaInput,
    TextInput,
)

from gpt2graph import Gpt2GraphError
from gpt2graph.plugin import DECODE_KINDS, DecodingSettings, PromptError, Tokenization, decode_next

from ..analysis_panel import ROLE_MODES, decoding_panel
from ..document import Explorer, make_explorer
from .downloads import Downloads
from .experiments import Outcome, PatchingControls, run_experiment
from .markup import download_html, header_html, message_html, progress_html, text_div, tokens_html, tour_html
from .models import ModelPool
from .session import Report, Session, Step
from .store import GraphStore
from .views import AnalysisFigures, HeadsView, analysis_figures, heads_view, node_links, strip, strip_figure
from .walkthrough import TourStep, facts, tour

if TYPE_CHECKING:
    from bokeh.document import Document

    from gpt2graph import Graph

__all__ = ["Page", "Shared"]

log = logging.getLogger("gpt2graph.serve")

EXAMPLE = "When Mary and John went to the store, John gave a drink to"
TOUR_COLOR = "#f2b701"
WIDTH = 1600

#: the arrow keys move the walkthrough, unless the focus is in a text field (or a widget took the key)
_KEYS = """
if (!window.__g2g_tour_keys) {
  window.__g2g_tour_keys = true
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || (event.key != "ArrowRight" && event.key != "ArrowLeft")) return
    const target = event.composedPath()[0]
    const tag = target && target.tagName ? target.tagName.toLowerCase() : ""
    if (tag == "input" || tag == "textarea" || tag == "select" || (target && target.isContentEditable)) return
    if (step.disabled) return
    const value = step.value + (event.key == "ArrowRight" ? 1 : -1)
    if (value >= step.start && value <= step.end) {
      step.value = value
      event.preventDefault()
    }
  })
}
"""
#: a prepared file is fetched by the browser as soon as its link arrives
_DOWNLOAD = """
const url = source.data.url[0], name = source.data.name[0]
if (url) {
  const a = document.createElement("a")
  a.href = url
  a.download = name
  document.body.appendChild(a)
  a.click()
  a.remove()
}
"""


@dataclass
class Shared:
    """What every page of one server shares: the models, the graph store, the prepared files, the limits."""

    pool: ModelPool
    store: GraphStore
    downloads: Downloads
    annotations: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    pages: WeakSet = field(default_factory=WeakSet)  # open pages, for tests and benchmarks


@dataclass
class Drawn:
    """A step drawn: made in a worker thread, attached to the document on the loop."""

    step: Step
    explorer: Explorer
    heads: HeadsView
    tour: list[TourStep]
    tour_filter: IndexFilter
    figures: AnalysisFigures | None
    tokens: Tokenization
    decoding: DecodingSettings  # the settings it was drawn with


class Page:
    """One browser session's document and its callbacks."""

    def __init__(self, doc: Document, shared: Shared):
        self.doc = doc
        self.shared = shared
        sid = doc.session_context.id if doc.session_context is not None else f"local-{id(doc)}"
        self.session = Session(sid, shared.pool, shared.store, shared.annotations, shared.max_tokens)
        self.current: Step | None = None
        self.drawn: Drawn | None = None
        self.timings: dict[str, float] = {}  # seconds of the last build (submit to attached), decoding update
        self._busy: str | None = None
        self._progress_state = ("", 0.0, 0.0)
        self._ticker = None
        self._decoding_pending = False
        self._everywhere = self._everywhere_again = False  # the decoding of every position, in a worker
        self._text = EXAMPLE
        self._widgets()
        doc.add_root(self._layout())
        doc.title = "gpt2graph"
        doc.js_on_event(DocumentReady, CustomJS(args={"step": self.tour_step}, code=_KEYS))
        doc.on_session_destroyed(self._destroyed)
        shared.pages.add(self)
        self._want_model(self.model_index)

    # ---- widgets and layout ---------------------------------------------------------------------------
    def _widgets(self) -> None:
        pool = self.shared.pool
        self.header = text_div("app-header", header_html(None, False), width=WIDTH)
        self.model = Select(
            title="model",
            options=[(str(i), pool.label(i)) for i in range(len(pool.names))],
            value="0",
            name="model",
            width=280,
        )
        self.prompt = TextAreaInput(
            title="prompt", value=EXAMPLE, rows=2, width=820, name="prompt", placeholder="type a prompt"
        )
        self.run = Button(label="Run", button_type="primary", name="run", width=120)
        self.next_token = Button(label="Next token", name="next-token", width=120, disabled=True)
        self.tokens = text_div("tokens", message_html("loading the model…"), width=WIDTH)
        self.progress = text_div("progress", width=520, visible=False)
        self.message = text_div("message", width=WIDTH - 540, visible=False)
        self.steps = Select(title="steps (choose one to go back to it)", options=[], name="steps", width=520)
        self.temperature = Slider(
            title="temperature", start=0.05, end=3, step=0.05, value=1, name="temperature", width=220
        )
        self.top_k = Spinner(title="top-k (0: off)", low=0, step=1, value=0, name="top-k", width=110)
        self.top_p = Slider(title="top-p (1: off)", start=0.05, end=1, step=0.01, value=1, name="top-p", width=220)
        self.mode = RadioButtonGroup(labels=["greedy", "sample"], active=0, name="decode-mode")
        self.seed = Spinner(title="seed", low=0, step=1, value=0, name="seed", width=90)
        self.decoding = text_div("decoding", width=900)
        self.download_svg = Button(label="SVG poster", name="download-svg", width=160, disabled=True)
        self.download_graph = Button(label="Saved graph (.zip)", name="download-graph", width=160, disabled=True)
        self.download_link = text_div("download-link", width=500)
        self.download_trigger = ColumnDataSource({"url": [], "name": []}, name="download")
        self.download_trigger.js_on_change("data", CustomJS(args={"source": self.download_trigger}, code=_DOWNLOAD))

        self.tour_prev = Button(label="◀ previous", name="tour-prev", width=110, disabled=True)
        self.tour_next = Button(label="next ▶", name="tour-next", width=110, disabled=True)
        self.tour_step = Slider(title="walkthrough step", start=1, end=2, value=1, step=1, name="tour-step", width=600)
        self.tour_step.disabled = True
        self.tour_text = text_div(
            "tour",
            message_html("Run a prompt to start the walkthrough."),
            width=1160,
            styles={"max-height": "240px", "overflow-y": "auto"},
        )
        # tags: the step drawn and how many drawings this page has made (what a test waits for)
        empty = text_div("explorer-empty", message_html("Run a prompt to see its graph."))
        self.explorer_slot = column(empty, name="explorer-slot", tags=[0, 0])
        self.strip_fig, self.strip_source, self.strip_mapper, self.strip_title = strip_figure()
        self.links = text_div("node-links", width=1160)
        self.heads_slot = column(text_div("heads-empty", message_html("Run a prompt to see its attention heads.")))
        self.analyze = Button(label="Analyse", button_type="primary", name="analyze", width=120, disabled=True)
        self.target = TextInput(
            title="target token (one token's text, e.g. ' Paris'; empty: the prediction)", name="target", width=360
        )
        self.probe = Spinner(title="induction probe (random tokens, 0: off)", low=0, step=1, value=0, width=240)
        self.role = RadioButtonGroup(labels=[r.replace("_", "-") for r in ROLE_MODES], active=0, name="role")
        self.no_analysis = text_div(
            "analysis-empty",
            message_html(
                "Analyse computes the logit lens, direct logit attribution, head roles and circuits of the "
                "current step (the lens reads a full vocabulary row per vector: seconds on GPT-2)."
            ),
        )
        self.analysis_slot = column(self.no_analysis)
        self.patching = PatchingControls()
        self.outcomes: dict[int, Outcome] = {}  # per step: its last patching experiment

        self.prompt.on_change("value_input", self._on_typing)
        self.prompt.on_change("value", self._on_typing)
        self.model.on_change("value", lambda _a, _o, new: self._want_model(int(new)))
        self.run.on_click(self._on_run)
        self.next_token.on_click(self._on_next)
        self.steps.on_change("value", self._on_step)
        for w in (self.temperature, self.top_k, self.top_p, self.seed):
            w.on_change("value", self._on_decoding)
        self.mode.on_change("active", self._on_decoding)
        self.tour_step.on_change("value", lambda _a, _o, new: self._show_tour(int(new)))
        self.tour_prev.on_click(lambda: self._move_tour(-1))
        self.tour_next.on_click(lambda: self._move_tour(+1))
        self.analyze.on_click(self._on_analyze)
        self.role.on_change("active", lambda _a, _o, _n: self._show_role())
        self.download_svg.on_click(self._on_svg)
        self.download_graph.on_click(self._on_graph_file)
        self.patching.button.on_click(self._on_patch)

    def _layout(self) -> Any:
        explorer_tab = column(
            row(self.tour_prev, self.tour_step, self.tour_next),
            self.tour_text,
            self.explorer_slot,
            self.strip_fig,
            self.links,
        )
        analysis_tab = column(row(self.analyze, self.target, self.probe), self.role, self.analysis_slot)
        self.tabs = Tabs(
            tabs=[
                TabPanel(child=explorer_tab, title="Explorer and walkthrough"),
                TabPanel(child=self.heads_slot, title="Attention heads"),
                TabPanel(child=analysis_tab, title="Logit lens, DLA, head roles"),
                TabPanel(child=self.patching.layout(), title="Patching and circuit"),
            ],
            name="views",
        )
        return column(
            self.header,
            row(
                self.model,
                self.prompt,
                column(self.run, self.next_token),
                column(self.download_svg, self.download_graph),
            ),
            self.tokens,
            row(self.progress, self.message),
            row(self.steps, self.temperature, self.top_k, self.top_p, column(self.mode, self.seed)),
            row(self.decoding, self.download_link),
            self.tabs,
            name="app",
        )

    # ---- plumbing -------------------------------------------------------------------------------------
    @property
    def model_index(self) -> int:
        return int(self.model.value)

    def _later(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the server's loop with the document locked (the only safe way from a worker)."""
        if self.session.closed:
            return
        try:
            self.doc.add_next_tick_callback(fn)
        except Exception:  # the session is going away
            log.debug("page %s is gone; dropped a callback", self.session.id)

    def _say(self, text: str, error: bool = False) -> None:
        self.message.update(text=message_html(text, error), visible=bool(text))

    def _destroyed(self, _context: Any) -> None:
        """The tab was closed (or its connection lost for good): free its graphs and files."""
        self.session.close()
        self.shared.downloads.drop_session(self.session.id)

    def _start(self, what: str, work: Callable[[Report], Any], done: Callable[[Any], None]) -> bool:
        """Run ``work`` in a worker thread with a progress indicator, then ``done`` with its result on the loop.
        A problem is shown in the page, and the page stays as it was."""
        if self._busy is not None:
            self._say(f"still {self._busy}: wait for it to finish", error=True)
            return False
        self._busy = what
        started = time.perf_counter()
        self._progress_state = (what, 0.0, started)
        self._set_busy(True)
        self._render_progress()
        self._ticker = self.doc.add_periodic_callback(self._render_progress, 250)

        def report(phase: str, share: float) -> None:
            self._later(partial(self._report, phase, share))

        def run() -> None:
            try:
                outcome: tuple[bool, Any] = (True, work(report))
            except Gpt2GraphError as exc:
                outcome = (False, str(exc))
            except Exception as exc:  # a build that raises: said in the page, the traceback in the server's log
                log.exception("%s failed", what)
                outcome = (False, f"{what} failed: {type(exc).__name__}: {exc}")
            self._later(partial(self._finish, what, started, done, outcome))

        threading.Thread(target=run, daemon=True, name=f"g2g-{what}").start()
        return True

    def _report(self, phase: str, share: float) -> None:
        self._progress_state = (phase, share, self._progress_state[2])
        self._render_progress()

    def _render_progress(self) -> None:
        self.progress.visible = self._busy is not None
        if self._busy is None:
            self.progress.text = ""
            return
        what, share, started = self._progress_state
        self.progress.text = progress_html(what, share, time.perf_counter() - started)

    def _finish(self, what: str, started: float, done: Callable[[Any], None], outcome: tuple[bool, Any]) -> None:
        self._busy = None
        if self._ticker is not None:
            self.doc.remove_periodic_callback(self._ticker)
            self._ticker = None
        self._render_progress()
        self._set_busy(False)
        ok, result = outcome
        if not ok:
            self._say(result, error=True)
            return
        try:
            done(result)
        except Gpt2GraphError as exc:
            self._say(str(exc), error=True)
        except Exception as exc:
            log.exception("showing the result of %s failed", what)
            self._say(f"{what} failed: {type(exc).__name__}: {exc}", error=True)
        else:
            self.timings[what] = time.perf_counter() - started

    def _set_busy(self, busy: bool) -> None:
        built = self.current is not None
        self.run.disabled = busy
        self.steps.disabled = busy
        for button in (self.next_token, self.analyze, self.download_svg, self.download_graph, self.patching.button):
            button.disabled = busy or not built

    # ---- model and tokens -----------------------------------------------------------------------------
    def _want_model(self, index: int) -> None:
        """Start loading a model (if it is not loaded) and show its tokens and what it is once it is."""
        future = self.shared.pool.request(index)
        if future.done():
            self._model_ready(index)
        else:
            self.header.text = header_html(f"loading {self.shared.pool.label(index)}…", False)
            future.add_done_callback(lambda _f: self._later(partial(self._model_ready, index)))

    def _model_ready(self, index: int) -> None:
        if index != self.model_index:
            return
        future = self.shared.pool.request(index)
        if not future.done():
            self._want_model(index)
            return
        problem = future.exception()
        if problem is not None:
            self.header.text = header_html(None, False)
            self.tokens.text = ""
            self._say(f"The model could not be loaded: {problem}. Run tries again.", error=True)
            return
        model = future.result()
        self.header.text = header_html(model.note, model.loaded.info.weights.status == "random")
        self._show_tokens(self._text)

    def _on_typing(self, _attr: str, _old: str, new: str) -> None:
        if new == self._text:
            return
        self._text = new
        self._show_tokens(new)

    def _show_tokens(self, text: str) -> None:
        """The prompt's tokens, from the tokenizer alone."""
        if self.shared.pool.loaded(self.model_index) is None:
            future = self.shared.pool.request(self.model_index)
            failed = future.done() and future.exception() is not None
            self.tokens.text = message_html(
                "The model could not be loaded: Run tries again." if failed else "loading the model…", failed
            )
            return  # and when it is loaded, _model_ready shows them
        if not text.strip():
            self.tokens.text = message_html("Type a prompt: its tokens appear here.")
            return
        try:
            self.tokens.text = tokens_html(self.session.tokenize(text, self.model_index))
        except PromptError as exc:
            self.tokens.text = message_html(str(exc), error=True)

    # ---- building ---------------------------------------------------------------------------------------
    def _on_run(self) -> None:
        text, model = self._text, self.model_index
        if not text.strip():
            self._say("The prompt is empty: type some text first.", error=True)
            return
        self._say("")
        self._start("building the graph", lambda report: self._build(text, model, None, report), self._built)

    def _on_next(self) -> None:
        graph = self._graph()
        if graph is None:
            return
        ids, token = self.session.continuation(graph)
        model = self.current.model
        self._say("")
        self._start("building the next step", lambda report: self._build(ids, model, token, report), self._built)

    def _build(self, prompt: Any, model: int, added: str | None, report: Report) -> Drawn:
        step, graph = self.session.build(prompt, model, added, report)
        self._later(partial(self._announce, step))  # its tokens and prediction at once; the drawings follow
        return self._draw(step, graph, report)

    def _announce(self, step: Step) -> None:
        """A new step's tokens, prompt and decoding table, shown while its explorer is being drawn."""
        self.session.steps.append(step)
        self.current = step
        self.steps.options = [(str(s.key), s.label()) for s in self.session.steps]
        self.steps.value = str(step.key)
        self._text = step.text
        self.prompt.value = step.text
        graph = self.session.graph(step)
        if graph is not None:
            self.tokens.text = tokens_html(graph.tokenization)
        self._show_decoding()
        self._say(" ".join(self.session.problems.get(step.key, [])), error=True)

    def _draw(self, step: Step, graph: Graph, report: Report) -> Drawn:
        """Everything the page shows of a step (worker thread: these models join the document later)."""
        view = self.session.view(graph)
        report("drawing the explorer: statistics and the logit lens of every vector", 0.3)
        # rows are node indices (patched, tour, clicks); the patching tab draws the sweeps
        explorer = make_explorer(view, every_position=True, sweeps=False)
        tour_filter = IndexFilter(indices=[], name="tour-filter")
        glyph = Rect(x="x", y="y", width="w", height="h", fill_color=None, line_color=TOUR_COLOR, line_width=3)
        explorer.figure.renderers.append(
            GlyphRenderer(
                data_source=explorer.nodes,
                glyph=glyph,
                selection_glyph=glyph,
                nonselection_glyph=glyph,
                view=CDSView(filter=tour_filter),
                name="tour-highlight",
            )
        )
        report("drawing the attention heads and the walkthrough", 0.8)
        heads = heads_view(view)
        steps = tour(view, explorer.layout)
        figures = analysis_figures(view) if view.analysis is not None else None
        report("sending the page", 0.95)
        return Drawn(step, explorer, heads, steps, tour_filter, figures, graph.tokenization, view.decoding)

    def _built(self, drawn: Drawn) -> None:
        self._attach(drawn)

    def _attach(self, drawn: Drawn) -> None:
        """Show a drawn step in place of the last (the page is not reloaded)."""
        self.current = drawn.step
        self.drawn = drawn
        self.explorer_slot.children = [drawn.explorer.root]
        drawn.explorer.nodes.selected.on_change("indices", self._on_node)
        self.heads_slot.children = [row(drawn.heads.grid, drawn.heads.pattern)]
        drawn.heads.tiles.selected.on_change("indices", self._on_head)
        f = drawn.figures
        if f is not None:
            figures = [x for x in (f.lens, row(f.dla, f.roles)) if x is not None]
            text = text_div("analysis-text", drawn.explorer.analysis.text, width=1500)
            self.analysis_slot.children = [*figures, text]
            self._show_role()
        else:
            self.analysis_slot.children = [self.no_analysis]
        self.patching.show(self.outcomes.get(drawn.step.key))
        self.steps.options = [(str(s.key), s.label()) for s in self.session.steps]
        self.steps.value = str(drawn.step.key)
        self._text = drawn.tokens.text
        self.prompt.value = drawn.tokens.text
        self.tokens.text = tokens_html(drawn.tokens)
        self.strip_title.text = "Click a node on the canvas: its whole value is drawn here"
        self.strip_source.data = {"image": [np.zeros((1, 1), np.float32)], "dw": [1], "dh": [1]}
        self.links.text = ""
        self._set_busy(False)
        self.tour_step.update(end=max(2, len(drawn.tour)), value=min(self.tour_step.value, len(drawn.tour)))
        self.tour_step.disabled = self.tour_prev.disabled = self.tour_next.disabled = not drawn.tour
        # drawn with the settings of its time: the controls may have moved while it was drawn
        changed = drawn.decoding != self.session.decoding
        self._show_decoding(positions=list(range(len(drawn.step.token_ids))) if changed else None)
        self._show_tour(self.tour_step.value)
        self.explorer_slot.tags = [drawn.step.key, self.explorer_slot.tags[1] + 1]  # last: all of it is shown

    def _on_step(self, _attr: str, _old: str, new: str) -> None:
        step = next((s for s in self.session.steps if str(s.key) == new), None)
        if step is None or step is self.current:
            return
        graph = self.session.graph(step)

        def work(report: Report) -> Drawn:
            return self._draw(step, graph or self.session.rebuild(step, report), report)

        if not self._start(f"showing step {step.key}", work, self._attach):
            self.steps.value = str(self.current.key)

    def _graph(self, step: Step | None = None) -> Graph | None:
        """The graph of ``step`` (default: the current one); when it was dropped from memory, None, and it is
        rebuilt in the background."""
        step = step or self.current
        if step is None:
            return None
        graph = self.session.graph(step)
        if graph is None:
            self._start(
                "rebuilding the graph",
                lambda report: self.session.rebuild(step, report),
                lambda _graph: self._show_decoding(positions=list(range(len(step.token_ids)))),
            )
        return graph

    # ---- decoding ---------------------------------------------------------------------------------------
    def _on_decoding(self, _attr: str, _old: Any, _new: Any) -> None:
        """Follow the controls, however fast they move: one update per loop turn, with the latest values."""
        if not self._decoding_pending:
            self._decoding_pending = True
            self.doc.add_next_tick_callback(self._apply_decoding)

    def _apply_decoding(self) -> None:
        self._decoding_pending = False
        top_k = int(self.top_k.value or 0)
        try:
            self.session.set_decoding(
                float(self.temperature.value),
                top_k if top_k > 0 else None,
                float(self.top_p.value) if self.top_p.value < 1 else None,
                int(self.seed.value or 0) if self.mode.active == 1 else None,
            )
        except Gpt2GraphError as exc:
            self._say(str(exc), error=True)
            return
        if self.current is None:
            return
        started = time.perf_counter()
        if self._show_decoding(positions=[len(self.current.token_ids) - 1]):
            self.timings["decoding"] = time.perf_counter() - started
            self._decode_everywhere()

    def _show_decoding(self, positions: list[int] | None = None) -> bool:
        """Redraw what the decoding settings change: the table, the decoding vectors on the canvas at
        ``positions`` (None: none, the explorer was drawn with these settings), the walkthrough's numbers.
        False when there is nothing to redraw yet."""
        graph = self._graph()
        if graph is None:
            return False
        view = self.session.view(graph)
        d = self.session.decoding
        table = decode_next(view, temperature=d.temperature, top_k=d.top_k, top_p=d.top_p, seed=d.seed, candidates=8)
        self.decoding.text = decoding_panel(table)
        drawn = self.drawn
        if drawn is None or drawn.step is not self.current:  # its explorer is still being drawn
            return True
        if positions is not None:
            drawn.explorer.follow_decoding(view, positions)
        if drawn.figures is not None:
            self.analysis_slot.children[-1].text = drawn.explorer.analysis.text
        if drawn.tour and set(drawn.tour[self.tour_step.value - 1].kinds) & set(DECODE_KINDS):
            self._show_tour(self.tour_step.value)
        return True

    def _decode_everywhere(self) -> None:
        """The decoding vectors of every position (the control's update did the predicted one), in a worker:
        a long prompt's whole decoding stage takes longer than a dragged slider waits. Only the latest
        settings are drawn."""
        if self._everywhere:
            self._everywhere_again = True
            return
        drawn, graph = self.drawn, self._graph()
        if drawn is None or graph is None or drawn.step is not self.current:
            return
        view = self.session.view(graph)
        self._everywhere, self._everywhere_again = True, False

        def done(update: Any) -> None:
            self._everywhere = False
            if self._everywhere_again or view.decoding != self.session.decoding:
                self._decode_everywhere()
            elif self.drawn is drawn:
                drawn.explorer.apply(update)

        def run() -> None:
            try:
                update = drawn.explorer.decoding_update(view)
            except Exception:  # the next change tries again; the page keeps what it shows
                log.exception("decoding every position failed")
                update = None
            self._later(lambda: done(update) if update is not None else setattr(self, "_everywhere", False))

        threading.Thread(target=run, daemon=True, name="g2g-decoding").start()

    # ---- walkthrough --------------------------------------------------------------------------------------
    def _move_tour(self, by: int) -> None:
        value = self.tour_step.value + by
        if self.drawn is not None and 1 <= value <= len(self.drawn.tour):
            self.tour_step.value = value

    def _show_tour(self, number: int) -> None:
        """Highlight the nodes of walkthrough step ``number`` (from 1), zoom to them, and show its text."""
        drawn = self.drawn
        if drawn is None or not drawn.tour:
            return
        number = max(1, min(number, len(drawn.tour)))
        step = drawn.tour[number - 1]
        graph = self.session.graph(drawn.step)
        lines = facts(self.session.view(graph), drawn.explorer.layout, step) if graph is not None else []
        self.tour_text.text = tour_html(step, lines, number, len(drawn.tour))
        drawn.tour_filter.indices = step.nodes.tolist()
        if len(step.nodes):
            lay, fig = drawn.explorer.layout, drawn.explorer.figure
            x0 = float((lay.x[step.nodes] - lay.width[step.nodes] / 2).min())
            x1 = float((lay.x[step.nodes] + lay.width[step.nodes] / 2).max())
            y0 = float((lay.y[step.nodes] - lay.height[step.nodes] / 2).min())
            y1 = float((lay.y[step.nodes] + lay.height[step.nodes] / 2).max())
            pad_x, pad_y = max(2.0, (x1 - x0) * 0.08), max(2.0, (y1 - y0) * 0.08)
            fig.x_range.update(start=x0 - pad_x, end=x1 + pad_x)
            fig.y_range.update(start=y0 - pad_y, end=y1 + pad_y)

    # ---- clicks -------------------------------------------------------------------------------------------
    def _on_node(self, _attr: str, _old: list[int], new: list[int]) -> None:
        """A node was clicked: draw its whole value and list where its information comes from and goes."""
        if not new or self.drawn is None:
            return
        graph = self._graph(self.drawn.step)
        if graph is None:
            return
        view = self.session.view(graph)
        lay = self.drawn.explorer.layout
        index = int(new[-1])
        image, caption = strip(view, lay, index)
        finite = image[np.isfinite(image)]
        span = float(np.abs(finite).max()) if finite.size else 1.0
        self.strip_mapper.update(low=-(span or 1.0), high=span or 1.0)
        rows, cols = image.shape
        self.strip_source.data = {"image": [image], "dw": [cols], "dh": [rows]}
        self.strip_fig.x_range.update(start=0, end=cols)
        self.strip_fig.y_range.update(start=0, end=rows)
        self.strip_title.text = caption
        self.links.text = node_links(view, str(lay.ids[index]))

    def _on_head(self, _attr: str, _old: list[int], new: list[int]) -> None:
        graph = self._graph(self.drawn.step) if self.drawn is not None else None
        if not new or graph is None:
            return
        tiles = self.drawn.heads.tiles.data
        self.drawn.heads.show(graph, int(tiles["layer"][new[-1]]), int(tiles["head"][new[-1]]))

    # ---- analysis -------------------------------------------------------------------------------------------
    def _on_analyze(self) -> None:
        if self.current is None:
            return
        step, d = self.current, self.session.decoding
        options = dict(
            target=self.target.value or None,
            induction_probe=int(self.probe.value) or None,
            temperature=d.temperature,
            top_k=d.top_k,
            top_p=d.top_p,
            seed=d.seed,
        )

        def work(report: Report) -> Drawn:
            graph = self.session.graph(step) or self.session.rebuild(step, report)
            report("analysing: logit lens, direct logit attribution, head roles, circuits", 0.1)
            graph.analyze(**options)
            return self._draw(step, graph, lambda what, share: report(what, 0.6 + 0.4 * share))

        self._start("analysing", work, self._attach)

    # ---- patching ----------------------------------------------------------------------------------------
    def _on_patch(self) -> None:
        """The current step against the corrupted prompt: the sweeps and the circuit asked for, then the step
        drawn again (the circuit on its canvas)."""
        if self.current is None:
            return
        step, experiment = self.current, self.patching.experiment()

        def work(report: Report) -> tuple[Outcome, Drawn]:
            graph = self.session.graph(step) or self.session.rebuild(step, report)
            corrupted = self.session.run_alone(experiment.corrupted, step.model, report, "the corrupted prompt")
            outcome = run_experiment(graph, corrupted, experiment, report)
            return outcome, self._draw(step, graph, lambda what, share: report(what, 0.8 + 0.2 * share))

        def done(result: tuple[Outcome, Drawn]) -> None:
            self.outcomes[step.key], drawn = result
            self._attach(drawn)

        self._start("patching", work, done)

    def _show_role(self) -> None:
        f = self.drawn.figures if self.drawn is not None else None
        if f is None:
            return
        role = ROLE_MODES[self.role.active]
        f.roles_source.data = {**f.roles_source.data, "score": f.roles_source.data[role]}
        f.roles.title.text = f"Head roles: {role.replace('_', '-')} score (0 to 1)"

    # ---- downloads ------------------------------------------------------------------------------------------
    def _offer(self, found: tuple[str, str, int]) -> None:
        url, name, size = found
        self.download_link.text = download_html(url, name, size)
        self.download_trigger.data = {"url": [url], "name": [name]}

    def _on_svg(self) -> None:
        step, graph, d = self.current, self._graph(), self.session.decoding
        if graph is None:
            return
        downloads, sid = self.shared.downloads, self.session.id

        def work(report: Report) -> tuple[str, str, int]:
            report("drawing the SVG poster", 0.2)
            path = downloads.folder(sid) / f"gpt2graph-step{step.key}.svg"
            graph.render("svg", path, temperature=d.temperature, top_k=d.top_k, top_p=d.top_p, seed=d.seed)
            return downloads.add(sid, path, path.name, "image/svg+xml"), path.name, path.stat().st_size

        self._start("drawing the poster", work, self._offer)

    def _on_graph_file(self) -> None:
        step, graph = self.current, self._graph()
        if graph is None:
            return
        downloads, sid = self.shared.downloads, self.session.id

        def work(report: Report) -> tuple[str, str, int]:
            report("saving the graph", 0.2)
            folder = downloads.folder(sid)
            saved = folder / f"gpt2graph-step{step.key}.gg"
            graph.save(saved)
            report("packing it into a zip file", 0.7)
            path = folder / f"{saved.name}.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
                for part in sorted(saved.iterdir()):
                    z.write(part, f"{saved.name}/{part.name}")
            shutil.rmtree(saved)
            return downloads.add(sid, path, path.name, "application/zip"), path.name, path.stat().st_size

        self._start("saving the graph", work, self._offer)
