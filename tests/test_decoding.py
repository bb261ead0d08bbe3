"""Decoding: every step's distribution equals an independent reference (and Hugging Face's logits
warpers); greedy and seeded choices are reproducible; options out of range are refused clearly."""

from types import SimpleNamespace

import pytest
import torch
from conftest import PROMPT

import gpt2graph
from gpt2graph.decoding import decode_next
from gpt2graph.errors import InterpretError
from gpt2graph.ops import top_k as apply_top_k
from gpt2graph.ops import top_p as apply_top_p
from gpt2graph.storage import load

N_VOCAB = 200


def fake_graph(logits: torch.Tensor) -> SimpleNamespace:
    """What decoding reads from a graph: one position's logits, the number of tokens and a decoder."""
    store = SimpleNamespace(logits=lambda position: logits[position])
    return SimpleNamespace(store=store, n_tokens=logits.shape[0], decode_token=lambda i: f"t{i}")


@pytest.fixture(scope="module")
def peaked():
    torch.manual_seed(0)
    return torch.randn(3, N_VOCAB) * 3  # peaked enough that top-p keeps a handful of tokens


def reference(logits: torch.Tensor, temperature: float, k: int | None, p: float | None) -> list[torch.Tensor]:
    """Probabilities after each step, written independently: top-k by threshold, top-p in ascending order
    (drop every token whose cumulative mass from the bottom is at most 1 - p)."""
    x = logits.double()
    out = [torch.softmax(x, -1)]
    x = x / temperature
    out.append(torch.softmax(x, -1))
    if k is not None:
        x = torch.where(x >= torch.topk(x, k).values[-1], x, torch.tensor(float("-inf"), dtype=x.dtype))
        out.append(torch.softmax(x, -1))
    if p is not None:
        ascending, order = torch.sort(x)
        drop = torch.softmax(ascending, -1).cumsum(-1) <= 1 - p
        drop[-1] = False
        x = x.clone()
        x[order[drop]] = float("-inf")
        out.append(torch.softmax(x, -1))
    return out


@pytest.mark.parametrize(
    "temperature, k, p",
    [
        (1.0, None, None),
        (0.7, 20, None),
        (1.5, None, 0.9),
        (0.5, 10, 0.5),
        (2.0, 50, 0.95),
        (1.0, None, 1.0),
        (1.0, 1, None),
    ],
)
def test_every_step_matches_the_reference(peaked, temperature, k, p):
    graph = fake_graph(peaked)
    for position in range(3):
        result = decode_next(graph, position=position, temperature=temperature, top_k=k, top_p=p, candidates=8)
        expected = reference(peaked[position], temperature, k, p)
        assert [s.kind for s in result.steps] == ["softmax", "temperature"] + ["top_k"] * (k is not None) + [
            "top_p"
        ] * (p is not None)
        for step, probs in zip(result.steps, expected):
            assert step.kept == int((probs > 0).sum())
            top = torch.topk(probs, min(8, step.kept))
            assert [c.id for c in step.candidates] == top.indices.tolist()
            torch.testing.assert_close(
                torch.tensor([c.prob for c in step.candidates], dtype=torch.float64), top.values, rtol=1e-12, atol=1e-15
            )
        assert result.greedy and result.chosen.id == int(expected[-1].argmax())


def test_filters_match_hugging_face_warpers(peaked):
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    x = peaked.double()
    for k in (1, 5, 40):
        assert torch.equal(torch.isinf(apply_top_k(x, k)), torch.isinf(TopKLogitsWarper(k)(None, x.clone())))
    for p in (0.3, 0.8, 0.99):
        assert torch.equal(torch.isinf(apply_top_p(x, p)), torch.isinf(TopPLogitsWarper(p)(None, x.clone())))


def test_ties_at_the_kth_logit_are_kept():
    kept = apply_top_k(torch.tensor([3.0, 1.0, 3.0, 3.0, 0.0]), 2)
    assert torch.isfinite(kept).tolist() == [True, False, True, True, False]


def test_seeded_samples_are_reproducible_and_inside_the_nucleus(peaked):
    graph = fake_graph(peaked)
    nucleus = reference(peaked[-1], 1.3, None, 0.8)[-1]
    chosen = set()
    for seed in range(40):
        d = decode_next(graph, temperature=1.3, top_p=0.8, seed=seed)
        assert not d.greedy and d.seed == seed
        assert d == decode_next(graph, temperature=1.3, top_p=0.8, seed=seed)
        expected = int(torch.multinomial(nucleus, 1, generator=torch.Generator().manual_seed(seed)))
        assert d.chosen.id == expected and nucleus[expected] > 0
        assert d.chosen.prob == pytest.approx(float(nucleus[expected]))
        chosen.add(d.chosen.id)
    assert len(chosen) > 1  # it does sample


def test_greedy_on_a_real_graph_is_the_prediction(tiny_graph):
    d = decode_next(tiny_graph)
    assert d.position == tiny_graph.n_tokens - 1
    assert d.chosen.id == int(tiny_graph.logits[-1].argmax())
    assert d.chosen.token == tiny_graph.decode_token(d.chosen.id)
    assert d.steps[0].kept == tiny_graph.dims.n_vocab


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(temperature=0), "temperature must be a finite number > 0"),
        (dict(temperature=-1.0), "temperature must be a finite number > 0"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_p=0), r"top-p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top-p must be in \(0, 1\]"),
        (dict(top_k=0), "top-k must be an integer >= 1"),
        (dict(top_k=2.5), "top-k must be an integer >= 1"),
        (dict(seed="x"), "seed must be an integer"),
        (dict(position=3), "position 3 is out of range for a 3-token prompt"),
        (dict(candidates=0), "candidates"),
    ],
)
def test_bad_options_are_refused(peaked, options, message):
    with pytest.raises(InterpretError, match=message):
        decode_next(fake_graph(peaked), **options)


# ---- the decoding stage as nodes of the graph ------------------------------------------------------------
DECODE_CHAIN = ["logits", "scaled_logits", "top_k_logits", "top_p_logits", "probs", "next_token"]


@pytest.fixture
def graph(tiny_checkpoint):
    """A build of its own: analyze() changes its decoding settings."""
    return gpt2graph.build(PROMPT, model=str(tiny_checkpoint))


def test_every_position_decodes_through_a_chain_of_nodes(graph):
    last = graph.n_tokens - 1
    node = graph.node(f"decode.next_token[{last}]")
    assert (node.kind, node.stage, node.category, node.hook, node.shape) == (
        "next_token",
        "decode",
        "unembedding",
        None,
        [1],
    )
    chain, vid = [], node.id
    while True:  # walk the operations back from the chosen token to the logits
        chain.append(graph.node(vid).kind)
        inputs = [e.source for e in graph.edges("op:" + vid) if e.role == "input"]
        if not inputs or graph.node(vid).kind == "logits":
            break
        (vid,) = inputs
    assert chain[::-1] == DECODE_CHAIN
    ops = [graph.node("op:" + graph.node(f"decode.{k}[{last}]").id).kind for k in DECODE_CHAIN[1:]]
    assert ops == ["temperature", "top_k", "top_p", "softmax", "sample"]
    assert len(graph.nodes(kind="next_token")) == graph.n_tokens


def test_node_values_are_the_decoding_of_the_logits(graph):
    graph = graph.with_decoding(temperature=0.7, top_k=40, top_p=0.9, seed=3)
    for p in range(graph.n_tokens):
        d = decode_next(graph, position=p, temperature=0.7, top_k=40, top_p=0.9, seed=3)
        probs = graph.values(f"decode.probs[{p}]")
        assert int(graph.values(f"decode.next_token[{p}]")) == d.chosen.id
        assert float(probs[d.chosen.id]) == pytest.approx(d.chosen.prob)
        assert int(torch.isfinite(graph.values(f"decode.top_p_logits[{p}]")).sum()) == d.steps[-1].kept
        torch.testing.assert_close(graph.values(f"decode.scaled_logits[{p}]"), graph.logits[p].double() / 0.7)
    whole = graph.hook("probs")
    assert whole.shape == (graph.n_tokens, graph.dims.n_vocab)
    torch.testing.assert_close(whole[1], graph.values("decode.probs[1]"))


def test_settings_change_the_values_and_are_checked(graph):
    greedy = graph.values("decode.next_token[2]")
    assert int(greedy) == int(graph.logits[2].argmax())
    assert int(torch.isfinite(graph.values("decode.top_k_logits[2]")).sum()) == graph.dims.n_vocab  # off
    top3 = graph.with_decoding(top_k=3)
    assert int(torch.isfinite(top3.values("decode.top_k_logits[2]")).sum()) == 3
    summary = top3.node("decode.top_k_logits[2]").summary  # over the 3 tokens still in the running
    assert summary.max == pytest.approx(float(graph.logits[2].max())) and summary.min > float("-inf")
    assert graph.decoding.top_k is None and top3.store is graph.store  # a view: the graph itself is unchanged
    with pytest.raises(InterpretError, match=r"top-p must be in \(0, 1\]"):
        graph.with_decoding(top_p=2.0)


def test_analyze_sets_the_decoding_its_table_shows(graph):
    a = graph.analyze(temperature=0.8, top_k=5, seed=11, lens=False)
    assert graph.decoding.model_dump() == {"temperature": 0.8, "top_k": 5, "top_p": None, "seed": 11}
    last = graph.n_tokens - 1
    assert int(graph.values(f"decode.next_token[{last}]")) == a.decoding.chosen.id


def test_settings_are_saved_and_verified(graph, tmp_path):
    graph = graph.with_decoding(temperature=1.3, top_p=0.8, seed=0)
    graph.save(tmp_path / "run.gg")
    loaded = load(tmp_path / "run.gg")
    assert loaded.decoding == graph.decoding
    assert torch.equal(loaded.values("decode.next_token[1]"), graph.values("decode.next_token[1]"))
    report = loaded.verify()
    assert report.ok and {"scaled_logits", "top_p_logits", "probs", "next_token"} <= set(report.kinds)
    assert loaded.verify(mode="vector").ok
