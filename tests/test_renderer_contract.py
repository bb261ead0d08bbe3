"""The contract every installed renderer keeps (see renderers/template/README.md): it renders a graph with
its default options to a non-empty file, and an unwritable output path is a clear gpt2graph error that
leaves no file behind."""

from __future__ import annotations

import pytest

from gpt2graph.errors import Gpt2GraphError
from gpt2graph.registry import Renderer, registry

#: every installed renderer; the test command installs ours, so there is always at least svg and bokeh
RENDERERS = registry.names()


def test_our_renderers_are_installed():
    assert {"svg", "bokeh"} <= set(RENDERERS), "install the plugins: pip install -e renderers/svg -e renderers/bokeh"


@pytest.fixture(params=RENDERERS)
def renderer(request) -> tuple[str, Renderer]:
    return request.param, registry.resolve(request.param)


def test_declares_the_protocol(renderer):
    name, r = renderer
    assert isinstance(r, Renderer)
    assert r.name == name and r.description and r.suffixes and all(s.startswith(".") for s in r.suffixes)
    for key, option in r.options.items():
        assert key.isidentifier() and option.help
        option.check(key, option.default, name)  # every default passes its own validation


def test_renders_with_defaults(renderer, tiny_graph, tmp_path):
    name, r = renderer
    path = tmp_path / f"out{r.suffixes[0]}"
    returned = tiny_graph.render(name, path)
    assert path.is_file() and path.stat().st_size > 0
    assert returned is None or str(returned) == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left over


@pytest.mark.parametrize("where", ["missing-dir/out", "a-file/out"])
def test_unwritable_path_is_a_clear_error_and_leaves_nothing(renderer, tiny_graph, tmp_path, where):
    name, r = renderer
    (tmp_path / "a-file").write_text("not a directory")
    before = sorted(tmp_path.rglob("*"))
    path = tmp_path / f"{where}{r.suffixes[0]}"
    with pytest.raises(Gpt2GraphError) as err:
        tiny_graph.render(name, path)
    assert str(path) in str(err.value)  # says which path
    assert sorted(tmp_path.rglob("*")) == before


#: a view restricted on every axis (the tiny model has 2 layers, 4 heads, 5 positions)
VIEW = dict(layers=[1], heads=[1], positions=[1, 2])


def _outside(graph, view) -> list[str]:
    """Ids of nodes the view leaves out, of kinds whose ids no node inside the view contains."""
    top = graph.topology
    keys = [
        *top.vector_keys(kind=["q", "attn_pattern", "z", "mlp_post", "resid_mid"]),
        *top.param_keys(kind=["W_Q", "W_in", "b_O"]),
    ]
    return [top.node_id(k) for k in keys if top.node_id(k) not in view]


def test_draws_the_view_it_is_given(renderer, tiny_graph, tmp_path):
    """The rule of graph.py: nodes outside a view are not drawn; the options choose only on the axes the view
    leaves whole, so the defaults still draw the view."""
    name, r = renderer
    view = tiny_graph.subgraph(**VIEW)
    outside = _outside(tiny_graph, view)
    whole = tiny_graph.render(name, tmp_path / f"whole{r.suffixes[0]}").read_bytes().decode("utf-8", "replace")
    assert any(node in whole for node in outside)  # the check can fail: these ids are drawn for a whole graph
    part = view.render(name, tmp_path / f"view{r.suffixes[0]}").read_bytes().decode("utf-8", "replace")
    assert [node for node in outside if node in part] == []
    assert "blocks.1.attn.hook_q[1,1]" in part and "blocks.1.hook_mlp_out[2]" in part  # the view itself is drawn
