"""A newcomer's first hour: advice in errors works and is spelt for the interface it is read in, show() shows,
results print short summaries, re-analysing keeps what was not changed, every argument has help, long token
lists wrap, and the schemas can be written where a user wants them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import webbrowser
from pathlib import Path

import pytest
from conftest import PROMPT, in_a_notebook

import gpt2graph
from gpt2graph.cli import FLAGS, cli_spelling, main, parser
from gpt2graph.errors import Gpt2GraphError, ModelLoadError
from gpt2graph.schemagen import SCHEMAS


# ---- advice that works, in the interface's own words ------------------------------------------------------------
def test_offline_gpt2_error_advises_random_weights_in_each_interface(capfd):
    with pytest.raises(ModelLoadError) as caught:
        gpt2graph.build("Hi", model="gpt2")
    assert str(caught.value).endswith("with random weights: random_weights=True")
    assert main(["build", "Hi", "--model", "gpt2"]) == 2
    assert capfd.readouterr().err.rstrip().endswith("with random weights: --random-weights")
    # ... and the advice works, offline
    assert main(["build", "Hi", "--model", "gpt2", "--random-weights"]) == 0
    assert "RANDOM (seed 0)" in capfd.readouterr().out


def test_random_weights_advice_is_given_only_where_it_works():
    """A hub id outside the GPT-2 family has no embedded architecture: random weights would need its config
    from the network, so they are not advised."""
    with pytest.raises(ModelLoadError) as caught:
        gpt2graph.build("Hi", model="someone/gpt2-finetune")
    assert "random" not in str(caught.value) and "GPT-2 family id" in str(caught.value)


def test_every_advised_argument_has_a_flag():
    error = Gpt2GraphError(
        "use {top_tokens} or {random_weights}", arguments={"top_tokens": None, "random_weights": True}
    )
    assert str(error) == "use top_tokens or random_weights=True"
    assert error.spelt(cli_spelling) == "use --top-tokens or --random-weights"
    flags = {opt for action in _actions(parser()) for opt in action.option_strings}
    assert set(FLAGS.values()) <= flags


# ---- the command line -----------------------------------------------------------------------------------------
def _actions(p: argparse.ArgumentParser):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        else:
            yield action


def test_every_argument_has_help():
    missing = [a.dest for a in _actions(parser()) if not a.help and not isinstance(a, argparse._HelpAction)]
    assert missing == []


@pytest.mark.slow
def test_python_dash_m_is_the_command_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "gpt2graph", "--version"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert run.stdout == f"gpt2graph {gpt2graph.__version__}\n"


def test_analyze_keeps_what_was_not_changed(analysed_graph, tmp_path, capsys):
    path = tmp_path / "run.gg"
    analysed_graph.save(path)  # analysed with a target and an induction probe
    assert main(["analyze", str(path), "--position", "2", "--no-lens"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kept from the earlier analysis: --target ' the', --induction-probe 5 (--fresh starts")
    options = gpt2graph.load(path).analysis.options
    assert (options.position, options.target, options.induction_probe, options.lens_kinds) == (2, " the", 5, [])
    assert main(["analyze", str(path), "--fresh", "--no-lens"]) == 0
    assert "kept" not in capsys.readouterr().out
    options = gpt2graph.load(path).analysis.options
    assert (options.position, options.target, options.induction_probe) == (-1, None, None)


def test_info_wraps_a_long_token_list(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    path = tmp_path / "long.gg"
    gpt2graph.build(" word" * 60, model=str(tiny_checkpoint)).save(path)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("tokens "))
    last = next(i for i, line in enumerate(lines) if line.startswith("graph "))
    assert last - first > 5 and all(len(line) <= 80 for line in lines[first:last])
    assert lines[first + 1].startswith(" " * 13 + "Ġword (")  # continued under the first token


# ---- show -------------------------------------------------------------------------------------------------------
def test_show_outside_a_notebook_opens_the_browser(tiny_graph, monkeypatch):
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    page = tiny_graph.show()
    assert opened == [page.as_uri()] and page.suffix == ".html"
    assert "Bokeh" in page.read_text()[:20000]
    poster = tiny_graph.show("svg", layers=[1])
    assert opened[-1] == poster.as_uri() and "<svg" in poster.read_text()[:200]


def test_show_without_a_browser_says_where_the_file_is(tiny_graph, monkeypatch):
    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    with pytest.warns(UserWarning, match="no web browser could be opened: the svg rendering is at "):
        path = tiny_graph.show("svg")
    assert path.exists()


def test_show_in_a_notebook_is_inline(tiny_graph, monkeypatch):
    displayed = in_a_notebook(monkeypatch)
    monkeypatch.setattr(webbrowser, "open", lambda url: pytest.fail("a notebook opened a browser"))
    assert tiny_graph.show("svg", layers=[0]) is None
    ((kind, data),) = displayed
    assert kind == "svg" and b"<svg" in data[:200]


# ---- results print short summaries ---------------------------------------------------------------------------
def test_results_print_short_summaries(analysed_graph):
    a = analysed_graph.analysis
    for result in (a, a.options, a.lens, a.dla, a.roles, a.circuits, a.decoding, a.dla.contributions[0]):
        assert len(repr(result)) < 1200 and str(result) == repr(result), type(result).__name__
    assert "contributions=[" in repr(a.dla) and " x Attribution]" in repr(a.dla)
    assert repr(analysed_graph.verify()).startswith("<VerifyReport PASS: ")
    assert len(repr(analysed_graph.cache())) < 200


# ---- schemas ----------------------------------------------------------------------------------------------------
def test_schema_writes_into_a_given_directory_and_the_documented_line_works(tmp_path, capsys):
    """The annotation manual's recipe: write the schemas next to your YAML files; its $schema line then names a
    file that is there, and that file validates the example."""
    import jsonschema
    import yaml

    assert main(["schema", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SCHEMAS)
    assert main(["schema", "--check", str(tmp_path)]) == 0
    example = Path(__file__).parent / "data" / "valid" / "induction-head-5-1.yaml"
    text = "# yaml-language-server: $schema=data.schema.json\n" + example.read_text().split("\n", 1)[1]
    (tmp_path / "my-heads.yaml").write_text(text)
    first = text.splitlines()[0]
    schema = tmp_path / first.split("$schema=")[1]
    jsonschema.validate(yaml.safe_load(text), json.loads(schema.read_text()))


def test_schema_never_writes_into_an_installed_package(monkeypatch, capsys):
    from gpt2graph import schemagen

    monkeypatch.setattr(schemagen, "checkout", lambda: None)
    assert main(["schema"]) == 2
    assert "is installed, not run from a checkout" in capsys.readouterr().err
    assert main(["schema", "--check"]) == 0  # checking is reading


def test_the_prompt_may_be_token_ids(tiny_checkpoint, tiny_graph):
    g = gpt2graph.build(tiny_graph.tokenization.token_ids, model=str(tiny_checkpoint))
    assert g.tokenization.text == PROMPT and (g.logits == tiny_graph.logits).all()
    with pytest.raises(gpt2graph.Gpt2GraphError, match="token id 60000 is outside"):
        gpt2graph.build([60000], model=str(tiny_checkpoint))
