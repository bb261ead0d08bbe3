"""Both renderers draw corpus statistics (a .ggc): head-role heat maps, lens accuracy by residual stream, loss by
position; text from the statistics stays text; a renderer without ``render_corpus`` is a clear error."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from gpt2graph.cli import main
from gpt2graph.engine import run_corpus
from gpt2graph.errors import RendererError
from gpt2graph.registry import draws_corpus, registry, render_corpus

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def saved(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("render")
    source = folder / f"{HOSTILE}.txt"
    source.write_text("The cat sat on the mat\nA B A B A B\nHello world\n", encoding="utf-8")
    run_corpus(source, folder / "s.ggc", model=str(tiny_checkpoint), workers=1)
    return folder / "s.ggc"


@pytest.fixture(scope="module")
def stats(saved):
    from gpt2graph import load_corpus

    return load_corpus(saved)


def test_svg_draws_every_head_stream_and_position(stats, tmp_path):
    path = stats.render("svg", tmp_path / "c.svg")
    svg = path.read_text(encoding="utf-8")
    dims = stats.dims
    cells = re.findall(
        r'<g class="role-cell" data-role="(\w+)" data-layer="(\d+)" data-head="(\d+)" data-score="([^"]+)"', svg
    )
    roles = stats.role_means()
    assert len(cells) == len(roles) * dims.n_layer * dims.n_head
    for role, layer, head, score in cells:
        assert float(score) == pytest.approx(float(roles[role][int(layer), int(head)]))
    assert svg.count('class="lens-bar"') == len(stats.lens_rows)
    assert svg.count('class="loss-bar"') == stats.header.max_tokens - 1
    assert "top-1 0%" in svg and "nats over" in svg
    assert HOSTILE not in svg and "&lt;img src=x onerror=alert(1)&gt;.txt" in svg  # the source path, as text


def test_bokeh_draws_the_three_panels_as_text_only(stats, tmp_path):
    path = stats.render("bokeh", tmp_path / "c.html")
    html = path.read_text(encoding="utf-8")
    for name in ("roles-previous_token", "roles-induction", "lens", "loss"):
        assert f'"name":"{name}"' in html.replace(" ", "")
    assert HOSTILE not in html  # the source path is in the page only as escaped JSON text


def test_cli_renders_a_corpus_file_and_rejects_options(saved, tmp_path, capsys):
    out = tmp_path / "cli.svg"
    assert main(["render", str(saved), "-r", "svg", "-o", str(out)]) == 0
    assert out.is_file()
    assert main(["render", str(saved), "-r", "svg", "-o", str(out), "--option", "head=1"]) == 2
    assert "takes no options for corpus statistics" in capsys.readouterr().err
    assert main(["renderers", "--json"]) == 0
    listed = {r["name"]: r["draws_corpus"] for r in json.loads(capsys.readouterr().out)}
    assert listed["svg"] and listed["bokeh"]


def test_a_renderer_without_render_corpus_is_a_clear_error(stats, monkeypatch, tmp_path):
    graph_only = SimpleNamespace(name="graph-only", render=lambda *a, **k: None)
    assert not draws_corpus(graph_only) and draws_corpus(registry.resolve("svg"))
    monkeypatch.setattr(
        registry, "resolve", lambda name: graph_only if name == "graph-only" else registry.info(name).load()
    )
    with pytest.raises(RendererError, match=r"'graph-only' cannot draw corpus statistics .*renderers that can: .*svg"):
        render_corpus(stats, "graph-only", tmp_path / "x")
