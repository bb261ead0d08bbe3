"""Node ids map 1:1 to TransformerLens hooks: cache[node.hook][0][tuple(node.index)] is the node's vector. And both
ways between the two: a graph from a TransformerBridge or from its ActivationCache, and an ActivationCache-like
mapping from a graph."""

import re

import pytest
import torch
from conftest import PROMPT

import gpt2graph
from gpt2graph.cache import CacheMismatchError
from gpt2graph.errors import NodeNotFoundError, NotGpt2Error


def boot(checkpoint, tok_dir, *, processing: bool = False):
    """A TransformerBridge over the checkpoint, in compatibility mode (classic hook names), its weights processed
    (fold_ln, centring) or not."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer, GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(checkpoint, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    bridge = TransformerBridge.boot_transformers(str(checkpoint), hf_model=hf, tokenizer=tokenizer)
    bridge.enable_compatibility_mode(no_processing=not processing)
    bridge.set_use_attn_result(True)
    return bridge


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    from gpt2graph.tokenizer import gpt2_bpe_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    gpt2_bpe_tokenizer().save_pretrained(path)  # TransformerLens re-opens the tokenizer by its path
    return path


@pytest.fixture(scope="module")
def bridge(tiny_checkpoint, tok_dir):
    return boot(tiny_checkpoint, tok_dir)


@pytest.fixture(scope="module")
def tl_cache(bridge, tiny_graph):
    with torch.no_grad():
        _, cache = bridge.run_with_cache(torch.tensor([tiny_graph.tokenization.token_ids]))
    return cache


def test_every_hooked_vector_equals_transformerlens(tiny_graph, tl_cache):
    checked = set()
    for node in tiny_graph.iter_nodes(node_type="vector"):
        if node.hook is None:  # token ids, and the decoding stage TransformerLens does not model
            assert node.kind == "token" or node.stage == "decode"
            continue
        expected = tl_cache[node.hook][0][tuple(node.index)]
        if node.kind in ("attn_scores", "attn_pattern"):
            expected = expected[: node.position + 1]  # the causal row; TL pads it with -inf / 0
        torch.testing.assert_close(
            tiny_graph.values(node.id), expected, rtol=1e-5, atol=1e-5, msg=lambda m, n=node: f"{n.id}: {m}"
        )
        checked.add(node.kind)
        for alias in node.aliases:
            hook, index = alias.split("[")
            idx = tuple(int(i) for i in index.rstrip("]").split(","))
            torch.testing.assert_close(tiny_graph.values(node.id), tl_cache[hook][0][idx], rtol=1e-5, atol=1e-5)
    assert len(checked) == 27  # every vector kind but the token ids and the decoding stage


def test_graph_cache_is_what_transformer_lens_caches(tiny_graph, tl_cache):
    """Every hook of the graph's cache, whole (batch dimension, masked entries and all), equals the bridge's."""
    ours = tiny_graph.cache()
    assert set(ours) <= set(tl_cache.keys())
    assert "blocks.0.hook_resid_post" in ours and "blocks.0.attn.hook_result" in ours
    for name, tensor in ours.items():
        torch.testing.assert_close(tensor, tl_cache[name], rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert len(repr(ours)) < 200


def test_hook_takes_transformer_lens_names(tiny_graph):
    pattern = tiny_graph.hook("blocks.1.attn.hook_pattern")
    assert torch.equal(pattern, tiny_graph.hook("attn_pattern", 1)) and pattern.shape == (4, 5, 5)
    assert torch.equal(tiny_graph.hook("blocks.0.hook_resid_post"), tiny_graph.hook("resid_pre", 1))
    assert torch.equal(tiny_graph.hook("blocks.0.hook_resid_pre"), tiny_graph.hook("input_embedding"))
    assert tiny_graph.hook("decode.probs").shape == (5, 50257)


@pytest.mark.parametrize(
    "args, message",
    [
        (("blocks.7.attn.hook_q",), "q at layer 7 is not in this graph: q takes a layer in 0..1"),
        (("blocks.0.attn.hook_pattern", 1), "names its layer (layer 0): give no layer with it, not 1"),
        (("blocks.0.attn.W_Q",), "no activation 'blocks.0.attn.W_Q'"),
        (("q",), "q takes a layer in 0..1"),
        (("q", 5), "q at layer 5 is not in this graph"),
        (("hook_embed", 0), "hook_embed names its layer (no layer)"),
        (("logit",), "no activation 'logit'"),
    ],
)
def test_a_name_hook_cannot_find_is_a_clear_error(tiny_graph, args, message):
    with pytest.raises(NodeNotFoundError, match=re.escape(message)):
        tiny_graph.hook(*args)


def test_build_from_a_bridge(bridge, tiny_graph):
    """A bridge over a GPT-2, or the HF model it was booted over (which booting changed), builds the same graph
    as the checkpoint it came from."""
    for model in (bridge, bridge.original_model):
        g = gpt2graph.build(PROMPT, model=model)
        assert g.model.total_parameters == tiny_graph.model.total_parameters and g.verify().ok
        for name, t in tiny_graph.store.activations.items():
            torch.testing.assert_close(g.store.activations[name], t, rtol=1e-5, atol=1e-5)
        for name, t in tiny_graph.store.params.items():
            assert torch.equal(g.store.params[name], t), name


def test_a_bridge_with_processed_weights_is_refused(tiny_checkpoint, tok_dir):
    processed = boot(tiny_checkpoint, tok_dir, processing=True)
    with pytest.raises(NotGpt2Error, match="weights were processed .*no_processing=True"):
        gpt2graph.build(PROMPT, model=processed)


def test_from_cache_round_trip(bridge):
    """An ActivationCache (BOS first, as to_tokens gives it) with its model becomes the graph of that run."""
    tokens = bridge.to_tokens(PROMPT)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
    g = gpt2graph.from_cache(cache, tokens)
    assert g.tokenization.token_ids == tokens[0].tolist() and g.tokenization.tokens_visible[0] == "<|endoftext|>"
    ours = g.cache()
    for name in ours:
        torch.testing.assert_close(ours[name], cache[name], rtol=1e-5, atol=1e-5)


def test_from_cache_refuses_a_cache_that_is_not_its_run(bridge):
    tokens = bridge.to_tokens(PROMPT)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
    edited = {name: cache[name].clone() for name in cache.keys()}  # noqa: SIM118
    edited["blocks.1.ln2.hook_normalized"][0, 2] += 0.5  # as a hook that patched an activation would leave it
    with pytest.raises(CacheMismatchError, match="blocks.1.ln2.hook_normalized differs .* by up to 0.5"):
        gpt2graph.from_cache(edited, tokens, model=bridge)
    with pytest.raises(CacheMismatchError, match="were these the tokens it was recorded on"):
        gpt2graph.from_cache(cache, tokens[:, 1:], model=bridge)
    with pytest.raises(CacheMismatchError, match="pass the model it was recorded with"):
        gpt2graph.from_cache(dict(edited), tokens)
