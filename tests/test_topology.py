"""Structure is derived: ids round-trip, counts follow the formula, edges and consumers agree."""

import itertools
from collections import Counter

import pytest

from gpt2graph.errors import NodeNotFoundError
from gpt2graph.schema import Dims, VectorKind
from gpt2graph.topology import PARAM_CONSUMER, PARAM_SPECS, READS, TOKENIZE_OP_ID, VECTOR_SPECS, Key, Topology

DIMS = Dims(n_layer=3, n_head=2, d_model=8, d_head=4, d_mlp=32, n_ctx=16, n_vocab=50, layer_norm_eps=1e-5)


@pytest.fixture
def top():
    return Topology(DIMS, 4)


def test_every_id_round_trips(top):
    keys = list(top.vector_keys()) + list(top.param_keys())
    ids = [top.node_id(k) for k in keys]
    assert len(set(ids)) == len(ids)
    for key, node_id in zip(keys, ids):
        assert top.parse(node_id)[1] == key
        assert top.parse("op:" + node_id)[0] == "operation" if key.kind in VECTOR_SPECS else True


def test_counts_match_formula(top):
    assert len(list(top.vector_keys())) == top.count_vectors() == 4 * (13 + 12 * 3 + 7 * 3 * 2)
    assert len(list(top.param_keys())) == top.count_params() == 5 + 3 * (9 + 7 * 2)


def test_ids_are_transformerlens_hooks_with_index(top):
    assert top.vector_id(Key(VectorKind.q, 1, 0, 3)) == "blocks.1.attn.hook_q[3,0]"
    assert top.vector_id(Key(VectorKind.attn_pattern, 2, 1, 3)) == "blocks.2.attn.hook_pattern[1,3]"
    assert top.vector_id(Key(VectorKind.input_embedding, None, None, 2)) == "blocks.0.hook_resid_pre[2]"
    assert top.vector_id(Key(VectorKind.logits, None, None, 0)) == "hook_unembed[0]"


def test_stream_between_blocks_is_one_node_with_alias(top):
    node_type, key = top.parse("blocks.0.hook_resid_post[1]")
    assert key == Key(VectorKind.resid_pre, 1, None, 1)
    assert top.aliases(key) == ["blocks.0.hook_resid_post[1]"]
    assert top.parse("blocks.2.hook_resid_post[1]")[1].kind == VectorKind.resid_post


@pytest.mark.parametrize(
    "bad",
    [
        "blocks.3.attn.hook_q[0,0]",
        "blocks.0.attn.hook_q[4,0]",
        "blocks.0.attn.hook_q[0]",
        "nonsense",
        "blocks.0.attn.W_Q[5]",
        "op:embed.W_E",
        "hook_embed[0,1]",
        "",
    ],
)
def test_unknown_ids_are_clear_errors(top, bad):
    with pytest.raises(NodeNotFoundError, match="no node"):
        top.parse(bad)


def test_consumers_are_the_inverse_of_op_inputs(top):
    produced_from: dict[Key, set[Key]] = {}
    for out in top.vector_keys():
        inputs, params = top.op_inputs(out)
        for k in inputs + params:
            produced_from.setdefault(k, set()).add(out)
    for key in list(top.vector_keys()) + list(top.param_keys()):
        assert set(top.consumers(key)) == produced_from.get(key, set()), key


def test_attention_rows_read_only_earlier_keys(top):
    inputs, _ = top.op_inputs(Key(VectorKind.attn_scores, 0, 1, 2))
    assert inputs[0] == Key(VectorKind.q, 0, 1, 2)
    assert [k.position for k in inputs[1:]] == [0, 1, 2]
    assert top.vector_shape(Key(VectorKind.attn_pattern, 0, 1, 2)) == [3]


def test_every_kind_has_a_spec():
    assert set(VECTOR_SPECS) == set(VectorKind)
    assert len(PARAM_SPECS) == 21


#: small shapes of model and prompt, the edge cases included: one layer, one head, one token
SMALL = [
    Topology(DIMS.model_copy(update={"n_layer": L, "n_head": H}), n)
    for L, H, n in itertools.product((1, 2, 3), (1, 3), (1, 2, 5))
]


@pytest.mark.parametrize("top", SMALL, ids=lambda t: f"L{t.dims.n_layer}-H{t.dims.n_head}-n{t.n_tokens}")
def test_both_directions_of_the_structure_agree(top):
    """Every edge op_inputs states is one consumers states, as often, and the other way round."""
    order = {k: i for i, k in enumerate(top.vector_keys())}
    read = Counter()
    for out in top.vector_keys():
        vectors, params = top.op_inputs(out)
        for k in vectors:
            assert top.contains(k) and order[k] < order[out], (k, out)  # inputs exist and come first
        for k in params:
            assert top.contains(k) and PARAM_CONSUMER[k.kind] == out.kind, (k, out)
        read.update((k, out) for k in vectors + params)
    consumed = Counter()
    for key in [*top.vector_keys(), *top.param_keys()]:
        outs = top.consumers(key)
        assert [order[o] for o in outs] == sorted(order[o] for o in outs), key  # in forward order
        consumed.update((key, out) for out in outs)
    assert read == consumed


@pytest.mark.parametrize("top", SMALL, ids=lambda t: f"L{t.dims.n_layer}-H{t.dims.n_head}-n{t.n_tokens}")
def test_every_vector_but_the_chosen_token_is_read_and_every_parameter_at_every_position(top):
    for key in top.vector_keys():
        assert bool(top.consumers(key)) == (key.kind != VectorKind.next_token), key
    for key in top.param_keys():
        assert top.consumers(key) == [
            Key(PARAM_CONSUMER[key.kind], key.layer, key.head, p) for p in range(top.n_tokens)
        ]


def test_every_kind_reads_what_the_table_says():
    assert set(READS) == set(VectorKind)
    assert set(PARAM_CONSUMER) == set(PARAM_SPECS)  # every parameter is read, by exactly one kind


def test_operation_ids_are_made_and_parsed_by_the_topology(top):
    key = Key(VectorKind.z, 1, 0, 2)
    assert top.op_id(key) == "op:" + top.vector_id(key)
    assert top.parse(top.op_id(key)) == ("operation", key)
    assert top.op_id(Key(VectorKind.token, None, None, 3)) == TOKENIZE_OP_ID
    assert top.parse(TOKENIZE_OP_ID)[0] == "operation"
    assert top.parse("op:blocks.0.hook_resid_post[1]") == ("operation", Key(VectorKind.resid_pre, 1, None, 1))
