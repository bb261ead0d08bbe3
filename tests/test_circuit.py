"""Edge attribution patching and the circuit behind a prediction: the known circuit of the hand-built model,
exact limits of the faithfulness runs, scores equal to the limit of patching one edge, pruning that changes
nothing, export, storage, the CLI, bad input."""

from __future__ import annotations

import dataclasses
import json

import handbuilt as hb
import pytest
import torch
from conftest import PROMPT

import gpt2graph
from gpt2graph.circuit import _outputs, _select, edge_attribution, faithfulness_runs
from gpt2graph.cli import main
from gpt2graph.errors import InterpretError
from gpt2graph.summary import format_summary

OTHER_PROMPT = "Transformer tokens are numbers"
ANSWER, WRONG = " the", " a"


@pytest.fixture(scope="module")
def pair(tiny_checkpoint):
    return (
        gpt2graph.build(PROMPT, model=str(tiny_checkpoint)),
        gpt2graph.build(OTHER_PROMPT, model=str(tiny_checkpoint)),
    )


@pytest.fixture(scope="module")
def scores(pair):
    return edge_attribution(*pair, answer=ANSWER, wrong=WRONG)


@pytest.fixture(scope="module")
def copy_runs(tmp_path_factory):
    return hb.copy_runs(tmp_path_factory.mktemp("handbuilt"))


def test_the_hand_built_circuit_is_the_copy_head_and_its_edge_into_the_logits(copy_runs):
    clean, corrupted = copy_runs
    circuit = clean.circuit(corrupted, answer=hb.ANSWER, wrong=hb.WRONG, top=2)
    copy = f"L{hb.COPY_LAYER}H{hb.COPY_HEAD}"
    assert {(e.source, e.target, e.input) for e in circuit.edges} == {(copy, "logits", None), ("embed", copy, "v")}
    assert [c.id for c in circuit.components] == ["embed", copy, "logits"]
    f = circuit.faithfulness
    assert f.recovered == pytest.approx(1.0, abs=1e-5)
    assert f.ablated_value == pytest.approx(circuit.corrupted_value, abs=1e-5)
    assert circuit.edges[0].score < 0  # corrupting either edge lowers logit(A) - logit(B)
    others = edge_attribution(clean, corrupted, answer=hb.ANSWER, wrong=hb.WRONG).edges()[2:]
    assert max(abs(e.score) for e in others) < 0.1 * abs(circuit.edges[-1].score)  # nothing else matters much


def test_no_edge_clean_is_the_corrupted_run_and_every_edge_clean_is_the_clean_run(scores):
    none, every = faithfulness_runs(scores, [torch.zeros_like(scores.valid), scores.valid.clone()]).tolist()
    assert none == pytest.approx(scores.setup.corrupted_value, abs=1e-5)
    assert every == pytest.approx(scores.setup.clean_value, abs=1e-5)


def test_an_edge_score_is_the_limit_of_ablating_that_edge_alone(pair, scores):
    """Ablating one edge towards its corrupted value by a step eps changes the metric by eps x its score."""
    eps = 1e-3
    clean_out = _outputs(pair[0], scores.writers)
    near = dataclasses.replace(scores, ablated=clean_out + eps * (scores.ablated - clean_out))
    ids = [w.id for w in scores.writers]
    for edge in scores.edges()[:6]:  # the strongest edges, of every kind of reader
        i = ids.index(edge.source)
        j = next(j for j, r in enumerate(scores.readers) if (r.component.id, r.input) == (edge.target, edge.input))
        keep = scores.valid.clone()
        keep[i, j] = False
        change = (float(faithfulness_runs(near, [keep])[0]) - scores.setup.clean_value) / eps
        assert change == pytest.approx(edge.score, rel=0.02, abs=1e-3), edge


def test_edges_run_forward_only(scores, pair):
    d = pair[0].dims
    readers_per_layer = 3 * d.n_head + 1
    assert scores.scores.shape == (1 + d.n_layer * (d.n_head + 1), d.n_layer * readers_per_layer + 1)
    for edge in scores.edges():
        source = next(w for w in scores.writers if w.id == edge.source)
        if edge.target != "logits" and source.layer is not None:
            target_layer = int(edge.target.removeprefix("MLP").split("H")[0].removeprefix("L"))
            assert source.layer < target_layer or (edge.target.startswith("MLP") and source.layer == target_layer)
    assert int(scores.valid.sum()) == len(scores.edges())


@pytest.mark.parametrize("top", [3, 12, 40])
def test_the_circuit_leads_to_the_logits_and_pruning_keeps_its_measured_faithfulness(pair, scores, top):
    clean, corrupted = pair
    circuit = clean.circuit(corrupted, answer=ANSWER, wrong=WRONG, top=top)
    assert top <= len(circuit.edges) <= circuit.n_selected
    for edge in circuit.edges:  # every kept edge leads to the logits, and its writer is fed by the circuit
        assert edge.target == "logits" or any(x.source == edge.target for x in circuit.edges)
        assert edge.source == "embed" or any(x.target == edge.source for x in circuit.edges)
    keep = torch.zeros_like(scores.valid)
    for i, j in _select(scores, top, None):
        keep[i, j] = True
    unpruned = float(faithfulness_runs(scores, [keep])[0])
    assert circuit.faithfulness.circuit_value == pytest.approx(unpruned, abs=1e-5)
    assert [abs(e.score) for e in circuit.edges] == sorted((abs(e.score) for e in circuit.edges), reverse=True)


def test_a_threshold_mean_ablation_and_the_networkx_export(pair):
    clean, corrupted = pair
    circuit = clean.circuit(corrupted, answer=ANSWER, wrong=WRONG, threshold=0.2, ablation="mean")
    assert circuit.threshold == 0.2 and circuit.top is None and circuit.faithfulness.ablation == "mean"
    assert all(abs(e.score) >= 0.2 for e in circuit.edges)
    g = circuit.to_networkx()
    for e in circuit.edges:
        target = f"{e.target}.{e.input}" if e.input else e.target
        assert g.edges[e.source, target]["score"] == e.score
        if e.input:
            assert g.has_edge(target, e.target)
    assert g.graph["faithfulness"]["ablation"] == "mean"


def test_a_mean_source_ablates_like_the_positional_mean_it_returns(pair):
    clean, corrupted = pair

    class PositionalMean:
        def mean(self, kind, layer, head=None, position=None):
            whole = clean.hook(kind, layer)
            return (whole[:, head] if head is not None else whole).mean(0)

    by_source = clean.circuit(corrupted, answer=ANSWER, wrong=WRONG, top=8, ablation=PositionalMean())
    by_mean = clean.circuit(corrupted, answer=ANSWER, wrong=WRONG, top=8, ablation="mean")
    assert by_source.faithfulness.ablation == "prompts"
    assert by_source.edges == by_mean.edges
    assert by_source.faithfulness.circuit_value == pytest.approx(by_mean.faithfulness.circuit_value, abs=1e-6)


def test_corpus_means_ablate_the_edges_outside_the_circuit(pair, corpus_path):
    clean, corrupted = pair
    circuit = clean.circuit(corrupted, answer=ANSWER, wrong=WRONG, top=6, ablation=str(corpus_path))
    assert circuit.faithfulness.ablation == "prompts" and len(circuit.edges) >= 6
    stats = gpt2graph.load_corpus(corpus_path)
    e = edge_attribution(clean, corrupted, answer=ANSWER, wrong=WRONG, ablation=stats)
    torch.testing.assert_close(e.ablated[0, 2], stats.mean("input_embedding", None, None, 2))  # the embedding's mean


def test_the_circuit_is_stored_and_saved(pair, tmp_path):
    clean, corrupted = pair
    circuit = clean.circuit(corrupted, answer=ANSWER, wrong=WRONG, top=5)
    assert clean.header.circuit == circuit
    clean.save(tmp_path / "c.gg")
    assert gpt2graph.load(tmp_path / "c.gg").header.circuit == circuit
    assert "circuit      5 edges against 'Transformer tokens are numbers'" in format_summary(clean.summary())


@pytest.mark.parametrize(
    ("options", "message"),
    [({}, "exactly one of top"), ({"top": 3, "threshold": 0.1}, "exactly one of top"), ({"top": 0}, "positive number"),
     ({"threshold": -1.0}, "threshold must be"), ({"top": 3, "ablation": "zero"}, "unknown ablation 'zero'")],
)  # fmt: skip
def test_bad_circuit_arguments_are_clear_errors(pair, options, message):
    with pytest.raises(InterpretError, match=message):
        pair[0].circuit(pair[1], answer=ANSWER, wrong=WRONG, **options)


def test_cli_circuit(pair, tmp_path, capsys):
    clean, corrupted = pair
    clean.save(tmp_path / "clean.gg")
    argv = ["circuit", str(tmp_path / "clean.gg"), OTHER_PROMPT, "--answer", ANSWER, "--wrong", WRONG, "--top", "6"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["top"] == 6 and {"edges", "components", "faithfulness"} <= set(data)
    assert main([*argv, "-o", str(tmp_path / "out.gg")]) == 0
    text = capsys.readouterr().out
    assert "circuit:" in text and "recovered" in text and "->" in text
    assert gpt2graph.load(tmp_path / "out.gg").header.circuit.top == 6
