"""The analysis lives on the graph: stored by build/analyze, saved and loaded with it, printed by ``info``,
exported to networkx, and validated by the JSON Schema."""

import json

import jsonschema
import pytest

from gpt2graph.cli import main
from gpt2graph.errors import GraphFileError
from gpt2graph.schemagen import SCHEMA_DIR
from gpt2graph.storage import load


@pytest.fixture(scope="module")
def analysed(analysed_graph, tmp_path_factory):
    path = tmp_path_factory.mktemp("analysed") / "run.gg"
    analysed_graph.save(path)
    return analysed_graph, path


def test_build_stores_the_analysis_and_save_keeps_it(analysed):
    graph, path = analysed
    assert graph.analysis is not None and graph.analysis.options.target == " the"
    loaded = load(path)
    assert loaded.analysis == graph.analysis
    assert loaded.lens.entries == graph.lens.entries  # the stream's arrays from values.safetensors, the rest read
    node = "blocks.1.attn.hook_result[4,2]"
    assert loaded.lens.entry(node) == graph.lens.entry(node) and loaded.lens.entry("nope") is None


def test_the_lens_arrays_are_stored_as_tensors_not_json(analysed):
    _, path = analysed
    header = json.loads((path / "graph.json").read_text(encoding="utf-8"))
    lens = header["analysis"]["lens"]
    assert set(lens) == {"top_tokens", "target", "kinds", "stored_kinds", "n_entries"}
    assert lens["stored_kinds"] == ["input_embedding", "resid_pre", "resid_mid", "resid_post", "b_O"]
    from safetensors import safe_open

    with safe_open(str(path / "values.safetensors"), framework="pt") as f:
        top = f.get_tensor("lens/top_ids")
    n, L = 5, 2  # tokens, layers: the stream entering each block, between its sublayers, and leaving the last
    assert top.shape == ((2 * L + 1) * n + L, 5)


def test_a_lens_header_that_does_not_match_its_arrays_is_refused(analysed, tmp_path):
    import shutil

    _, path = analysed
    bad = tmp_path / "bad.gg"
    shutil.copytree(path, bad)
    header = json.loads((bad / "graph.json").read_text(encoding="utf-8"))
    header["analysis"]["lens"]["n_entries"] -= 1
    (bad / "graph.json").write_text(json.dumps(header), encoding="utf-8")
    with pytest.raises(GraphFileError, match=r"records \d+ entries, but its kinds read \d+"):
        load(bad)
    header["analysis"]["lens"]["n_entries"] += 1
    header["analysis"]["lens"]["stored_kinds"] = header["analysis"]["lens"]["kinds"]  # more rows than stored
    (bad / "graph.json").write_text(json.dumps(header), encoding="utf-8")
    with pytest.raises(GraphFileError, match=r"logit-lens array \w+ has shape"):
        load(bad)
    header["analysis"]["lens"]["stored_kinds"] = ["resid_post"]
    (bad / "graph.json").write_text(json.dumps(header), encoding="utf-8")
    with pytest.raises(GraphFileError, match=r"stored_kinds \['resid_post'\] must be the eager kinds"):
        load(bad)


def test_the_saved_header_matches_the_schema(analysed):
    _, path = analysed
    schema = json.loads((SCHEMA_DIR / "graph.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(json.loads((path / "graph.json").read_text(encoding="utf-8")), schema)


def test_info_prints_dla_and_head_roles(analysed, capsys):
    _, path = analysed
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "DLA          logit 'Ġthe' at position 4" in out and "head roles" in out and "induction" in out


def test_networkx_carries_lens_dla_and_roles(analysed):
    graph, _ = analysed
    g = graph.to_networkx()
    head = g.nodes["blocks.1.attn.hook_result[4,2]"]
    assert len(head["lens_top"]) == 5 and "dla" in head and "role_previous_token" in head
    assert "ov_copying_score" in g.nodes["blocks.1.attn.W_Q[2]"]
    assert g.graph["decoding"]["greedy"] is True


def test_cli_analyze_updates_a_saved_graph(tiny_graph, tmp_path, capsys):
    path = tmp_path / "plain.gg"
    tiny_graph.save(path)
    assert load(path).analysis is None
    assert (
        main(
            [
                "analyze",
                str(path),
                "--target",
                " the",
                "--contrast",
                " a",
                "--no-lens",
                "--top-p",
                "0.9",
                "--sample-seed",
                "1",
            ]
        )
        == 0
    )
    analysis = load(path).analysis
    assert analysis.lens is None and analysis.dla.metric == "logit_difference" and not analysis.decoding.greedy
    assert main(["analyze", str(path), "--top-p", "1.5"]) == 2
    assert "argument --top-p: must be in (0, 1]" in capsys.readouterr().err


def test_any_analysis_option_makes_build_analyse(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "run.gg"
    assert (
        main(
            [
                "build",
                "Transformer tokens are vectors",
                "--model",
                str(tiny_checkpoint),
                "-o",
                str(out),
                "--target-id",
                "262",
                "--no-lens",
            ]
        )
        == 0
    )
    analysis = load(out).analysis
    assert analysis is not None and analysis.dla.token_id == 262 and analysis.lens is None
    assert analysis.options.temperature == 1.0 and analysis.options.position == -1  # defaults kept
    plain = tmp_path / "plain.gg"
    assert main(["build", "Transformer tokens", "--model", str(tiny_checkpoint), "-o", str(plain)]) == 0
    assert load(plain).analysis is None
    defaults = tmp_path / "defaults.gg"
    assert main(["build", "Transformer tokens", "--model", str(tiny_checkpoint), "-o", str(defaults), "--analyze"]) == 0
    assert load(defaults).analysis is not None  # --analyze alone analyses, with every default


def test_a_token_given_twice_is_refused(tiny_checkpoint, capsys):
    assert main(["build", "Hi", "--model", str(tiny_checkpoint), "--target", " the", "--target-id", "262"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
