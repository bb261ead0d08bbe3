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
