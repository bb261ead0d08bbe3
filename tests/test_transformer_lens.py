"""Node ids map 1:1 to TransformerLens hooks: cache[node.hook][0][tuple(node.index)] is the node's vector."""

import pytest
import torch


@pytest.fixture(scope="module")
def tl_cache(tiny_checkpoint, tiny_graph, tmp_path_factory):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from gpt2graph.tokenizer import gpt2_bpe_tokenizer

    tok_dir = tmp_path_factory.mktemp("tokenizer")
    gpt2_bpe_tokenizer().save_pretrained(tok_dir)  # TransformerLens re-opens the tokenizer by its path
    hf = GPT2LMHeadModel.from_pretrained(tiny_checkpoint, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    bridge = TransformerBridge.boot_transformers(str(tiny_checkpoint), hf_model=hf, tokenizer=tokenizer)
    bridge.enable_compatibility_mode(no_processing=True)
    bridge.set_use_attn_result(True)
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
