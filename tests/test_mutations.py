"""Tests that can fail: every operation, replaced by a subtly wrong version, makes ``verify`` fail.

The test model draws every parameter at trained-like magnitudes (conftest.every_parameter_matters), so a
dropped bias or gain is visible. A new operation in :mod:`gpt2graph.ops` needs a mutant here:
``test_every_operation_has_a_mutant`` fails until it has one.
"""

import math

import pytest
import torch

from gpt2graph import ops

_ORIGINAL = {name: getattr(ops, name) for name in ops.__all__ if name != "OPS"}


def _causal_scores_leaking_one_future_key(Q, K):
    n = Q.shape[-2]
    scores = Q @ K.transpose(-1, -2) / math.sqrt(Q.shape[-1])
    return scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(2), float("-inf"))


def _top_p_keeping_one_more(logits, p):
    return _ORIGINAL["top_p"](logits, None if p is None else min(1.0, p + 0.1))


#: operation -> a subtly wrong version of it
MUTANTS = {
    "lookup": lambda table, index: table[index] * 1.001,
    "add": lambda a, b: a + 0.999 * b,
    "ln_scale": lambda x, eps: torch.sqrt((x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True)) + eps,
    "ln_normalize": lambda x, scale: x / scale,  # not centred
    "ln_affine": lambda x, w, b: x * w,  # LayerNorm's beta dropped
    "head_projection": lambda x, W, b, **kw: _ORIGINAL["head_projection"](x, W, torch.zeros_like(b), **kw),  # no bias
    "scaled_dot_product": lambda q, keys: _ORIGINAL["scaled_dot_product"](q, keys) * math.sqrt(q.shape[-1] / 65),
    "causal_scores": _causal_scores_leaking_one_future_key,
    "softmax": lambda s: torch.softmax(s * 1.01, dim=-1),
    "weighted_sum": lambda pattern, values: _ORIGINAL["weighted_sum"](pattern, values) * 1.001,
    "output_projection": lambda z, W_O: _ORIGINAL["output_projection"](z, W_O * 1.001),
    "sum_heads": lambda head_outputs, b_O: head_outputs.sum(dim=-2),  # b_O dropped
    "attention_output": lambda z, W_O, b_O: _ORIGINAL["attention_output"](z, W_O, torch.zeros_like(b_O)),
    "linear": lambda x, W, b: x @ W,  # bias dropped
    "gelu": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.04 * x.pow(3)))),
    "unembed": lambda x, W_U: x @ W_U * 1.001,
    "temperature": lambda logits, t: logits / (t * 1.01),
    "top_k": lambda logits, k: _ORIGINAL["top_k"](logits, None if k is None else k + 1),
    "top_p": _top_p_keeping_one_more,
    "sample": lambda probs, seed: probs.argmin(dim=-1, keepdim=True),
}
#: gains of one are invisible to a dropped gain: checked separately below
GAIN_DROPPED = lambda x, w, b: x + b  # noqa: E731


def test_every_operation_has_a_mutant():
    assert set(MUTANTS) == set(_ORIGINAL)


def test_the_test_model_has_no_default_parameter(tiny_graph):
    """Every bias is nonzero and every LayerNorm gain differs from one, so dropping either changes values."""
    for name, t in tiny_graph.store.params.items():
        if name.endswith("bias") or "wte" in name or "wpe" in name:
            assert (t != 0).all(), name
        if ".ln_" in name and name.endswith("weight"):
            assert (t != 1).all(), name


@pytest.fixture(scope="module")
def decoded(tiny_graph):
    """The tiny run decoded with every filter active, so that a wrong filter changes the decoding nodes."""
    return tiny_graph.with_decoding(temperature=0.7, top_k=40, top_p=0.5)


def _verify_fails(graph, monkeypatch, name, mutant) -> bool:
    monkeypatch.setattr(ops, name, mutant)
    for kind, fn in list(ops.OPS.items()):
        if fn is _ORIGINAL[name]:
            monkeypatch.setitem(ops.OPS, kind, mutant)
    return not (graph.verify("batched").ok and graph.verify("vector").ok)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_verify_catches_the_mutant(decoded, monkeypatch, name):
    assert decoded.verify().ok
    assert _verify_fails(decoded, monkeypatch, name, MUTANTS[name]), f"a wrong {name} went unnoticed"


def test_verify_catches_a_dropped_layernorm_gain(decoded, monkeypatch):
    assert _verify_fails(decoded, monkeypatch, "ln_affine", GAIN_DROPPED)
