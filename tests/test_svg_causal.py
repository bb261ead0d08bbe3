"""The SVG renderer's views of the causal experiments stored on a run: patching heat maps (every stored cell, its
exact numbers, token labels, a colour bar) and the circuit view (its components at their graph nodes, edges at
widths following their scores and labelled with them, callouts on the method); text escaped, no text boxes
overlapping, clear errors, and Chromium drawing the measured widths."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import handbuilt as hb
import pytest
from gpt2graph_svg import scene
from gpt2graph_svg.draw import to_svg
from test_svg import assert_chromium_draws_the_measured_widths
from test_svg_analysis import EVIL, NS, assert_no_overlap, by_class, text_of, title

import gpt2graph
from gpt2graph.cli import main
from gpt2graph.errors import RendererError


@pytest.fixture(scope="module")
def copy_graph(tmp_path_factory):
    """The hand-built copy model's clean run with sweeps and its circuit stored on it."""
    path = hb.save_copy_model(tmp_path_factory.mktemp("handbuilt") / "copy")
    clean, corrupted = gpt2graph.build(hb.CLEAN, model=str(path)), gpt2graph.build(hb.CORRUPTED, model=str(path))
    options = dict(answer=hb.ANSWER, wrong=hb.WRONG)
    clean.patch_sweep(corrupted, kind="head_out", direction="denoising", **options)
    clean.patch_sweep(corrupted, kind="resid_pre", direction="denoising", **options)
    clean.attribution_patch(corrupted, kinds=["z"], per_position=True, **options)
    clean.circuit(corrupted, top=2, **options)
    return clean


@pytest.fixture(scope="module")
def tiny_causal(tiny_checkpoint):
    """The tiny random model with a larger circuit (several layers, every kind of reader)."""
    graph = gpt2graph.build("Transformer tokens are vectors", model=str(tiny_checkpoint))
    graph.circuit("Transformer tokens are numbers", answer=" the", wrong=" a", top=14)
    graph.patch_sweep("Transformer tokens are numbers", kind="mlp_out", answer=" the", wrong=" a")
    return graph


def render(graph, **options) -> ET.Element:
    return ET.fromstring(to_svg(scene(graph, **options)))


def test_every_stored_cell_is_drawn_with_its_exact_numbers(copy_graph):
    root = render(copy_graph, view="patching")
    cells = by_class(root, "patch-cell")
    sweeps = copy_graph.header.patching
    assert len(cells) == sum(len(s.rows.labels) * len(s.cols.labels) for s in sweeps)
    for el in cells:
        sweep = sweeps[int(el.get("data-sweep"))]
        r, c = sweep.rows.labels.index(el.get("data-row")), sweep.cols.labels.index(el.get("data-col"))
        assert float(el.get("data-normalized")) == sweep.normalized[r][c]  # the stored number, not a rounding
        assert float(el.get("data-raw")) == sweep.raw[r][c]
        assert f"normalised {sweep.normalized[r][c]:.6g}" in title(el)
    copy_head = next(
        el for el in cells if el.get("data-sweep") == "0" and (el.get("data-row"), el.get("data-col")) == ("1", "H0")
    )
    assert text_of(copy_head) == "1.00"  # the head that restores the clean run, and its number on the cell
    assert copy_head.find("svg:rect", NS).get("fill") == "#b22826"  # the clean end of the scale


def test_heat_maps_have_token_labels_a_colour_bar_and_their_method(copy_graph):
    root = render(copy_graph, view="patching")
    axes = " ".join(text_of(el) for el in by_class(root, "sweep-axes"))
    tokens = copy_graph.tokenization.tokens_visible
    assert all(t in axes for t in tokens) and "L1H0" in axes and "H1" in axes
    assert len(by_class(root, "colour-bar")) == 3
    assert "0 = corrupted" in text_of(by_class(root, "colour-bar")[0])
    headings = [text_of(el) for el in by_class(root, "sweep-heading")]
    assert headings[0].startswith("head_out · activation · denoising") and "attribution" in headings[2]
    entries = {el.get("data-entry") for el in by_class(root, "callout")}
    assert entries == {"activation-patching", "attribution-patching"}
    assert not by_class(render(copy_graph, view="patching", callouts=False), "callout")


def test_the_circuit_view_draws_its_components_at_their_nodes_and_its_scored_edges(copy_graph):
    root = render(copy_graph, view="circuit")
    circuit = copy_graph.header.circuit
    components = {el.get("data-component"): el for el in by_class(root, "circuit-component")}
    assert set(components) == {c.id for c in circuit.components} == {"embed", "L1H0", "logits"}
    assert components["L1H0"].get("data-node") == "blocks.1.attn.hook_result[3,0]"  # its output at the scored position
    edges = by_class(root, "circuit-edge")
    assert {(e.get("data-source"), e.get("data-target"), e.get("data-input")) for e in edges} == {
        ("embed", "L1H0", "v"),
        ("L1H0", "logits", ""),
    }
    assert {float(e.get("data-score")) for e in edges} == {e.score for e in circuit.edges}
    labels = {text_of(el) for el in by_class(root, "circuit-edge-label")}
    assert labels == {"−5", "−5.07"}
    assert "100% recovered" in text_of(by_class(root, "faithfulness")[0])
    assert {el.get("data-entry") for el in by_class(root, "callout")} == {
        "edge-attribution-patching",
        "circuit-faithfulness",
        "circuit",
    }


def test_edge_widths_follow_the_scores(tiny_causal):
    root = render(tiny_causal, view="circuit")
    widths = {
        float(e.get("data-score")): float(e.find("svg:path", NS).get("stroke-width"))
        for e in by_class(root, "circuit-edge")
    }
    by_size = sorted(widths, key=abs)
    assert [widths[s] for s in by_size] == sorted(widths.values())
    assert max(widths.values()) == 9 and min(widths.values()) >= 1
    inputs = {e.get("data-input") for e in by_class(root, "circuit-edge")}
    assert {"q", "k", ""} <= inputs  # edges into heads' ports and into MLPs and the logits


@pytest.mark.parametrize("view", ["patching", "circuit"])
def test_no_text_box_overlaps_another(tiny_causal, copy_graph, view):
    for graph in (tiny_causal, copy_graph):
        assert_no_overlap(scene(graph, view=view))


def test_user_text_is_escaped(tiny_checkpoint):
    graph = gpt2graph.build(EVIL, model=str(tiny_checkpoint))
    other = EVIL.replace("1", "2")  # same token count
    graph.patch_sweep(other, kind="attn_out", answer=" the", wrong=" a")
    graph.circuit(other, answer=" the", wrong=" a", top=3)
    for view in ("patching", "circuit"):
        data = to_svg(scene(graph, view=view))
        assert b"<script" not in data and b"<img" not in data
        assert "&lt;script&gt;" in data.decode()


def test_a_view_needs_what_it_draws(tiny_graph):
    with pytest.raises(RendererError, match="view 'patching' draws the patching sweeps stored on the graph"):
        scene(tiny_graph, view="patching")
    with pytest.raises(RendererError, match="view 'circuit' draws the circuit stored on the graph"):
        scene(tiny_graph, view="circuit")
    with pytest.raises(RendererError, match="option 'view' must be one of graph, patching, circuit"):
        tiny_graph.render("svg", "x.svg", view="heat")


def test_rendered_from_the_command_line_byte_for_byte_the_same(copy_graph, tmp_path):
    copy_graph.save(tmp_path / "run.gg")
    for view in ("patching", "circuit"):
        out = tmp_path / f"{view}.svg"
        assert main(["render", str(tmp_path / "run.gg"), "-r", "svg", "-o", str(out), "--option", f"view={view}"]) == 0
        assert out.read_bytes() == to_svg(scene(gpt2graph.load(tmp_path / "run.gg"), view=view))


@pytest.mark.browser
@pytest.mark.parametrize("view", ["patching", "circuit"])
def test_browser_text_widths_match_the_layout(chromium, chromedriver, tiny_causal, tmp_path, view):
    s = scene(tiny_causal, view=view)
    path = tmp_path / f"{view}.svg"
    path.write_bytes(to_svg(s))
    assert_chromium_draws_the_measured_widths(chromium, chromedriver, path, s, tmp_path)
