"""`gpt2graph serve` as a person uses it: a real server on a free port (in this process, on a thread of its own,
always stopped) and headless Chromium driven with selenium, typing, clicking and dragging. Every wait is on the
state of the page or of the server, never on time.

The screenshot of docs/serve.md is taken here: GPT2GRAPH_UPDATE_DOCS=1 pytest tests/test_serve_browser.py -k
screenshot writes docs/images/serve.png (every run leaves a copy in test-artifacts/).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import gpt2graph_bokeh.app.session as session_module
import numpy as np
import pytest
from conftest import CHROMIUM_FLAGS, PROMPT
from gpt2graph_bokeh.app import ServeConfig, ServerThread
from gpt2graph_bokeh.app.walkthrough import tour
from gpt2graph_bokeh.layout import layout
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.keys import Keys
from test_bokeh import IMG, SCRIPT, XSS_NOTES

import gpt2graph
from gpt2graph.decoding import decode_next
from gpt2graph.presentation import percent

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
IDLE = (
    "typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
    " && [...Bokeh.index.roots].every(v => v.has_finished())"
)
ALL_ELEMENTS = """
function* all(root) {
  for (const el of root.querySelectorAll('*')) { yield el; if (el.shadowRoot) yield* all(el.shadowRoot) }
}
"""


@pytest.fixture(scope="module")
def notes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("notes") / "xss.yaml"
    path.write_text(XSS_NOTES, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tiny_checkpoint, notes) -> Iterator[ServerThread]:
    config = ServeConfig(
        models=[str(tiny_checkpoint)],
        annotations=[str(notes)],
        port=0,
        open_browser=False,
        max_graphs=8,
        max_graphs_per_session=4,
        session_lifetime_ms=1000,
        session_check_ms=300,
    )
    with ServerThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def driver(chromium, chromedriver, tmp_path_factory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="g2g-serve-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1700,1300"]:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path_factory.mktemp("downloads"))})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


class Live:
    """One open page of the live app, with the helpers a person's actions need."""

    def __init__(self, driver: webdriver.Chrome, server: ServerThread):
        self.d = driver
        self.server = server
        driver.get(server.url)
        self.until(IDLE, timeout=60)
        self.page = self.server_side()
        self.until(f"{self.model('tokens')}.text.includes('g2g-tok')", timeout=60)  # the model is loaded
        self.handle = driver.current_window_handle

    def server_side(self):
        """This tab's page on the server: marked from the browser through a widget's value."""
        tag = f"tab-{id(self)}-{time.monotonic_ns()}"
        self.js(f"{self.model('target')}.value = arguments[0]", tag)
        end = time.monotonic() + 30
        while not (mine := [p for p in list(self.server.shared.pages) if p.target.value == tag]):
            assert time.monotonic() < end, "no page was made for this tab"
            time.sleep(0.05)
        self.js(f"{self.model('target')}.value = ''")
        return mine[0]

    def js(self, code: str, *args):
        return self.d.execute_script(code, *args)

    @staticmethod
    def model(name: str) -> str:
        """JavaScript for the model named ``name`` in the page now (models a step replaced stay in BokehJS's
        index for a while, so the lookup walks from the document's roots)."""
        return (
            "([...Bokeh.documents[0].roots()].flatMap(r => [...r.references()])"
            f".find(m => m.name === {name!r}) ?? null)"
        )

    def until(self, expression: str, timeout: float = 30):
        """Poll a JavaScript expression until it is truthy and return it."""
        end = time.monotonic() + timeout
        while not (value := self.js(f"return {expression}")):
            assert time.monotonic() < end, f"timed out waiting for {expression}"
            time.sleep(0.05)
        return value

    def shown(self, name: str) -> str:
        """The text a person sees in a Div."""
        return self.js(
            f"const el = Bokeh.index.get_one({self.model(name)}).el\n"
            "return [...(el.shadowRoot || el).childNodes].filter(n => n.nodeName != 'STYLE')"
            ".map(n => n.textContent).join('')"
        )

    def element(self, css: str, model: str):
        """An element inside the view of a named model (Bokeh draws widgets in shadow roots)."""
        return self.js(
            f"const v = Bokeh.index.get_one({self.model(model)})\n"
            f"return (v.el.shadowRoot || v.el).querySelector({css!r})"
        )

    def type_prompt(self, text: str) -> None:
        self.element("textarea", "prompt").click()
        keys = ActionChains(self.d).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL)
        keys.send_keys(Keys.BACKSPACE)
        if text:
            keys.send_keys(text)
        keys.perform()

    def press(self, label: str) -> None:
        """Click the button labelled ``label`` where it is drawn, as a pointer would."""
        x, y = self.js(
            ALL_ELEMENTS
            + """
            const button = [...all(document)].find(e => e.tagName == 'BUTTON' && e.textContent == arguments[0])
            button.scrollIntoView({block: 'center'})
            const r = button.getBoundingClientRect()
            return [r.left + r.width / 2, r.top + r.height / 2]""",
            label,
        )
        self.click_at(x, y)

    def click_at(self, x: float, y: float) -> None:
        actions = ActionBuilder(self.d)
        actions.pointer_action.move_to_location(round(x), round(y))
        actions.pointer_action.click()
        actions.perform()

    def run(self, prompt: str | None = None) -> None:
        """Type ``prompt`` (if given), press Run and wait until the new step is on the page."""
        steps = len(self.page.session.steps)
        if prompt is not None:
            self.type_prompt(prompt)
        self.press("Run")
        self.wait_step(steps + 1)

    def wait_step(self, n_steps: int) -> None:
        """Until the page has ``n_steps`` steps and shows the last one drawn, on the server and in the browser."""
        page = self.page
        end = time.monotonic() + 120
        while (
            len(page.session.steps) < n_steps
            or page._busy is not None
            or page.current is None
            or page.explorer_slot.tags[0] != page.current.key  # set last when a drawing is attached
        ):
            assert time.monotonic() < end, f"no step {n_steps}; message: {self.shown('message')}"
            time.sleep(0.05)
        self.wait_drawn()

    def wait_drawn(self) -> None:
        """Until the browser shows the page's last drawing."""
        key, count = self.page.explorer_slot.tags
        self.until(
            f"{self.model('explorer-slot')}.tags[0] == {key} && {self.model('explorer-slot')}.tags[1] == {count}"
        )
        self.until(IDLE)

    def graph(self):
        return self.page.session.graph(self.page.current)

    def severe_logs(self) -> list[str]:
        return [e["message"] for e in self.d.get_log("browser") if e["level"] == "SEVERE"]

    def no_markup_was_made(self) -> None:
        with pytest.raises(NoAlertPresentException):
            self.d.switch_to.alert
        injected = self.js(
            ALL_ELEMENTS + "return [...all(document)].filter(e => e.tagName == 'IMG' || "
            "(e.tagName == 'SCRIPT' && e.type != 'application/json' && e.textContent.includes('alert(1)')))"
            ".map(e => e.outerHTML.slice(0, 200))"
        )
        assert injected == []


@pytest.fixture(scope="module")
def live(driver, server) -> Live:
    return Live(driver, server)


def test_typing_shows_tokens_and_run_shows_the_prediction(live, tiny_checkpoint):
    live.type_prompt(PROMPT)
    reference = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    ids = reference.tokenization.token_ids
    shown = live.until(f"{live.model('tokens')}.text.includes('>{ids[-1]}<') && {live.model('tokens')}.text")
    assert f"{len(ids)} tokens" in shown
    assert live.page.session.steps == [] or live.page._text == PROMPT  # no forward pass while typing
    text = live.shown("tokens")
    for token, i in zip(reference.tokenization.tokens_visible, ids):
        assert f"{token}{i}" in text  # each token's string over its id; Ġ marks a leading space
    live.run()
    predicted = reference.decode_token(int(reference.logits[-1].argmax()))
    probability = float(reference.logits[-1].double().softmax(-1).max())
    assert f"next token {predicted} ({percent(probability)})" in live.shown("decoding")
    assert PROMPT in live.shown("header")  # the explorer's own header, with the prompt
    assert live.page.session.store.count(live.page.session.id) == 1
    assert live.severe_logs() == []


def test_walkthrough_moves_with_buttons_and_arrow_keys(live):
    graph = live.graph()
    steps = tour(live.page.session.view(graph), layout(graph.topology))
    assert [s.id for s in steps][:3] == ["tokenizer-callout", "xss-note", "xss-first-token"]  # the user's join in

    def at(number: int) -> None:
        live.until(f"{live.model('tour-step')}.value == {number}")
        live.until(f"{live.model('tour')}.text.includes('step {number} of {len(steps)}')")
        step = steps[number - 1]
        assert live.js(f"return Array.from({live.model('tour-filter')}.indices)") == step.nodes.tolist()
        assert step.title in live.shown("tour")

    live.press("◀ previous")  # at the first step already: stays
    at(1)
    assert "Input text and tokenizer" in live.shown("tour") and f"{graph.n_tokens} tokens" in live.shown("tour")
    for _ in range(3):
        live.press("next ▶")
    at(4)
    body = live.d.find_element("tag name", "body")
    body.send_keys(Keys.ARROW_RIGHT)
    at(5)
    body.send_keys(Keys.ARROW_LEFT)
    body.send_keys(Keys.ARROW_LEFT)
    at(3)
    live.press("◀ previous")
    at(2)
    assert SCRIPT in live.shown("tour")  # the user's callout, as text
    live.no_markup_was_made()


def test_dragging_the_temperature_changes_the_probabilities(live):
    graph = live.graph()
    before = live.shown("decoding")
    handle = live.element(".noUi-handle", "temperature")
    live.js("arguments[0].scrollIntoView({block: 'center'})", handle)
    ActionChains(live.d).click_and_hold(handle).move_by_offset(-40, 0).move_by_offset(-40, 0).release().perform()
    value = live.until(f"{live.model('temperature')}.value < 0.9 && {live.model('temperature')}.value")
    end = time.monotonic() + 30
    while live.page.session.decoding.temperature != pytest.approx(value):
        assert time.monotonic() < end, "the server did not follow the slider"
        time.sleep(0.05)
    expected = decode_next(graph, temperature=value, candidates=8)
    live.until(f"{live.model('decoding')}.text.includes('temperature {value:g},')")
    after = live.shown("decoding")
    assert after != before
    assert f"next token {expected.chosen.token} ({percent(expected.chosen.prob)})" in after
    row = ", ".join(f"{c.token} {percent(c.prob)}" for c in expected.steps[1].candidates)
    assert row in after  # the table after the temperature step, with this run's numbers
    assert live.page.timings["decoding"] < 5  # measured on the server (the benchmark holds the real target)
    # put it back for the tests that follow
    live.js(f"{live.model('temperature')}.value = 1")
    live.until(f"{live.model('decoding')}.text.includes('temperature 1,')")


def test_next_token_grows_the_prompt_and_steps_can_be_revisited(live):
    graph = live.graph()
    before = live.page.session.steps[-1]
    chosen = int(graph.logits[-1].argmax())
    tokenizer = live.page.session.pool.get(0).loaded.tokenizer
    n_steps = len(live.page.session.steps)
    live.press("Next token")
    live.wait_step(n_steps + 1)
    after = live.page.current
    assert list(after.token_ids) == [*before.token_ids, chosen]
    grown = before.text + tokenizer.decode([chosen])
    live.until(f"{live.model('prompt')}.value == arguments[0]".replace("arguments[0]", repr(grown)))
    assert f"+ {graph.decode_token(chosen)}" in live.js(f"return {live.model('steps')}.options.map(o => o[1]).join()")
    # back to the first step: its graph and prompt return
    live.js(f"{live.model('steps')}.value = arguments[0]", str(before.key))
    live.until(f"{live.model('prompt')}.value == arguments[0]".replace("arguments[0]", repr(before.text)))
    live.wait_step(n_steps + 1)
    assert live.page.drawn.step is before


def test_clicking_a_node_opens_its_panel(live):
    graph = live.graph()
    lay = layout(graph.topology)
    node_id = "blocks.1.attn.hook_q[2,3]"
    index = lay.index(graph.topology.parse(node_id)[1])
    x, y = float(lay.x[index]), float(lay.y[index])
    canvas = live.model("canvas")
    live.js(f"""
        const fig = {canvas}
        Bokeh.index.get_one(fig).el.scrollIntoView({{block: 'center'}})
        fig.x_range.setv({{start: {x - 6}, end: {x + 6}}}); fig.y_range.setv({{start: {y - 8}, end: {y + 8}}})""")
    live.until(IDLE)
    px, py = live.js(
        f"""
        const fig = {canvas}, view = Bokeh.index.get_one(fig)
        const r = view.canvas_view.el.getBoundingClientRect()
        return [r.left + view.frame.x_scale.compute({x}), r.top + view.frame.y_scale.compute({y})]"""
    )
    live.click_at(px, py)
    live.until(f"{live.model('node-links')}.text.includes('comes from')")
    title = live.js(f"return {live.model('node-strip')}.above.map(t => t.text).join()")
    assert node_id in title and f"{graph.dims.d_head:,} components" in title
    image = live.js(f"return Array.from({live.model('strip')}.data.image[0])")
    np.testing.assert_allclose(image, graph.values(node_id).numpy(), rtol=1e-5, atol=1e-6)
    links = live.shown("node-links")
    assert "head_projection" in links and "blocks.1.ln1.hook_out[2]" in links and "blocks.1.attn.W_Q[3]" in links
    assert "blocks.1.attn.hook_attn_scores[3,2]" in links  # where it goes: its head's scores
    assert node_id in live.shown("panel") and graph.glossary["query"].term in live.shown("panel")  # the explorer's
    assert live.severe_logs() == []


def test_two_sessions_are_independent(live, driver, server):
    first = live.page
    first_prompt = live.js(f"return {live.model('prompt')}.value")
    first_steps = list(first.session.steps)
    driver.switch_to.new_window("tab")
    other = Live(driver, server)
    assert other.page is not first and other.page.session.id != first.session.id
    other.run("Hello world")
    assert other.page.session.steps[0].text == "Hello world" and len(other.page.session.steps) == 1
    assert first.session.steps == first_steps
    assert server.shared.store.count(other.page.session.id) == 1
    driver.close()  # the tab goes: its session and graphs follow
    driver.switch_to.window(live.handle)
    end = time.monotonic() + 30
    while not other.page.session.closed or server.shared.store.count(other.page.session.id):
        assert time.monotonic() < end, "the closed tab's graphs were not freed"
        time.sleep(0.1)
    assert live.js(f"return {live.model('prompt')}.value") == first_prompt
    assert server.shared.store.count(first.session.id) >= 1 and not first.session.closed


def test_a_prompt_carrying_markup_stays_text(live):
    prompt = f"Say {IMG} now"
    live.type_prompt(prompt)
    ids = live.page.session.tokenize(prompt, 0).token_ids
    live.until(f"{live.model('tokens')}.text.includes('>{ids[-1]}<') && {live.model('tokens')}.text.includes('&lt;')")
    assert "<img" not in live.js(f"return {live.model('tokens')}.text")
    live.no_markup_was_made()
    live.run()
    assert prompt in live.shown("header")
    assert prompt in live.js(f"return {live.model('steps')}.options.map(o => o[1]).join()")
    options = live.js(
        f"return [...Bokeh.index.get_one({live.model('steps')}).el.shadowRoot.querySelectorAll('option')]"
        ".map(o => o.textContent).join()"
    )
    assert prompt in options
    live.no_markup_was_made()
    assert live.severe_logs() == []


def test_problems_are_said_in_the_page_and_nothing_is_lost(live, monkeypatch):
    steps = list(live.page.session.steps)
    live.type_prompt(" a" * 70)
    live.until(f"{live.model('tokens')}.text.includes('n_ctx = 64')")
    live.press("Run")
    live.until(f"{live.model('message')}.text.includes('shorten it by 6 tokens')")
    live.type_prompt("   ")
    live.press("Run")
    live.until(f"{live.model('message')}.text.includes('prompt is empty')")

    def broken(*args, **kwargs):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(session_module, "build", broken)
    live.type_prompt("A build that raises")
    live.press("Run")
    live.until(f"{live.model('message')}.text.includes('building the graph failed: RuntimeError: the model broke')")
    assert live.page.session.steps == steps  # nothing lost
    monkeypatch.undo()
    live.run("It works again")
    assert live.page.session.steps[:-1] == steps and live.page.session.steps[-1].text == "It works again"
    assert "g2g-error" not in live.js(f"return {live.model('message')}.text")


def test_a_build_runs_in_a_worker_with_progress_while_the_page_answers(live, monkeypatch):
    release = threading.Event()
    original = session_module.build

    def slow(*args, **kwargs):
        release.wait(timeout=60)  # the forward pass takes as long as the test says
        return original(*args, **kwargs)

    monkeypatch.setattr(session_module, "build", slow)
    steps = len(live.page.session.steps)
    live.type_prompt("A slow build")
    live.press("Run")
    shown = live.until(f"{live.model('progress')}.visible && {live.model('progress')}.text")
    assert "running the model" in shown and "g2g-spin" in shown
    assert live.js(f"return {live.model('run')}.disabled")
    live.type_prompt("Typing while it builds")  # the page still answers: tokens from the tokenizer alone
    ids = live.page.session.tokenize("Typing while it builds", 0).token_ids
    live.until(f"{live.model('tokens')}.text.includes('>{ids[-1]}<')")
    release.set()
    live.wait_step(steps + 1)
    assert live.page.session.steps[-1].text == "A slow build"
    live.until(f"!{live.model('progress')}.visible && !{live.model('run')}.disabled")


def test_top_k_and_sampling_controls(live):
    graph = live.graph()
    live.js(f"{live.model('top-k')}.value = 3")
    live.js(f"{live.model('decode-mode')}.active = 1")
    live.js(f"{live.model('seed')}.value = 5")
    live.until(f"{live.model('decoding')}.text.includes('top-k 3, top-p off, sampled with seed 5')")
    expected = decode_next(graph, top_k=3, seed=5)
    assert f"next token {expected.chosen.token} ({percent(expected.chosen.prob)})" in live.shown("decoding")
    assert expected.steps[2].kept == 3 and "top-k 3" in live.shown("decoding")
    live.js(f"{live.model('top-k')}.value = 0; {live.model('decode-mode')}.active = 0")
    live.until(f"{live.model('decoding')}.text.includes('top-k off, top-p off, greedy')")


def test_a_dropped_step_is_rebuilt_when_shown(live):
    session = live.page.session
    first = session.steps[0]
    while session.store.holds(session.id, first.key):  # more steps than the session keeps
        live.run(f"Filler prompt {len(session.steps)}")
    n_steps = len(session.steps)
    live.js(f"{live.model('steps')}.value = '{first.key}'")
    live.wait_step(n_steps)
    assert live.page.current is first and session.graph(first) is not None
    assert live.js(f"return {live.model('prompt')}.value") == first.text


def test_downloads_are_the_poster_and_the_saved_graph(live, tmp_path):
    graph = live.graph()

    def fetch(label: str) -> tuple[bytes, str]:
        old = live.js(f"return {live.model('download-link')}.text")
        live.press(label)
        live.until(f"{live.model('download-link')}.text != arguments[0]".replace("arguments[0]", repr(old)))
        href = live.element("a", "download-link").get_attribute("href")
        with urllib.request.urlopen(href, timeout=60) as response:
            return response.read(), response.headers["Content-Disposition"]

    svg, disposition = fetch("SVG poster")
    assert disposition.startswith("attachment") and b"<svg" in svg[:500]
    assert graph.tokenization.tokens_visible[-1].encode() in svg
    packed, disposition = fetch("Saved graph (.zip)")
    with zipfile.ZipFile(io.BytesIO(packed)) as z:
        z.extractall(tmp_path)
    (saved,) = tmp_path.glob("*.gg")
    loaded = gpt2graph.load(saved)
    assert loaded.tokenization == graph.tokenization
    np.testing.assert_array_equal(loaded.logits.numpy(), graph.logits.numpy())


def test_analysis_on_demand(live):
    live.js(f"{live.model('views')}.active = 2")
    drawings = live.page.explorer_slot.tags[1]
    live.press("Analyse")
    end = time.monotonic() + 120
    while live.page.explorer_slot.tags[1] == drawings or live.page._busy is not None:
        assert time.monotonic() < end, live.shown("message")
        time.sleep(0.05)
    live.wait_drawn()
    analysis = live.graph().analysis
    assert analysis is not None
    text = live.shown("analysis-text")
    assert "Direct logit attribution" in text and f"next token {analysis.decoding.chosen.token}" in text
    assert live.js(f"return {live.model('lens')} !== null && {live.model('dla')} !== null")
    assert "dla" in live.js(f"return {live.model('color-by')}.labels")  # the explorer colours by the analysis
    live.js(f"{live.model('views')}.active = 0")


def test_patching_against_a_second_prompt(live):
    live.run(PROMPT)
    live.js(f"{live.model('views')}.active = 3")
    live.until(IDLE)

    def patch(corrupted: str) -> None:
        live.element("textarea", "corrupted").click()
        keys = ActionChains(live.d).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL)
        keys.send_keys(Keys.BACKSPACE).send_keys(corrupted).perform()
        live.until(f"{live.model('corrupted')}.value_input == {corrupted!r}")
        drawings = live.page.explorer_slot.tags[1]
        live.press("Patch")
        end = time.monotonic() + 120
        while live.page._busy is None and live.page.explorer_slot.tags[1] == drawings and not live.page.message.visible:
            assert time.monotonic() < end
            time.sleep(0.05)
        while live.page._busy is not None:
            assert time.monotonic() < end, live.shown("message")
            time.sleep(0.05)

    patch("Transformer tokens are numbers")  # as many tokens, one changed
    live.wait_drawn()
    graph = live.graph()
    sweeps, circuit = graph.header.patching, graph.header.circuit
    assert [s.kind for s in sweeps] == ["resid_pre", "head_out"] and circuit is not None
    live.until(" && ".join(f"{live.model(name)} !== null" for name in ("patching-result", "patching-0", "patching-1")))
    text = live.shown("patching-result")
    assert "Transformer tokens are numbers" in text and f"{len(circuit.edges)} edges recover" in text
    for i, sweep in enumerate(sweeps):  # the heat maps hold the stored numbers
        cells = live.js(f"return Array.from({live.model(f'patching-cells-{i}')}.data.normalized)")
        np.testing.assert_allclose(cells, np.ravel(sweep.normalized), rtol=1e-6)
    edges = live.js(f"return {live.model('circuit-edges')}.data.score.length")  # drawn on the canvas
    assert edges == len(circuit.edges)

    patch("Transformer tokens are numbers, always")  # more tokens: said in the page, nothing lost
    live.until(f"{live.model('message')}.visible")
    assert "more than the" in live.shown("message") and live.graph().header.patching == sweeps
    assert live.js(f"return {live.model('patching-0')} !== null")
    live.js(f"{live.model('views')}.active = 0")


def test_heads_grid_opens_a_heads_pattern(live):
    graph = live.graph()
    live.js(f"{live.model('views')}.active = 1")
    live.until(IDLE)
    tiles = live.model("head-tiles")
    px, py = live.js(
        f"""
        const fig = {live.model("heads-grid")}, view = Bokeh.index.get_one(fig), t = {tiles}.data
        const i = t.layer.findIndex((l, k) => l == 1 && t.head[k] == 2)
        view.el.scrollIntoView({{block: 'center'}})
        const r = view.canvas_view.el.getBoundingClientRect()
        return [r.left + view.frame.x_scale.compute(t.x[i]), r.top + view.frame.y_scale.compute(t.y[i])]"""
    )
    # the grid draws each head where its tile is: a query's weight on itself at position 0 is 1 (darkest), the
    # masked future white
    colour = live.js(
        f"""
        const view = Bokeh.index.get_one({live.model("heads-grid")}), k = window.devicePixelRatio
        const pitch = {tiles}.data.x[1] - {tiles}.data.x[0]
        const ctx = view.canvas_view.primary.canvas.getContext('2d')
        return [[2 * pitch, pitch], [2 * pitch + 1, pitch]].map(([x, y]) => [...ctx.getImageData(
            Math.round(view.frame.x_scale.compute(x) * k), Math.round(view.frame.y_scale.compute(y) * k), 1, 1
        ).data].slice(0, 3))"""
    )
    assert colour == [[0x7F, 0x27, 0x04], [255, 255, 255]]
    live.click_at(px, py)
    live.until(f"{live.model('head-pattern')}.above.some(t => (t.text || '').includes('layer 1, head 2'))")
    q, k = np.tril_indices(graph.n_tokens)
    prob = live.js(f"return Array.from({live.model('head-heat')}.data.prob)")
    np.testing.assert_allclose(prob, graph.pattern(1, 2).numpy()[q, k], rtol=1e-5, atol=1e-6)
    live.js(f"{live.model('views')}.active = 0")


def test_a_model_that_fails_to_load_is_said_in_the_page(driver, tiny_checkpoint):
    config = ServeConfig(models=["/no/such/model", str(tiny_checkpoint)], port=0, open_browser=False)
    with ServerThread(config) as other:
        driver.switch_to.new_window("tab")
        try:
            driver.get(other.url)
            page = Live.__new__(Live)
            page.d = driver
            page.until(IDLE, timeout=60)
            page.until(f"{page.model('message')}.text.includes('could not be loaded')", timeout=60)
            assert "/no/such/model" in page.shown("message") and "does not exist" in page.shown("message")
            page.js(f"{page.model('model')}.value = '1'")  # another model: the page was usable all along
            page.until(f"{page.model('tokens')}.text.includes('g2g-tok')", timeout=60)
        finally:
            driver.close()
            driver.switch_to.window(driver.window_handles[0])


def test_screenshot(driver, tiny_checkpoint, artifacts_dir, monkeypatch):
    """The picture in docs/serve.md: a run of the tiny checkpoint (named as a user would, by its directory)
    with the walkthrough on the attention pattern."""
    monkeypatch.chdir(tiny_checkpoint.parent)
    config = ServeConfig(models=[tiny_checkpoint.name], port=0, open_browser=False)
    with ServerThread(config) as server:
        driver.switch_to.new_window("tab")
        size = driver.get_window_size()
        try:
            driver.set_window_size(1640, 1500)
            shot = Live(driver, server)
            shot.run("When Mary and John went to the store, John gave a drink to")
            steps = [s.id for s in tour(shot.graph(), layout(shot.graph().topology))]
            shot.js(f"{shot.model('tour-step')}.value = {steps.index('attention-pattern-callout') + 1}")
            shot.until(f"{shot.model('tour')}.text.includes('Softmax to attention pattern')")
            shot.until(IDLE)
            shot.js("window.scrollTo(0, 0)")
            path = artifacts_dir / "serve.png"
            driver.save_screenshot(str(path))
        finally:
            driver.set_window_size(size["width"], size["height"])
            driver.close()
            driver.switch_to.window(driver.window_handles[0])
    if os.environ.get("GPT2GRAPH_UPDATE_DOCS") == "1":
        shutil.copyfile(path, ROOT / "docs" / "images" / "serve.png")
    assert path.stat().st_size > 10_000
