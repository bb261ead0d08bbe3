"""Saved graphs reload losslessly; anything corrupted, truncated or mismatched is refused; writes are atomic."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import gpt2graph
from gpt2graph.errors import GraphFileError
from gpt2graph.schema import FORMAT_VERSION


def test_round_trip_is_lossless(tiny_graph, saved_graph):
    loaded = gpt2graph.load(saved_graph)
    assert loaded.header.model_dump(exclude={"values_sha256"}) == tiny_graph.header.model_dump(
        exclude={"values_sha256"}
    )
    assert loaded.vocab == tiny_graph.vocab
    for name, t in tiny_graph.store.activations.items():
        assert torch.equal(loaded.store.activations[name], t), name
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
        ('{"format_version": 99}', "format_version 99 is not supported"),
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
    assert old.analysis.lens.top_tokens == 3 and len(old.analysis.lens.entries) == old.analysis.lens.n_entries
