"""The SVG renderer with interpretability results: the decoding table from the stored analysis or from the
core's decode_next, logit lens and DLA in tooltips, the DLA panel, the head map coloured by the chosen metric,
escaped tokens, clear option errors, no overlapping text and Chromium agreeing with the measured widths."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from conftest import PROMPT, screenshot
from gpt2graph_svg import scene
from gpt2graph_svg.draw import to_svg
from test_svg import assert_chromium_draws_the_measured_widths

import gpt2graph
from gpt2graph.cli import main
from gpt2graph.decoding import decode_next
from gpt2graph.errors import RendererError
from gpt2graph.graph import Graph

NS = {"svg": "http://www.w3.org/2000/svg"}
EVIL = '<script>alert(1)</script> "><img src=x onerror=alert(1)>'


def render(graph, **options) -> ET.Element:
    return ET.fromstring(to_svg(scene(graph, **options)))


def by_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter() if cls in (el.get("class") or "").split()]


def title(el: ET.Element) -> str:
    return el.find("svg:title", NS).text


def text_of(el: ET.Element) -> str:
    """The visible text under ``el``, wrapped lines joined by a space."""
    return " ".join(" ".join(t.itertext()) for t in el.iter(f"{{{NS['svg']}}}text"))


def fill(el: ET.Element) -> str:
    return el.find("svg:rect", NS).get("fill")


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def luminance(colour: str) -> float:
    r, g, b = rgb(colour)
    return 0.299 * r + 0.587 * g + 0.114 * b


def percent(p: float) -> str:
    return f"{100 * p:.3g}%"


def assert_no_overlap(s) -> None:
    texts = sorted(s.texts(), key=lambda t: t.box.x)
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            if b.box.x >= a.box.right:
                break
            assert not a.box.overlaps(b.box), (a.lines, b.lines)


def prob_cells(root: ET.Element) -> dict[tuple[str, int], ET.Element]:
    return {(el.get("data-step"), int(el.get("data-token-id"))): el for el in by_class(root, "decode-prob")}


def assert_table_shows(root: ET.Element, result) -> None:
    """Every candidate of every step is in the table with its exact probability, and the choice is marked."""
    cells = prob_cells(root)
    for step in result.steps:
        for c in step.candidates:
            cell = cells[step.kind, c.id]
            assert float(cell.get("data-prob")) == c.prob
            assert text_of(cell) == percent(c.prob)
            assert f"probability {c.prob:.6g}" in title(cell)
    assert [int(el.get("data-token-id")) for el in by_class(root, "chosen")] == [result.chosen.id]
    (out,) = by_class(root, "output-token")
    assert int(out.get("data-token-id")) == result.chosen.id
    assert text_of(out) == result.chosen.token
    steps = by_class(root, "decode-step")
    assert len(steps) == len(result.steps) + 1
    page = text_of(root)
    for step in result.steps:
        assert f"kept {step.kept:,}" in page


@pytest.fixture(scope="module")
def analysed_root(analysed_graph) -> ET.Element:
    return render(analysed_graph)


# ---- decoding -----------------------------------------------------------------------------------------------
def test_stored_decoding_is_drawn_with_its_numbers(analysed_graph, analysed_root):
    assert_table_shows(analysed_root, analysed_graph.analysis.decoding)
    page = text_of(analysed_root)
    assert "from the analysis stored with the graph" in page and "greedy" in page


def test_decoding_options_are_computed_by_the_core(analysed_graph):
    options = dict(temperature=0.7, top_k=5, top_p=0.9, seed=3)
    root = render(analysed_graph, **options)
    expected = decode_next(analysed_graph, position=analysed_graph.analysis.decoding.position, candidates=8, **options)
    assert [s.kind for s in expected.steps] == ["softmax", "temperature", "top_k", "top_p"]
    assert_table_shows(root, expected)
    page = text_of(root)
    assert "computed for this picture" in page and "sampled with seed 3" in page
    # top-k 5 keeps five tokens: the last three of the eight softmax candidates are shown as cut by it
    cut = [el for (kind, _), el in prob_cells(root).items() if kind == "top_k" and el.get("data-prob") == "0.0"]
    assert len(cut) == 3 and all(text_of(el) == "0 (cut)" for el in cut)


def test_a_sampled_token_outside_the_table_gets_its_own_row(analysed_graph):
    # an untrained model is nearly uniform: a seeded draw from all 50257 tokens lands outside the top 8
    result = decode_next(analysed_graph, position=-1, seed=0, candidates=8)
    assert result.chosen.id not in {c.id for c in result.steps[-1].candidates}
    root = render(analysed_graph, seed=0)
    (row,) = by_class(root, "chosen")
    assert int(row.get("data-token-id")) == result.chosen.id and "…" in text_of(row)
    cell = prob_cells(root)["temperature", result.chosen.id]
    assert float(cell.get("data-prob")) == result.chosen.prob
    assert int(by_class(root, "output-token")[0].get("data-token-id")) == result.chosen.id


def test_without_an_analysis_the_decoding_comes_from_decode_next(tiny_graph):
    root = render(tiny_graph)
    assert_table_shows(root, decode_next(tiny_graph, candidates=8))
    for cls in ("lens-cell", "dla-bar", "head-cell", "head-chip"):
        assert not by_class(root, cls)
    tips = [title(el) for el in root.iter() if el.get("data-node")]
    assert not [t for t in tips if "logit lens" in t or "direct logit attribution" in t]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
        ({"temperature": -1.0}, "temperature must be a finite number > 0"),
        ({"temperature": math.nan}, "temperature must be a finite number > 0"),
        ({"top_p": 0.0}, r"top-p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, r"top-p must be in \(0, 1\], got 1.5"),
        ({"top_k": 0}, "top-k must be an integer >= 1, got 0"),
        ({"seed": 1.5}, r"seed must be an integer from 0 to 2\*\*64 - 1, got 1.5"),
    ],
)
@pytest.mark.parametrize("fixture", ["tiny_graph", "analysed_graph"])
def test_bad_decoding_options_are_clear_errors(request, fixture, options, message):
    graph = request.getfixturevalue(fixture)
    with pytest.raises(RendererError, match="decoding option: " + message):
        scene(graph, **options)


def test_bad_options_through_render_and_the_cli_write_nothing(tiny_graph, analysed_graph, tmp_path, capsys):
    out = tmp_path / "out.svg"
    with pytest.raises(RendererError, match="option 'head_color' needs interpretability results"):
        tiny_graph.render("svg", out, head_color="induction")
    with pytest.raises(RendererError, match="option 'head_color' must be one of dla, previous_token"):
        analysed_graph.render("svg", out, head_color="bogus")
    with pytest.raises(RendererError, match="option 'top_k' must be at least 1; got 0"):
        analysed_graph.render("svg", out, top_k=0)
    saved = tmp_path / "run.gg"
    analysed_graph.save(saved)
    assert main(["render", str(saved), "-r", "svg", "-o", str(out), "--option", "seed=two"]) == 2
    assert "option 'seed' expects int" in capsys.readouterr().err
    assert not out.exists()


def test_cli_renders_a_saved_analysis_with_options(analysed_graph, tmp_path):
    saved, out = tmp_path / "run.gg", tmp_path / "run.svg"
    analysed_graph.save(saved)
    assert (
        main(
            [
                "render",
                str(saved),
                "-r",
                "svg",
                "-o",
                str(out),
                "--option",
                "head_color=copying",
                "--option",
                "seed=5",
                "--option",
                "top_p=0.5",
            ]
        )
        == 0
    )
    root = ET.fromstring(out.read_bytes())
    assert "coloured by OV copying score" in text_of(root)
    expected = decode_next(
        analysed_graph, position=analysed_graph.analysis.decoding.position, top_p=0.5, seed=5, candidates=8
    )
    assert_table_shows(root, expected)


# ---- logit lens and DLA ------------------------------------------------------------------------------------
def test_tooltips_carry_the_logit_lens_and_dla(analysed_graph, analysed_root):
    a = analysed_graph.analysis
    lens = {e.node: e for e in analysed_graph.lens.entries}
    dla = {c.component: c for c in a.dla.contributions}
    drawn = {el.get("data-node"): el for el in analysed_root.iter() if el.get("data-node")}
    with_lens = [n for n in drawn if n in lens]
    assert {"resid_pre", "resid_mid", "resid_post", "head_out", "mlp_out", "b_O", "input_embedding"} <= {
        lens[n].kind for n in with_lens
    }
    tokens = analysed_graph.tokenization.tokens_visible
    for node in with_lens:
        tip, entry = title(drawn[node]), lens[node]
        assert "logit lens (top 5): " + " · ".join(f"{t.token!r} {percent(t.prob)}" for t in entry.top) in tip
        if entry.next_token_rank is not None:
            position = analysed_graph.node(node).position
            assert f"next token {tokens[position + 1]!r}: rank {entry.next_token_rank:,} under the lens" in tip
        assert f"target 'Ġthe': rank {entry.target_rank:,}" in tip
    with_dla = [n for n in drawn if n in dla]
    assert {"token_embedding", "pos_embedding", "head_out", "mlp_out", "b_O", "b_out", "ln_final_b"} <= {
        dla[n].kind for n in with_dla
    }
    for node in with_dla:
        value = f"{dla[node].contribution:+.4g}".replace("-", "−") if dla[node].contribution else "0"
        assert f"direct logit attribution to the logit of 'Ġthe' at position 4: {value}" in title(drawn[node])
    # a vector at another position has a lens but no attribution
    assert "direct logit attribution" not in title(drawn["blocks.0.hook_mlp_out[1]"])


def test_lens_panel_shows_each_streams_top_token(analysed_graph, analysed_root):
    lens = {e.node: e for e in analysed_graph.lens.entries}
    cells = by_class(analysed_root, "lens-cell")
    n = analysed_graph.n_tokens
    assert len(cells) == (1 + 2 * analysed_graph.dims.n_layer) * n
    ids = analysed_graph.tokenization.token_ids
    for cell in cells:
        entry = lens[cell.get("data-node")]
        assert int(cell.get("data-token-id")) == entry.top[0].id
        shown = text_of(cell).rsplit(" ", 1)[0]  # the token, cut with an ellipsis when it does not fit the cell
        assert shown == entry.top[0].token or (shown.endswith("…") and entry.top[0].token.startswith(shown[:-1]))
        assert percent(entry.top[0].prob) in text_of(cell) and entry.top[0].token in title(cell)
        position = analysed_graph.node(cell.get("data-node")).position
        hit = position + 1 < n and entry.top[0].id == ids[position + 1]
        assert (cell.find("svg:rect", NS).get("stroke-width") == "2") == hit


def test_dla_panel_lists_the_top_contributors_in_order(analysed_graph, analysed_root):
    dla = analysed_graph.analysis.dla
    bars = by_class(analysed_root, "dla-bar")
    assert [b.get("data-component") for b in bars] == [a.component for a in dla.top(12)]
    assert [float(b.get("data-contribution")) for b in bars] == [a.contribution for a in dla.top(12)]
    lefts = [float(b.find("svg:rect", NS).get("x")) for b in bars]
    widths = [float(b.find("svg:rect", NS).get("width")) for b in bars]
    # positive bars start at the zero axis and negative ones end there; longer for a larger |contribution|
    axis = {round(x if a.contribution >= 0 else x + w, 1) for a, x, w in zip(dla.top(12), lefts, widths, strict=True)}
    assert len(axis) == 1
    assert widths == sorted(widths, reverse=True)
    page = text_of(analysed_root)
    assert "Direct logit attribution" in page
    assert f"model value {dla.model_value:+.6g}".replace("-", "−") in page
    assert f"residual error {dla.residual_error:.1e}" in page and f"sum of all {len(dla.contributions)}" in page
    # beside it, the glossary's explanation of the method, with its source as a link
    entry = analysed_graph.glossary.get("direct-logit-attribution")
    (callout,) = [c for c in by_class(analysed_root, "callout") if entry.summary[:40] in text_of(c)]
    assert [a.get("href") for a in callout.iter(f"{{{NS['svg']}}}a")] == [entry.sources[0].url]


# ---- head map ------------------------------------------------------------------------------------------------
def expected_head_values(analysis, metric: str) -> dict[tuple[int, int], float | None]:
    if metric == "dla":
        out: dict[tuple[int, int], float] = {}
        for c in analysis.dla.contributions:
            if c.kind == "head_out":
                out[c.layer, c.head] = out.get((c.layer, c.head), 0.0) + c.contribution
        return out
    if metric == "copying":
        return {(c.layer, c.head): c.ov_copying_score for c in analysis.circuits.heads}
    return {(r.layer, r.head): getattr(r, metric) for r in analysis.roles.heads}


def head_cells(root: ET.Element) -> dict[tuple[int, int], ET.Element]:
    return {(int(el.get("data-layer")), int(el.get("data-head"))): el for el in by_class(root, "head-cell")}


def assert_cells_match_the_legend(root: ET.Element, cells: dict, fraction) -> None:
    """Each cell's colour is the legend bar's colour at the cell's value (``fraction`` of the bar's width)."""
    bar = [
        (float(r.get("x")), float(r.get("width")), r.get("fill"))
        for r in by_class(root, "head-scale")[0].findall("svg:rect", NS)
    ]
    x0, x1 = bar[0][0], bar[-1][0] + bar[-1][1]
    for key, cell in cells.items():
        x = x0 + min(fraction(float(cell.get("data-value"))), 0.999) * (x1 - x0)
        (colour,) = [c for left, w, c in bar if left <= x < left + w][:1]
        assert abs(luminance(colour) - luminance(fill(cell))) < 8, key


@pytest.mark.parametrize("metric", ["previous_token", "first_token", "current_token", "induction", "copying"])
def test_head_map_scores_are_shaded_by_value(analysed_graph, metric):
    root = render(analysed_graph, head_color=metric)
    cells = head_cells(root)
    d = analysed_graph.dims
    assert len(cells) == d.n_layer * d.n_head
    expected = expected_head_values(analysed_graph.analysis, metric)
    assert {k: float(el.get("data-value")) for k, el in cells.items()} == expected
    ranked = sorted(expected, key=expected.get)
    shades = [luminance(fill(cells[k])) for k in ranked]
    assert shades == sorted(shades, reverse=True)  # a larger score is never lighter
    assert luminance(fill(cells[ranked[-1]])) == min(shades)  # the largest is the most saturated
    assert_cells_match_the_legend(root, cells, lambda v: v)
    assert "0.5" in text_of(by_class(root, "head-scale")[0])


def test_head_map_defaults_to_dla_on_a_diverging_scale(analysed_graph, analysed_root):
    cells = head_cells(analysed_root)
    expected = expected_head_values(analysed_graph.analysis, "dla")
    assert {k: float(el.get("data-value")) for k, el in cells.items()} == expected
    page = text_of(analysed_root)
    assert "coloured by direct logit attribution" in page
    largest = max(abs(v) for v in expected.values())
    scale = text_of(by_class(analysed_root, "head-scale")[0])
    assert f"−{largest:.3g}" in scale and f"+{largest:.3g}" in scale
    white = rgb("#f6f6f6")

    def distance(k):
        return sum(abs(a - b) for a, b in zip(rgb(fill(cells[k])), white, strict=True))

    for side in (1, -1):  # on each side of zero, a larger |value| is never closer to white
        ranked = sorted((k for k, v in expected.items() if v * side > 0), key=lambda k: abs(expected[k]))
        assert [distance(k) for k in ranked] == sorted(distance(k) for k in ranked)
    assert_cells_match_the_legend(analysed_root, cells, lambda v: (v / largest + 1) / 2)
    for k, v in expected.items():
        r, _, b = rgb(fill(cells[k]))
        assert (r > b) == (v > 0) or abs(v) < 0.02 * largest  # red raises the logit, blue lowers it


def test_head_cells_and_chips_explain_themselves(analysed_graph):
    root = render(analysed_graph, head_color="induction", layers=[0, 1], head=2)
    roles = {(r.layer, r.head): r for r in analysed_graph.analysis.roles.heads}
    circuits = {(c.layer, c.head): c for c in analysed_graph.analysis.circuits.heads}
    cells = head_cells(root)
    for (L, h), cell in cells.items():
        tip = title(cell)
        r = roles[L, h]
        assert f"head {L}.{h} (layer {L}, head {h}) · role: {r.label or 'none'}" in tip
        for name in ("previous_token", "first_token", "current_token", "induction"):
            assert f"{name.replace('_', '-')} {getattr(r, name):.3f}" in tip
        assert f"OV copying score {circuits[L, h].ov_copying_score:.3f}" in tip
    chips = by_class(root, "head-chip")
    assert [(c.get("data-layer"), c.get("data-head")) for c in chips] == [("0", "2"), ("1", "2")]
    for chip in chips:
        key = (int(chip.get("data-layer")), int(chip.get("data-head")))
        assert fill(chip) == fill(cells[key])
        assert f"induction score: {roles[key].induction:.2f}" in text_of(chip)
    # the heads drawn in full are outlined in the map
    outlined = [k for k, el in cells.items() if len(el.findall("svg:rect", NS)) == 2]
    assert outlined == [(0, 2), (1, 2)]


# ---- safety and layout ---------------------------------------------------------------------------------------
def test_tokens_from_the_analysis_are_escaped(analysed_graph):
    """Every token the analysis names (lens, DLA, decoding, circuits) replaced by markup in the vocabulary."""
    a = analysed_graph.analysis
    named = {t.id for e in analysed_graph.lens.entries for t in e.top} | {
        c.id for s in a.decoding.steps for c in s.candidates
    }
    named |= {a.dla.token_id} | {t.id for h in a.circuits.heads for t in h.boosted}
    vocab = [EVIL if i in named else t for i, t in enumerate(analysed_graph.vocab)]
    graph = Graph(analysed_graph.header.model_copy(update={"analysis": None}), analysed_graph.store, vocab)
    graph.analyze(induction_probe=5)
    assert graph.analysis.decoding.chosen.token == EVIL and graph.analysis.dla.token == EVIL
    root = ET.fromstring(to_svg(scene(graph, head_color="induction")))
    assert not [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] in ("script", "img", "foreignObject")]
    assert not [el for el in root.iter() if any(k.lower().startswith("on") for k in el.attrib)]
    texts = [el.text or "" for el in root.iter()]
    assert sum(t.count("<script>alert(1)</script>") for t in texts) >= 20
    (out,) = by_class(root, "output-token")
    assert EVIL in title(out) and text_of(out).startswith("<script>alert(1)</script>")
    assert any(EVIL in title(el) for el in by_class(root, "lens-cell"))
    assert any(EVIL in title(el) for el in by_class(root, "head-cell"))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"layers": None, "head": 3},
        {"layers": [], "head_color": "induction"},
        {"positions": [0, 4], "seed": 1, "top_k": 3, "head_color": "copying"},
        {"callouts": False, "top_p": 0.5},
    ],
)
def test_no_text_box_overlaps_another_with_the_panels(analysed_graph, options):
    assert_no_overlap(scene(analysed_graph, **options))


def test_a_longer_prompt_and_more_heads(tiny_checkpoint, tmp_path):
    """More positions than shown, a contrast in DLA and no lens: panels adapt and still never overlap."""
    graph = gpt2graph.build(
        PROMPT + " and vectors are tokens, again and again and again",
        model=str(tiny_checkpoint),
        analyze={"contrast": " the", "lens": False},
    )
    assert graph.n_tokens > 12
    s = scene(graph, head_color="previous_token")
    assert_no_overlap(s)
    root = ET.fromstring(to_svg(s))
    assert not by_class(root, "lens-cell")
    dla = graph.analysis.dla
    assert f"logit({dla.token!r}) − logit({dla.contrast!r})" in text_of(root)


@pytest.mark.browser
def test_chromium_draws_the_analysis_with_the_measured_widths(
    chromium, chromedriver, analysed_graph, artifacts_dir, tmp_path
):
    """Screenshot for people to look at, and every text box as wide in Chromium as the layout measured."""
    s = scene(analysed_graph, seed=3, top_k=5, head_color="induction")
    path = tmp_path / "analysed.svg"
    path.write_bytes(to_svg(s))
    png = artifacts_dir / "svg-analysed.png"
    screenshot(chromium, path, png, (int(s.width), int(s.height)), tmp_path / "shot")
    assert png.stat().st_size > 0
    assert_chromium_draws_the_measured_widths(chromium, chromedriver, path, s, tmp_path)


def test_the_decoding_stage_is_drawn_node_by_node_with_the_options(tiny_graph):
    root = render(tiny_graph, top_k=3, seed=2)
    view = tiny_graph.with_decoding(top_k=3, seed=2)
    drawn = {el.get("data-node"): el for el in root.iter() if el.get("data-node")}
    for p in range(tiny_graph.n_tokens):
        for kind in ("scaled_logits", "top_k_logits", "top_p_logits", "probs", "next_token"):
            assert f"decode.{kind}[{p}]" in drawn and f"op:decode.{kind}[{p}]" in drawn
        chosen = int(view.values(f"decode.next_token[{p}]"))
        assert view.decode_token(chosen) in text_of(drawn[f"decode.next_token[{p}]"])
        assert "kept 3 of 50,257" in text_of(drawn[f"decode.top_k_logits[{p}]"])
    cut = [r for r in drawn["decode.top_k_logits[0]"].iter(f"{{{NS['svg']}}}rect") if r.get("fill") == "#e6e8eb"]
    assert cut  # tokens the filter removed are drawn masked
    assert tiny_graph.decoding.top_k is None  # the options drew a view; the graph is unchanged


def test_a_view_is_drawn_as_it_is(analysed_graph):
    """A subgraph view: its blocks expanded, its head in full, its positions as lanes; every node drawn is in it,
    and so is every DLA row and every cell of the head map; no text overlaps."""
    view = analysed_graph.subgraph(layers=[1], heads=[2, 3], positions=[1, 3])
    root = render(view)
    drawn = {el.get("data-node") for el in root.iter() if el.get("data-node")}
    assert drawn and all(node in view for node in drawn)
    assert "blocks.1.attn.hook_q[3,2]" in drawn and "blocks.1.attn.hook_q[3,3]" not in drawn  # head 2 in full
    assert all(bar.get("data-component") in view for bar in by_class(root, "dla-bar"))
    assert {(c.get("data-layer"), c.get("data-head")) for c in by_class(root, "head-cell")} == {("1", "2"), ("1", "3")}
    assert_no_overlap(scene(view))
    # options choose on the axes the view leaves whole: here, which blocks of a view of heads are expanded
    heads_only = render(analysed_graph.subgraph(heads=[1]), layers=[0])
    drawn = {el.get("data-node") for el in heads_only.iter() if el.get("data-node")}
    assert "blocks.0.attn.hook_z[0,1]" in drawn and not any(n.startswith("blocks.1.attn") for n in drawn)
