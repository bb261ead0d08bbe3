"""The Bokeh explorer with interpretability results: colour modes per head metric, DLA and lens in tooltips,
the analysis panel (DLA, head roles, decoding), clear errors without an analysis, escaped tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bokeh.models import Div, HoverTool
from gpt2graph_bokeh.document import build_explorer
from gpt2graph_bokeh.layout import layout
from gpt2graph_bokeh.sanitize import escape

from gpt2graph.errors import RendererError
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


def test_colour_modes_are_offered_only_with_an_analysis(page, tiny_graph):
    modes = _model(page, "color-by").labels
    assert modes == ["category", "norm", "mean", "dla", "previous_token", "first_token", "current_token",
                     "induction", "copying"]
    assert modes[_model(page, "color-by").active] == "induction"
    assert _model(build_explorer(tiny_graph), "color-by").labels == ["category", "norm", "mean"]
    with pytest.raises(RendererError, match="color_by='dla' needs the interpretability results"):
        build_explorer(tiny_graph, color_by="dla")
    assert registry.check_options("bokeh", {"color_by": "copying"})["color_by"] == "copying"


@pytest.mark.parametrize("role", ["induction", "previous_token", "first_token", "current_token"])
def test_every_node_of_a_head_takes_its_role_score(analysed_graph, page, role):
    lay = layout(analysed_graph.topology)
    colour = _column(page, f"c_{role}")
    for h in analysed_graph.analysis.roles.heads:
        score = getattr(h, role)
        for key in (Key("q", h.layer, h.head, 0), Key("attn_pattern", h.layer, h.head, 4), Key("W_O", h.layer, h.head)):
            assert colour[lay.index(key)] == pytest.approx(score, abs=1e-6)
    ranked = analysed_graph.analysis.roles.ranked(role)
    best, worst = (lay.index(Key("z", h.layer, h.head, 1)) for h in (ranked[0], ranked[-1]))
    assert colour[best] >= colour[worst]
    assert math.isnan(colour[lay.index(Key("resid_mid", 0, None, 1))])  # not a head's: grey


def test_dla_colours_follow_the_sign_of_each_contribution(analysed_graph, page):
    lay = layout(analysed_graph.topology)
    ids = list(_model(page, "nodes").data["id"])
    colour, text = _column(page, "c_dla"), _column(page, "dla_text")
    dla = analysed_graph.analysis.dla
    largest = max(abs(a.contribution) for a in dla.contributions if a.component in ids)
    for a in dla.contributions:
        if a.component not in ids:
            continue  # the final LayerNorm's bias has no node of its own
        i = ids.index(a.component)
        assert colour[i] == pytest.approx(0.5 + 0.5 * a.contribution / largest, abs=1e-5)
        assert f"{a.contribution:+.4f}" in text[i]
    head = next(a for a in dla.contributions if a.kind == "head_out")
    q = lay.index(Key("q", head.layer, head.head, 0))  # the rest of the head takes the head's colour
    assert colour[q] == pytest.approx(colour[ids.index(head.component)], abs=1e-6)
    assert text[lay.index(Key("resid_mid", 0, None, 0))] == ""


def test_tooltips_carry_the_dla_line_and_the_lens_of_every_write(analysed_graph, page):
    (tool,) = [t for t in page.select({"type": HoverTool}) if "@dla_text" in str(t.tooltips)]
    assert "{safe}" not in tool.tooltips
    meta = next(cb for cb in page.references() if getattr(cb, "args", None) and "meta" in cb.args).args["meta"]
    lay = layout(analysed_graph.topology)
    node = lay.index(Key("head_out", 1, 2, 3))
    entry = analysed_graph.analysis.lens.entry("blocks.1.attn.hook_result[3,2]")
    k = list(meta["lens_nodes"]).index(node)
    assert meta["lens_texts"][k].startswith(f"{entry.top[0].token} ")


def test_the_analysis_panel_shows_dla_roles_and_decoding(analysed_graph, page):
    text = _model(page, "analysis").text
    a = analysed_graph.analysis
    order = [text.index(escape(c.component)) for c in a.dla.top(8)]
    assert order == sorted(order)  # largest contribution first
    assert f"{a.dla.model_value:+.4f}" in text and "residual error" in text
    assert "induction" in text and f"{a.roles.chance['induction']:.2f}" in text
    assert f"next token <b>{escape(a.decoding.chosen.token)}</b>" in text
    for step in a.decoding.steps:
        assert f"{step.candidates[0].prob:.1%}" in text


def test_tokens_in_the_analysis_are_escaped(tiny_checkpoint):
    import gpt2graph

    graph = gpt2graph.build("<script>alert(1)</script> <b>x</b>", model=str(tiny_checkpoint),
                            analyze={"target": "<", "lens": False})
    root = build_explorer(graph, color_by="dla")
    panel = _model(root, "analysis").text
    assert "<script>" not in panel and "&lt;" in panel
    assert all(isinstance(d.text, str) for d in root.select({"type": Div}))
