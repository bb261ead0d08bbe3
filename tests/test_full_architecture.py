"""The exact GPT-2 124M architecture (seeded random weights, the embedded default): counts and exactness."""

import pytest

import gpt2graph
from gpt2graph.loading import parameter_groups

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_graph():
    return gpt2graph.build("Transformer tokens", random_weights=True)


def test_parameter_counts(full_graph):
    m = full_graph.model
    assert m.source == "embedded-default" and m.weights.status == "random" and m.weights.seed == 0
    assert m.total_parameters == 124_439_808
    assert m.parameters["embedding"] == 38_597_376
    assert round(100 * m.parameters["embedding"] / m.total_parameters, 1) == 31.0
    assert sum(m.parameters.values()) == m.total_parameters == sum(parameter_groups(m.dims).values())
    d = m.dims
    assert (d.n_layer, d.n_head, d.d_model, d.d_head, d.d_mlp, d.n_ctx, d.n_vocab) == (
        12,
        12,
        768,
        64,
        3072,
        1024,
        50257,
    )
    node_params = sum(n.n_params for n in full_graph.nodes(node_type="parameter"))
    assert node_params == m.total_parameters


def test_tokens_are_real_gpt2_bpe(full_graph):
    assert full_graph.tokenization.token_ids == [8291, 16354, 16326]
    assert full_graph.tokenization.tokens_visible == ["Trans", "former", "Ġtokens"]


def test_node_counts_match_the_formula(full_graph):
    n, L, H = 3, 12, 12
    top = full_graph.topology
    assert top.count_vectors() == n * (13 + 12 * L + 7 * L * H) == len(full_graph.nodes(node_type="vector"))
    assert top.count_ops() == len(full_graph.nodes(node_type="operation"))
    assert top.count_params() == 5 + L * (9 + 7 * H) == len(full_graph.nodes(node_type="parameter"))
    assert len(full_graph.nodes(kind="head_out")) == n * L * H


def test_exact_within_1e_4(full_graph):
    report = full_graph.verify()
    assert report.ok and report.max_abs <= 1e-4, report.format()
