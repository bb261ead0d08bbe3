"""Every command that loads a model by name (build, corpus, serve, weights add) takes the same model options,
declared once (``--random-weights``, ``--seed``, ``--revision``), and each reaches the loading of the model: the
corpus's workers load it themselves, and the serve app's model pool loads it for its pages."""

from __future__ import annotations

import pytest

import gpt2graph.loading
from gpt2graph.cli import main, parser

COMMANDS = {
    "build": ["build", "Hi"],
    "corpus": ["corpus", "prompts.txt", "-o", "out.ggc"],
    "serve": ["serve"],
    "weights": ["weights", "add", "gpt2"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_model_command_takes_the_model_options(command):
    args = parser().parse_args([*COMMANDS[command], "--random-weights", "--seed", "3", "--revision", "v1.0"])
    assert (args.random_weights, args.seed, args.revision) == (True, 3, "v1.0")
    defaults = parser().parse_args(COMMANDS[command])
    assert (defaults.random_weights, defaults.seed, defaults.revision) == (False, 0, None)


@pytest.fixture
def loads(monkeypatch) -> list[tuple[str, int, str | None]]:
    """(model, seed, revision) of every model loaded, by any path (each goes through loading._load)."""
    seen: list[tuple[str, int, str | None]] = []
    load = gpt2graph.loading._load

    def recording(model, tokenizer, random_weights, seed, revision):
        seen.append((str(model), seed, revision))
        return load(model, tokenizer, random_weights, seed, revision)

    monkeypatch.setattr(gpt2graph.loading, "_load", recording)
    return seen


def test_build_passes_the_revision_on(tiny_checkpoint, loads, capsys):
    assert main(["build", "Hi", "--model", str(tiny_checkpoint), "--revision", "abc123"]) == 0
    assert loads == [(str(tiny_checkpoint), 0, "abc123")]


def test_corpus_passes_the_revision_to_the_workers(tiny_checkpoint, tmp_path, loads, monkeypatch, capsys):
    import gpt2graph.engine

    specs = []
    worker = gpt2graph.engine.Worker.__init__

    def recording(self, spec, *args, **kwargs):
        specs.append(spec)
        worker(self, spec, *args, **kwargs)

    monkeypatch.setattr(gpt2graph.engine.Worker, "__init__", recording)
    source = tmp_path / "prompts.txt"
    source.write_text("The cat sat\nHello world\n", encoding="utf-8")
    argv = ["corpus", str(source), "-o", str(tmp_path / "s.ggc"), "--model", str(tiny_checkpoint), "--workers", "1"]
    assert main([*argv, "--revision", "abc123", "--seed", "5"]) == 0
    assert loads[0] == (str(tiny_checkpoint), 5, "abc123")
    assert specs and all(s.revision == "abc123" and s.seed == 5 for s in specs)  # what every worker loads


def test_serve_passes_the_revision_to_the_app(tiny_checkpoint, loads, monkeypatch, capsys):
    from gpt2graph_bokeh.app.server import LiveServer

    def run(self):  # instead of serving: load the first model as the first page would
        self.shared.pool.get(0)
        return 0

    monkeypatch.setattr(LiveServer, "run", run)
    assert main(["serve", "--model", str(tiny_checkpoint), "--revision", "abc123", "--no-browser"]) == 0
    assert loads == [(str(tiny_checkpoint), 0, "abc123")]


def test_weights_add_passes_the_revision_on(tiny_checkpoint, loads, capsys):
    assert main(["weights", "add", str(tiny_checkpoint), "--revision", "abc123"]) == 0
    assert loads == [(str(tiny_checkpoint), 0, "abc123")]


@pytest.mark.parametrize("command", ["build", "corpus"])
def test_the_defaults_fallback_is_said_in_one_line(command, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """No pretrained gpt2 here (offline, empty cache): the embedded default stands in (the tiny model here, to
    stay fast), and the command says so in one line."""
    monkeypatch.setattr(gpt2graph.loading, "_embedded_default", lambda seed, tokenizer: _tiny(tiny_checkpoint))
    source = tmp_path / "prompts.txt"
    source.write_text("Hello world\n", encoding="utf-8")
    argv = {
        "build": ["build", "Hi"],
        "corpus": ["corpus", str(source), "-o", str(tmp_path / "s.ggc"), "--workers", "1"],
    }
    assert main(argv[command]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "could not be loaded" in line]
    assert len(said) == 1 and said[0].startswith("warning: pretrained 'gpt2' could not be loaded (")


def _tiny(path):
    return gpt2graph.loading.load_model(str(path))
