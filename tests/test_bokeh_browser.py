"""The Bokeh explorer as a person uses it, in headless Chromium (selenium with the system chromedriver).

One page of the tiny graph is opened from file:// with name resolution disabled, so any network access
would fail loudly; each test then hovers, clicks or turns a widget and reads Bokeh's document state."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator

import gpt2graph_bokeh
import numpy as np
import pytest
from bokeh.palettes import Viridis256
from conftest import CHROMIUM_FLAGS, PROMPT
from gpt2graph_bokeh.layout import layout
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from test_bokeh import IMG, SCRIPT

from gpt2graph.presentation import percent, signed
from gpt2graph.topology import VECTOR_SPECS

pytestmark = pytest.mark.browser

IDLE = (
    "return typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
    " && [...Bokeh.index.roots].every(v => v.has_finished())"
)
# every element, inside Bokeh's (open) shadow roots too
ALL_ELEMENTS = """
function* all(root) {
  for (const el of root.querySelectorAll('*')) { yield el; if (el.shadowRoot) yield* all(el.shadowRoot) }
}
"""


class Page:
    """One open explorer page with helpers that act as a person would (pointer moves and clicks)."""

    def __init__(self, driver: webdriver.Chrome):
        self.d = driver

    def js(self, code: str, *args):
        return self.d.execute_script(code, *args)

    def model(self, name: str) -> str:
        return f"Bokeh.documents[0].get_model_by_name({name!r})"

    def wait_idle(self, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while not self.js(IDLE):
            assert time.monotonic() < end, "Bokeh did not finish rendering"
            time.sleep(0.05)

    def until(self, expression: str, timeout: float = 10):
        """Poll a JavaScript expression until it is truthy (callbacks run asynchronously) and return it."""
        end = time.monotonic() + timeout
        while not (value := self.js(f"return {expression}")):
            assert time.monotonic() < end, f"timed out waiting for {expression}"
            time.sleep(0.05)
        return value

    def node_xy(self, index: int) -> tuple[int, int]:
        """Viewport coordinates of the centre of node ``index`` on the canvas."""
        x, y = self.js(
            f"""
            const fig = {self.model("canvas")}, src = {self.model("nodes")}, view = Bokeh.index.get_one(fig)
            const r = view.canvas_view.el.getBoundingClientRect()
            return [r.left + view.frame.x_scale.compute(src.data.x[arguments[0]]),
                    r.top + view.frame.y_scale.compute(src.data.y[arguments[0]])]""",
            index,
        )
        return round(x), round(y)

    def pointer(self, index: int, click: bool = False) -> None:
        x, y = self.node_xy(index)
        actions = ActionBuilder(self.d)
        actions.pointer_action.move_to_location(x, y)
        if click:
            actions.pointer_action.click()
        actions.perform()
        time.sleep(0.3)
        self.wait_idle()

    def colour_at(self, index: int) -> str:
        """The colour drawn at the centre of node ``index``, read from the canvas Bokeh paints glyphs on."""
        r, g, b = self.js(
            f"""
            const fig = {self.model("canvas")}, src = {self.model("nodes")}, view = Bokeh.index.get_one(fig)
            const k = window.devicePixelRatio, i = arguments[0]
            const x = view.frame.x_scale.compute(src.data.x[i]), y = view.frame.y_scale.compute(src.data.y[i])
            const ctx = view.canvas_view.primary.canvas.getContext('2d')
            return [...ctx.getImageData(Math.round(x * k), Math.round(y * k), 1, 1).data].slice(0, 3)""",
            index,
        )
        return f"#{r:02X}{g:02X}{b:02X}"

    def press(self, label: str) -> None:
        """Click the button labelled ``label`` where it is drawn, as a pointer would."""
        x, y = self.js(
            ALL_ELEMENTS
            + """
            const button = [...all(document)].find(e => e.tagName == 'BUTTON' && e.textContent == arguments[0])
            const r = button.getBoundingClientRect()
            return [r.left + r.width / 2, r.top + r.height / 2]""",
            label,
        )
        actions = ActionBuilder(self.d)
        actions.pointer_action.move_to_location(round(x), round(y))
        actions.pointer_action.click()
        actions.perform()
        time.sleep(0.3)
        self.wait_idle()

    def tooltip_text(self) -> str:
        return self.js(
            ALL_ELEMENTS
            + """
            return [...all(document)].filter(e => e.classList.contains('bk-tooltip-content'))
                                     .map(e => e.textContent).join('\\n')"""
        )

    def shown_text(self, name: str) -> str:
        """The text a person sees in a Div (rendered in its shadow root)."""
        return self.js(
            f"const el = Bokeh.index.get_one({self.model(name)}).el; return (el.shadowRoot || el).textContent"
        )

    def severe_logs(self) -> list[str]:
        return [e["message"] for e in self.d.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def driver(chromium, chromedriver) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="g2g-chromium-")
    for flag in [
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--window-size=1700,1300",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]:  # no name resolves: the page must need no network
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path) -> Page:
    driver.get(path.resolve().as_uri())
    page = Page(driver)
    page.wait_idle()
    return page


@pytest.fixture(scope="module")
def page(driver, tiny_graph, tmp_path_factory) -> Page:
    path = gpt2graph_bokeh.write_html(tiny_graph, tmp_path_factory.mktemp("bokeh") / "tiny.html")
    page = _open(driver, path)
    assert page.severe_logs() == []
    return page


def _ancestors(graph, index: int, lay=None) -> set[int]:
    """Every node the node ``index`` is computed from, by walking ``op_inputs`` in Python (within the nodes of
    ``lay``, a view's layout, when given)."""
    top, lay = graph.topology, lay or layout(graph.topology)
    seen: set[int] = set()
    stack = [lay.key_of(index)]
    while stack:
        key = stack.pop()
        if key.kind not in VECTOR_SPECS:  # a parameter: nothing before it
            continue
        vectors, params = top.op_inputs(key)
        for k in [*vectors, *params]:
            if top.node_id(k) not in lay.id_index:  # outside the view
                continue
            i = lay.index(k)
            if i not in seen:
                seen.add(i)
                stack.append(k)
    return seen


def _index(graph, node_id: str) -> int:
    _, key = graph.topology.parse(node_id)
    return layout(graph.topology).index(key)


def test_opens_from_file_without_network(page):
    assert page.d.current_url.startswith("file://")
    resources = page.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(url.startswith(("file:", "data:", "blob:")) for url in resources), resources
    assert page.severe_logs() == []


def test_every_node_and_edge_is_drawn(page, tiny_graph):
    top = tiny_graph.topology
    counts = page.js(f"""
        const nodes = {page.model("nodes")}, view = Bokeh.index.get_one({page.model("node-glyphs")})
        return [nodes.data.x.length, {page.model("edges")}.data.x0.length, view.glyph.sx.length]""")
    expected_edges = sum(
        1 for key in top.vector_keys() for src in top.op_inputs(key)[0] if src.position == key.position
    )
    assert counts == [
        top.count_vectors() + top.count_params(),
        expected_edges,
        top.count_vectors() + top.count_params(),
    ]


def test_hover_shows_id_and_glossary(page, tiny_graph):
    node_id = "blocks.1.attn.hook_q[2,3]"
    page.pointer(_index(tiny_graph, node_id))
    text = page.tooltip_text()
    assert node_id in text
    assert tiny_graph.glossary["query"].summary in text
    assert "layer 1 · head 3" in text
    assert page.severe_logs() == []


def test_click_highlights_ancestors_and_opens_the_heads_pattern(page, tiny_graph, artifacts_dir):
    node_id = "blocks.1.attn.hook_z[3,2]"  # position 3, head 2 of layer 1
    index = _index(tiny_graph, node_id)
    page.pointer(index, click=True)
    state = page.js(f"""
        return [{page.model("nodes")}.selected.indices, {page.model("ancestors")}.indices,
                {page.model("descendants")}.indices.length, {page.model("attn-layer")}.value,
                {page.model("attn-head")}.value, {page.model("panel")}.text, {page.model("links")}.data.x0.length]""")
    selected, ancestors, n_descendants, layer, head, panel, n_links = state
    assert selected == [index]
    assert set(ancestors) == _ancestors(tiny_graph, index)
    assert n_descendants > 0 and n_links > 0
    assert (layer, head) == (1, 2)
    assert node_id in panel and tiny_graph.glossary["result-vector"].term in panel
    prob = page.js(f"return Array.from({page.model('heat')}.data.prob)")
    n = tiny_graph.n_tokens
    q, k = np.tril_indices(n)
    np.testing.assert_allclose(prob, tiny_graph.pattern(1, 2).numpy()[q, k], rtol=1e-5, atol=1e-6)
    page.d.save_screenshot(str(artifacts_dir / "bokeh-explorer.png"))
    assert page.severe_logs() == []


def test_head_widget_switches_the_heat_map(page, tiny_graph):
    page.js(f"{page.model('attn-layer')}.value = 0; {page.model('attn-head')}.value = 3")
    page.until(f"{page.model('heatmap')}.above.some(t => (t.text || '').includes('layer 0, head 3'))")
    prob = page.js(f"return Array.from({page.model('heat')}.data.prob)")
    q, k = np.tril_indices(tiny_graph.n_tokens)
    np.testing.assert_allclose(prob, tiny_graph.pattern(0, 3).numpy()[q, k], rtol=1e-5, atol=1e-6)


def test_colour_widget_switches_to_value_statistics(page):
    page.js(f"{page.model('color-by')}.active = 1")
    glyph = f"{page.model('node-glyphs')}.glyph"
    assert page.until(f"{glyph}.fill_color.field == 'c_norm' && {glyph}.fill_color.field")
    page.wait_idle()
    assert page.severe_logs() == []


def test_clicking_empty_space_clears(page, tiny_graph):
    page.js(f"{page.model('nodes')}.selected.indices = []")
    assert page.until(f"{page.model('ancestors')}.indices.length == 0")
    assert "Click a vector" in page.shown_text("panel")


def test_markup_in_prompt_and_notes_stays_text(driver, tiny_checkpoint, tmp_path):
    from test_bokeh import XSS_NOTES

    import gpt2graph

    graph = gpt2graph.build(f"Say {SCRIPT} and {IMG}", model=str(tiny_checkpoint))
    notes = tmp_path / "xss.yaml"
    notes.write_text(XSS_NOTES, encoding="utf-8")
    graph.annotate(notes)
    page = _open(driver, gpt2graph_bokeh.write_html(graph, tmp_path / "xss.html", title=f"Run {SCRIPT}"))
    token0, token1 = _index(graph, "tokens[0]"), _index(graph, "tokens[1]")
    # GPT-2's vocabulary has no token that is a whole tag, so plant one (as another tokenizer's vocabulary might
    # have) where the page's script inserts token strings (panel header) and in a data field (tooltip)
    page.js(
        f"""
        const has_meta = (m) => m.args instanceof Map ? m.args.has('meta') : 'meta' in m.args
        const cb = [...Bokeh.documents[0].all_models].find(m => m.constructor.__name__ == 'CustomJS' && has_meta(m))
        const meta = cb.args instanceof Map ? cb.args.get('meta') : cb.args.meta
        meta.tokens[0] = arguments[0]
        {page.model("nodes")}.data.id[arguments[1]] = arguments[0]""",
        IMG,
        token1,
    )
    page.pointer(token0, click=True)
    page.until(f"{page.model('panel')}.text.includes('tokens[0]')")
    page.pointer(token1)
    assert IMG in page.tooltip_text()
    with pytest.raises(NoAlertPresentException):
        page.d.switch_to.alert
    injected = page.js(
        ALL_ELEMENTS + "return [...all(document)].filter(e => e.tagName == 'IMG' || "
        "(e.tagName == 'SCRIPT' && e.type != 'application/json' && e.textContent.includes('alert(1)')))"
        ".map(e => e.outerHTML.slice(0, 200))"
    )
    assert injected == []  # the document's JSON holds the payload (escaped), but no element is made of it
    panel = page.shown_text("panel")
    assert IMG in panel and SCRIPT in panel and "first " + IMG in panel  # shown as text
    assert f"Say {SCRIPT} and {IMG}" in page.shown_text("header")
    assert page.severe_logs() == []


def test_analysed_page_colours_heads_by_role_score(driver, tiny_checkpoint, tmp_path, artifacts_dir):
    from test_bokeh_analysis import spread_induction

    import gpt2graph

    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint), analyze={"target": " the", "induction_probe": 5})
    graph = spread_induction(graph)  # scores far enough apart to be told apart by eye
    a = graph.analysis
    page = _open(driver, gpt2graph_bokeh.write_html(graph, tmp_path / "analysed.html"))
    page.press("induction")
    assert page.until(f"{page.model('node-glyphs')}.glyph.fill_color.field") == "c_induction"
    bars = page.js(f"return {page.model('canvas')}.below.filter(m => m.visible && m.title).map(m => m.title)")
    assert len(bars) == 1 and bars[0].startswith("induction score")
    # every head's z cell is drawn in the palette colour of its score: brighter for a higher score
    drawn = {
        (h.layer, h.head): page.colour_at(_index(graph, f"blocks.{h.layer}.attn.hook_z[2,{h.head}]"))
        for h in a.roles.heads
    }
    for h in a.roles.heads:
        assert drawn[h.layer, h.head] == Viridis256[min(int(h.induction * 256), 255)].upper()
    ranked = [drawn[h.layer, h.head] for h in a.roles.ranked("induction")]
    assert [Viridis256.index(c) for c in ranked] == sorted((Viridis256.index(c) for c in ranked), reverse=True)
    assert page.colour_at(_index(graph, "blocks.0.hook_resid_mid[2]")) == "#E4E4E4"  # not a head's: grey
    page.d.save_screenshot(str(artifacts_dir / "bokeh-analysed.png"))

    # hovering a head's output shows what its write reads as under the lens, and its direct effect
    node = f"blocks.1.attn.hook_result[4,{a.roles.ranked('induction')[0].head}]"
    entry = a.lens.entry(node)
    page.pointer(_index(graph, node))
    tip = page.tooltip_text()
    assert ", ".join(f"{t.token} {percent(t.prob)}" for t in entry.top[:3]) in tip
    assert "direct effect on logit(Ġthe) at position 4: " in tip and "target Ġthe: rank" in tip

    # clicking it opens the head's summary: role scores against a uniform head, circuits
    best = a.roles.ranked("induction")[0]
    page.pointer(_index(graph, f"blocks.{best.layer}.attn.hook_q[1,{best.head}]"), click=True)
    panel = page.until(f"{page.model('panel')}.text.includes('g2g-head') && {page.model('panel')}.text")
    circuit = a.circuits.heads[best.layer * graph.dims.n_head + best.head]
    shown = page.shown_text("panel")
    assert f"Head {best.layer}.{best.head}" in shown and f"induction{best.induction:.3f}" in shown
    assert f"OV copying score {circuit.ov_copying_score:.3f}" in shown and "g2g-head" in panel
    analysis = page.shown_text("analysis")
    top = a.dla.top(1)[0]
    assert f"{top.component}{top.kind}{signed(top.contribution)}" in analysis  # the first row of the DLA table
    assert f"next token {a.decoding.chosen.token}" in analysis
    assert page.severe_logs() == []


def test_markup_tokens_in_the_analysis_stay_text(driver, tiny_checkpoint, tmp_path):
    import gpt2graph

    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    vocab = [IMG if i % 2 else SCRIPT for i in range(len(graph.vocab))]  # a vocabulary of tags
    graph = gpt2graph.Graph(graph.header, graph.store, vocab)
    graph.analyze(induction_probe=5, top_tokens=3)
    page = _open(driver, gpt2graph_bokeh.write_html(graph, tmp_path / "markup.html"))
    page.pointer(_index(graph, "blocks.0.attn.hook_result[2,1]"))
    tip = page.tooltip_text()
    assert tip.count(IMG) + tip.count(SCRIPT) >= 3  # the lens tokens, as text
    page.pointer(_index(graph, "blocks.0.attn.hook_z[2,1]"), click=True)
    page.until(f"{page.model('panel')}.text.includes('g2g-head')")
    assert "it raises: " + graph.analysis.circuits.heads[1].boosted[0].token in page.shown_text("panel")
    assert f"next token {graph.analysis.decoding.chosen.token}" in page.shown_text("analysis")
    with pytest.raises(NoAlertPresentException):
        page.d.switch_to.alert
    injected = page.js(
        ALL_ELEMENTS + "return [...all(document)].filter(e => e.tagName == 'IMG' || "
        "(e.tagName == 'SCRIPT' && e.type != 'application/json' && e.textContent.includes('alert(1)')))"
        ".length"
    )
    assert injected == 0
    assert page.severe_logs() == []


def test_a_view_is_drawn_as_it_is(driver, tiny_graph, tmp_path):
    """A subgraph view: only its nodes are on the page, ancestry is traced within it, the heat map shows its
    heads and says so for another; the page runs without errors."""
    view = tiny_graph.subgraph(layers=[1], heads=[2, 3], positions=[1, 3, 4])
    page = _open(driver, gpt2graph_bokeh.write_html(view, tmp_path / "view.html"))
    lay = layout(view.topology, view.selection)
    ids = page.js(f"return {page.model('nodes')}.data.id")
    assert list(ids) == [str(i) for i in lay.ids] and all(node in view for node in ids)
    node_id = "blocks.1.attn.hook_z[3,2]"
    index = lay.id_index[node_id]
    page.pointer(index, click=True)
    ancestors, panel, title = page.js(f"""
        return [{page.model("ancestors")}.indices, {page.model("panel")}.text,
                {page.model("heatmap")}.above.map(t => t.text).join(' ')]""")
    assert set(ancestors) == _ancestors(tiny_graph, index, lay)
    assert lay.id_index["blocks.1.attn.hook_v[3,2]"] in ancestors
    assert node_id in panel and "position 3" in panel
    assert "layer 1, head 2" in title
    page.js(f"{page.model('attn-head')}.value = 1")
    assert page.until(f"{page.model('heatmap')}.above.map(t => t.text).join(' ').includes('not in this view')")
    assert page.severe_logs() == []
