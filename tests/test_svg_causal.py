"""The SVG renderer's views of the causal experiments stored on a run: patching heat maps (every stored cell, its
exact numbers, token labels, a colour bar) and the circuit view (its components at their graph nodes, edges at
widths following their scores and labelled with them, callouts on the method); a subgraph view drawn as it is
(the cells and components it holds, and the edges leading outside it counted); text escaped, no component,
label, cell, callout or text overlapping another, clear errors, and Chromium drawing the measured widths."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import handbuilt as hb
import pytest
from gpt2graph_svg import scene
from gpt2graph_svg.draw import to_svg
from gpt2graph_svg.scene import Box, Rect
from test_svg import assert_chromium_draws_the_measured_widths
from test_svg_analysis import EVIL, NS, assert_no_overlap, by_class, text_of, title

import gpt2graph
from gpt2graph.cli import main
from gpt2graph.errors import RendererError
from gpt2graph.plugin import Key, VectorKind, writer_key


@pytest.fixture(scope="module")
def copy_graph(tmp_path_factory):
    """The hand-built copy model's clean run with sweeps and its circuit stored on it."""
    clean, corrupted = hb.copy_runs(tmp_path_factory.mktemp("handbuilt"))
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


# ---- a view is drawn as it is ---------------------------------------------------------------------------------
VIEWS = [{"layers": [0]}, {"heads": [1]}, {"layers": [1], "heads": [0]}, {"positions": [0, 1]}]


def held_components(view, circuit) -> set[str]:
    """The components whose node the view holds: the vector each writes through at the scored position (the
    logits for the logits), found through the topology, not through the renderer."""
    top, p = view.topology, circuit.position
    keys = {
        c.id: Key(VectorKind.logits, None, None, p) if c.type == "logits" else writer_key(c, p)
        for c in circuit.components
    }
    return {cid for cid, key in keys.items() if top.vector_id(key) in view}


@pytest.mark.parametrize("restrict", VIEWS)
def test_a_view_draws_the_components_it_holds_and_counts_the_edges_leading_outside(tiny_causal, restrict):
    view = tiny_causal.subgraph(**restrict)
    circuit = tiny_causal.header.circuit
    inside = held_components(view, circuit)
    edges_in = [e for e in circuit.edges if e.source in inside and e.target in inside]
    leaving = [e for e in circuit.edges if (e.source in inside) != (e.target in inside)]
    assert len(edges_in) < len(circuit.edges)  # each of these views leaves some edge out
    root = render(view, view="circuit")
    components = {el.get("data-component"): el for el in by_class(root, "circuit-component")}
    assert set(components) == inside
    assert all(el.get("data-node") in view for el in components.values())
    drawn = sorted(
        (e.get("data-source"), e.get("data-target"), e.get("data-input")) for e in by_class(root, "circuit-edge")
    )
    assert drawn == sorted((e.source, e.target, e.input or "") for e in edges_in)
    assert len(by_class(root, "circuit-edge-label")) == len(edges_in)
    (note,) = by_class(root, "view-note")
    assert (note.get("data-components"), note.get("data-edges"), note.get("data-outside")) == (
        str(len(inside)),
        str(len(edges_in)),
        str(len(leaving)),
    )
    assert f"holds {len(inside)} of the circuit's {len(circuit.components)} components" in text_of(note)
    assert f"{len(leaving)} edge" in text_of(note) and "outside it" in text_of(note)
    for cid, el in components.items():  # each component counts, and its tooltip names, its own
        own = [e for e in leaving if cid in (e.source, e.target)]
        assert el.get("data-outside") == str(len(own))
        assert all(f"{e.source} → {e.target}" in title(el) for e in own)
        if own:
            assert f"{len(own)} edge" in text_of(el)
    if not inside:  # the scored position is outside the view
        assert "None of the circuit's" in text_of(root)


def test_the_whole_run_has_no_view_note(tiny_causal):
    root = render(tiny_causal, view="circuit")
    assert not by_class(root, "view-note")
    assert {el.get("data-outside") for el in by_class(root, "circuit-component")} == {"0"}
    assert len(by_class(root, "circuit-edge")) == len(tiny_causal.header.circuit.edges)


@pytest.mark.parametrize(
    "restrict", [{"layers": [1]}, {"heads": [1]}, {"positions": [0, 3]}, {"layers": [0], "heads": [0]}]
)
def test_a_view_draws_the_cells_it_holds(copy_graph, restrict):
    view = copy_graph.subgraph(**restrict)
    root = render(view, view="patching")
    sel = view.selection
    for i, sweep in enumerate(copy_graph.header.patching):

        def held(axis):
            at = lambda values, k: None if values is None else values[k]  # noqa: E731
            return [
                label
                for k, label in enumerate(axis.labels)
                if sel.admits(at(axis.layers, k), at(axis.heads, k), at(axis.positions, k))
            ]

        rows, cols = held(sweep.rows), held(sweep.cols)
        cells = [el for el in by_class(root, "patch-cell") if el.get("data-sweep") == str(i)]
        assert sorted((el.get("data-row"), el.get("data-col")) for el in cells) == sorted(
            (r, c) for r in rows for c in cols
        )
        notes = [el for el in by_class(root, "view-note") if el.get("data-sweep") == str(i)]
        whole = len(rows) == len(sweep.rows.labels) and len(cols) == len(sweep.cols.labels)
        if whole:
            assert not notes
        else:
            (note,) = notes
            assert (note.get("data-rows"), note.get("data-cols")) == (str(len(rows)), str(len(cols)))
            assert f"holds {len(rows)} of the {len(sweep.rows.labels)} rows" in text_of(note)
    assert len(by_class(root, "patch-cell")) < len(by_class(render(copy_graph, view="patching"), "patch-cell"))


def test_a_sweep_with_no_cell_in_the_view_says_so(tiny_checkpoint):
    """A sweep patched at chosen positions has no cell in a view of other positions; another sweep keeps its own."""
    graph = gpt2graph.build("Transformer tokens are vectors", model=str(tiny_checkpoint))
    options = dict(answer=" the", wrong=" a")
    graph.patch_sweep("Transformer tokens are numbers", kind="mlp_out", **options)
    graph.patch_sweep("Transformer tokens are numbers", kind="resid_pre", positions=[3, 4], **options)
    root = render(graph.subgraph(positions=[0, 1]), view="patching")
    assert {el.get("data-sweep") for el in by_class(root, "patch-cell")} == {"0"}  # its first two columns
    assert len(by_class(root, "patch-cell")) == 2 * graph.dims.n_layer
    assert text_of(root).count("No cell of this sweep is inside this view.") == 1
    assert len(by_class(root, "colour-bar")) == 1


# ---- nothing overlaps -----------------------------------------------------------------------------------------
#: groups drawn as one solid block (their shapes and texts); every other text is a block of its own
SOLID = {"circuit-component", "circuit-edge-label", "faithfulness", "callout", "patch-cell", "colour-bar"}


def blocks(s) -> list[tuple[str, Box]]:
    """What must not overlap on a page: each solid group's bounding box, and every other text's box."""
    out = []
    for g in s.groups:
        if g.cls in SOLID:
            boxes = [t.box for t in g.texts] + [p.box for p in g.parts if isinstance(p, Rect)]
            x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
            x1, y1 = max(b.right for b in boxes), max(b.bottom for b in boxes)
            out.append((f"{g.cls} {g.data}", Box(x0, y0, x1 - x0, y1 - y0)))
        else:
            out += [(" ".join(t.lines), t.box) for t in g.texts]
    return out


def assert_nothing_overlaps(s) -> None:
    """No two blocks overlap, and every block is on the page."""
    found = sorted(blocks(s), key=lambda nb: nb[1].x)
    for i, (name, a) in enumerate(found):
        assert a.x >= 0 and a.right <= s.width and a.y >= 0 and a.bottom <= s.height, name
        for other, b in found[i + 1 :]:
            if b.x >= a.right:
                break
            assert not a.overlaps(b), (name, other)


@pytest.mark.parametrize("view", ["patching", "circuit"])
@pytest.mark.parametrize("restrict", [{}, *VIEWS])
def test_no_component_label_cell_callout_or_text_overlaps_another(tiny_causal, copy_graph, view, restrict):
    for graph in (tiny_causal, copy_graph):
        s = scene(graph.subgraph(**restrict) if restrict else graph, view=view)
        assert_nothing_overlaps(s)
        assert len(blocks(s)) > 20  # a page, not an empty one


def test_a_larger_circuit_places_every_label_clear_of_the_rest(tiny_checkpoint):
    """More layers and heads, a circuit of some thirty edges: labels still find a free place."""
    graph = gpt2graph.build("Transformer tokens are vectors of numbers", model=str(tiny_checkpoint))
    graph.circuit("Transformer tokens are lists of numbers", answer=" the", wrong=" a", top=30)
    s = scene(graph, view="circuit")
    assert len([g for g in s.groups if g.cls == "circuit-edge"]) >= 30
    assert_nothing_overlaps(s)


# ---- edges pass clear of the components ---------------------------------------------------------------------
def _bezier(d: str, steps: int = 400) -> list[tuple[float, float]]:
    """Points along a path ``M x,y C x,y x,y x,y``."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (tuple(map(float, p.split(","))) for p in d[1:].replace("C", "").split())
    out = []
    for i in range(steps + 1):
        t = i / steps
        a, b, c, e = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        out.append((a * x0 + b * x1 + c * x2 + e * x3, a * y0 + b * y1 + c * y2 + e * y3))
    return out


def assert_edges_pass_clear_of_components(s) -> None:
    """No edge's curve runs through a component other than its writer and its reader."""
    boxes = {}
    for g in s.groups:
        if g.cls == "circuit-component":
            (box,) = [p.box for p in g.parts if isinstance(p, Rect) and p.box.w > 20]
            boxes[g.data["component"]] = box
    edges = [g for g in s.groups if g.cls == "circuit-edge"]
    assert edges and boxes
    for g in edges:
        (path,) = g.parts
        for cid, box in boxes.items():
            if cid in (g.data["source"], g.data["target"]):
                continue
            inside = [p for p in _bezier(path.d) if box.x <= p[0] <= box.right and box.y <= p[1] <= box.bottom]
            assert not inside, f"{g.data['source']} -> {g.data['target']} runs through {cid} at {inside[0]}"


@pytest.mark.parametrize("top", [14, 30])
def test_every_edge_passes_clear_of_the_components_it_does_not_join(tiny_checkpoint, top):
    graph = gpt2graph.build("Transformer tokens are vectors of numbers", model=str(tiny_checkpoint))
    graph.circuit("Transformer tokens are lists of numbers", answer=" the", wrong=" a", top=top)
    assert_edges_pass_clear_of_components(scene(graph, view="circuit"))
