"""A graph built from a real checkpoint holds exactly what the model computed, and re-executes to it."""

import pytest
import torch
from conftest import PROMPT, TINY

import gpt2graph
from gpt2graph.errors import PromptError
from gpt2graph.schema import OperationNode, ParameterNode, VectorKind, VectorNode
from gpt2graph.summary import format_summary


@pytest.fixture(scope="module")
def hf_eager(tiny_checkpoint):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(tiny_checkpoint, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def hf_outputs(hf_eager, tiny_graph):
    ids = torch.tensor([tiny_graph.tokenization.token_ids])
    with torch.no_grad():
        return hf_eager(ids, output_hidden_states=True, output_attentions=True)


def test_tokenization_is_gpt2_bpe(tiny_graph):
    tok = tiny_graph.tokenization
    assert tok.text == PROMPT
    assert tok.token_ids[:2] == [8291, 16354]  # Trans | former
    assert tok.tokens_visible[2] == "Ġtokens" and tok.tokens[2] == " tokens"


def test_logits_match_the_model(tiny_graph, hf_outputs):
    torch.testing.assert_close(tiny_graph.logits, hf_outputs.logits[0], rtol=1e-5, atol=1e-5)


def test_a_derived_logit_equals_the_captured_one(tiny_checkpoint, tiny_graph):
    """The logits are not stored: derived from ln_final and W_U, they are the very numbers the model outputs
    (its default attention, as captured), and a logit node's value is its row."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(tiny_checkpoint).eval()
    with torch.no_grad():
        captured = model(torch.tensor([tiny_graph.tokenization.token_ids])).logits[0]
    assert "hook_unembed" not in tiny_graph.store.activations
    assert torch.equal(tiny_graph.logits, captured)
    assert torch.equal(tiny_graph.values("hook_unembed[3]"), captured[3])


def test_hidden_states_match_the_model(tiny_graph, hf_outputs):
    hs = hf_outputs.hidden_states
    torch.testing.assert_close(tiny_graph.hook("input_embedding"), hs[0][0], rtol=0, atol=1e-6)
    torch.testing.assert_close(tiny_graph.hook("resid_pre", 1), hs[1][0], rtol=0, atol=1e-6)
    # HF's last hidden state is after ln_f
    torch.testing.assert_close(tiny_graph.hook("ln_final"), hs[-1][0], rtol=0, atol=1e-6)


def test_attention_probabilities_match_the_model(tiny_graph, hf_outputs):
    for L, attn in enumerate(hf_outputs.attentions):
        for h in range(TINY["n_head"]):
            torch.testing.assert_close(tiny_graph.pattern(L, h), attn[0, h], rtol=1e-5, atol=1e-6)
            row = tiny_graph.values(f"blocks.{L}.attn.hook_pattern[{h},3]")
            torch.testing.assert_close(row, attn[0, h, 3, :4], rtol=1e-5, atol=1e-6)
            assert abs(float(row.sum()) - 1) < 1e-6


def test_head_outputs_sum_to_attention_output(tiny_graph):
    heads = tiny_graph.hook("head_out", 1)  # (n, n_head, d_model), per-head z_h @ W_O^h
    b_O = tiny_graph.param("b_O", 1)
    torch.testing.assert_close(heads.sum(1) + b_O, tiny_graph.hook("attn_out", 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["batched", "vector"])
def test_verify_reexecutes_every_vector(tiny_graph, mode):
    report = tiny_graph.verify(mode=mode)
    assert report.ok, report.format()
    assert report.vectors == tiny_graph.topology.count_vectors() - tiny_graph.n_tokens  # all but token ids
    assert report.max_abs < 1e-5
    assert set(report.kinds) == {k.value for k in VectorKind} - {"token"}


def test_verify_detects_a_tampered_value(tiny_checkpoint):
    g = gpt2graph.build("tamper", model=str(tiny_checkpoint))
    g.store.activations["blocks.1.mlp.hook_post"][0, 3] += 0.01
    report = g.verify()
    assert not report.ok and not report.kinds["mlp_post"].ok and report.kinds["mlp_out"].ok


def test_queries(tiny_graph):
    n, L, H = tiny_graph.n_tokens, TINY["n_layer"], TINY["n_head"]
    qs = tiny_graph.nodes(kind="q", layer=1)
    assert len(qs) == H * n and all(isinstance(q, VectorNode) and q.layer == 1 for q in qs)
    assert len(tiny_graph.nodes(kind="k", head=2, position=[0, 1])) == L * 2
    node = tiny_graph.node("blocks.1.attn.hook_v[4,3]")
    assert (node.layer, node.head, node.position, node.shape) == (1, 3, 4, [TINY["n_embd"] // H])
    assert node.hook == "blocks.1.attn.hook_v" and node.index == [4, 3] and node.category == "attention"
    value = tiny_graph.values(node.id)
    assert node.summary.norm == pytest.approx(float(value.norm()), rel=1e-6)
    w_q = tiny_graph.node("blocks.0.attn.W_Q[2]")
    assert isinstance(w_q, ParameterNode) and w_q.shape == [32, 8] and w_q.n_params == 256
    w_u = tiny_graph.node("unembed.W_U")
    assert w_u.tied_to == "embed.W_E" and w_u.transposed and w_u.n_params == 0
    torch.testing.assert_close(tiny_graph.values("unembed.W_U"), tiny_graph.values("embed.W_E").T)
    ops = tiny_graph.nodes(kind="gelu")
    assert len(ops) == L * n and all(isinstance(o, OperationNode) for o in ops)
    assert {n.category for n in tiny_graph.nodes(position=0)} >= {
        "tokenizer",
        "operation",
        "residual",
        "attention",
        "mlp",
        "unembedding",
    }
    assert {n.category for n in tiny_graph.nodes(node_type="parameter")} == {"parameter"}


def test_node_count_matches_formula(tiny_graph):
    top = tiny_graph.topology
    assert len(tiny_graph.nodes()) == top.count_vectors() + top.count_ops() + top.count_params()


def test_edges_are_typed(tiny_graph):
    edges = tiny_graph.edges("op:blocks.0.attn.hook_z[2,1]")
    roles = [(e.role, e.slot) for e in edges]
    assert edges[0].source == "blocks.0.attn.hook_pattern[1,2]"
    assert [e.source for e in edges[1:4]] == [f"blocks.0.attn.hook_v[{j},1]" for j in range(3)]
    assert roles[-1] == ("output", 0) and edges[-1].target == "blocks.0.attn.hook_z[2,1]"
    params = [e.source for e in tiny_graph.edges("op:blocks.1.attn.hook_q[0,2]") if e.role == "parameter"]
    assert params == ["blocks.1.attn.W_Q[2]", "blocks.1.attn.b_Q[2]"]
    consumers = {e.target for e in tiny_graph.edges("blocks.0.attn.hook_k[1,0]") if e.role == "input"}
    assert consumers == {f"op:blocks.0.attn.hook_attn_scores[0,{q}]" for q in range(1, tiny_graph.n_tokens)}


def test_subgraph(tiny_graph):
    sub = tiny_graph.subgraph(layers=1, heads=[0], positions=[0, 1])
    assert {n.layer for n in sub.nodes(node_type="vector")} <= {None, 1}
    assert {n.head for n in sub.nodes(node_type="vector")} <= {None, 0}
    assert len(sub.nodes(kind="q")) == 2
    ids = {n.id for n in sub.nodes()}
    assert all(e.source in ids and e.target in ids for e in sub.edges())
    with pytest.raises(ValueError, match="layer"):
        tiny_graph.subgraph(layers=[5])


def test_already_loaded_model_and_dims_from_config(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(
        GPT2Config(n_layer=3, n_head=2, n_embd=16, n_inner=40, n_positions=20, vocab_size=50257)
    ).eval()
    g = gpt2graph.build("Hello world", model=model)
    d = g.dims
    assert (d.n_layer, d.n_head, d.d_model, d.d_head, d.d_mlp, d.n_ctx) == (3, 2, 16, 8, 40, 20)
    assert g.model.source == "object" and g.tokenization.token_ids == [15496, 995]
    assert g.verify().ok
    # built in memory, not loaded from a checkpoint: random weights of an unknown seed, and said so
    assert g.random_weights and g.model.weights.seed is None
    assert "RANDOM (unknown seed)" in format_summary(g.summary())


def test_a_model_object_loaded_from_a_checkpoint_is_pretrained(tiny_checkpoint):
    from transformers import GPT2LMHeadModel

    g = gpt2graph.build("Hello world", model=GPT2LMHeadModel.from_pretrained(tiny_checkpoint))
    assert not g.random_weights and g.model.name == str(tiny_checkpoint)


def test_tokenizer_comes_from_the_model_directory(tmp_path):
    from conftest import make_checkpoint
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    path = make_checkpoint(tmp_path / "ckpt", vocab_size=10)
    words = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(path)
    g = gpt2graph.build("hello world", model=str(path))
    assert g.tokenization.token_ids == [1, 2]


def test_tokenizer_and_vocabulary_are_loaded_once_per_model(tmp_path, monkeypatch):
    """Loading a tokenizer costs more than a short forward pass: builds on one model load it once (and again
    only when its files change), and make its vocabulary table once."""
    from conftest import make_checkpoint
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from gpt2graph import builder
    from gpt2graph.tokenizer import gpt2_bpe_tokenizer

    path = make_checkpoint(tmp_path / "ckpt")
    gpt2_bpe_tokenizer().save_pretrained(path)  # a checkpoint that carries its tokenizer, as real ones do
    calls = []
    original = AutoTokenizer.from_pretrained.__func__
    monkeypatch.setattr(
        AutoTokenizer, "from_pretrained", classmethod(lambda cls, *a, **k: calls.append(a) or original(cls, *a, **k))
    )
    model = GPT2LMHeadModel.from_pretrained(path)
    graphs = [gpt2graph.build(prompt, model=model) for prompt in ("one", "two", "three")]
    assert len(calls) == 1
    assert graphs[0].vocab is graphs[2].vocab  # one table, not one per build
    (path / "tokenizer.json").touch()  # the files changed: read again
    gpt2graph.build("four", model=model)
    assert len(calls) == 2
    builder._vocabulary.cache_clear()


def test_graphs_of_one_model_share_its_parameters_and_their_statistics_until_they_change(tiny_checkpoint):
    """A server builds many graphs of one model: they hold the same parameter tensors (not copies, not new
    wrappers), so a weight matrix is summarised once; an edited or replaced parameter is read afresh."""
    from transformers import GPT2LMHeadModel

    from gpt2graph.topology import Key
    from gpt2graph.values import summaries

    def expected(graph, kind, layer, heads):  # each head's matrix (or the whole parameter) on its own
        keys = [Key(kind, layer, h) for h in heads] if heads else [Key(kind, layer)]
        rows = torch.stack([graph.store.param(k).reshape(-1) for k in keys])
        return summaries(rows, dtype=torch.float32)

    model = GPT2LMHeadModel.from_pretrained(tiny_checkpoint)
    a, b = (gpt2graph.build(prompt, model=model) for prompt in ("one", "two"))
    assert a.store.params is not b.store.params  # each graph has its own mapping ...
    assert all(a.store.params[name] is b.store.params[name] for name in a.store.params)  # ... of the same tensors
    heads = range(TINY["n_head"])
    for kind, layer, per_head in (("W_E", None, 0), ("W_Q", 1, 1), ("b_V", 0, 1), ("W_O", 1, 1), ("ln1_w", 0, 0)):
        stats = a.store.param_summaries(kind, layer)
        assert b.store.param_summaries(kind, layer) is stats  # computed once
        for name, value in expected(a, kind, layer, heads if per_head else None).items():
            torch.testing.assert_close(stats[name], value, rtol=0, atol=0)

    before = a.store.param_summaries("W_Q", 1)["max"].clone()
    with torch.no_grad():
        model.transformer.h[1].attn.c_attn.weight.mul_(2.0)  # edited in place: every graph's tensors see it
    c = gpt2graph.build("three", model=model)
    for graph in (a, c):
        torch.testing.assert_close(graph.store.param_summaries("W_Q", 1)["max"], 2 * before)
    old_max = float(a.store.param_summaries("W_E")["max"][0])
    tripled = torch.nn.Parameter(model.transformer.wte.weight.detach() * 3)
    model.transformer.wte.weight = model.lm_head.weight = tripled  # replaced (still tied)
    d = gpt2graph.build("four", model=model)
    assert d.store.params["transformer.wte.weight"] is not a.store.params["transformer.wte.weight"]
    assert float(d.store.param_summaries("W_E")["max"][0]) == pytest.approx(3 * old_max, rel=1e-6)
    assert float(a.store.param_summaries("W_E")["max"][0]) == old_max  # a still holds the old tensor


def test_views_are_live_and_keep_their_own_choices(tiny_checkpoint):
    """The rule of graph.py: views share the run; selection and decoding settings stay the view's own."""
    g = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    before = g.subgraph(layers=[1])
    hot = g.with_decoding(temperature=2.0)
    g.analyze(lens=False, temperature=0.5)
    after = g.subgraph(layers=[1])
    for view in (before, after, hot):
        assert view.analysis is g.analysis  # taken before or after: the same analysis
    assert g.decoding.temperature == 0.5 and before.decoding.temperature == 0.5  # the run's settings
    assert hot.decoding.temperature == 2.0  # its own
    with pytest.raises(gpt2graph.errors.NodeNotFoundError, match="outside this subgraph"):
        before.values("blocks.0.hook_mlp_out[0]")
    assert before.values("blocks.1.hook_mlp_out[0]").shape == (g.dims.d_model,)


def test_one_positions_logits_cost_one_block(tiny_checkpoint, monkeypatch):
    """The logits are derived in blocks of positions when first read: a row read alone is the row of the
    whole matrix, bit for bit, and reading it derives only its block."""
    from gpt2graph import values

    monkeypatch.setattr(values, "LOGIT_ROWS", 2)
    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    calls = []
    original = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda x, *a, **k: calls.append(len(x)) or original(x, *a, **k))
    row = graph.store.logits(3).clone()
    assert calls == [2]  # positions 2 and 3
    assert torch.equal(graph.logits[3], row) and calls == [2, 2, 1]  # the other blocks, once
    graph.logits
    assert calls == [2, 2, 1]


def test_a_prompt_of_token_ids_is_taken_as_given(tiny_checkpoint):
    graph = gpt2graph.build([464, 2068, 7586], model=str(tiny_checkpoint))
    assert graph.tokenization.token_ids == [464, 2068, 7586]
    assert graph.tokenization.text == "The quick brown"
    assert graph.verify().ok


@pytest.mark.parametrize(
    ("prompt", "message"),
    [([-1], "token ids are >= 0"), ([50257], "outside the model's vocabulary"),
     ([1.5], "token ids must be integers"), ([], "no tokens"), ([1] * 65, "shorten it by 1 tokens")],
)  # fmt: skip
def test_bad_token_id_prompts_are_clear_errors(tiny_checkpoint, prompt, message):
    with pytest.raises(PromptError, match=message):
        gpt2graph.build(prompt, model=str(tiny_checkpoint))


def test_a_view_holds_only_its_nodes_and_options_fill_only_the_axes_it_leaves_whole(tiny_graph):
    """The renderers' rule (graph.py): a view decides on the axes it restricts, options on the others."""
    from gpt2graph.graph import Selection

    view = tiny_graph.subgraph(layers=[1], positions=[0, 2])
    assert "blocks.1.attn.hook_q[0,3]" in view and "op:tokenize" in view and "embed.W_E" in view
    assert "blocks.0.attn.hook_q[0,3]" not in view and "blocks.1.attn.hook_q[1,3]" not in view
    assert "nonsense" not in view and 7 not in view
    assert view.selection.filled(layers=[0], heads=2, positions=None) == Selection(
        frozenset({1}), frozenset({2}), frozenset({0, 2})
    )
    assert Selection().filled(heads=[0, 1]) == Selection(None, frozenset({0, 1}), None)
