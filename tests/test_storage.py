"""Saved graphs reload losslessly; anything corrupted, truncated or mismatched is refused; writes are atomic."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import PROMPT

import gpt2graph
import gpt2graph.weightstore
from gpt2graph.errors import GraphFileError
from gpt2graph.lens import logit_lens
from gpt2graph.schema import FORMAT_VERSION
from gpt2graph.values import CAPTURED_KINDS, activation_shapes


def test_round_trip_is_lossless(tiny_graph, saved_graph):
    loaded = gpt2graph.load(saved_graph)
    assert loaded.header.model_dump(exclude={"values_sha256", "stored_weights"}) == tiny_graph.header.model_dump(
        exclude={"values_sha256", "stored_weights"}
    )
    assert loaded.vocab == tiny_graph.vocab
    stored = activation_shapes(tiny_graph.dims, tiny_graph.n_tokens)
    assert set(loaded.store.activations) == set(stored)  # the rest is recomputed when first read
    for kind in CAPTURED_KINDS:  # ... from the stored ones, with the model's own calls: the captured bits
        for layer in tiny_graph.topology.layers_of(kind):
            assert torch.equal(loaded.hook(kind, layer), tiny_graph.hook(kind, layer)), (kind, layer)
    for name, t in tiny_graph.store.params.items():
        assert torch.equal(loaded.store.params[name], t), name
    node_id = "blocks.1.attn.hook_pattern[2,4]"
    assert loaded.node(node_id) == tiny_graph.node(node_id)
    assert loaded.verify().ok


def test_the_header_is_schema_json(saved_graph):
    header = json.loads((saved_graph / "graph.json").read_text())
    assert header["format"] == "gpt2graph" and len(header["values_sha256"]) == 64
    assert header["tokenization"]["token_ids"][:2] == [8291, 16354]


def _copy(saved_graph, tmp_path):
    dest = tmp_path / "copy.gg"
    shutil.copytree(saved_graph, dest)
    return dest


def test_truncated_values_are_refused(saved_graph, tmp_path):
    dest = _copy(saved_graph, tmp_path)
    data = (dest / "values.safetensors").read_bytes()
    (dest / "values.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphFileError, match="truncated, corrupted or mismatched"):
        gpt2graph.load(dest)


def test_mismatched_pair_is_refused(tiny_checkpoint, saved_graph, tmp_path):
    other = tmp_path / "other.gg"
    gpt2graph.build("a different prompt", model=str(tiny_checkpoint)).save(other)
    dest = _copy(saved_graph, tmp_path)
    shutil.copy(other / "values.safetensors", dest / "values.safetensors")
    with pytest.raises(GraphFileError, match="does not belong to graph.json"):
        gpt2graph.load(dest)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"format": "gpt2graph", "format_version": 1}', "does not match the graph schema"),
        (
            '{"format_version": 99}',
            r"format_version 99 is not supported \(this gpt2graph reads versions 1, 2, 3; rebuild",
        ),
    ],
)
def test_corrupted_header_is_refused(saved_graph, tmp_path, text, message):
    dest = _copy(saved_graph, tmp_path)
    (dest / "graph.json").write_text(text)
    with pytest.raises(GraphFileError, match=message):
        gpt2graph.load(dest)


def test_missing_parts_are_refused(saved_graph, tmp_path):
    dest = _copy(saved_graph, tmp_path)
    (dest / "values.safetensors").unlink()
    with pytest.raises(GraphFileError, match="values.safetensors is missing"):
        gpt2graph.load(dest)
    with pytest.raises(GraphFileError, match="no such saved graph"):
        gpt2graph.load(tmp_path / "nothing.gg")
    (tmp_path / "file.gg").write_text("x")
    with pytest.raises(GraphFileError, match="not a saved graph"):
        gpt2graph.load(tmp_path / "file.gg")


def test_unwritable_path_leaves_nothing(tiny_graph, tmp_path):
    with pytest.raises(GraphFileError, match="does not exist"):
        tiny_graph.save(tmp_path / "no" / "such" / "dir" / "run.gg")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a regular file instead
            target = tmp_path / "file" / "run.gg"
            (tmp_path / "file").write_text("x")
        else:
            target = locked / "run.gg"
        with pytest.raises(GraphFileError, match="cannot write"):
            tiny_graph.save(target)
    finally:
        locked.chmod(0o700)
    assert sorted(p.name for p in locked.iterdir()) == []


def test_refuses_to_replace_something_that_is_not_a_graph(tiny_graph, tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(GraphFileError, match="not a saved graph"):
        tiny_graph.save(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_overwrite_is_atomic_and_failure_keeps_the_old_graph(tiny_graph, tiny_checkpoint, tmp_path, monkeypatch):
    path = tmp_path / "run.gg"
    tiny_graph.save(path)
    before = (path / "graph.json").read_text()
    other = gpt2graph.build("another prompt", model=str(tiny_checkpoint))

    import safetensors.torch

    def failing_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(GraphFileError, match="No space left"):
        other.save(path)
    monkeypatch.undo()
    assert (path / "graph.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.gg"]  # no temporary leftovers
    other.save(path)
    assert gpt2graph.load(path).tokenization.text == "another prompt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.gg"]


def test_a_format_1_graph_loads_upgraded_and_verifies():
    """Format 1 (gpt2graph 0.1.0 before the LayerNorm split) stored q, k, v fused, z flat and each LayerNorm's
    output under hook_normalized: it loads under today's names and layouts and still verifies."""
    old = gpt2graph.load(Path(__file__).parent / "data" / "format-v1" / "run.gg")
    assert old.header.format_version == FORMAT_VERSION
    assert old.verify().ok and old.verify(mode="vector").ok
    assert old.values("blocks.1.ln1.hook_out[2]").shape == (32,)
    assert old.values("blocks.1.ln1.hook_scale[2]").shape == (1,)
    assert old.hook("q", 0).shape == (4, 4, 8)
    options = old.analysis.options  # the analysis it carried, under today's option names
    assert (options.top_tokens, options.top_k, options.induction_probe) == (3, None, 3)
    assert old.analysis.lens.top_tokens == 3 and len(old.lens.entries) == old.analysis.lens.n_entries


def test_a_format_2_graph_loads_upgraded_and_verifies():
    """Format 2 embedded the parameters and stored the logits in every graph: it loads with its weights as
    embedded ones (their hash computed), its stored logits dropped for derived ones that are the same numbers,
    and its logit lens intact."""
    from safetensors import safe_open

    path = Path(__file__).parent / "data" / "format-v2" / "run.gg"
    old = gpt2graph.load(path)
    assert old.header.format_version == FORMAT_VERSION
    assert old.header.stored_weights.embedded
    assert old.header.stored_weights.sha256 == gpt2graph.weightstore.digest(old.store.params)
    assert "hook_unembed" not in old.store.activations
    with safe_open(str(path / "values.safetensors"), framework="pt") as f:
        assert torch.equal(old.logits, f.get_tensor("act/hook_unembed"))
    assert old.verify().ok
    lens = old.analysis.lens
    assert lens.top_tokens == 3 and len(old.lens.entries) == lens.n_entries
    # its lens arrays (every kind, block after block) read as this version stores them: as computed today
    fresh = logit_lens(old, top_tokens=3, target=lens.target, eager=True)
    for node in ("blocks.0.hook_resid_pre[2]", "blocks.0.attn.hook_result[1,2]", "blocks.1.attn.b_O"):
        saved, now = old.lens.entry(node), fresh.entry(node)
        assert [t.id for t in saved.top] == [t.id for t in now.top], node
        assert saved.next_token_rank == now.next_token_rank and saved.target_rank == now.target_rank, node
        assert saved.top[0].prob == pytest.approx(now.top[0].prob, rel=1e-5), node


def test_a_format_2_counterfactual_loads_upgraded_verifies_and_resaves_as_format_3(tmp_path):
    """A counterfactual run saved in format 2 (by the interventions work before format 3) stored every captured
    kind, its logits and the derived layers it replaced: it loads with every stored value kept where a
    replacement makes it underivable (its replaced logits row too), verifies against its recorded replacements,
    and saves again as format 3 with only what format 3 cannot derive."""
    from safetensors import safe_open

    path = Path(__file__).parent / "data" / "format-v2" / "counterfactual.gg"
    old = gpt2graph.load(path)
    assert [r.node for r in old.counterfactual.interventions] == [
        "blocks.0.ln1.hook_scale[1]",
        "blocks.1.attn.hook_result[3,2]",
        "blocks.0.mlp.hook_pre[2]",
        "hook_unembed[3]",
    ]
    with safe_open(str(path / "values.safetensors"), framework="pt") as f:
        for name in ("hook_unembed", "blocks.0.ln1.hook_out", "blocks.1.hook_attn_out", "blocks.0.mlp.hook_post"):
            assert torch.equal(old.store.activations[name], f.get_tensor("act/" + name)), name
    assert torch.equal(old.logits[3], torch.linspace(-1, 1, 1000))
    for mode in ("batched", "vector"):
        report = old.verify(mode)
        assert report.ok and report.reference == "counterfactual", report.format()
    old.save(tmp_path / "new.gg")
    with safe_open(str(tmp_path / "new.gg" / "values.safetensors"), framework="pt") as f:
        beyond = {n.removeprefix("act/") for n in f.keys() if n.startswith("act/")} - set(  # noqa: SIM118
            activation_shapes(old.dims, old.n_tokens)
        )
    assert beyond == {
        "blocks.0.ln1.hook_scale",
        "blocks.0.ln1.hook_normalized",
        "blocks.0.ln1.hook_out",
        "blocks.1.attn.hook_result",
        "blocks.1.hook_attn_out",
        "blocks.0.mlp.hook_pre",
        "hook_unembed",
    }
    again = gpt2graph.load(tmp_path / "new.gg")
    assert again.counterfactual == old.counterfactual and again.verify().ok
    for kind in CAPTURED_KINDS:
        for layer in old.topology.layers_of(kind):
            torch.testing.assert_close(again.hook(kind, layer), old.hook(kind, layer), rtol=0, atol=1e-6)
    assert torch.equal(again.logits, old.logits)


def test_a_resaved_old_graph_is_format_3(tmp_path):
    old = gpt2graph.load(Path(__file__).parent / "data" / "format-v2" / "run.gg")
    old.save(tmp_path / "new.gg")
    header = json.loads((tmp_path / "new.gg" / "graph.json").read_text())
    assert header["format_version"] == 3 and header["stored_weights"]["embedded"] is False
    again = gpt2graph.load(tmp_path / "new.gg")
    assert torch.equal(again.logits, old.logits) and again.analysis == old.analysis


def test_only_the_stream_and_z_are_saved(tiny_graph, saved_graph):
    """The logits, the embeddings, LayerNorm outputs, q, k, v and the MLP's vectors are not saved: they are
    recomputed on load, and are the same numbers."""
    from safetensors import safe_open

    with safe_open(str(saved_graph / "values.safetensors"), framework="pt") as f:
        names = {n.removeprefix("act/") for n in f.keys()}  # noqa: SIM118
    assert names == {
        "tokens",
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_pre",
        "blocks.0.hook_resid_mid",
        "blocks.1.hook_resid_mid",
        "blocks.1.hook_resid_post",
        "blocks.0.attn.hook_z",
        "blocks.1.attn.hook_z",
    }
    assert torch.equal(gpt2graph.load(saved_graph).logits, tiny_graph.logits)


def test_the_other_gelu_is_recomputed_with_its_own_kernel(tmp_path):
    """gelu_pytorch_tanh and gelu_new are the same formula computed differently: a saved graph recomputes the
    MLP with the function its model used, to the captured bits."""
    from conftest import make_checkpoint

    path = make_checkpoint(tmp_path / "ckpt", activation_function="gelu_pytorch_tanh")
    graph = gpt2graph.build(PROMPT, model=str(path))
    assert graph.dims.activation_function == "gelu_pytorch_tanh"
    graph.save(tmp_path / "run.gg")
    loaded = gpt2graph.load(tmp_path / "run.gg")
    assert torch.equal(loaded.hook("mlp_post", 1), graph.hook("mlp_post", 1))
    assert loaded.verify().ok
