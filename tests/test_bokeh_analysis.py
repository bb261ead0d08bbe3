"""The Bokeh explorer with interpretability results: colour modes per head metric, DLA and the stored lens in
tooltips, each head's summary in the node panel, the analysis panel (DLA, head roles, decoding), clear errors
without an analysis, and tokens from the vocabulary escaped wherever HTML is interpreted."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import gpt2graph_bokeh
import numpy as np
import pytest
from bokeh.models import ColorBar, CustomJS, Div, HoverTool
from bokeh.palettes import Viridis256
from conftest import PROMPT
from gpt2graph_bokeh.analysis_panel import analysis_panel, head_panels
from gpt2graph_bokeh.document import build_explorer
from gpt2graph_bokeh.layout import layout
from test_bokeh import IMG, SCRIPT, _check_markup

import gpt2graph
from gpt2graph.errors import RendererError
from gpt2graph.presentation import percent, signed
from gpt2graph.registry import registry
from gpt2graph.topology import Key


@pytest.fixture(scope="module")
def page(analysed_graph):
    return build_explorer(analysed_graph, color_by="induction")


def _model(root, name: str):
    (found,) = root.select({"name": name})
    return found


def _column(page, name: str) -> np.ndarray:
    return np.asarray(_model(page, "nodes").data[name])


def _meta(root) -> dict:
    (cb,) = {cb for cb in root.select({"type": CustomJS}) if "meta" in cb.args}
    return cb.args["meta"]


class _Tables(HTMLParser):
    """The cell texts of every table of an HTML fragment, by its last class name."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._rows = self.tables.setdefault(dict(attrs)["class"].split()[-1], [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._rows is not None:
            self._rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._rows = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _percent(text: str) -> float:
    """A probability read back from the page's percentage."""
    return float(text.rstrip("%")) / 100


# ---- colour modes ----------------------------------------------------------------------------------------------
def test_colour_modes_are_offered_only_with_an_analysis(page, tiny_graph, tmp_path):
    modes = _model(page, "color-by").labels
    assert modes == [
        "category",
        "norm",
        "mean",
        "dla",
        "previous_token",
        "first_token",
        "current_token",
        "induction",
        "copying",
    ]
    assert modes[_model(page, "color-by").active] == "induction"
    assert _model(build_explorer(tiny_graph), "color-by").labels == ["category", "norm", "mean"]
    with pytest.raises(RendererError, match="color_by='dla' needs the interpretability results"):
        build_explorer(tiny_graph, color_by="dla")
    with pytest.raises(RendererError, match="analyze"):  # the way users reach it: the registry's render
        tiny_graph.render("bokeh", tmp_path / "no.html", color_by="induction")
    assert not (tmp_path / "no.html").exists()
    assert registry.check_options("bokeh", {"color_by": "copying"})["color_by"] == "copying"


@pytest.mark.parametrize("role", ["induction", "previous_token", "first_token", "current_token"])
def test_every_node_of_a_head_takes_its_role_score(analysed_graph, page, role):
    lay = layout(analysed_graph.topology)
    colour = _column(page, f"c_{role}")
    score = {(h.layer, h.head): getattr(h, role) for h in analysed_graph.analysis.roles.heads}
    n = analysed_graph.n_tokens
    for i in range(lay.n_nodes):  # q, k, v, scores, pattern, z, result and the head's weight slices
        key = lay.key_of(i)
        if key.head is None:
            assert math.isnan(colour[i]), key  # not a head's: drawn grey
        else:
            assert colour[i] == pytest.approx(score[key.layer, key.head], abs=1e-6), key
    assert {lay.key_of(i).kind for i in range(lay.n_nodes) if lay.key_of(i).head is not None} >= {
        "q",
        "k",
        "v",
        "attn_scores",
        "attn_pattern",
        "z",
        "head_out",
        "W_Q",
        "b_Q",
        "W_K",
        "W_V",
        "W_O",
    }
    ranked = analysed_graph.analysis.roles.ranked(role)
    cells = [colour[lay.index(Key("z", h.layer, h.head, n - 1))] for h in ranked]
    assert cells == sorted(cells, reverse=True)


def spread_induction(graph):
    """Give ``graph``'s analysis induction scores spread over [0, 1] in shuffled head order: random weights
    score every head near chance, which the 0..1 scale draws in one colour, so no order could be seen."""
    a = graph.analysis
    n = len(a.roles.heads)
    heads = [h.model_copy(update={"induction": (5 * i % n) / (n - 1)}) for i, h in enumerate(a.roles.heads)]
    roles = a.roles.model_copy(update={"heads": heads})
    header = graph.header.model_copy(update={"analysis": a.model_copy(update={"roles": roles})})
    return gpt2graph.Graph(header, graph.store, graph.vocab, graph.lens)  # the same run, with these scores


def test_head_colours_are_ordered_by_induction_score(tiny_checkpoint):
    import gpt2graph

    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint), analyze={"induction_probe": 5, "lens": False})
    graph = spread_induction(graph)
    root = build_explorer(graph, color_by="induction")
    lay = layout(graph.topology)
    colour = _column(root, "c_induction")
    mapper = _model(root, "node-glyphs").glyph.fill_color["transform"]
    assert _model(root, "node-glyphs").glyph.fill_color["field"] == "c_induction"
    ranked = graph.analysis.roles.ranked("induction")
    for kind in ("q", "attn_pattern", "head_out"):
        cells = [colour[lay.index(Key(kind, h.layer, h.head, 2))] for h in ranked]
        # the colour each head is drawn in: its cell's place in the (dark to light) palette
        drawn = [mapper.palette[min(int(c * len(mapper.palette)), len(mapper.palette) - 1)] for c in cells]
        assert [Viridis256.index(c) for c in drawn] == sorted((Viridis256.index(c) for c in drawn), reverse=True)
        assert len(set(drawn)) == len(ranked)  # every head its own colour


def test_role_colour_bars_mark_the_uniform_head(analysed_graph, page):
    bars = {bar.title: bar for bar in page.select({"type": ColorBar})}
    (induction,) = [bar for title, bar in bars.items() if title.startswith("induction score")]
    chance = analysed_graph.analysis.roles.chance["induction"]
    assert induction.major_label_overrides[chance] == f"{chance:.2f}"
    assert f"tick {chance:.2f}: a head attending uniformly" in induction.title
    assert induction.color_mapper.palette == list(Viridis256) and induction.visible
    (copying,) = [bar for title, bar in bars.items() if title.startswith("OV copying")]
    assert not copying.visible  # one colour bar at a time: the mode's
    for bar in bars.values():  # out of order, the bar's label policy would drop labels
        assert bar.ticker.ticks == sorted(bar.ticker.ticks)


def test_dla_colours_follow_the_sign_of_each_contribution(analysed_graph, page):
    lay = layout(analysed_graph.topology)
    colour = _column(page, "c_dla")
    lines = _model(page, "dla").data  # a DLA line per attributed node, by its index in the run
    text = dict.fromkeys(range(len(colour)), "") | dict(zip(lines["node"].tolist(), lines["text"], strict=True))
    dla = analysed_graph.analysis.dla
    largest = max(abs(a.contribution) for a in dla.contributions)
    assert {a.kind for a in dla.contributions} >= {"head_out", "mlp_out", "b_O", "token_embedding", "ln_final_b"}
    for a in dla.contributions:
        i = lay.id_index[a.component]
        assert colour[i] == pytest.approx(0.5 + 0.5 * a.contribution / largest, abs=1e-5)
        assert (colour[i] > 0.5) == (a.contribution > 0)  # red raises the logit, blue lowers it
        value = float(re.search(r"at position 4: (\S+)$", text[i]).group(1).replace("−", "-"))  # a real minus sign
        assert value == pytest.approx(a.contribution, rel=1e-3)
    head = next(a for a in dla.contributions if a.kind == "head_out")
    for key in (Key("q", head.layer, head.head, 0), Key("W_V", head.layer, head.head)):
        assert colour[lay.index(key)] == pytest.approx(colour[lay.id_index[head.component]], abs=1e-6)
    for key in (Key("resid_mid", 0, None, 0), Key("mlp_out", 0, None, 0)):  # not attributed: grey, no line
        assert math.isnan(colour[lay.index(key)]) and text[lay.index(key)] == ""
    (bar,) = [b for b in page.select({"type": ColorBar}) if b.title.startswith("direct logit attribution")]
    assert bar.major_label_overrides == {0: signed(-largest), 0.5: "0", 1: signed(largest)}
    mapper = bar.color_mapper
    assert (mapper.low, mapper.high) == (0, 1) and mapper.palette[len(mapper.palette) // 2] == "#cfcfcf"


def test_overview_blocks_and_weights_carry_the_analysis_colours(analysed_graph):
    root = build_explorer(analysed_graph, max_positions=2, color_by="previous_token")
    overview = _model(root, "overview").data
    assert _model(root, "overview-blocks").glyph.fill_color["field"] == "c_previous_token"
    labels = list(overview["label"])
    best = analysed_graph.analysis.roles.ranked("previous_token")[0]
    i = labels.index(f"blocks.{best.layer}.attn.W_Q[{best.head}]")
    assert overview["c_previous_token"][i] == pytest.approx(best.previous_token, abs=1e-6)
    assert all(f"c_{mode}" in overview for mode in ("dla", "first_token", "current_token", "induction", "copying"))


# ---- tooltips and the node panel -------------------------------------------------------------------------------
def test_tooltips_carry_the_dla_line_and_the_lens_of_a_head_output(analysed_graph, page):
    (tool,) = [t for t in page.select({"type": HoverTool}) if "@unit{dla}" in str(t.tooltips)]
    assert "{safe}" not in tool.tooltips
    lens = _model(page, "lens").data
    lay = layout(analysed_graph.topology)
    node = lay.index(Key("head_out", 1, 2, 3))
    entry = analysed_graph.lens.entry("blocks.1.attn.hook_result[3,2]")
    text = lens["text"][list(lens["node"]).index(node)]
    assert text.startswith(", ".join(f"{t.token} {percent(t.prob)}" for t in entry.top[:3]) + " · ")
    following = analysed_graph.decode_token(analysed_graph.tokenization.token_ids[4])
    assert f"next token {following}: rank {entry.next_token_rank:,} ({percent(entry.next_token_prob)})" in text
    assert f"target Ġthe: rank {entry.target_rank:,}" in text
    mlp = lay.index(Key("mlp_out", 0, None, 1))
    mlp_entry = analysed_graph.lens.entry("blocks.0.hook_mlp_out[1]")
    assert lens["text"][list(lens["node"]).index(mlp)].startswith(mlp_entry.top[0].token + " ")


def test_a_saved_analysis_reads_back_the_same_lens(analysed_graph, tmp_path, monkeypatch):
    import gpt2graph_bokeh.stats
    from gpt2graph_bokeh.stats import lens_text

    import gpt2graph

    analysed_graph.save(tmp_path / "run.gg")
    loaded = gpt2graph.load(tmp_path / "run.gg")
    lay = layout(loaded.topology)
    monkeypatch.setattr(gpt2graph_bokeh.stats, "lens_logits", None)  # a stored lens needs no computation
    assert lens_text(loaded, lay) == lens_text(analysed_graph, lay)


def test_each_head_has_its_summary_for_the_node_panel(analysed_graph, page):
    a = analysed_graph.analysis
    panels = _meta(page)["head_panels"]
    H = analysed_graph.dims.n_head
    assert panels == head_panels(a) and len(panels) == analysed_graph.dims.n_layer * H
    circuit = a.circuits.heads[1 * H + 2]
    text = panels[1 * H + 2]
    assert "Head 1.2" in text and f"OV copying score {circuit.ov_copying_score:.3f}" in text
    assert f"QK {circuit.qk_singular_values[0]:.3g}, " in text and f"OV {circuit.ov_singular_values[0]:.3g}, " in text
    assert ", ".join(f"{t.token} {signed(t.value)}" for t in circuit.boosted) in text
    contribution = next(c.contribution for c in a.dla.contributions if (c.layer, c.head) == (1, 2))
    assert f"position 4: {signed(contribution)}" in text
    role = a.roles.heads[1 * H + 2]
    rows = _Tables(text).tables["g2g-head-roles"][1:]
    names = ("previous_token", "first_token", "current_token", "induction")
    expected = [(name.replace("_", "-"), pytest.approx(getattr(role, name), abs=1e-3)) for name in names]
    assert [(r[0], float(r[1])) for r in rows] == expected


def test_head_labels_reach_the_panels(analysed_graph):
    a = analysed_graph.analysis
    heads = [
        h.model_copy(update={"label": "induction"}) if (h.layer, h.head) in ((1, 3), (0, 2)) else h
        for h in a.roles.heads
    ]
    labelled = a.model_copy(update={"roles": a.roles.model_copy(update={"heads": heads})})
    rows = {r[0]: r for r in _Tables(analysis_panel(labelled)).tables["g2g-roles"][1:]}
    assert rows["induction"][3] == "0.2, 1.3" and rows["previous-token"][3] == "—"
    assert "labelled <b>induction</b>" in head_panels(labelled)[1 * 4 + 3]
    assert "no role stands out" in head_panels(labelled)[0]


# ---- the analysis panel ----------------------------------------------------------------------------------------
def test_the_panel_lists_the_largest_dla_contributors_in_order(analysed_graph, page):
    text = _model(page, "analysis").text
    d = analysed_graph.analysis.dla
    rows = _Tables(text).tables["g2g-dla"]
    assert rows[0] == ["component", "kind", "contribution"]
    assert rows[1:] == [[c.component, c.kind, signed(c.contribution)] for c in d.top(8)]
    assert "logit of <b>Ġthe</b> after position 4" in text
    assert f"model value {signed(d.model_value)}" in text and f"residual error {d.residual_error:.1e}" in text


def test_the_panel_shows_head_roles_against_a_uniform_head(analysed_graph, page):
    r = analysed_graph.analysis.roles
    rows = {row[0]: row for row in _Tables(_model(page, "analysis").text).tables["g2g-roles"][1:]}
    for role in ("previous_token", "first_token", "current_token", "induction"):
        name, strongest, chance, labelled = rows[role.replace("_", "-")]
        assert strongest == ", ".join(f"{h.layer}.{h.head} ({getattr(h, role):.2f})" for h in r.ranked(role, 3))
        assert float(chance) == pytest.approx(r.chance[role], abs=0.005)
        assert labelled == "—"  # random weights: no head clears the threshold
    assert "the prompt plus 5 random tokens, twice" in _model(page, "analysis").text


def test_the_panel_shows_the_decoding_table(tiny_checkpoint):
    import gpt2graph

    graph = gpt2graph.build(
        PROMPT,
        model=str(tiny_checkpoint),
        analyze={"temperature": 0.5, "top_k": 20, "top_p": 0.9, "seed": 3, "lens": False, "top_tokens": 4},
    )
    dec = graph.analysis.decoding
    text = _model(build_explorer(graph), "analysis").text
    rows = _Tables(text).tables["g2g-decoding"][1:]
    assert [r[0] for r in rows] == ["softmax", "temperature 0.5", "top-k 20", "top-p 0.9"]
    for row, step in zip(rows, dec.steps, strict=True):
        assert int(row[1].replace(",", "")) == step.kept
        shown = [part.rsplit(" ", 1) for part in row[2].split(", ")]
        assert [t for t, _ in shown] == [c.token for c in step.candidates]
        assert [_percent(p) for _, p in shown] == pytest.approx([c.prob for c in step.candidates], rel=0.05)
    assert dec.steps[2].kept == 20 and not dec.greedy
    assert f"sampled with seed 3: next token <b>{dec.chosen.token}</b> ({percent(dec.chosen.prob)})" in text


# ---- escaping --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def markup_vocab_graph(tiny_checkpoint):
    """A run whose vocabulary is all markup (as another tokenizer's might be), analysed after the swap, so every
    lens, DLA, circuit and decoding token is a tag; the prompt itself stays plain."""
    import gpt2graph

    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    vocab = [IMG if i % 2 else SCRIPT for i in range(len(graph.vocab))]  # a copy: the cached list stays
    graph = gpt2graph.Graph(graph.header, graph.store, vocab)
    graph.analyze(induction_probe=5, top_tokens=3)
    return graph


def test_tokens_in_the_analysis_are_escaped(markup_vocab_graph, tmp_path):
    a = markup_vocab_graph.analysis
    assert a.dla.token in (IMG, SCRIPT) and a.circuits.heads[0].boosted[0].token in (IMG, SCRIPT)
    root = build_explorer(markup_vocab_graph, color_by="dla")
    meta = _meta(root)
    fragments = [d.text for d in root.select({"type": Div})] + list(meta["head_panels"])
    shown = "\n".join(_check_markup(f) for f in fragments)  # only our own tags, every token as text
    assert f"logit of {a.dla.token} after position" in shown
    assert f"next token {a.decoding.chosen.token}" in shown
    assert f"it raises: {a.circuits.heads[0].boosted[0].token} " in shown
    # tooltip fields are data Bokeh inserts as text: the payload is kept as is there, never marked safe
    lens = _model(root, "lens").data["text"]
    assert all(t.split(" ")[0] in ("<img", "<script>alert(1)</script>") for t in lens)
    assert all("{safe}" not in str(t.tooltips) for t in root.select({"type": HoverTool}))
    page = gpt2graph_bokeh.write_html(markup_vocab_graph, tmp_path / "markup.html").read_text(encoding="utf-8")
    for payload in (SCRIPT, IMG):
        assert payload not in page
