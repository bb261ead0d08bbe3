"""The one forward executor: equal to the captured run, every site observable, every vector a place to intervene."""

import pytest
import torch

from gpt2graph import forward
from gpt2graph.forward import Intervention, InterventionError


def _run(graph, **kwargs):
    tokens = torch.tensor(graph.tokenization.token_ids)
    with torch.no_grad():
        return forward.run(graph.store.stacked, graph.dims, tokens, **kwargs)


def test_without_intervention_it_equals_the_captured_run(tiny_graph):
    result = _run(tiny_graph, observe=True)
    assert set(result.observed) == set(forward.sites(tiny_graph.dims))
    for (kind, layer), value in result.observed.items():
        torch.testing.assert_close(value[0], tiny_graph.hook(kind, layer), rtol=0, atol=1e-4, msg=f"{kind} {layer}")
    torch.testing.assert_close(result.logits[0], tiny_graph.logits, rtol=0, atol=1e-4)


def test_fused_paths_equal_the_per_head_ops(tiny_graph):
    """Unobserved, the executor uses a fused attention kernel and one product for attn_out: same numbers."""
    fused = _run(tiny_graph).logits
    per_head = _run(tiny_graph, observe=["attn_pattern", "head_out"]).logits
    torch.testing.assert_close(fused, per_head, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "layer", "head", "position"),
    [("resid_pre", 1, None, 2), ("q", 0, 3, 1), ("attn_pattern", 1, 2, 4), ("z", 1, 0, 3), ("head_out", 0, 1, 2),
     ("ln1_scale", 1, None, 3), ("ln2_normalized", 0, None, 4), ("mlp_post", 1, None, 0), ("ln_final", None, None, 2)],
)  # fmt: skip
def test_replacing_a_node_with_its_own_value_changes_no_logit(tiny_graph, kind, layer, head, position):
    node = next(iter(tiny_graph.nodes(kind=kind, layer=layer, head=head, position=position)))
    own = tiny_graph.values(node.id)
    patched = _run(tiny_graph, interventions=[Intervention(kind, layer, head, position, value=own)]).logits
    torch.testing.assert_close(patched[0], tiny_graph.logits, rtol=0, atol=1e-5)


def test_an_upstream_intervention_changes_what_is_downstream_and_nothing_before(tiny_graph):
    edit = Intervention("mlp_out", 0, position=2, value=torch.zeros(tiny_graph.dims.d_model))
    result = _run(tiny_graph, observe=["mlp_out", "resid_pre", "attn_out"], interventions=[edit])
    assert torch.equal(result[("mlp_out", 0)][0, 2], torch.zeros(tiny_graph.dims.d_model))
    torch.testing.assert_close(result[("attn_out", 0)][0], tiny_graph.hook("attn_out", 0))  # before it: untouched
    stream = result[("resid_pre", 1)][0]
    assert not torch.allclose(stream[2], tiny_graph.hook("resid_pre", 1)[2])  # the stream it writes into
    torch.testing.assert_close(stream[:2], tiny_graph.hook("resid_pre", 1)[:2])  # other positions: untouched
    assert not torch.allclose(result.logits[0, 2:], tiny_graph.logits[2:])  # later positions read it through attention
    torch.testing.assert_close(result.logits[0, :2], tiny_graph.logits[:2])  # earlier ones cannot


def test_add_and_scale_modes_and_one_run_of_a_batch(tiny_graph):
    n, d = tiny_graph.n_tokens, tiny_graph.dims.d_model
    tokens = torch.tensor(tiny_graph.tokenization.token_ids).expand(3, n)
    direction = torch.randn(d)
    edits = [Intervention("resid_mid", 0, position=1, mode="add", value=direction, run=1),
             Intervention("resid_mid", 0, position=1, mode="scale", value=2.0, run=2)]  # fmt: skip
    with torch.no_grad():
        r = forward.run(tiny_graph.store.stacked, tiny_graph.dims, tokens, observe=["resid_mid"], interventions=edits)
    clean = tiny_graph.hook("resid_mid", 0)[1]
    mid = r[("resid_mid", 0)]
    torch.testing.assert_close(mid[0, 1], clean)
    torch.testing.assert_close(mid[1, 1], clean + direction)
    torch.testing.assert_close(mid[2, 1], 2 * clean)
    torch.testing.assert_close(r.logits[0], tiny_graph.logits, rtol=0, atol=1e-5)


def test_a_pattern_row_of_the_keys_a_query_sees_is_padded(tiny_graph):
    uniform = torch.full((3,), 1 / 3)  # position 2 sees keys 0..2
    r = _run(tiny_graph, observe=["attn_pattern"], interventions=[Intervention("attn_pattern", 0, 1, 2, value=uniform)])
    row = r[("attn_pattern", 0)][0, 1, 2]
    torch.testing.assert_close(row, torch.cat([uniform, torch.zeros(tiny_graph.n_tokens - 3)]))


def test_starting_from_a_block_and_unembedding_some_positions(tiny_graph):
    stream = tiny_graph.hook("resid_pre", 1)[None]
    r = _run(tiny_graph, start=(1, stream), logits=[tiny_graph.n_tokens - 1])
    torch.testing.assert_close(r.logits[0, 0], tiny_graph.logits[-1], rtol=0, atol=1e-5)
    assert _run(tiny_graph, logits=False).logits is None


def test_gradients_flow_to_observed_sites(tiny_graph):
    tokens = torch.tensor(tiny_graph.tokenization.token_ids)
    r = forward.run(tiny_graph.store.stacked, tiny_graph.dims, tokens, observe=["z"], grad=True)
    (grad,) = torch.autograd.grad(r.logits[0, -1, 0], [r[("z", 1)]])
    assert grad.shape == (1, tiny_graph.n_tokens, tiny_graph.dims.n_head, tiny_graph.dims.d_head)
    assert grad[0, -1].abs().sum() > 0 and grad[0, :-1].abs().sum() == 0  # only the last query's z reaches it


@pytest.mark.parametrize(
    ("edit", "message"),
    [(Intervention("q", 0, 9, 0, value=torch.zeros(8)), "head 9 out of range"),
     (Intervention("resid_pre", 1, None, 0, value=torch.zeros(5)), "does not fit resid_pre"),
     (Intervention("resid_pre", 1, None, 0, mode="double", value=1.0), "unknown intervention mode"),
     (Intervention("resid_pre", 0, None, 0, value=1.0), r"no resid_pre vectors at layer 0 .*\(layers: 1\)"),
     (Intervention("probs", None, None, 0, value=1.0), r"cannot observe or intervene on \['probs'\]"),
     (Intervention("mlp_out", 1, None, 7, value=1.0), "position 7 out of range 0..4")],
)  # fmt: skip
def test_bad_interventions_are_clear_errors(tiny_graph, edit, message):
    with pytest.raises(InterventionError, match=message):
        _run(tiny_graph, interventions=[edit])


def test_observing_what_the_pass_does_not_compute_is_an_error(tiny_graph):
    with pytest.raises(InterventionError, match="cannot observe"):
        _run(tiny_graph, observe=["probs"])


def test_many_vectors_set_at_once_equal_one_intervention_each(tiny_graph):
    """A scatter over (run, head, position) triples, as patching sweeps use, equals one intervention per run."""
    n, d = tiny_graph.n_tokens, tiny_graph.dims.d_model
    tokens = torch.tensor(tiny_graph.tokenization.token_ids)
    triples = [(0, 1, 4), (1, 3, 2), (2, 0, 0), (2, 2, 4)]  # run 2 gets two vectors
    values = torch.randn(len(triples), d)
    runs, heads, positions = (torch.tensor(t) for t in zip(*triples))
    batched = Intervention("head_out", 1, heads, positions, value=values, run=runs)
    with torch.no_grad():
        r = forward.run(tiny_graph.store.stacked, tiny_graph.dims, tokens.expand(3, n), interventions=[batched])
    for run in range(3):
        singles = [
            Intervention("head_out", 1, h, p, value=values[i]) for i, (b, h, p) in enumerate(triples) if b == run
        ]
        alone = _run(tiny_graph, interventions=singles).logits[0]
        torch.testing.assert_close(r.logits[run], alone, rtol=0, atol=1e-5)


def test_split_inputs_change_nothing_until_one_head_input_is_touched(tiny_graph):
    split = _run(tiny_graph, observe=["q_input", "k_input", "v_input", "mlp_in", "q", "k", "v"])
    torch.testing.assert_close(split.logits[0], tiny_graph.logits, rtol=0, atol=1e-5)
    assert split[("q_input", 1)].shape == (1, tiny_graph.n_tokens, tiny_graph.dims.n_head, tiny_graph.dims.d_model)
    nudge = torch.randn(tiny_graph.dims.d_model)
    touched = _run(
        tiny_graph, observe=["q", "k", "v"], interventions=[Intervention("q_input", 1, 2, mode="add", value=nudge)]
    )
    for kind in ("q", "k", "v"):
        for h in range(tiny_graph.dims.n_head):
            same = torch.allclose(touched[(kind, 1)][0, :, h], tiny_graph.hook(kind, 1)[:, h], atol=1e-6)
            assert same == ((kind, h) != ("q", 2)), (kind, h)  # only head 2's query reads the nudged copy


def test_the_gradient_of_one_head_input_is_that_input_alone(tiny_graph):
    """d metric / d q_input[head] equals the finite difference of nudging that head's query input only."""
    tokens = torch.tensor(tiny_graph.tokenization.token_ids)
    r = forward.run(tiny_graph.store.stacked, tiny_graph.dims, tokens, observe=["k_input", "mlp_in"], grad=True)
    metric = r.logits[0, -1, 11] - r.logits[0, -1, 7]
    grad_k, grad_mlp = torch.autograd.grad(metric, [r[("k_input", 1)], r[("mlp_in", 0)]])
    direction = torch.randn(tiny_graph.dims.d_model)
    eps = 1e-3
    for site, head, grad in ((("k_input", 1), 3, grad_k[0, 2, 3]), (("mlp_in", 0), None, grad_mlp[0, 2])):
        edit = Intervention(*site, head, 2, mode="add", value=eps * direction)
        nudged = _run(tiny_graph, interventions=[edit]).logits[0, -1].double()
        change = float((nudged[11] - nudged[7]) - (tiny_graph.logits[-1, 11] - tiny_graph.logits[-1, 7]))
        assert change / eps == pytest.approx(float(grad @ direction), rel=2e-2, abs=1e-4), site


def test_an_applied_function_sees_the_site_and_what_was_observed(tiny_graph):
    seen = {}

    def halve_and_peek(value, observed):
        seen.update(observed)
        return value / 2

    r = _run(
        tiny_graph, observe=["mlp_out"], interventions=[Intervention("attn_out", 1, mode="apply", value=halve_and_peek)]
    )
    assert ("mlp_out", 0) in seen and ("mlp_out", 1) not in seen  # what the pass had reached
    expected = _run(tiny_graph, interventions=[Intervention("attn_out", 1, mode="scale", value=0.5)]).logits
    torch.testing.assert_close(r.logits, expected, rtol=0, atol=1e-6)


def test_ln1_cannot_be_asked_for_where_the_heads_read_their_own_copies(tiny_graph):
    with pytest.raises(InterventionError, match="ln1 is computed once per head"):
        _run(tiny_graph, observe=["q_input", "ln1"])
    with pytest.raises(InterventionError, match=r"position 9 out of range"):
        _run(tiny_graph, interventions=[Intervention("z", 0, torch.tensor([0, 1]), torch.tensor([0, 9]), value=0.0)])
    with pytest.raises(InterventionError, match="cannot observe or intervene on"):
        _run(tiny_graph, interventions=[Intervention("q_inputs", 0, value=0.0)])


def test_runs_of_one_batch_may_start_at_different_blocks(tiny_graph):
    """Each run joins the batch at its own block (in increasing order), as if it had run alone."""
    entering = [tiny_graph.hook("input_embedding"), tiny_graph.hook("resid_pre", 1)]
    streams = torch.stack([entering[0], entering[1] * 0.5, entering[1]])
    tokens = torch.tensor(tiny_graph.tokenization.token_ids).expand(3, -1)
    with torch.no_grad():
        together = forward.run(tiny_graph.store.stacked, tiny_graph.dims, tokens, start=([0, 1, 1], streams)).logits
    for run, layer in enumerate([0, 1, 1]):
        alone = _run(tiny_graph, start=(layer, streams[run : run + 1])).logits[0]
        torch.testing.assert_close(together[run], alone, rtol=0, atol=1e-5)
    with pytest.raises(InterventionError, match="increasing order"):
        _run(tiny_graph, start=([1, 0, 1], streams))
