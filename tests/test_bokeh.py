"""The Bokeh explorer renderer without a browser: the document it builds, the data behind every glyph, the
ancestry rules against the topology, escaping of user text, options, and Jupyter display."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import gpt2graph_bokeh
import numpy as np
import pytest
import torch
from bokeh.models import CustomJS, Div, GlyphRenderer, HoverTool
from conftest import PROMPT, in_a_notebook
from gpt2graph_bokeh.ancestry import (
    ALL,
    FROM,
    SAME,
    UPTO,
    Rules,
    input_rules,
    output_rules,
)
from gpt2graph_bokeh.document import build_explorer
from gpt2graph_bokeh.knowledge import knowledge
from gpt2graph_bokeh.layout import layout
from gpt2graph_bokeh.sanitize import markdown

from gpt2graph.presentation import percent
from gpt2graph.registry import registry
from gpt2graph.topology import VECTOR_SPECS, Key

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
XSS_NOTES = f"""
glossary:
  - id: xss-term
    term: "{SCRIPT}"
    summary: "{IMG}"
    body: "Body with {SCRIPT} and [a link](javascript:alert(1)) and [ok](https://example.org/?a=1&b=2)"
    sources:
      - title: "{IMG}"
        url: https://example.org/paper
    applies_to:
      - kind: token
annotations:
  - id: xss-note
    title: "{SCRIPT}"
    body: "{IMG} **bold**"
    caption: "{SCRIPT}"
    targets:
      - kind: token
  - id: xss-first-token
    title: "first {IMG}"
    body: "only position 0 {SCRIPT}"
    targets:
      - kind: token
        position: 0
"""


@pytest.fixture(scope="module")
def explorer(tiny_graph):
    return build_explorer(tiny_graph)


def _model(root, name: str):
    found = list(root.select({"name": name}))
    assert len(found) == 1, f"expected one model named {name!r}, found {len(found)}"
    return found[0]


def _script(root) -> CustomJS:
    (cb,) = {cb for cb in root.select({"type": CustomJS}) if "meta" in cb.args}
    return cb


@pytest.fixture(scope="module")
def xss_graph(tiny_checkpoint, tmp_path_factory):
    import gpt2graph

    graph = gpt2graph.build(f"Say {SCRIPT} and {IMG}", model=str(tiny_checkpoint))
    notes = tmp_path_factory.mktemp("notes") / "xss.yaml"
    notes.write_text(XSS_NOTES, encoding="utf-8")
    return graph.annotate(notes)


def node_ids(root) -> list[str]:
    """Every row's node id, as the page makes it: its unit's id around its position (the ``ids`` source)."""
    ids, nodes = _model(root, "ids").data, _model(root, "nodes").data
    return [
        ids["head"][u] if p < 0 else f"{ids['head'][u]}{p}{ids['tail'][u]}"
        for u, p in zip(nodes["unit"].tolist(), nodes["pos"].tolist(), strict=True)
    ]


# ---- the canvas holds exactly the graph -------------------------------------------------------------------
def test_one_glyph_per_vector_and_parameter_in_graph_order(tiny_graph, explorer):
    nodes = _model(explorer, "nodes")
    top = tiny_graph.topology
    expected = [n.id for n in tiny_graph.iter_nodes(node_type="vector")]
    expected += [n.id for n in tiny_graph.iter_nodes(node_type="parameter")]
    assert len(expected) == top.count_vectors() + top.count_params()
    assert node_ids(explorer) == expected
    for column in ("x", "y", "w", "h", "unit", "pos", "norm", "cat", "c_norm", "c_mean"):
        assert len(nodes.data[column]) == len(expected)
        assert isinstance(nodes.data[column], np.ndarray)  # binary columns, not JSON lists of numbers


def test_rectangles_do_not_overlap(tiny_graph):
    lay = layout(tiny_graph.topology)
    boxes = np.stack([lay.x - lay.width / 2, lay.x + lay.width / 2, lay.y - lay.height / 2, lay.y + lay.height / 2], 1)
    order = np.lexsort((boxes[:, 2], boxes[:, 0]))
    for a, b in pairwise(order):  # same column: neighbours in y must be apart
        if np.isclose(lay.x[a], lay.x[b]):
            assert boxes[a, 3] <= boxes[b, 2] + 1e-6 or boxes[b, 3] <= boxes[a, 2] + 1e-6


def test_edges_are_every_same_position_input(tiny_graph, explorer):
    top = tiny_graph.topology
    expected = sum(1 for key in top.vector_keys() for src in top.op_inputs(key)[0] if src.position == key.position)
    assert len(_model(explorer, "edges").data["x0"]) == expected


def test_statistics_match_node_summaries(tiny_graph, explorer):
    data = _model(explorer, "nodes").data
    for i, node in enumerate(tiny_graph.iter_nodes(node_type="vector")):
        for stat in ("norm", "mean", "std", "min", "max"):
            assert data[stat][i] == pytest.approx(getattr(node.summary, stat), rel=1e-4, abs=1e-5), (node.id, stat)


def test_logit_lens_on_the_stream_only(tiny_graph, explorer):
    ids = node_ids(explorer)
    source = _model(explorer, "lens").data  # one row per node with a lens line, by its index in the run
    lens = dict(zip((int(i) for i in source["node"]), source["text"], strict=True))
    stream = {"input_embedding", "resid_pre", "resid_mid", "resid_post", "logits"}
    assert {ids[i] for i in lens} == {n.id for n in tiny_graph.iter_nodes(kind=stream)}
    assert all(lens.values())
    last = tiny_graph.n_tokens - 1
    top_id = int(tiny_graph.logits[last].argmax())
    assert lens[list(ids).index(f"hook_unembed[{last}]")].startswith(tiny_graph.decode_token(top_id) + " ")
    quiet = build_explorer(tiny_graph, logit_lens=False)
    assert len(_model(quiet, "lens").data["node"]) == 0


# ---- ancestry rules equal the topology ------------------------------------------------------------------
def expand(rules: Rules, lay, node: int) -> list[int]:
    """The nodes one step from ``node`` under ``rules``: one step of the page's walk, in Python."""
    n, G, NV = lay.topology.n_tokens, len(lay.groups), lay.n_vectors
    unit, p = (node // n, node % n) if node < NV else (G + node - NV, -1)
    out = []
    for i in range(rules.ptr[unit], rules.ptr[unit + 1]):
        src, mode = int(rules.src[i]), int(rules.mode[i])
        if src >= G:
            out.append(NV + src - G)
            continue
        first, last = {SAME: (p, p), UPTO: (0, p), FROM: (p, n - 1), ALL: (0, n - 1)}[mode]
        out += [src * n + q for q in range(first, last + 1)]
    return out


def test_rules_expand_to_exactly_the_inputs_and_consumers(tiny_graph):
    top = tiny_graph.topology
    lay = layout(top)
    ins = input_rules(lay)
    outs = output_rules(ins)
    consumers: dict[int, set[int]] = {}
    for i in range(lay.n_nodes):
        key = lay.key_of(i)
        if key.kind not in VECTOR_SPECS:
            continue
        vectors, params = top.op_inputs(key)
        expected = {lay.index(k) for k in [*vectors, *params]}
        assert set(expand(ins, lay, i)) == expected, top.vector_id(key)
        for j in expected:
            consumers.setdefault(j, set()).add(i)
    for i in range(lay.n_nodes):
        assert set(expand(outs, lay, i)) == consumers.get(i, set()), lay.key_of(i)


# ---- attention heat map ------------------------------------------------------------------------------------
def test_heat_map_and_packed_patterns(tiny_graph, explorer):
    heat = _model(explorer, "heat").data
    n, d = tiny_graph.n_tokens, tiny_graph.dims
    q, k = np.asarray(heat["q"]), np.asarray(heat["k"])
    assert len(q) == n * (n + 1) // 2 and (k <= q).all()
    np.testing.assert_allclose(heat["prob"], tiny_graph.pattern(0, 0).numpy()[q, k], rtol=1e-5, atol=1e-6)
    patterns = _script(explorer).args["patterns"]
    T = len(q)
    for L in range(d.n_layer):
        for h in range(d.n_head):
            off = (L * d.n_head + h) * T
            np.testing.assert_allclose(
                patterns[off : off + T], tiny_graph.pattern(L, h).numpy()[q, k], rtol=1e-5, atol=1e-6
            )
    assert heat["qtok"][0] == tiny_graph.tokenization.tokens_visible[0]


# ---- glossary on hover and in the panel ---------------------------------------------------------------------
def test_tooltip_summary_and_panel_per_kind(tiny_graph):
    lay = layout(tiny_graph.topology)
    know = knowledge(tiny_graph, lay)
    q_unit = next(i for i, g in enumerate(lay.groups) if g.kind == "q")
    glossary = tiny_graph.glossary
    assert know.tips[know.unit_tip[q_unit]] == glossary["query"].summary
    panel = know.panels[know.unit_panel[q_unit]]
    assert "Query" in panel and "https://" in panel
    # the built-in attention-sink entry names position 0: those nodes get panels of their own
    assert know.node_panel and all(lay.key_of(i).position == 0 for i in know.node_panel)


def test_notes_on_one_head_and_on_an_operation_at_one_position(tiny_checkpoint, tmp_path):
    import gpt2graph

    graph = gpt2graph.build("Transformer tokens are vectors", model=str(tiny_checkpoint))
    notes = tmp_path / "heads.yaml"
    notes.write_text(
        """
annotations:
  - id: head-1-2
    title: Head 1.2 looks back
    body: Its pattern.
    targets:
      - {kind: attn_pattern, layer: 1, head: 2}
  - id: softmax-at-2
    title: Softmax at position 2
    body: The operation, shown on the pattern it makes.
    targets:
      - {kind: softmax, position: 2}
""",
        encoding="utf-8",
    )
    graph.annotate(notes)
    lay = layout(graph.topology)
    know = knowledge(graph, lay)

    def panel(vector_id: str) -> str:
        index = lay.index(graph.topology.parse(vector_id)[1])
        return know.panels[know.node_panel.get(index, know.unit_panel[index // graph.n_tokens])]

    assert "Head 1.2 looks back" in panel("blocks.1.attn.hook_pattern[2,0]")
    assert "Head 1.2 looks back" not in panel("blocks.1.attn.hook_pattern[1,0]")
    assert "Softmax at position 2" in panel("blocks.0.attn.hook_pattern[3,2]")
    assert "Softmax at position 2" not in panel("blocks.0.attn.hook_pattern[3,1]")


def _no_lens_computation(monkeypatch) -> None:
    """Make the renderer's own logit-lens computation fail, so any line it computes is an error."""
    import gpt2graph_bokeh.stats

    def refuse(*args, **kwargs):
        raise AssertionError("the renderer computed a logit lens")

    monkeypatch.setattr(gpt2graph_bokeh.stats, "lens_logits", refuse)


def test_a_stored_logit_lens_is_used(tiny_graph, analysed_graph, monkeypatch):
    from gpt2graph_bokeh.stats import lens_text

    lay = layout(tiny_graph.topology)
    computed = lens_text(tiny_graph, lay)  # no analysis: the renderer computes the lens of the stream
    _no_lens_computation(monkeypatch)
    with pytest.raises(AssertionError, match="computed a logit lens"):
        lens_text(tiny_graph, lay)  # the patch bites: without a stored lens there is no other way
    read = lens_text(analysed_graph, lay)  # the same run carrying a lens of the stream and of every write
    stored = analysed_graph.lens
    assert len(read) == stored.header.n_entries + tiny_graph.n_tokens  # every entry, and the logits' own prediction
    after = [tiny_graph.decode_token(t) for t in tiny_graph.tokenization.token_ids[1:]]
    for entry in stored.entries:
        line = read[lay.id_index[entry.node]]
        assert line.startswith(", ".join(f"{t.token} {percent(t.prob)}" for t in entry.top[:3]))
        if entry.next_token_rank is not None:
            p = tiny_graph.topology.parse(entry.node)[1].position
            assert f"next token {after[p]}: rank {entry.next_token_rank:,} " in line
        assert f"target Ġthe: rank {entry.target_rank:,} " in line

    def tokens(text: str) -> list[str]:
        return [part.rsplit(" ", 1)[0] for part in text.split(" · ", maxsplit=1)[0].split(", ")]

    # the stored lens and the renderer's own agree where both exist: the residual stream
    assert computed.keys() < read.keys() and all(tokens(read[i]) == tokens(computed[i]) for i in computed)


def test_stream_kinds_a_stored_lens_skipped_are_computed(tiny_checkpoint, monkeypatch):
    from gpt2graph_bokeh.stats import lens_text

    import gpt2graph

    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint), analyze={"lens": ["head_out"], "top_tokens": 2})
    lay = layout(graph.topology)
    read = lens_text(graph, lay)
    head_out = lay.index(Key("head_out", 0, 1, 2))
    assert read[head_out].count("%,") == 1  # the stored lens's two tokens, not three computed here
    resid = lay.index(Key("resid_mid", 1, None, 2))
    assert read[resid].count("%,") == 2 and "next token" in read[resid]  # computed: the lens has no resid_mid
    _no_lens_computation(monkeypatch)
    with pytest.raises(AssertionError, match="computed a logit lens"):
        lens_text(graph, lay)


def test_hover_tooltip_never_inserts_raw_html(explorer):
    for tool in explorer.select({"type": HoverTool}):
        text = tool.tooltips if isinstance(tool.tooltips, str) else " ".join(v for _, v in tool.tooltips)
        assert "{safe}" not in text


# ---- escaping -----------------------------------------------------------------------------------------------
class _Tags(HTMLParser):
    """Every tag and attribute of an HTML fragment."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


ALLOWED_TAGS = {
    "div",
    "span",
    "b",
    "p",
    "ul",
    "li",
    "code",
    "strong",
    "em",
    "a",
    "details",
    "summary",
    "h3",
    "table",
    "tr",
    "th",
    "td",
}
ALLOWED_ATTRS = {"class", "style", "href", "target", "rel"}


def _check_markup(fragment: str) -> str:
    parser = _Tags()
    parser.feed(fragment)
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, (tag, fragment[:200])
        for name, value in attrs:
            assert name in ALLOWED_ATTRS, (tag, name)
            if name == "href":
                assert value.startswith(("https://", "http://")), value
    return "".join(parser.text)


def test_user_text_is_escaped_everywhere_html_is_interpreted(xss_graph, tmp_path):
    root = build_explorer(xss_graph, title=f"Run {SCRIPT}")
    meta = _script(root).args["meta"]
    fragments = [div.text for div in root.select({"type": Div})] + list(meta["panels"]) + [meta["intro"]]
    texts = [_check_markup(f) for f in fragments]
    shown = "\n".join(texts)
    # the payloads are there, as text
    assert SCRIPT in shown and IMG in shown
    assert f"Say {SCRIPT} and {IMG}" in shown  # the prompt, in the header
    assert "first " + IMG in shown  # the position-specific note reached its node's panel

    path = gpt2graph_bokeh.write_html(xss_graph, tmp_path / "xss.html", title=f"Run {SCRIPT}")
    page = path.read_text(encoding="utf-8")
    for payload in (SCRIPT, IMG, "</script><script>"):
        assert payload not in page
    assert "<title>Run &lt;script&gt;" in page


def test_markdown_subset():
    assert markdown("a **b** `c<d>` *e*\n\n- x\n- y") == (
        "<p>a <strong>b</strong> <code>c&lt;d&gt;</code> <em>e</em></p><ul><li>x</li><li>y</li></ul>"
    )
    assert markdown("[t](https://a.org/x?y=1&z=2)") == (
        '<p><a href="https://a.org/x?y=1&amp;z=2" target="_blank" rel="noopener noreferrer">t</a></p>'
    )
    assert markdown('[t](javascript:alert(1)) [u](https://a.org/"onmouseover=x)') == (
        "<p>[t](javascript:alert(1)) [u](https://a.org/&quot;onmouseover=x)</p>"
    )


# ---- options, level of detail, file, registry, Jupyter -------------------------------------------------------
def test_color_by_and_invalid_options(tiny_graph):
    root = build_explorer(tiny_graph, color_by="norm")
    glyph = _model(root, "node-glyphs").glyph
    assert glyph.fill_color["field"] == "c_norm"
    assert _model(root, "color-by").active == 1
    with pytest.raises(ValueError, match="color_by"):
        build_explorer(tiny_graph, color_by="rainbow")
    from gpt2graph.errors import RendererError

    with pytest.raises(RendererError, match="color_by"):
        registry.check_options("bokeh", {"color_by": "rainbow"})


def test_level_of_detail(tiny_graph, explorer):
    assert not list(explorer.select({"name": "overview"}))
    root = build_explorer(tiny_graph, max_positions=2)
    overview = _model(root, "overview")
    n, L = tiny_graph.n_tokens, tiny_graph.dims.n_layer
    # per position: embedding, attention and MLP per block, unembedding, decoding; and every weight as it is
    assert len(overview.data["x"]) == n * (3 + 2 * L) + tiny_graph.topology.count_params()
    detail = [r for r in root.select({"type": GlyphRenderer}) if r.name in ("node-glyphs", "ancestor-highlight")]
    assert detail and not any(r.visible for r in detail)


def test_render_through_registry_writes_a_self_contained_page(tiny_graph, saved_graph, tmp_path):
    import gpt2graph

    assert "bokeh" in registry.names()
    path = gpt2graph.load(saved_graph).render("bokeh", tmp_path / "run.html", color_by="mean")
    page = Path(path).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=", page)  # BokehJS and its CSS are inlined
    assert "Bokeh" in page and len(page) > 1_000_000


def test_random_weights_warning(tiny_graph, explorer):
    header = _model(explorer, "header").text
    assert tiny_graph.random_weights == ("Random weights" in header)


def test_show_displays_inline(tiny_graph, monkeypatch):
    import bokeh.io

    shown = []
    monkeypatch.setattr(bokeh.io, "show", lambda obj, *a, **k: shown.append(obj))
    monkeypatch.setattr(bokeh.io, "output_notebook", lambda *a, **k: None)
    in_a_notebook(monkeypatch)
    tiny_graph.show()  # the Bokeh explorer is the default inline renderer
    assert len(shown) == 1 and shown[0].name == "explorer"


def test_bokehjs_is_loaded_once_per_notebook_session(tiny_graph, monkeypatch):
    """What each show() sends to the notebook: the first cell inlines BokehJS (so it works offline), later
    cells only their own document."""
    import bokeh.io
    import bokeh.io.notebook
    from bokeh.io.state import curstate
    from bokeh.resources import INLINE

    cells: list[list[str]] = []
    monkeypatch.setattr(
        bokeh.io.notebook, "publish_display_data", lambda data, *a, **k: cells[-1].extend(map(str, data.values()))
    )
    in_a_notebook(monkeypatch)
    bokeh.io.reset_output()
    try:
        for _ in range(3):
            cells.append([])
            tiny_graph.show()
    finally:
        bokeh.io.reset_output()
    raw = INLINE.js_raw[0]  # a piece of BokehJS itself, free of what embedding it escapes
    library = next(raw[i : i + 60] for i in range(100_000, len(raw)) if not set(raw[i : i + 60]) & set("\n\"'\\"))
    sizes = [sum(len(payload) for payload in cell) for cell in cells]
    assert any(library in payload for payload in cells[0]) and sizes[0] > 1e6
    for cell, size in zip(cells[1:], sizes[1:]):
        assert not any(library in payload for payload in cell) and size < sizes[0] / 3
    assert curstate().document.roots == []  # nothing kept in the session's document


def test_patterns_are_float32_lower_triangles(tiny_graph, explorer):
    patterns = _script(explorer).args["patterns"]
    n, d = tiny_graph.n_tokens, tiny_graph.dims
    assert patterns.dtype == np.float32 and patterns.shape == (d.n_layer * d.n_head * n * (n + 1) // 2,)
    assert torch.allclose(torch.from_numpy(patterns[: n * (n + 1) // 2]).sum(), torch.tensor(float(n)), atol=1e-4)


def test_a_views_layout_finds_its_nodes_and_only_them(tiny_graph):
    """Layout.find: the node index of every key in the view (as index gives it), None for a key outside it."""
    view = tiny_graph.subgraph(layers=[1], heads=[2], positions=[0, 3])
    lay = layout(view.topology, view.selection)
    assert [lay.find(lay.key_of(i)) for i in range(lay.n_nodes)] == list(range(lay.n_nodes))
    top = tiny_graph.topology
    outside = [key for key in [*top.vector_keys(), *top.param_keys()] if top.node_id(key) not in view]
    assert outside and all(lay.find(key) is None for key in outside)


def test_a_long_views_window_holds_the_positions_of_its_lanes(tiny_graph):
    """A view of more lanes than max_positions opens on a window of lanes: the rows carry their positions."""
    view = tiny_graph.subgraph(positions=[0, 2, 3, 4])
    root = build_explorer(view, max_positions=2, window=1)  # lanes 1 and 2: positions 2 and 3
    (nodes,) = root.select({"name": "nodes"})
    pos = np.asarray(nodes.data["pos"])
    assert set(pos[pos >= 0]) == {2, 3}
