"""Logit lens: exact at the last stream, the same whatever the chunking, and complete over the stream."""

import pytest
import torch
from conftest import TINY

from gpt2graph.errors import InterpretError
from gpt2graph.lens import logit_lens
from gpt2graph.results import LensKind
from gpt2graph.targets import byte_level, resolve_position, resolve_token


@pytest.fixture(scope="module")
def lens(tiny_graph):
    return logit_lens(tiny_graph, top_tokens=5, target=" the")


def test_every_stream_vector_and_every_write_is_read(tiny_graph, lens):
    n, L, H = tiny_graph.n_tokens, TINY["n_layer"], TINY["n_head"]
    counts = {k: sum(e.kind == k for e in lens.entries) for k in LensKind}
    assert counts == {
        "input_embedding": n,
        "resid_pre": (L - 1) * n,
        "resid_mid": L * n,
        "resid_post": n,
        "head_out": L * H * n,
        "b_O": L,
        "mlp_out": L * n,
    }
    for e in lens.entries:  # every id is a node of the graph
        tiny_graph.node(e.node) if e.kind != "b_O" else tiny_graph.values(e.node)
    assert len({e.node for e in lens.entries}) == len(lens.entries)


def test_lens_of_the_last_stream_is_the_models_distribution(tiny_graph, lens):
    probs = torch.softmax(tiny_graph.logits.double(), dim=-1)
    last = [e for e in lens.entries if e.kind == "resid_post"]
    ids = tiny_graph.tokenization.token_ids
    for p, e in enumerate(last):
        top = torch.topk(probs[p], 5)
        assert [t.id for t in e.top] == top.indices.tolist()
        torch.testing.assert_close(
            torch.tensor([t.prob for t in e.top], dtype=torch.float64), top.values, rtol=1e-5, atol=1e-9
        )
        torch.testing.assert_close(
            torch.tensor([t.logit for t in e.top]), tiny_graph.logits[p, top.indices], rtol=1e-5, atol=1e-5
        )
        if p + 1 < len(ids):
            nxt = ids[p + 1]
            assert e.next_token_rank == int((tiny_graph.logits[p] > tiny_graph.logits[p, nxt]).sum()) + 1
            assert e.next_token_prob == pytest.approx(float(probs[p, nxt]), rel=1e-5)
        else:
            assert e.next_token_rank is None and e.next_token_prob is None
        the = resolve_token(tiny_graph, " the")
        assert e.target_prob == pytest.approx(float(probs[p, the]), rel=1e-5)


def test_component_outputs_are_normalised_on_their_own(tiny_graph, lens):
    node = "blocks.1.attn.hook_result[3,2]"
    x = tiny_graph.values(node).double()
    normed = (x - x.mean()) / torch.sqrt(x.var(correction=0) + tiny_graph.dims.layer_norm_eps)
    normed = normed * tiny_graph.param("ln_final_w") + tiny_graph.param("ln_final_b")
    logits = normed @ tiny_graph.param("W_U").double()
    entry = next(e for e in lens.entries if e.node == node)
    assert [t.id for t in entry.top] == torch.topk(logits, 5).indices.tolist()
    b_O = next(e for e in lens.entries if e.node == "blocks.0.attn.b_O")
    assert b_O.next_token_rank is None and b_O.target_rank is not None


def test_chunking_does_not_change_the_result(tiny_graph, lens):
    small = logit_lens(tiny_graph, top_tokens=5, target=" the", chunk_elements=3 * tiny_graph.dims.n_vocab)
    assert [e.node for e in small.entries] == [e.node for e in lens.entries]
    for a, b in zip(small.entries, lens.entries):
        assert [t.id for t in a.top] == [t.id for t in b.top]
        assert a.next_token_rank == b.next_token_rank and a.target_rank == b.target_rank


def test_kinds_restrict_the_lens(tiny_graph):
    only = logit_lens(tiny_graph, kinds=["resid_post"], top_tokens=2)
    assert {e.kind for e in only.entries} == {"resid_post"} and all(len(e.top) == 2 for e in only.entries)
    assert all(e.target_rank is None for e in only.entries)
    with pytest.raises(InterpretError, match="unknown logit-lens kind"):
        logit_lens(tiny_graph, kinds=["attn_pattern"])
    with pytest.raises(InterpretError, match="top_tokens"):
        logit_lens(tiny_graph, top_tokens=0)


def test_tokens_resolve_from_ids_bpe_form_or_raw_text(tiny_graph):
    the = resolve_token(tiny_graph, " the")
    assert tiny_graph.decode_token(the) == "Ġthe" and resolve_token(tiny_graph, "Ġthe") == the
    assert resolve_token(tiny_graph, the) == the
    assert byte_level(" the\n") == "ĠtheĊ"
    with pytest.raises(InterpretError, match="not a single token"):
        resolve_token(tiny_graph, "Transformer tokens", "target")
    with pytest.raises(InterpretError, match="leading space"):
        resolve_token(tiny_graph, "elephant")
    with pytest.raises(InterpretError, match="outside the vocabulary"):
        resolve_token(tiny_graph, tiny_graph.dims.n_vocab)
    with pytest.raises(InterpretError, match="out of range"):
        resolve_position(tiny_graph, tiny_graph.n_tokens)
    assert resolve_position(tiny_graph, -1) == tiny_graph.n_tokens - 1


def test_the_stream_is_read_now_and_the_writes_when_asked_for(tiny_graph, monkeypatch):
    from gpt2graph import lens as lens_module

    calls = []
    original = lens_module.lens_logits
    monkeypatch.setattr(lens_module, "lens_logits", lambda g, x: calls.append(x.shape[0]) or original(g, x))
    rows = 3  # rows per chunk: several chunks per block
    table = logit_lens(tiny_graph, target=" the", chunk_elements=rows * tiny_graph.dims.n_vocab)
    n, L = tiny_graph.n_tokens, TINY["n_layer"]
    assert table.header.stored_kinds == ["input_embedding", "resid_pre", "resid_mid", "resid_post", "b_O"]
    assert sum(calls) == (2 * L + 1) * n + L  # the residual stream, every vector of it, and each b_O
    calls.clear()
    # the writes, in forward order: head outputs of block 0 (n * n_head rows), its MLP outputs (n), block 1's...
    entry = table.entry("blocks.1.attn.hook_result[3,2]")  # row 25 + 3 * 4 + 2 = 39: chunk 13, rows 39-41
    assert entry.kind == "head_out" and calls == [rows]
    assert table.entry("blocks.1.attn.hook_result[3,3]") == table.entry("blocks.1.attn.hook_result[3,3]")
    assert calls == [rows]  # the same chunk: read once
    table.entry("blocks.0.hook_mlp_out[4]")  # row 24, chunk 8: rows 24-26 span two blocks
    assert calls == [rows, rows]


def test_lazy_entries_equal_the_eager_ones(tiny_graph):
    """Read eagerly (everything now) or lazily (the writes chunk by chunk, in any order), every entry is the
    same, bit for bit: the same chunks go through the same code."""
    chunk = 5 * tiny_graph.dims.n_vocab
    eager = logit_lens(tiny_graph, target=" the", eager=True, chunk_elements=chunk)
    lazy = logit_lens(tiny_graph, target=" the", chunk_elements=chunk)
    assert eager.header.stored_kinds == eager.header.kinds and lazy.header.stored_kinds != lazy.header.kinds
    ids = [e.node for e in eager.entries]
    for node in reversed(ids):  # the lazy table reads its chunks in another order
        assert lazy.entry(node) == eager.entry(node), node
    assert lazy.entries == eager.entries and lazy == eager


def test_a_saved_lens_reads_its_writes_after_loading(tiny_checkpoint, tmp_path):
    from conftest import PROMPT

    import gpt2graph

    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint), analyze={"target": " the"})
    node = "blocks.0.hook_mlp_out[2]"
    graph.save(tmp_path / "lazy.gg")
    graph.analyze(target=" the", eager_lens=True)
    graph.save(tmp_path / "eager.gg")
    lazy, eager = gpt2graph.load(tmp_path / "lazy.gg"), gpt2graph.load(tmp_path / "eager.gg")
    assert eager.lens.header.stored_kinds == eager.lens.header.kinds
    assert lazy.lens.entry(node) == eager.lens.entry(node) == graph.lens.entry(node)
    sizes = {p: (tmp_path / p / "values.safetensors").stat().st_size for p in ("lazy.gg", "eager.gg")}
    assert sizes["lazy.gg"] < sizes["eager.gg"]  # the writes are not saved unless asked for
