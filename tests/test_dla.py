"""Direct logit attribution: the contributions add up to the model's own logit (and logit difference)."""

import pytest
import torch
from conftest import PROMPT, TINY, make_checkpoint

import gpt2graph
from gpt2graph.dla import TOLERANCE, AttributionError, direct_logit_attribution
from gpt2graph.errors import InterpretError
from gpt2graph.graph import Graph
from gpt2graph.values import Values


@pytest.fixture(scope="module")
def large_logit_graph(tmp_path_factory):
    """Weights 50x larger than GPT-2's init, so logits reach tens as with trained weights."""
    path = make_checkpoint(tmp_path_factory.mktemp("dla") / "big", seed=3, default_init=True, initializer_range=1.0)
    return gpt2graph.build(PROMPT, model=str(path))


@pytest.mark.parametrize("position", [0, 2, -1])
def test_contributions_sum_to_the_models_logit(tiny_graph, position):
    dla = direct_logit_attribution(tiny_graph, position=position)
    p = position % tiny_graph.n_tokens
    assert dla.position == p and dla.token_id == int(tiny_graph.logits[p].argmax())
    assert dla.model_value == pytest.approx(float(tiny_graph.logits[p].max()))
    total = sum(a.contribution for a in dla.contributions)
    assert abs(total - dla.model_value) < 1e-4 and dla.residual_error == pytest.approx(dla.model_value - total)
    L, H = TINY["n_layer"], TINY["n_head"]
    assert len(dla.contributions) == 2 + L * (H + 3) + 1
    kinds = [a.kind for a in dla.contributions]
    assert kinds[:2] == ["token_embedding", "pos_embedding"] and kinds[-1] == "ln_final_b"


def test_large_logits_still_sum_exactly(large_logit_graph):
    g = large_logit_graph
    assert float(g.logits.abs().max()) > 10
    for p in range(g.n_tokens):
        dla = direct_logit_attribution(g, position=p, token=int(g.logits[p].argmin()))
        assert abs(dla.residual_error) < TOLERANCE


def test_logit_difference(tiny_graph):
    diff = direct_logit_attribution(tiny_graph, token=" the", contrast=" a")
    the = direct_logit_attribution(tiny_graph, token=" the")
    a = direct_logit_attribution(tiny_graph, token=" a")
    assert diff.metric == "logit_difference" and diff.contrast == "Ġa"
    logits = tiny_graph.logits[-1]
    assert diff.model_value == pytest.approx(float(logits[the.token_id] - logits[a.token_id]), abs=1e-6)
    assert abs(diff.residual_error) < 1e-4
    for d, x, y in zip(diff.contributions, the.contributions, a.contributions):
        assert d.component == x.component == y.component
        assert d.contribution == pytest.approx(x.contribution - y.contribution, abs=1e-9)


def test_a_head_contribution_is_its_output_through_the_frozen_layernorm(tiny_graph):
    dla = direct_logit_attribution(tiny_graph, position=3)
    node = "blocks.1.attn.hook_result[3,2]"
    head = next(a for a in dla.contributions if a.component == node)
    assert (head.layer, head.head, head.kind) == (1, 2, "head_out")
    x = tiny_graph.values(node).double()
    final = tiny_graph.hook("resid_post", 1)[3].double()
    scale = torch.sqrt(final.var(correction=0) + tiny_graph.dims.layer_norm_eps)
    unembed = tiny_graph.param("W_U")[:, dla.token_id].double()
    expected = ((x - x.mean()) / scale * tiny_graph.param("ln_final_w")) @ unembed
    assert head.contribution == pytest.approx(float(expected), rel=1e-6, abs=1e-7)  # float32 products, two orders
    assert dla.ln_scale == pytest.approx(float(scale))
    mlp = next(a for a in dla.contributions if a.component == "blocks.0.hook_mlp_out[3]")
    assert mlp.kind == "mlp_out"  # its b_out is a component of its own
    assert any(a.component == "blocks.0.mlp.b_out" for a in dla.contributions)
    assert dla.top(3)[0].contribution == max((a.contribution for a in dla.contributions), key=abs)


def test_a_run_that_disagrees_with_its_weights_is_refused(tiny_graph):
    store = tiny_graph.store
    final = "ln_final.hook_out"  # the logits are derived from it (times W_U), the attributions are not
    tampered = dict(store.activations, **{final: store.activations[final] + 0.01})
    graph = Graph(tiny_graph.header, Values(tampered, store.params, store.topology), tiny_graph.vocab)
    with pytest.raises(AttributionError, match="error"):
        direct_logit_attribution(graph)


def test_bad_arguments(tiny_graph):
    with pytest.raises(InterpretError, match="position 5 is out of range"):
        direct_logit_attribution(tiny_graph, position=5)
    with pytest.raises(InterpretError, match="target 'no such token' is not a single token"):
        direct_logit_attribution(tiny_graph, token="no such token")
    with pytest.raises(InterpretError, match="contrast id -1"):
        direct_logit_attribution(tiny_graph, token=0, contrast=-1)
