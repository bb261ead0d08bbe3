"""The Bokeh explorer with the causal experiments stored on a run: the circuit over the canvas (an edge per
circuit edge, from the writer's output node to the reader's input node, clicked to show its score and its two
components) and the patching heat maps (every stored number, hovered exactly), read from the graph alone."""

from __future__ import annotations

import time

import gpt2graph_bokeh
import numpy as np
import pytest
from bokeh.models import ColumnDataSource, Div
from gpt2graph_bokeh.layout import layout
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from test_bokeh_browser import Page, _open, driver  # noqa: F401 - the browser fixture

import gpt2graph
from gpt2graph.circuit import reader_key, writer_key


@pytest.fixture(scope="module")
def causal_graph(tiny_checkpoint):
    graph = gpt2graph.build("Transformer tokens are vectors", model=str(tiny_checkpoint))
    graph.circuit("Transformer tokens are numbers", answer=" the", wrong=" a", top=8)
    graph.patch_sweep("Transformer tokens are numbers", kind="head_out", answer=" the", wrong=" a", per_position=True)
    graph.attribution_patch("Transformer tokens are numbers", kinds=["resid_pre"], answer=" the", wrong=" a")
    return graph


@pytest.fixture(scope="module")
def root(causal_graph):
    return gpt2graph_bokeh.build_explorer(causal_graph)


def _by_name(root, name):
    return root.select_one({"name": name})


def test_every_circuit_edge_joins_its_writer_to_its_reader_on_the_canvas(causal_graph, root):
    circuit, lay = causal_graph.header.circuit, layout(causal_graph.topology)
    edges = _by_name(root, "circuit-edges")
    assert isinstance(edges, ColumnDataSource) and len(edges.data["score"]) == len(circuit.edges)
    components = {c.id: c for c in circuit.components}
    for i, e in enumerate(circuit.edges):
        w = lay.index(writer_key(components[e.source], circuit.position))
        r = lay.index(reader_key(components[e.target], e.input, circuit.position))
        assert edges.data["x0"][i] == pytest.approx(lay.x[w] + lay.width[w] / 2)
        assert edges.data["y1"][i] == pytest.approx(lay.y[r])
        assert edges.data["score"][i] == e.score
    widths = edges.data["width"]
    order = np.argsort(np.abs(edges.data["score"]))
    assert list(np.asarray(widths)[order]) == sorted(widths)
    panel = _by_name(root, "circuit-panel")
    assert isinstance(panel, Div) and f"{len(circuit.edges)} edges" in panel.text


def test_every_stored_sweep_is_a_heat_map_of_its_numbers(causal_graph, root):
    for i, sweep in enumerate(causal_graph.header.patching):
        cells = _by_name(root, f"patching-cells-{i}")
        assert list(cells.data["normalized"]) == [v for row in sweep.normalized for v in row]
        assert list(cells.data["raw"]) == [v for row in sweep.raw for v in row]
        fig = _by_name(root, f"patching-{i}")
        assert fig.title.text == f"{sweep.kind} · {sweep.method} · {sweep.direction}"
        assert fig.xaxis[0].major_label_overrides[0] == sweep.cols.labels[0]


@pytest.mark.parametrize("restrict", [{"layers": [0]}, {"positions": [0, 1]}, {"heads": [1]}])
def test_a_view_draws_the_circuit_edges_it_holds_and_says_how_many_it_leaves_out(causal_graph, restrict):
    """A renderer draws the view it is given: an edge is drawn when the view holds its writer and reader nodes."""
    view = causal_graph.subgraph(**restrict)
    circuit, top = causal_graph.header.circuit, causal_graph.topology
    components = {c.id: c for c in circuit.components}
    held = [
        e
        for e in circuit.edges
        if top.vector_id(writer_key(components[e.source], circuit.position)) in view
        and top.vector_id(reader_key(components[e.target], e.input, circuit.position)) in view
    ]
    assert len(held) < len(circuit.edges)  # each of these views leaves some edge out
    page = gpt2graph_bokeh.build_explorer(view)
    edges = _by_name(page, "circuit-edges")
    assert list(edges.data["score"]) == [e.score for e in held]
    assert (
        f"{len(circuit.edges) - len(held)} of the edges join nodes outside this view"
        in _by_name(page, "circuit-panel").text
    )


def test_a_run_without_experiments_has_neither(tiny_graph):
    page = gpt2graph_bokeh.build_explorer(tiny_graph)
    assert _by_name(page, "circuit-edges") is None and _by_name(page, "patching-0") is None


def test_user_text_is_escaped(tiny_checkpoint):
    evil = "<b> are vectors"  # five tokens, as many as the clean prompt
    graph = gpt2graph.build("Transformer tokens are vectors", model=str(tiny_checkpoint))
    graph.circuit(evil, answer=" the", wrong=" a", top=3)
    text = _by_name(gpt2graph_bokeh.build_explorer(graph), "circuit-panel").text
    assert "<b>" not in text and "&lt;b&gt; are vectors" in text


@pytest.fixture(scope="module")
def page(driver, causal_graph, tmp_path_factory) -> Page:  # noqa: F811 - this module's page
    path = gpt2graph_bokeh.write_html(causal_graph, tmp_path_factory.mktemp("bokeh-causal") / "causal.html")
    page = _open(driver, path)
    assert page.severe_logs() == []
    return page


def _screen(page: Page, figure: str, source: str, x: str, y: str, i: int) -> tuple[int, int]:
    """Viewport coordinates of data point (``x``, ``y``) of row ``i`` of a source drawn in a figure."""
    fx, fy = page.js(
        f"""
        const fig = {page.model(figure)}, src = {page.model(source)}, view = Bokeh.index.get_one(fig)
        const r = view.canvas_view.el.getBoundingClientRect(), i = arguments[0]
        return [r.left + view.frame.x_scale.compute({x}), r.top + view.frame.y_scale.compute({y})]""",
        i,
    )
    return round(fx), round(fy)


def _move(page: Page, xy: tuple[int, int], click: bool = False) -> None:
    actions = ActionBuilder(page.d)
    actions.pointer_action.move_to_location(*xy)
    if click:
        actions.pointer_action.click()
    actions.perform()
    time.sleep(0.3)
    page.wait_idle()


@pytest.mark.browser
def test_clicking_an_edge_shows_its_score_and_its_two_components(page, causal_graph):
    circuit = causal_graph.header.circuit
    i = max(range(len(circuit.edges)), key=lambda k: abs(circuit.edges[k].score))
    mid = "(src.data.x0[i] + src.data.x1[i]) / 2", "(src.data.y0[i] + src.data.y1[i]) / 2"
    page.js(f"const fig = {page.model('canvas')}; fig.x_range.start = -8; fig.x_range.end = 70")  # zoom to the lane
    page.wait_idle()
    _move(page, _screen(page, "canvas", "circuit-edges", *mid, i), click=True)
    chosen = page.until(f"{page.model('circuit-edges')}.selected.indices")
    edge = circuit.edges[chosen[0]]
    text = page.shown_text("circuit-panel")
    assert f"score {edge.score:.6g}" in text
    assert f"{edge.source} → {edge.target}" in text and "writer:" in text and "reader:" in text
    assert page.severe_logs() == []


@pytest.mark.browser
def test_hovering_a_heat_map_cell_shows_its_exact_numbers(page, causal_graph):
    sweep = causal_graph.header.patching[0]
    page.js(f"Bokeh.index.get_one({page.model('patching-0')}).el.scrollIntoView({{block: 'center'}})")
    page.wait_idle()
    _move(page, _screen(page, "patching-0", "patching-cells-0", "src.data.c[i]", "src.data.r[i]", 5))
    text = page.until(
        "[...document.querySelectorAll('*')].length && "
        + "(() => { const t = []; const walk = r => { for (const e of r.querySelectorAll('*')) {"
        + " if (e.classList.contains('bk-tooltip-content')) t.push(e.textContent);"
        + " if (e.shadowRoot) walk(e.shadowRoot) } }; walk(document); return t.join(' ') })()"
    )
    flat = [v for row in sweep.normalized for v in row]
    assert f"{flat[5]:.6f}" in text
    assert sweep.rows.labels[5 // len(sweep.cols.labels)] in text
