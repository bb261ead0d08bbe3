"""Structure scales: a full-context graph costs its tensors, not millions of Python objects."""

import tracemalloc

import pytest
from conftest import make_checkpoint

import gpt2graph

pytestmark = pytest.mark.slow


def test_full_context_build_allocates_no_per_node_objects(tmp_path):
    path = make_checkpoint(tmp_path / "ctx", n_positions=1024)
    prompt = " a" * 1024
    tracemalloc.start()
    graph = gpt2graph.build(prompt, model=str(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    top = graph.topology
    # 2 layers x 4 heads x 1024^2 / 2 causal entries would be ~4M objects; Python-side peak stays far below
    assert top.count_vectors() > 50_000
    assert peak < 40e6, f"build allocated {peak / 1e6:.0f} MB of Python objects"
    # asking for one row is cheap and exact
    (row,) = graph.nodes(kind="attn_pattern", layer=1, head=3, position=1023)
    assert row.shape == [1024] and abs(row.summary.mean * 1024 - 1) < 1e-4
    assert graph.store.activations.keys().isdisjoint({"blocks.0.attn.hook_pattern", "blocks.0.attn.hook_attn_scores"})
