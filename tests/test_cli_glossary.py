"""The `gpt2graph glossary`, `gpt2graph validate` and `gpt2graph schema` commands, run through the CLI's main()."""

from __future__ import annotations

from gpt2graph.cli import main
from gpt2graph.glossary import builtin_glossary, data_dir

BAD = """\
glossary:
  - id: my-term
    term: My term
    summary: One.
    body: Two.
    see_also: [no-such-entry]
annotations:
  - id: my-note
    title: A note
    body: "{n_token} tokens"
    targets:
      - kind: attn_pattern
        layer: 7
"""


def test_glossary_lists_every_term(capsys):
    assert main(["glossary"]) == 0
    out = capsys.readouterr().out
    assert "residual-stream" in out and "Residual stream" in out and "induction-head" in out
    assert f"\n{len(builtin_glossary())} entries; " in out


def test_glossary_prints_one_entry(capsys):
    assert main(["glossary", "residual-stream"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Residual stream\n===============\nid: residual-stream\n")
    for part in (
        "also: residual",
        "running d_model-dimensional vector",
        "See also:",
        "Sources:",
        "https://transformer-circuits.pub/2021/framework/index.html",
        "Applies to:",
        "category residual",
    ):
        assert part in out


def test_glossary_finds_terms_and_aliases_ignoring_case(capsys):
    assert main(["glossary", "W_q"]) == 0
    assert capsys.readouterr().out.startswith("Query\n")


def test_unknown_term_suggests_close_matches(capsys):
    assert main(["glossary", "residul stream"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("no glossary entry 'residul stream'; did you mean: residual-stream")


def test_validate_lists_every_problem(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{path}:10:5: annotations[0].body: unknown template field {{n_token}} (did you mean 'n_tokens'?); known: "
        "{n_tokens}, {n_layer}, {n_head}, {d_model}, {d_head}, {d_mlp}, {n_ctx}, {n_vocab}, {n_params}, {model}",
        f"{path}:6:16: glossary[0].see_also[0]: unknown glossary id 'no-such-entry'",
    ]


def test_validate_against_a_saved_graph(tmp_path, saved_graph, capsys):
    path = tmp_path / "heads.yaml"
    path.write_text(
        BAD.replace('"{n_token} tokens"', '"{n_tokens} tokens"').replace("[no-such-entry]", "[]"), encoding="utf-8"
    )
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == "ok: 1 file valid\n"
    assert main(["validate", str(path), "--graph", str(saved_graph)]) == 1
    assert capsys.readouterr().out == (
        f"{path}:13:9: annotations[0].targets[0].layer: layer 7 is out of range: this graph has layers 0..1\n"
    )


def test_validate_an_unreadable_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1
    assert capsys.readouterr().out == f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory\n"


def test_validate_the_builtin_files(capsys):
    builtin = sorted(str(p) for p in data_dir().rglob("*.yaml"))
    assert main(["validate", *builtin]) == 0
    assert capsys.readouterr().out == f"ok: {len(builtin)} files valid\n"


def test_schema_check(capsys):
    assert main(["schema", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
