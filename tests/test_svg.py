"""The SVG infographic renderer: every expanded node drawn (by data-node), titles and links present, text
boxes never overlapping, deterministic bytes, user text escaped, clear errors, and a real browser drawing it
with the widths we measured."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import CHROMIUM_FLAGS, screenshot
from gpt2graph_svg import element_id, scene
from gpt2graph_svg.draw import to_svg

import gpt2graph
from gpt2graph.cli import main
from gpt2graph.errors import GraphFileError, RendererError
from gpt2graph.graph import Graph
from gpt2graph.schema import Weights

NS = {"svg": "http://www.w3.org/2000/svg"}
EVIL = '<script>alert(1)</script> "><img src=x onerror=alert(1)>'


def parse(path: Path) -> ET.Element:
    return ET.fromstring(path.read_bytes())


def drawn(root: ET.Element) -> dict[str, ET.Element]:
    return {el.get("data-node"): el for el in root.iter() if el.get("data-node") is not None}


def expected_nodes(graph, layers: list[int], head: int, positions: list[int] | None = None) -> set[str]:
    """Every node the view draws: the ones outside the blocks, and those of the expanded blocks for the head."""
    out = set()
    for n in graph.nodes():
        if positions is not None and n.position is not None and n.position not in positions:
            continue
        if n.head not in (None, head):
            continue
        if n.layer is None or n.layer in layers:
            out.add(n.id)
    return out


@pytest.fixture(scope="module")
def default_svg(tiny_graph, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("svg") / "default.svg"
    tiny_graph.render("svg", path)
    return path


def test_default_view_draws_every_node_of_the_first_block_and_outside_blocks(tiny_graph, default_svg):
    nodes = drawn(parse(default_svg))
    missing = expected_nodes(tiny_graph, [0], 0) - set(nodes)
    assert not missing, sorted(missing)[:10]
    # block 1 is elided: none of its heads' vectors are drawn, the stream leaving it is
    assert not any(k.startswith("blocks.1.attn.") for k in nodes)
    assert {f"blocks.1.hook_resid_post[{p}]" for p in range(tiny_graph.n_tokens)} <= set(nodes)
    text = default_svg.read_text(encoding="utf-8")
    assert "block 1 elided: 1 more block" in text


def test_element_ids_are_unique_escaped_and_every_node_has_a_title(default_svg):
    root = parse(default_svg)
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids))
    for node_id, el in drawn(root).items():
        assert el.get("id") == element_id(node_id)
        assert all(c.isalnum() or c in "._-" for c in el.get("id"))
        title = el.find("svg:title", NS)
        assert title is not None and node_id in title.text


def test_links_are_real_hyperlinks(default_svg):
    links = [a.get("href") for a in parse(default_svg).iter(f"{{{NS['svg']}}}a")]
    assert len(links) >= 10
    assert all(href.startswith(("https://", "http://")) for href in links)


def test_captions_come_from_the_run(tiny_graph, default_svg):
    text = default_svg.read_text(encoding="utf-8")
    d = tiny_graph.dims
    assert f"n_tokens × d_model = {tiny_graph.n_tokens} × {d.d_model}" in text
    assert f"n_tokens × d_head = {tiny_graph.n_tokens} × {d.d_head}" in text
    assert f"n_tokens × d_mlp = {tiny_graph.n_tokens} × {d.d_mlp}" in text
    assert f"head {0} of {d.n_head}" in text
    for token in tiny_graph.tokenization.tokens_visible:
        assert f">{token}<" in text


def test_no_text_box_overlaps_another(tiny_graph):
    for options in ({}, {"layers": [0, 1], "head": 2}, {"layers": []}, {"positions": [0, 3, 4]}):
        texts = sorted(scene(tiny_graph, **options).texts(), key=lambda t: t.box.x)
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                if b.box.x >= a.box.right:
                    break
                assert not a.box.overlaps(b.box), (options, a.lines, b.lines)


def test_output_is_deterministic(tiny_graph, tmp_path):
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    tiny_graph.render("svg", a, layers=[0, 1])
    tiny_graph.render("svg", b, layers=[0, 1])
    assert a.read_bytes() == b.read_bytes()


def test_options_expand_layers_heads_and_positions(tiny_graph, tmp_path):
    path = tmp_path / "all.svg"
    tiny_graph.render("svg", path, layers=None, head=3, positions=[1, 3])
    nodes = drawn(parse(path))
    missing = expected_nodes(tiny_graph, [0, 1], 3, positions=[1, 3]) - set(nodes)
    assert not missing, sorted(missing)[:10]
    assert "blocks.1.attn.hook_q[3,3]" in nodes and "blocks.1.attn.hook_q[0,3]" not in nodes
    assert "elided" not in path.read_text(encoding="utf-8")


def test_callouts_can_be_turned_off(tiny_graph, tmp_path):
    on, off = tmp_path / "on.svg", tmp_path / "off.svg"
    tiny_graph.render("svg", on)
    tiny_graph.render("svg", off, callouts=False)
    assert 'class="callout"' in on.read_text(encoding="utf-8")
    assert 'class="callout"' not in off.read_text(encoding="utf-8")


def test_random_weights_are_unmistakable(tiny_graph):
    model = tiny_graph.model.model_copy(update={"weights": Weights(status="random", seed=7)})
    graph = Graph(tiny_graph.header.model_copy(update={"model": model}), tiny_graph.store, tiny_graph.vocab)
    text = to_svg(scene(graph)).decode("utf-8")
    assert "RANDOM WEIGHTS (seed 7)" in text and "meaningless" in text


def test_user_text_is_escaped(tiny_checkpoint, tmp_path):
    graph = gpt2graph.build(EVIL, model=str(tiny_checkpoint))
    note = tmp_path / "evil.yaml"
    note.write_text(
        "annotations:\n"
        "  - id: evil-note\n"
        f"    title: {EVIL!r}\n"
        f"    body: {EVIL!r}\n"
        "    targets:\n"
        "      - kind: ln1\n"
        "        layer: 0\n",
        encoding="utf-8",
    )
    graph.annotate(note)
    path = tmp_path / "evil.svg"
    graph.render("svg", path)
    root = parse(path)
    assert not [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] in ("script", "img", "foreignObject")]
    assert not [el for el in root.iter() if any(a.lower().startswith("on") for a in el.attrib)]
    texts = "".join(el.text or "" for el in root.iter())
    assert texts.count("<script>alert(1)</script>") >= 3  # title block, prompt box, the callout (title and body)
    assert "onerror=alert(1)>" in texts


@pytest.mark.parametrize(
    "options, message",
    [
        ({"layers": [2]}, "layer 2 does not exist: this model has layers 0 to 1"),
        ({"head": 4}, "head 4 does not exist: this model has heads 0 to 3"),
        ({"positions": [0, 9]}, "position 9 does not exist"),
        ({"temperature": 0.0}, "decoding option: temperature must be a finite number > 0"),
        ({"top_p": 1.5}, "decoding option: top-p must be in (0, 1]"),
    ],
)
def test_bad_options_are_clear_errors_and_write_nothing(tiny_graph, tmp_path, options, message):
    path = tmp_path / "out.svg"
    with pytest.raises(RendererError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        tiny_graph.render("svg", path, **options)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_path(tiny_graph, tmp_path):
    with pytest.raises(GraphFileError, match="cannot write"):
        tiny_graph.render("svg", tmp_path / "no-such-dir" / "out.svg")
    assert list(tmp_path.iterdir()) == []


def test_cli_render(saved_graph, tmp_path, capsys):
    out = tmp_path / "cli.svg"
    assert (
        main(
            [
                "render",
                str(saved_graph),
                "-r",
                "svg",
                "-o",
                str(out),
                "--option",
                "layers=0,1",
                "--option",
                "head=2",
                "--option",
                "callouts=no",
            ]
        )
        == 0
    )
    nodes = drawn(parse(out))
    assert "blocks.1.attn.hook_pattern[2,4]" in nodes
    assert main(["render", str(saved_graph), "-r", "svg", "-o", str(tmp_path / "x.svg"), "--option", "head=two"]) == 2
    assert "option 'head' expects int" in capsys.readouterr().err
    assert not (tmp_path / "x.svg").exists()


@pytest.mark.browser
def test_chromium_renders_it(chromium, default_svg, artifacts_dir, tmp_path):
    """Screenshot in headless Chromium: the page is drawn (not blank), saved for people to look at."""
    from PIL import Image

    root = parse(default_svg)
    w, h = int(float(root.get("width"))), int(float(root.get("height")))
    png = artifacts_dir / "svg-default.png"
    screenshot(chromium, default_svg, png, (w, h), tmp_path / "profile")
    image = Image.open(png).convert("RGB")
    assert image.size == (w, h)
    colours = image.getcolors(maxcolors=1 << 24)
    assert len(colours) > 500  # text, strips, heat maps: far from a blank page
    white = max(count for count, rgb in colours if rgb == (255, 255, 255))
    assert white < 0.9 * w * h


def assert_chromium_draws_the_measured_widths(chromium: str, chromedriver: str, svg: Path, s, tmp_path: Path):
    """Every text box of scene ``s`` (written to ``svg``) is as wide in Chromium as the layout measured."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=chromedriver))
    try:
        driver.get(svg.as_uri())
        widths = driver.execute_script("return [...document.querySelectorAll('text')].map(t => t.getBBox().width)")
    finally:
        driver.quit()
    expected = [t.box.w for t in s.texts()]
    assert len(widths) == len(expected)
    off = [(e, w) for e, w in zip(expected, widths, strict=True) if abs(e - w) > 1 + 0.01 * e]
    assert not off, off[:5]


@pytest.mark.browser
def test_browser_text_widths_match_the_layout(chromium, chromedriver, tiny_graph, default_svg, tmp_path):
    """The boxes the layout measured are the ones Chromium draws, so 'no overlap' holds in the browser too."""
    assert_chromium_draws_the_measured_widths(chromium, chromedriver, default_svg, scene(tiny_graph), tmp_path)
