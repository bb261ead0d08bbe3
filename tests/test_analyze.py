"""``analyze``: the bundle of every result, its JSON round trip and schema, and argument checking up front."""

import json

import pytest

from gpt2graph.analyze import compute
from gpt2graph.errors import InterpretError
from gpt2graph.results import Analysis


@pytest.fixture(scope="module")
def computed(tiny_graph):
    return compute(
        tiny_graph,
        target=" the",
        contrast=" a",
        top_tokens=3,
        temperature=0.8,
        top_k=50,
        top_p=0.9,
        seed=4,
        induction_probe=6,
    )


@pytest.fixture(scope="module")
def analysis(computed):
    return computed[0]


def test_every_part_is_computed_with_the_options(tiny_graph, analysis, computed):
    assert analysis.options.target == " the" and analysis.options.induction_probe == 6
    assert analysis.dla.token == "Ġthe" and analysis.dla.metric == "logit_difference"
    lens = computed[1]
    assert lens.header == analysis.lens and analysis.lens.target == analysis.dla.token_id
    assert all(len(e.top) == 3 for e in lens.entries)
    assert tiny_graph.analysis is None  # compute leaves the graph alone
    assert analysis.roles.source == "probe"
    assert analysis.circuits.input_token_id == tiny_graph.tokenization.token_ids[-1]
    assert [s.kind for s in analysis.decoding.steps] == ["softmax", "temperature", "top_k", "top_p"]


def test_json_round_trip_keeps_everything_but_the_lens_arrays(analysis, computed):
    text = analysis.model_dump_json()
    back = Analysis.model_validate_json(text)
    assert back.model_dump() == analysis.model_dump()
    assert json.loads(text)["dla"]["contributions"][0]["kind"] == "token_embedding"
    assert "entries" not in json.loads(text)["lens"] and back.lens.n_entries == len(computed[1].entries)
    assert not hasattr(back.lens, "entries")  # they stay with the run (graph.lens), saved in values.safetensors


def test_the_schema_documents_every_field():
    schema = Analysis.model_json_schema()
    for name, definition in [("Analysis", schema), *schema["$defs"].items()]:
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
        if "properties" in definition:
            assert definition.get("additionalProperties") is False, name


def test_the_lens_can_be_skipped_or_restricted(tiny_graph):
    analysis, table = compute(tiny_graph, lens=False)
    assert analysis.lens is None and table is None
    only, table = compute(tiny_graph, lens=["mlp_out"])
    assert {e.kind for e in table.entries} == {"mlp_out"} and only.options.lens_kinds == ["mlp_out"]
    assert only.lens.stored_kinds == []  # what components write is read when asked for


def test_analyze_stores_the_results_and_the_lens_on_the_run(tiny_checkpoint):
    from conftest import PROMPT

    import gpt2graph
    from gpt2graph.analyze import analyze

    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    view = graph.subgraph(layers=[0])
    result = analyze(view, lens=["resid_post"])
    assert graph.analysis is result and graph.lens is view.lens and graph.lens.header == result.lens


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(target="not one token"), "target 'not one token' is not a single token"),
        (dict(contrast=10**6), "contrast id 1000000 is outside the vocabulary"),
        (dict(position=-6), "position -6 is out of range for a 5-token prompt"),
        (dict(top_p=0.0), r"top-p must be in \(0, 1\]"),
        (dict(temperature=0), "temperature must be a finite number > 0"),
        (dict(top_tokens=0), "top_tokens must be a positive integer"),
        (dict(lens=["logits"]), "unknown logit-lens kind"),
        (dict(circuit_token="two tokens"), "circuit token"),
        (dict(induction_probe=0), "induction_probe must be a positive number"),
        (dict(induction_probe=40), "more than n_ctx = 64"),
    ],
)
def test_bad_arguments_fail_before_any_work(tiny_graph, options, message):
    with pytest.raises(InterpretError, match=message):
        compute(tiny_graph, **options)
