"""`gpt2graph serve` without a browser: the graph store's limits, a session's steps and decoding, the
walkthrough against the glossary's own matching, the explorer's live decoding update against a fresh explorer,
the views' data against the graph, the registry's app group, and the command line as a real process (URL,
websocket origins, downloads, Ctrl-C)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PROMPT
from gpt2graph_bokeh.analysis_panel import analysis_panel
from gpt2graph_bokeh.app.experiments import Experiment, PatchingControls, run_experiment
from gpt2graph_bokeh.app.markup import message_html, tokens_html, tour_html
from gpt2graph_bokeh.app.models import ModelPool
from gpt2graph_bokeh.app.server import origins
from gpt2graph_bokeh.app.session import Session
from gpt2graph_bokeh.app.store import GraphStore
from gpt2graph_bokeh.app.views import analysis_figures, heads_view, node_links, strip
from gpt2graph_bokeh.app.walkthrough import facts, tour
from gpt2graph_bokeh.document import decoding_rows, make_explorer
from gpt2graph_bokeh.layout import layout
from test_bokeh import IMG, SCRIPT

import gpt2graph
import gpt2graph.registry as reg
from gpt2graph.cli import main
from gpt2graph.decoding import decode_next
from gpt2graph.errors import InterpretError, PromptError, RendererError, RunMismatchError
from gpt2graph.loading import load_model
from gpt2graph.plugin import PatchDirection, PatchKind, PatchMetric
from gpt2graph.topology import VECTOR_SPECS

ROOT = Path(__file__).resolve().parent.parent


# ---- the graph store ------------------------------------------------------------------------------------
def test_store_drops_the_least_recently_used_per_session_and_in_all():
    store = GraphStore(max_total=3, max_per_session=2)
    assert store.put("a", 1, "a1") == [] and store.put("a", 2, "a2") == []
    assert store.get("a", 1) == "a1"  # now a2 is the least recently used of session a
    assert store.put("a", 3, "a3") == [("a", 2)]
    assert store.put("b", 1, "b1") == [] and store.count() == 3
    assert store.put("b", 2, "b2") == [("a", 1)]  # in all: the oldest of anyone
    assert (store.count("a"), store.count("b")) == (1, 2)
    assert store.get("a", 1) is None and store.get("a", 3) == "a3"
    assert store.holds("a", 3) and not store.holds("a", 1)
    assert store.drop_session("b") == 2 and store.count() == 1
    with pytest.raises(ValueError, match="limits must be >= 1"):
        GraphStore(0, 1)


# ---- a session ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool(tiny_checkpoint) -> ModelPool:
    pool = ModelPool([str(tiny_checkpoint)])
    pool.get(0)
    return pool


def test_session_builds_steps_and_continues_with_the_decoded_token(pool, tiny_checkpoint):
    store = GraphStore(4, 4)
    s = Session("s", pool, store)
    step, graph = s.build(PROMPT, 0)
    reference = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    torch.testing.assert_close(graph.logits, reference.logits, rtol=0, atol=0)
    assert step.token_ids == tuple(reference.tokenization.token_ids) and step.text == PROMPT
    ids, token = s.continuation(graph)
    assert ids[:-1] == list(step.token_ids) and ids[-1] == int(reference.logits[-1].argmax())  # greedy
    assert token == reference.decode_token(ids[-1])
    step2, graph2 = s.build(ids, 0, added=token)
    assert graph2.tokenization.token_ids == ids  # exactly the ids, not a re-tokenisation of the text
    assert graph2.tokenization.text == PROMPT + pool.get(0).loaded.tokenizer.decode([ids[-1]])
    assert step2.added == token and f"+ {token}" in step2.label()

    s.set_decoding(temperature=0.5, top_k=3, top_p=None, seed=7)
    view = s.view(graph)
    d = decode_next(graph, temperature=0.5, top_k=3, seed=7)
    assert s.continuation(graph)[0][-1] == d.chosen.id
    assert view.decoding.top_k == 3 and graph.decoding.top_k is None  # a view: the run itself is unchanged
    with pytest.raises(gpt2graph.errors.InterpretError, match="top-p must be in"):
        s.set_decoding(temperature=1.0, top_k=None, top_p=1.5, seed=None)
    assert s.decoding.top_k == 3  # a bad value changes nothing


#: as many tokens as PROMPT, one changed
CORRUPTED = "Transformer tokens are numbers"


def _names(root) -> set[str]:
    return {m.name for m in root.references() if m.name}


def test_a_patching_experiment_is_the_cores_and_is_drawn(pool, tiny_checkpoint):
    s = Session("patch", pool, GraphStore(4, 4))
    _step, clean = s.build(PROMPT, 0)
    corrupted = s.run_alone(CORRUPTED, 0, what="the corrupted prompt")
    assert corrupted.n_tokens == clean.n_tokens and s.steps == []  # not a step
    experiment = Experiment(
        CORRUPTED, None, None, (PatchKind.resid_pre, PatchKind.head_out), "activation", PatchDirection.noising,
        PatchMetric.logit_diff, 6,
    )  # fmt: skip
    outcome = run_experiment(clean, corrupted, experiment)

    # the core's own results, asked for directly on another build of the same runs
    reference = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    answer, wrong = int(clean.logits[-1].argmax()), int(corrupted.logits[-1].argmax())
    for sweep in outcome.sweeps:
        expected = reference.patch_sweep(CORRUPTED, kind=sweep.kind, answer=answer, wrong=wrong)
        assert (sweep.answer_id, sweep.wrong_id, sweep.method) == (answer, wrong, "activation")
        np.testing.assert_allclose(sweep.normalized, expected.normalized, rtol=1e-6, atol=1e-6)
    expected_circuit = reference.circuit(CORRUPTED, answer=answer, wrong=wrong, top=6)
    found = [(e.source, e.target, e.input) for e in outcome.circuit.edges]
    assert found == [(e.source, e.target, e.input) for e in expected_circuit.edges]
    assert clean.header.circuit == outcome.circuit and len(clean.header.patching) == 2  # stored on the step

    # the explorer of the live page draws the circuit on its canvas and leaves the heat maps to the tab
    live = make_explorer(clean, every_position=True, sweeps=False)
    assert "circuit-edges" in _names(live.root) and "patching-0" not in _names(live.root)
    assert {"patching-0", "patching-1"} <= _names(make_explorer(clean).root)
    tab = PatchingControls()
    tab.show(outcome)
    assert {"patching-0", "patching-1"} <= _names(tab.heat_maps)
    assert "Circuit" in tab.result.text and "6 edges" in tab.result.text and CORRUPTED in tab.result.text

    # the gradient estimate, with the probability (no wrong token) and the other direction
    estimate = run_experiment(
        clean, corrupted, Experiment(
            CORRUPTED, None, None, (PatchKind.mlp_out,), "attribution", PatchDirection.denoising,
            PatchMetric.prob, 0,
        ),
    )  # fmt: skip
    (sweep,) = estimate.sweeps
    assert (sweep.method, sweep.kind, sweep.wrong_id, estimate.circuit) == ("attribution", "mlp_out", None, None)
    tab.show(estimate)
    assert "Circuit" not in tab.result.text and _names(tab.heat_maps) >= {"patching-0"}
    assert f"p({sweep.answer})" in tab.result.text

    only_circuit = run_experiment(clean, corrupted, replace(experiment, kinds=(), circuit_edges=4))
    assert only_circuit.sweeps == [] and len(only_circuit.circuit.edges) == 4
    tab.show(only_circuit)
    assert only_circuit.circuit.metric_text in tab.result.text and "4 edges recover" in tab.result.text
    assert not {"patching-0"} & _names(tab.heat_maps)


def test_patching_problems_are_the_cores_clear_errors(pool):
    s = Session("patch-errors", pool, GraphStore(4, 4))
    _step, clean = s.build(PROMPT, 0)
    with pytest.raises(PromptError, match="the corrupted prompt is empty"):
        s.run_alone("  ", 0, what="the corrupted prompt")
    longer = s.run_alone(CORRUPTED + " too", 0)
    base = Experiment(CORRUPTED, None, None, (PatchKind.resid_pre,), "activation", PatchDirection.noising,
                      PatchMetric.logit_diff, 0)  # fmt: skip
    with pytest.raises(RunMismatchError, match="more than the"):
        run_experiment(clean, longer, base)
    corrupted = s.run_alone(CORRUPTED, 0)
    with pytest.raises(InterpretError, match="one token"):
        run_experiment(clean, corrupted, replace(base, answer=" two tokens here"))


def test_a_dropped_step_is_rebuilt_with_the_same_values(pool):
    store = GraphStore(max_total=1, max_per_session=1)
    s = Session("s", pool, store)
    first, graph = s.build("Hello world", 0)
    s.build("Another prompt", 0)
    assert s.graph(first) is None  # dropped to stay within the limit
    again = s.rebuild(first)
    assert s.graph(first) is again
    torch.testing.assert_close(again.logits, graph.logits, rtol=0, atol=0)


def test_prompt_problems_are_clear_errors(pool):
    s = Session("s", pool, GraphStore(2, 2), max_tokens=8)
    with pytest.raises(PromptError, match="the prompt is empty"):
        s.build("   ", 0)
    with pytest.raises(PromptError, match=r"at most 8 tokens \(gpt2graph serve --max-tokens\): shorten it by 2"):
        s.tokenize(" a" * 10, 0)
    long = Session("s", pool, GraphStore(2, 2))
    with pytest.raises(PromptError, match="reads at most n_ctx = 64 tokens: shorten it by 6"):
        long.build(" a" * 70, 0)
    assert long.steps == [] and long.store.count() == 0


def test_a_closed_session_keeps_no_graph(pool):
    store = GraphStore(4, 4)
    s = Session("s", pool, store)
    step, graph = s.build(PROMPT, 0)
    assert store.count("s") == 1
    assert s.close() == 1 and store.count() == 0
    s.keep(step, graph)  # a build that finishes after the tab closed
    assert store.count() == 0


def test_a_model_that_fails_to_load_is_asked_for_again():
    pool = ModelPool(["/no/such/model"])
    with pytest.raises(gpt2graph.errors.ModelLoadError, match="does not exist"):
        pool.get(0)
    first = pool.request(0)
    assert pool.request(0) is first or first.exception() is not None
    assert pool.loaded(0) is None


def test_builds_from_token_ids_and_from_a_loaded_model(tiny_checkpoint):
    loaded = load_model(str(tiny_checkpoint))
    from_text = gpt2graph.build(PROMPT, model=loaded)
    from_ids = gpt2graph.build(from_text.tokenization.token_ids, model=loaded)
    assert from_ids.tokenization == from_text.tokenization
    assert from_text.model == gpt2graph.build(PROMPT, model=str(tiny_checkpoint)).model  # same record as by name
    torch.testing.assert_close(from_ids.logits, from_text.logits, rtol=0, atol=0)
    with pytest.raises(PromptError, match="outside the model's vocabulary"):
        gpt2graph.build([1, 60000], model=loaded)
    with pytest.raises(PromptError, match="token ids are >= 0"):
        gpt2graph.build([-1], model=loaded)
    with pytest.raises(PromptError, match="the prompt produced no tokens"):
        gpt2graph.build([], model=loaded)
    with pytest.raises(gpt2graph.errors.ModelLoadError, match="loaded already"):
        gpt2graph.build(PROMPT, model=loaded, random_weights=True)


# ---- the walkthrough ------------------------------------------------------------------------------------
def _matched_by_glossary(graph, annotation_id: str) -> set[int]:
    """Canvas nodes an annotation applies to, asking the glossary node by node (and an operation's callout
    on the vector it makes)."""
    lay = layout(graph.topology)
    out = set()
    for i, node_id in enumerate(lay.ids):
        ids = {a.id for a in graph.annotations_for(str(node_id))}
        key = lay.key_of(i)
        if key.kind in VECTOR_SPECS and key.kind != "token":
            ids |= {a.id for a in graph.annotations_for("op:" + str(node_id))}
        if annotation_id in ids:
            out.add(i)
    return out


def test_walkthrough_steps_are_the_callouts_in_data_order_with_their_nodes(tiny_graph, tmp_path):
    graph = tiny_graph
    lay = layout(graph.topology)
    steps = tour(graph, lay)
    assert [s.id for s in steps] == [a.id for a in graph.glossary.annotations]  # data order = the poster's
    for s in steps:
        assert set(s.nodes.tolist()) == _matched_by_glossary(graph, s.id), s.id
        assert "{" not in s.title + s.body  # template fields filled in from this run
    first = steps[0]
    assert first.id == "tokenizer-callout" and f"into {graph.n_tokens} tokens" in first.body
    assert facts(graph, lay, first) == [
        f"{graph.n_tokens} tokens: "
        + " · ".join(f"{t} = {i}" for t, i in zip(graph.tokenization.tokens_visible, graph.tokenization.token_ids))
    ]
    logits = next(s for s in steps if s.id == "unembed-callout")
    top = torch.topk(graph.logits[-1], 3)
    assert facts(graph, lay, logits)[0].endswith(
        ", ".join(f"{graph.decode_token(int(i))} {v:.3g}" for v, i in zip(top.values, top.indices))
    )
    sample = next(s for s in steps if s.id == "sample-callout")
    chosen = decode_next(graph.with_decoding(seed=3), seed=3).chosen
    assert f"next token (sampled with seed 3): {chosen.token}" in facts(graph.with_decoding(seed=3), lay, sample)[1]


NOTES = """
annotations:
  - id: my-head
    title: "Head 1.2 <b>here</b>"
    body: "It reads {n_tokens} tokens."
    targets:
      - kind: attn_pattern
        layer: 1
        head: 2
  - id: my-token
    title: "The first token"
    body: "Position 0."
    targets:
      - kind: token
        position: 0
"""
FAR = """
annotations:
  - id: my-far-token
    title: "Position 40"
    body: "Not in a short run."
    targets:
      - kind: token
        position: 40
"""


def test_a_users_callouts_join_the_walkthrough_where_their_nodes_sit(pool, tmp_path):
    notes, far = tmp_path / "notes.yaml", tmp_path / "far.yaml"
    notes.write_text(NOTES, encoding="utf-8")
    far.write_text(FAR, encoding="utf-8")
    s = Session("s", pool, GraphStore(2, 2), annotations=[str(notes), str(far)])
    step, graph = s.build(PROMPT, 0)
    (problem,) = s.problems[step.key]  # a file that does not fit this run is left out of it, and said
    assert str(far) in problem and "position 40 is out of range" in problem
    lay = layout(graph.topology)
    steps = tour(graph, lay)
    ids = [t.id for t in steps]
    assert ids.index("my-head") == ids.index("attention-pattern-callout") + 1
    assert ids.index("my-token") == ids.index("tokenizer-callout") + 1
    assert "my-far-token" not in ids
    by_id = {t.id: t for t in steps}
    assert set(by_id["my-head"].nodes.tolist()) == _matched_by_glossary(graph, "my-head")
    assert by_id["my-token"].nodes.tolist() == [lay.index(graph.topology.parse("tokens[0]")[1])]
    html = tour_html(by_id["my-head"], ["<i>fact</i>"], 3, len(steps))
    assert "Head 1.2 &lt;b&gt;here&lt;/b&gt;" in html and "&lt;i&gt;fact&lt;/i&gt;" in html
    assert "It reads 5 tokens." in html and str(notes) in html
    longer = " a" * 45
    step, graph = s.build(longer, 0)
    assert s.problems[step.key] == [] and "my-far-token" in [t.id for t in tour(graph, layout(graph.topology))]


# ---- the explorer follows the decoding controls -----------------------------------------------------------
@pytest.mark.parametrize("max_positions", [32, 2])  # vectors, and the overview of blocks
def test_live_decoding_update_equals_a_fresh_explorer(analysed_graph, max_positions):
    graph = analysed_graph
    ex = make_explorer(graph, max_positions=max_positions, every_position=True)  # as the app makes it
    view = graph.with_decoding(temperature=0.6, top_k=7, top_p=0.8, seed=3)
    fresh = make_explorer(view, max_positions=max_positions, every_position=True)
    rows = decoding_rows(ex.layout)
    assert rows.stop - rows.start == 5 * graph.n_tokens
    n = graph.n_tokens
    ex.follow_decoding(view, positions=[n - 1])  # first the predicted position, as a dragged control does
    last = np.arange(rows.start + n - 1, rows.stop, n)
    for name in ("norm", "mean", "std", "min", "max"):
        np.testing.assert_array_equal(np.asarray(ex.nodes.data[name])[last], fresh.nodes.data[name][last], name)
    others = np.setdiff1d(np.arange(rows.start, rows.stop), last)  # not yet
    assert not np.array_equal(np.asarray(ex.nodes.data["norm"])[others], fresh.nodes.data["norm"][others])
    ex.follow_decoding(view)  # then every position
    for name, column in fresh.nodes.data.items():
        if isinstance(column, np.ndarray) and column.dtype.kind == "f":
            np.testing.assert_array_equal(np.asarray(ex.nodes.data[name]), column, err_msg=name)
    if max_positions == 2:
        for name, column in fresh.overview.data.items():
            np.testing.assert_array_equal(np.asarray(ex.overview.data[name]), np.asarray(column), err_msg=name)
    # the analysis panel's decoding table follows too (the rest of the analysis is what was stored)
    a = graph.analysis
    again = decode_next(view, position=a.decoding.position, temperature=0.6, top_k=7, top_p=0.8, seed=3,
                        candidates=a.options.top_tokens)  # fmt: skip
    assert ex.analysis.text == analysis_panel(a.model_copy(update={"decoding": again}))
    assert "temperature 0.6, top-k 7, top-p 0.8, sampled with seed 3" in ex.analysis.text


def test_a_windowed_explorer_refuses_decoding_updates(analysed_graph):
    ex = make_explorer(analysed_graph, max_positions=2)  # the window's vectors only: rows are not node indices
    assert len(ex.nodes.data["x"]) < ex.layout.n_nodes
    with pytest.raises(RendererError, match="every_position=True"):
        ex.follow_decoding(analysed_graph.with_decoding(temperature=0.6))


# ---- views --------------------------------------------------------------------------------------------
def test_heads_view_shows_each_heads_pattern(tiny_graph):
    heads = heads_view(tiny_graph)
    q, k = np.tril_indices(tiny_graph.n_tokens)
    heads.show(tiny_graph, 1, 3)
    np.testing.assert_allclose(heads.heat.data["prob"], tiny_graph.pattern(1, 3).numpy()[q, k], rtol=1e-6)
    assert "layer 1, head 3" in heads.title.text
    assert list(heads.tiles.data["layer"]) == [0] * 4 + [1] * 4


def test_heads_grid_of_a_long_prompt_keeps_each_blocks_strongest_weight(tiny_checkpoint):
    from gpt2graph_bokeh.app.views import TILE

    graph = gpt2graph.build(" a" * 30, model=str(tiny_checkpoint))
    heads = heads_view(graph)
    image = heads.grid.renderers[0].data_source.data["image"][0]  # row 0 at the top (layer 0)
    pitch = TILE + 1
    assert image.shape == (2 * pitch - 1, 4 * pitch - 1)
    pattern = graph.pattern(1, 2).numpy()
    tile = image[pitch : pitch + TILE, 2 * pitch : 2 * pitch + TILE]
    edges = np.linspace(0, 30, TILE + 1).astype(int)
    for i in range(TILE):
        for j in range(i + 1):
            block = pattern[edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
            assert tile[i, j] == pytest.approx(float(block.max()), rel=1e-6)
    assert np.isnan(tile[0, 1])  # the future stays masked


def test_analysis_figures_read_the_stored_analysis(analysed_graph):
    graph, a = analysed_graph, analysed_graph.analysis
    figures = analysis_figures(graph)
    lens = figures.lens.renderers[0].data_source.data
    n, L = graph.n_tokens, graph.dims.n_layer
    assert len(lens["x"]) == (2 * L + 1) * n
    last = f"blocks.{L - 1}.hook_resid_post[{n - 1}]"  # the last column, last position: the model's own
    i = len(lens["x"]) - 1
    assert lens["top"][i] == graph.lens.entry(last).top[0].token == graph.decode_token(int(graph.logits[-1].argmax()))
    mid = graph.lens.entry("blocks.0.hook_resid_mid[2]")
    j = next(k for k in range(len(lens["x"])) if lens["label"][k] == "0 attn" and lens["y"][k] == 2)
    assert (lens["top"][j], lens["prob"][j]) == (mid.top[0].token, mid.top[0].prob)
    bars = figures.dla.renderers[0].data_source.data
    assert list(bars["name"])[::-1] == [c.component for c in a.dla.top(12)]
    roles = figures.roles_source.data
    for k, h in enumerate(a.roles.heads):
        assert (roles["y"][k], roles["x"][k]) == (h.layer, h.head) and roles["induction"][k] == h.induction


def test_node_strip_is_the_whole_value_and_links_come_from_the_edges(tiny_graph):
    lay = layout(tiny_graph.topology)
    node_id = "blocks.1.attn.hook_z[3,2]"
    index = lay.index(tiny_graph.topology.parse(node_id)[1])
    image, caption = strip(tiny_graph, lay, index)
    np.testing.assert_allclose(image[0], tiny_graph.values(node_id).numpy(), rtol=1e-6)
    assert node_id in caption
    html = node_links(tiny_graph, node_id)
    op_inputs = [e.source for e in tiny_graph.edges("op:" + node_id) if e.target == "op:" + node_id]
    assert "weighted_sum" in html and all(f"<code>{i}</code>" in html for i in op_inputs[:12])
    readers = [e.target.removeprefix("op:") for e in tiny_graph.edges(node_id) if e.source == node_id]
    assert readers and all(f"<code>{r}</code>" in html for r in readers)
    w_e = lay.index(tiny_graph.topology.parse("embed.W_E")[1])
    matrix, caption = strip(tiny_graph, lay, w_e)
    assert matrix.shape == (256, 32) and "shrunk to 256 x 32" in caption
    values = tiny_graph.values("embed.W_E")
    assert float(np.abs(matrix).max()) == pytest.approx(float(values.abs().max()), rel=1e-6)


def test_markup_in_tokens_and_messages_is_escaped():
    tokens = gpt2graph.schema.Tokenization(
        text=IMG, token_ids=[1, 2], tokens=[IMG, SCRIPT], tokens_visible=[IMG, SCRIPT]
    )
    html = tokens_html(tokens)
    assert "<img" not in html and "<script" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script" not in message_html(SCRIPT, error=True)


# ---- the app plugin and the command line ------------------------------------------------------------------
def test_the_bokeh_plugin_registers_an_app():
    assert "bokeh" in reg.apps.names()
    app = reg.apps.resolve("bokeh")
    assert app.name == "bokeh" and callable(app.serve)


def test_serve_without_an_app_plugin_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(reg, "apps", reg.Registry(reg.APP_ENTRY_POINT_GROUP, "app", reg.APP_PROTOCOL))
    monkeypatch.setattr(reg, "entry_points", lambda group: [])
    assert main(["serve", "--no-browser"]) == 2
    assert "no installed plugin can serve" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [(["serve", "--port", "70000"], "expected an integer in 0..65535"), (["serve", "--max-graphs", "0"], ">= 1")],
)
def test_serve_refuses_bad_options(argv, message, capsys):
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()  # one line, as every refused argument
    assert line.startswith("error: ") and message in line


def test_serve_refuses_a_bad_annotation_file_before_starting(capsys):
    assert main(["serve", "--annotations", str(ROOT / "tests/data/invalid/unknown-kind.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown kind" in err


def test_a_port_in_use_is_a_clear_error(tiny_checkpoint):
    import socket

    from gpt2graph_bokeh.app.server import LiveServer, ServeConfig

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LiveServer(ServeConfig(models=[str(tiny_checkpoint)], port=port, open_browser=False))
        with pytest.raises(
            gpt2graph.Gpt2GraphError, match=f"cannot listen on 127.0.0.1:{port}: .*choose another --port"
        ):
            server.start()


def test_origins_name_the_served_host():
    assert origins("127.0.0.1", 5006) == ["127.0.0.1:5006", "[::1]:5006", "localhost:5006"]
    assert origins("192.168.1.5", 80) == ["192.168.1.5:80"]
    assert "localhost:7" in origins("0.0.0.0", 7) and "127.0.0.1:7" in origins("0.0.0.0", 7)


def _serve(tiny_checkpoint, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpt2graph.cli",
            "serve",
            "--model",
            str(tiny_checkpoint),
            "--port",
            "0",
            "--no-browser",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _url(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    found = re.search(r"(http://\S+)", line)
    assert found, f"no URL in {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
    return found.group(1)


def test_serve_command_serves_refuses_foreign_origins_and_stops_on_ctrl_c(tiny_checkpoint):
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect

    proc = _serve(tiny_checkpoint)
    try:
        url = _url(proc)
        assert url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "Bokeh" in page and "<title>gpt2graph</title>" in page
        port = url.rstrip("/").rsplit(":", 1)[1]
        ws = f"ws://127.0.0.1:{port}/ws"

        async def connect(origin: str):
            conn = await websocket_connect(HTTPRequest(ws, headers={"Origin": origin}))
            conn.close()

        with pytest.raises(HTTPClientError, match="403"):
            IOLoop.current().run_sync(lambda: connect("http://evil.example"))
        # (the page's own origin connects: every browser test runs through it)
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{url}download/{'x' * 43}", timeout=10)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err and "Traceback" not in out


def test_another_address_needs_host_and_warns(tiny_checkpoint):
    proc = _serve(tiny_checkpoint, "--host", "0.0.0.0")
    try:
        url = _url(proc)
        assert url.startswith("http://localhost:")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "warning: listening on 0.0.0.0" in err and "reachable from the network" in err
    assert proc.returncode == 0
