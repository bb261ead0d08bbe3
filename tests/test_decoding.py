"""Decoding: every step's distribution equals an independent reference (and Hugging Face's logits
warpers); greedy and seeded choices are reproducible; options out of range are refused clearly."""

from types import SimpleNamespace

import pytest
import torch

from gpt2graph.decoding import decode_next
from gpt2graph.ops import top_k as apply_top_k
from gpt2graph.ops import top_p as apply_top_p
from gpt2graph.errors import InterpretError

N_VOCAB = 200


def fake_graph(logits: torch.Tensor) -> SimpleNamespace:
    """What decoding reads from a graph: the logits, the number of tokens and a decoder."""
    return SimpleNamespace(logits=logits, n_tokens=logits.shape[0], decode_token=lambda i: f"t{i}")


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


@pytest.mark.parametrize("temperature, k, p", [(1.0, None, None), (0.7, 20, None), (1.5, None, 0.9),
                                               (0.5, 10, 0.5), (2.0, 50, 0.95), (1.0, None, 1.0), (1.0, 1, None)])
def test_every_step_matches_the_reference(peaked, temperature, k, p):
    graph = fake_graph(peaked)
    for position in range(3):
        result = decode_next(graph, position=position, temperature=temperature, top_k=k, top_p=p, candidates=8)
        expected = reference(peaked[position], temperature, k, p)
        assert [s.kind for s in result.steps] == ["softmax", "temperature"] + ["top_k"] * (k is not None) + \
            ["top_p"] * (p is not None)
        for step, probs in zip(result.steps, expected):
            assert step.kept == int((probs > 0).sum())
            top = torch.topk(probs, min(8, step.kept))
            assert [c.id for c in step.candidates] == top.indices.tolist()
            torch.testing.assert_close(torch.tensor([c.prob for c in step.candidates], dtype=torch.float64),
                                       top.values, rtol=1e-12, atol=1e-15)
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


@pytest.mark.parametrize("options, message", [
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
])
def test_bad_options_are_refused(peaked, options, message):
    with pytest.raises(InterpretError, match=message):
        decode_next(fake_graph(peaked), **options)
