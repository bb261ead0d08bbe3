"""The renderer plugin registry: discovery through entry points, clear errors for unknown names, conflicting
plugins, unknown options and wrong option types, and the `gpt2graph renderers` command."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from conftest import in_a_notebook

import gpt2graph.registry as reg
from gpt2graph.cli import main
from gpt2graph.errors import RendererError
from gpt2graph.registry import Option, Registry, parse_cli_options


class Stub:
    name = "stub"
    description = "a renderer that writes its options"
    suffixes = (".txt",)
    options = {
        "layers": Option(list[int], [0], "blocks"),
        "head": Option(int, 0, "head"),
        "scale": Option(float, 1.0, "scale"),
        "show": Option(bool, True, "show"),
        "style": Option(str, "light", "style", choices=("light", "dark")),
    }

    def render(self, graph, path, **options):
        path.write_text(json.dumps(options))
        return path


class NotARenderer:
    name = "broken"


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    obj: object = None
    dist: SimpleNamespace = field(
        default_factory=lambda: SimpleNamespace(metadata={"Name": "fake-dist"}, version="9.9")
    )

    def load(self):
        return self.obj


def fake_registry(monkeypatch, *eps: FakeEntryPoint) -> Registry:
    monkeypatch.setattr(reg, "entry_points", lambda group: list(eps))
    return Registry()


def dist(name: str) -> SimpleNamespace:
    return SimpleNamespace(metadata={"Name": name}, version="1.0")


def test_installed_renderers_are_discovered():
    assert "svg" in reg.registry.names()
    info = reg.registry.info("svg")
    assert info.distribution == "gpt2graph-svg" and info.version
    assert ".svg" in info.load().suffixes


def test_unknown_renderer_lists_the_installed_ones(monkeypatch):
    r = fake_registry(monkeypatch, FakeEntryPoint("alpha", "a:A", Stub), FakeEntryPoint("beta", "b:B", Stub))
    with pytest.raises(RendererError, match=r"unknown renderer 'gamma'; installed renderers: alpha, beta"):
        r.resolve("gamma")


def test_two_plugins_claiming_one_name_is_an_error_naming_both(monkeypatch):
    r = fake_registry(
        monkeypatch,
        FakeEntryPoint("svg", "pkg_one:Svg", Stub, dist("plugin-one")),
        FakeEntryPoint("svg", "pkg_two:Svg", Stub, dist("plugin-two")),
    )
    with pytest.raises(RendererError) as err:
        r.names()
    message = str(err.value)
    assert "two plugins claim the renderer name 'svg'" in message
    assert "pkg_one:Svg (from plugin-one)" in message and "pkg_two:Svg (from plugin-two)" in message


def test_a_plugin_missing_part_of_the_protocol_is_refused(monkeypatch):
    r = fake_registry(monkeypatch, FakeEntryPoint("broken", "x:NotARenderer", NotARenderer))
    with pytest.raises(RendererError, match="does not implement the renderer protocol: missing description"):
        r.resolve("broken")


def test_unknown_option_lists_the_valid_ones(monkeypatch):
    r = fake_registry(monkeypatch, FakeEntryPoint("stub", "s:Stub", Stub))
    with pytest.raises(RendererError) as err:
        r.check_options("stub", {"colour": "red"})
    assert "has no option 'colour'" in str(err.value)
    assert "valid options: layers (list[int]), head (int), scale (float), show (bool), style (str)" in str(err.value)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"head": "two"}, "option 'head' expects int, got 'two'"),
        ({"head": 1.5}, "option 'head' expects int, got float 1.5"),
        ({"head": True}, "option 'head' expects int"),
        ({"layers": "0,x"}, "option 'layers' expects list[int]"),
        ({"layers": [0, "1"]}, "option 'layers' expects list[int]"),
        ({"show": "maybe"}, "option 'show' expects bool"),
        ({"style": "neon"}, "option 'style' must be one of light, dark"),
    ],
)
def test_wrong_option_types_say_what_was_expected(monkeypatch, options, message):
    r = fake_registry(monkeypatch, FakeEntryPoint("stub", "s:Stub", Stub))
    with pytest.raises(RendererError, match=message.replace("[", r"\[").replace("]", r"\]")):
        r.check_options("stub", options)


def test_an_unset_option_may_declare_choices():
    option = Option(str, None, "colour, or unset for the renderer's choice", choices=("red", "blue"))
    assert option.check("colour", None, "stub") is None and option.check("colour", "red", "stub") == "red"
    with pytest.raises(RendererError, match="must be one of red, blue"):
        option.check("colour", "green", "stub")


def test_cli_strings_are_converted_and_defaults_filled(monkeypatch):
    r = fake_registry(monkeypatch, FakeEntryPoint("stub", "s:Stub", Stub))
    checked = r.check_options("stub", parse_cli_options(["layers=0,3", "scale=2", "show=off"]))
    assert checked == {"layers": [0, 3], "head": 0, "scale": 2.0, "show": False, "style": "light"}
    assert r.check_options("stub", {"layers": "all"})["layers"] is None  # every block
    assert r.check_options("stub", {"layers": ""})["layers"] == []  # none
    with pytest.raises(RendererError, match="--option expects key=value"):
        parse_cli_options(["layers"])


def test_render_through_the_registry(monkeypatch, tiny_graph, tmp_path):
    monkeypatch.setattr(reg, "registry", fake_registry(monkeypatch, FakeEntryPoint("stub", "s:Stub", Stub)))
    out = tiny_graph.render("stub", tmp_path / "out.txt", head=2)
    assert json.loads(out.read_text())["head"] == 2


def test_show_needs_a_renderer_that_can_display_inline(monkeypatch, tiny_graph):
    class Showing(Stub):
        def show(self, graph, **options):
            shown.append(options)

    shown: list[dict] = []
    monkeypatch.setattr(
        reg,
        "registry",
        fake_registry(
            monkeypatch, FakeEntryPoint("stub", "s:Stub", Stub), FakeEntryPoint("showing", "s:Showing", Showing)
        ),
    )
    in_a_notebook(monkeypatch)
    tiny_graph.show("showing", head=3)
    assert shown == [{"layers": [0], "head": 3, "scale": 1.0, "show": True, "style": "light"}]
    with pytest.raises(RendererError, match="renderer 'stub' cannot display inline"):
        tiny_graph.show("stub")


def test_cli_lists_renderers_with_their_options(capsys):
    assert main(["renderers"]) == 0
    out = capsys.readouterr().out
    assert "svg 0.1.0 (gpt2graph-svg)" in out and "--option layers=<list[int]>" in out
    assert main(["renderers", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["svg"]["suffixes"] == [".svg"]
    assert rows["svg"]["options"]["head"] == {
        "type": "int",
        "default": 0,
        "default_text": "0",
        "help": rows["svg"]["options"]["head"]["help"],
        "choices": None,
        "minimum": 0,
    }


def test_cli_says_each_default_once(capsys):
    """The help says what an option does; the listing adds its default, once (a help text naming a default
    would print it twice)."""
    from gpt2graph.registry import registry

    for name in registry.names():
        for key, option in registry.resolve(name).options.items():
            assert "default" not in option.help.lower() and "unset" not in option.help.lower(), (name, key)
    assert main(["renderers"]) == 0
    for line in capsys.readouterr().out.splitlines():
        assert line.count("default") <= 1, line


def test_cli_unknown_renderer_is_a_clear_error(saved_graph, tmp_path, capsys):
    assert main(["render", str(saved_graph), "-r", "nope", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown renderer 'nope'; installed renderers:" in err and "svg" in err
    assert main(["render", str(saved_graph), "-r", "svg", "-o", str(tmp_path / "x.svg"), "--option", "zoom=2"]) == 2
    assert "valid options: layers (list[int]), head (int)" in capsys.readouterr().err
