"""Counterfactual runs: graph.intervene() gives a run of its own, verifiable, savable, renderable, that records
what it changed; baselines (zero, positional mean, another run, means over prompts); every bad input refused."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import PROMPT, make_checkpoint

import gpt2graph
from gpt2graph import forward
from gpt2graph.baselines import GraphMeans
from gpt2graph.errors import NodeNotFoundError, RunMismatchError
from gpt2graph.forward import Intervention, InterventionError
from gpt2graph.summary import format_summary

HEAD = "blocks.1.attn.hook_result[4,0]"  # head 0 of layer 1 at the last position
OTHER_PROMPT = "Transformer tokens are numbers"


@pytest.fixture(scope="module")
def other(tiny_checkpoint):
    return gpt2graph.build(OTHER_PROMPT, model=str(tiny_checkpoint))


@pytest.fixture(scope="module")
def ablated(tiny_graph):
    return tiny_graph.intervene({HEAD: "zero", "blocks.0.hook_mlp_out[2]": "mean"})


def _executor(graph, edits):
    with torch.no_grad():
        return forward.run(
            graph.store.stacked, graph.dims, torch.tensor(graph.tokenization.token_ids), interventions=edits
        )


def test_a_counterfactual_is_a_new_run_with_values_of_its_own(tiny_graph, ablated):
    assert ablated is not tiny_graph and ablated.store is not tiny_graph.store
    assert tiny_graph.counterfactual is None  # the run intervened on is untouched
    assert torch.equal(ablated.values(HEAD), torch.zeros(tiny_graph.dims.d_model))
    mean = tiny_graph.hook("mlp_out", 0).mean(0)
    torch.testing.assert_close(ablated.values("blocks.0.hook_mlp_out[2]"), mean)
    # downstream of the replaced nodes everything moved, upstream nothing
    assert not torch.allclose(ablated.hook("resid_pre", 1)[2], tiny_graph.hook("resid_pre", 1)[2])
    torch.testing.assert_close(ablated.hook("attn_out", 0), tiny_graph.hook("attn_out", 0))
    torch.testing.assert_close(ablated.logits[:2], tiny_graph.logits[:2], rtol=0, atol=1e-5)
    assert not torch.allclose(ablated.logits[-1], tiny_graph.logits[-1])
    expected = _executor(
        tiny_graph,
        [Intervention("head_out", 1, 0, 4, value=torch.zeros(tiny_graph.dims.d_model)),
         Intervention("mlp_out", 0, None, 2, value=mean)],
    ).logits[0]  # fmt: skip
    torch.testing.assert_close(ablated.logits, expected, rtol=0, atol=1e-5)


def test_the_header_records_what_was_changed(tiny_graph, ablated):
    cf = ablated.counterfactual
    assert cf.base_created == tiny_graph.header.created
    head, mlp = cf.interventions
    assert (head.node, head.kind, head.layer, head.head, head.position, head.baseline) == (
        HEAD,
        "head_out",
        1,
        0,
        4,
        "zero",
    )
    assert head.norm_before == pytest.approx(float(tiny_graph.values(HEAD).norm()), rel=1e-6) and head.norm_after == 0
    assert (mlp.baseline, mlp.position) == ("mean", 2)
    assert ablated.analysis is None and ablated.header.patching == []
    text = format_summary(ablated.summary())
    assert "replaced     2 vectors: a counterfactual run" in text and f"{HEAD}" in text


def test_a_counterfactual_verifies_in_both_modes_and_says_against_what(ablated):
    for mode in ("batched", "vector"):
        report = ablated.verify(mode)
        assert report.ok, report.format()
        assert report.reference == "counterfactual" and report.kinds["replaced"].vectors == 2
    assert "counterfactual run" in ablated.verify().format()


def test_verify_fails_when_a_replaced_value_sits_at_the_wrong_node(tiny_graph, ablated):
    """Re-execution with the same (misplaced) replacement would agree with itself: the replaced nodes are checked
    against their recorded values through the graph's own indexing."""
    misplaced = tiny_graph.intervene({"blocks.1.attn.hook_result[4,1]": "zero"})
    misplaced.header.counterfactual.interventions[0].__dict__["head"] = 0  # the record claims head 0
    assert not misplaced.verify().ok and not misplaced.verify("vector").ok
    tampered = tiny_graph.intervene({HEAD: "zero"})
    tampered.store.activations["blocks.1.hook_mlp_out"][4, 0] += 1e-2
    assert not tampered.verify().ok


def test_saved_and_loaded_it_keeps_its_record_and_verifies(ablated, tmp_path):
    path = tmp_path / "ablated.gg"
    ablated.save(path)
    header = json.loads((path / "graph.json").read_text())
    assert [i["node"] for i in header["counterfactual"]["interventions"]] == [HEAD, "blocks.0.hook_mlp_out[2]"]
    loaded = gpt2graph.load(path)
    assert loaded.counterfactual == ablated.counterfactual
    assert loaded.verify().ok
    torch.testing.assert_close(loaded.logits, ablated.logits, rtol=0, atol=0)


def test_a_replaced_derived_vector_is_stored_and_read_back(tiny_graph, other, tmp_path):
    """A pattern row or LayerNorm scale replaced cannot be derived from q, k or the stream again: stored."""
    row = "blocks.1.attn.hook_pattern[2,3]"
    cf = tiny_graph.intervene({row: other, "blocks.0.ln1.hook_scale[1]": torch.tensor([2.0])})
    torch.testing.assert_close(cf.values(row), other.values(row))
    torch.testing.assert_close(cf.pattern(1, 2)[3, :4], other.values(row))
    assert cf.values("blocks.0.ln1.hook_scale[1]").item() == 2.0
    assert cf.verify().ok and cf.verify("vector").ok
    cf.save(tmp_path / "cf.gg")
    loaded = gpt2graph.load(tmp_path / "cf.gg")
    torch.testing.assert_close(loaded.values(row), other.values(row))
    assert loaded.verify().ok


def test_a_node_patched_from_another_run_and_a_counterfactual_of_a_counterfactual(tiny_graph, other, ablated):
    patched = tiny_graph.intervene({"blocks.1.hook_resid_pre[4]": other})
    torch.testing.assert_close(patched.values("blocks.1.hook_resid_pre[4]"), other.values("blocks.1.hook_resid_pre[4]"))
    record = patched.counterfactual.interventions[0]
    assert record.baseline == "graph" and OTHER_PROMPT in record.source
    twice = ablated.intervene({"hook_embed[0]": "zero"})
    assert [i.node for i in twice.counterfactual.interventions] == [HEAD, "blocks.0.hook_mlp_out[2]", "hook_embed[0]"]
    assert torch.equal(twice.values(HEAD), torch.zeros(tiny_graph.dims.d_model))  # the earlier ones still hold
    assert twice.verify().ok


def test_means_over_a_set_of_prompts(tiny_graph, other, tiny_checkpoint):
    third = gpt2graph.build("Vectors are tokens of transformers", model=str(tiny_checkpoint))
    means = GraphMeans([tiny_graph, other, third])
    z = "blocks.0.attn.hook_z[3,2]"
    expected = torch.stack([g.values(z) for g in (tiny_graph, other, third)]).mean(0)
    torch.testing.assert_close(means.mean("z", 0, 2, 3), expected)
    everywhere = torch.cat([g.hook("z", 0)[:, 2] for g in (tiny_graph, other, third)]).mean(0)
    torch.testing.assert_close(means.mean("z", 0, 2), everywhere)
    beyond = means.mean("resid_pre", 1, None, 5)  # only the longest run has position 5
    torch.testing.assert_close(beyond, third.values("blocks.1.hook_resid_pre[5]"))
    cf = tiny_graph.intervene({z: means})
    torch.testing.assert_close(cf.values(z), expected)
    assert cf.counterfactual.interventions[0].baseline == "prompts"
    assert "mean over 3 prompts" in cf.counterfactual.interventions[0].source


def test_any_object_with_a_mean_method_is_a_mean_source(tiny_graph):
    class Constant:
        def __init__(self):
            self.asked = []

        def mean(self, kind, layer, head=None, position=None):
            self.asked.append((kind, layer, head, position))
            return torch.full((tiny_graph.dims.d_model,), 0.25)

    source = Constant()
    cf = tiny_graph.intervene({"blocks.0.hook_attn_out[1]": source})
    assert source.asked == [("attn_out", 0, None, 1)]
    assert torch.equal(cf.values("blocks.0.hook_attn_out[1]"), torch.full((tiny_graph.dims.d_model,), 0.25))


def test_a_counterfactual_renders(ablated, tmp_path):
    for renderer, suffix in (("svg", ".svg"), ("bokeh", ".html")):
        path = ablated.render(renderer, tmp_path / f"cf{suffix}")
        assert path.stat().st_size > 1000


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"blocks.9.hook_resid_pre[0]": "zero"}, NodeNotFoundError, "no node"),
        ({HEAD: torch.zeros(5)}, InterventionError, r"shape \(5,\) does not fit .*has shape \(32,\)"),
        ({"tokens[0]": "zero"}, InterventionError, "token id"),
        ({"decode.probs[4]": "zero"}, InterventionError, "decoding stage"),
        ({"blocks.0.attn.W_Q[1]": "zero"}, InterventionError, "is a parameter"),
        ({"op:blocks.0.hook_mlp_out[1]": "zero"}, InterventionError, "is an operation"),
        ({"blocks.0.attn.hook_pattern[1,3]": "mean"}, InterventionError, "no mean over positions"),
        ({HEAD: "median"}, InterventionError, "cannot intervene with str 'median'"),
        ({HEAD: 3.0}, InterventionError, "cannot intervene with float"),
        ({}, InterventionError, "non-empty mapping"),
    ],
)
def test_bad_interventions_are_clear_errors(tiny_graph, changes, error, message):
    with pytest.raises(error, match=message):
        tiny_graph.intervene(changes)


def test_a_run_of_another_model_or_length_is_refused(tiny_graph, tmp_path, tiny_checkpoint):
    reseeded = gpt2graph.build(PROMPT, model=str(make_checkpoint(tmp_path / "seed1", seed=1)))
    with pytest.raises(RunMismatchError, match="another model.*parameter .* differs"):
        tiny_graph.intervene({HEAD: reseeded})
    smaller = gpt2graph.build(PROMPT, model=str(make_checkpoint(tmp_path / "one-layer", n_layer=1)))
    with pytest.raises(RunMismatchError, match="another model.*n_layer 1 vs 2"):
        tiny_graph.intervene({HEAD: smaller})
    longer = gpt2graph.build(PROMPT + " and more", model=str(tiny_checkpoint))
    with pytest.raises(RunMismatchError, match=r"has 7 tokens, 2 more than the 5 of this run"):
        tiny_graph.intervene({HEAD: longer})
    with pytest.raises(RunMismatchError, match="another model"):
        GraphMeans([tiny_graph, reseeded])


def test_corpus_statistics_are_a_mean_over_prompts(tiny_graph, corpus_path, tmp_path):
    from gpt2graph.corpus import CorpusError

    stats = gpt2graph.load_corpus(corpus_path)
    node = "blocks.1.attn.hook_z[3,2]"
    for source in (stats, str(corpus_path), corpus_path):
        cf = tiny_graph.intervene({node: source})
        torch.testing.assert_close(cf.values(node), stats.mean("z", 1, 2, 3))
        assert cf.counterfactual.interventions[0].baseline == "prompts"
        assert "CorpusStats" in cf.counterfactual.interventions[0].source
        assert cf.verify().ok
    reseeded = gpt2graph.build(PROMPT, model=str(make_checkpoint(tmp_path / "seed1", seed=1)))
    with pytest.raises(CorpusError, match="another model"):
        reseeded.intervene({node: stats})
