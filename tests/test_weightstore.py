"""The weight store: a graph saved without its weights is small, finds them by hash in the user's cache, and
says how to get them back when they are missing; a corrupted store is refused; embedded weights need no store."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import PROMPT

import gpt2graph
from gpt2graph import weightstore
from gpt2graph.cli import main
from gpt2graph.schema import Checkpoint, ModelInfo, Weights
from gpt2graph.weightstore import WeightsCorruptedError, WeightsMissingError


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A weight store of this test's own."""
    monkeypatch.setenv(weightstore.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tensor_names(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path / "values.safetensors"), framework="pt") as f:
        return set(f.keys())


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(weightstore.ENV, str(tmp_path / "somewhere"))
    assert weightstore.store_dir() == tmp_path / "somewhere" / "weights"
    monkeypatch.delenv(weightstore.ENV)
    import platformdirs

    assert weightstore.cache_dir() == Path(platformdirs.user_cache_dir("gpt2graph", appauthor=False))


def test_a_graph_saved_without_weights_records_their_hash_and_origin(tiny_graph, tiny_checkpoint, cache, tmp_path):
    path = tmp_path / "run.gg"
    tiny_graph.save(path)
    assert not any(n.startswith("param/") for n in _tensor_names(path))
    header = json.loads((path / "graph.json").read_text())
    sha = weightstore.digest(tiny_graph.store.params)
    assert header["format_version"] == 3
    assert header["stored_weights"] == {"sha256": sha, "embedded": False}
    assert header["model"]["checkpoint"] == {"hub_id": None, "revision": None, "path": str(tiny_checkpoint.resolve())}
    assert weightstore.path_of(sha).is_file() and weightstore.path_of(sha).parent == cache / "weights"
    params_bytes = sum(t.numel() * t.element_size() for t in tiny_graph.store.params.values())
    assert (path / "values.safetensors").stat().st_size < params_bytes / 4
    loaded = gpt2graph.load(path)
    for name, t in tiny_graph.store.params.items():
        assert torch.equal(loaded.store.params[name], t), name
    assert loaded.verify().ok


def test_weights_are_stored_once_per_model(tiny_checkpoint, cache, tmp_path):
    for i, prompt in enumerate(["one prompt", "another prompt", PROMPT]):
        gpt2graph.build(prompt, model=str(tiny_checkpoint)).save(tmp_path / f"{i}.gg")
    [entry] = weightstore.entries()
    assert entry.checkpoint == Checkpoint(path=str(tiny_checkpoint.resolve()))
    assert entry.sha256 == json.loads((tmp_path / "0.gg" / "graph.json").read_text())["stored_weights"]["sha256"]


def test_edited_weights_are_another_entry(tiny_checkpoint, cache, tmp_path):
    """The hash is kept while the parameters are unchanged, and computed again after an in-place edit."""
    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    graph.save(tmp_path / "a.gg")
    graph.store.params["transformer.h.0.attn.c_proj.bias"][0] += 1.0
    graph.save(tmp_path / "b.gg")
    shas = [json.loads((tmp_path / f"{x}.gg" / "graph.json").read_text())["stored_weights"]["sha256"] for x in "ab"]
    assert shas[0] != shas[1] and len(weightstore.entries()) == 2
    assert gpt2graph.load(tmp_path / "b.gg").param("b_O", 0)[0] == graph.param("b_O", 0)[0]


def test_embedded_weights_need_no_store(tiny_graph, cache, tmp_path, monkeypatch):
    path = tmp_path / "shared.gg"
    tiny_graph.save(path, embed_weights=True)
    assert {n for n in _tensor_names(path) if n.startswith("param/")} == {f"param/{n}" for n in tiny_graph.store.params}
    assert json.loads((path / "graph.json").read_text())["stored_weights"]["embedded"] is True
    monkeypatch.setenv(weightstore.ENV, str(tmp_path / "empty"))
    loaded = gpt2graph.load(path)
    for name, t in tiny_graph.store.params.items():
        assert torch.equal(loaded.store.params[name], t), name
    assert loaded.verify().ok
    assert not (tmp_path / "empty").exists()  # loading never writes to the store


def test_missing_weights_say_how_to_get_them_back(tiny_graph, tiny_checkpoint, cache, tmp_path, monkeypatch):
    path = tmp_path / "run.gg"
    tiny_graph.save(path)
    monkeypatch.setenv(weightstore.ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(WeightsMissingError) as info:
        gpt2graph.load(path)
    message = str(info.value)
    assert str(path) in message and "not in the weight store" in message and "GPT2GRAPH_CACHE" in message
    assert f"gpt2graph weights add {tiny_checkpoint.resolve()}" in message and "--embed-weights" in message
    assert main(["weights", "add", str(tiny_checkpoint)]) == 0  # what the message says to run
    assert gpt2graph.load(path).verify().ok


def test_the_cli_puts_missing_weights_back_and_lists_the_store(tiny_checkpoint, cache, capsys):
    assert main(["weights", "list"]) == 0
    assert "(empty)" in capsys.readouterr().out
    assert main(["weights", "add", str(tiny_checkpoint)]) == 0
    sha = capsys.readouterr().out.split("sha256 ")[1].split()[0]
    assert main(["weights", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["store"] == str(cache / "weights")
    assert [e["sha256"] for e in listed["entries"]] == [sha]
    assert listed["entries"][0]["checkpoint"] == {"path": str(tiny_checkpoint.resolve())}
    assert main(["weights", "add"]) == 2
    assert "name the model" in capsys.readouterr().err


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flipped":
        data[-100] ^= 0xFF  # inside the last tensor's bytes: the file still parses
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: len(data) // 2]))


@pytest.mark.parametrize("how, message", [("flipped", "its content hashes to"), ("truncated", "is corrupted")])
def test_a_corrupted_store_is_refused(tiny_checkpoint, cache, tmp_path, how, message):
    path = tmp_path / "run.gg"
    gpt2graph.build(PROMPT, model=str(tiny_checkpoint)).save(path)
    [entry] = weightstore.entries()
    _corrupt(entry.path, how)
    with pytest.raises(WeightsCorruptedError, match=message) as info:
        gpt2graph.load(path)
    assert "delete it, then run `gpt2graph weights add" in str(info.value)
    entry.path.unlink()
    weightstore.add(str(tiny_checkpoint))
    assert gpt2graph.load(path).verify().ok


def test_edited_embedded_weights_are_refused(tiny_graph, tmp_path):
    """Embedded weights are checked against the recorded hash too (the file's own hash is recomputed here, as
    someone editing it on purpose would)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from gpt2graph.storage import sha256_file

    path = tmp_path / "run.gg"
    tiny_graph.save(path, embed_weights=True)
    values = path / "values.safetensors"
    with safe_open(str(values), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors["param/transformer.ln_f.bias"] = tensors["param/transformer.ln_f.bias"] + 1
    save_file(tensors, str(values), metadata=metadata)
    header = json.loads((path / "graph.json").read_text())
    header["values_sha256"] = sha256_file(values)
    (path / "graph.json").write_text(json.dumps(header))
    with pytest.raises(gpt2graph.Gpt2GraphError, match="embedded weights hash to"):
        gpt2graph.load(path)


def _info(checkpoint, weights) -> ModelInfo:
    from gpt2graph.loading import dims_of, family_config, parameter_groups

    dims = dims_of(family_config("gpt2"))
    groups = parameter_groups(dims)
    return ModelInfo(
        name="x",
        source="hub",
        architecture="GPT2LMHeadModel",
        weights=weights,
        checkpoint=checkpoint,
        dims=dims,
        dtype="float32",
        parameters=groups,
        total_parameters=sum(groups.values()),
    )


@pytest.mark.parametrize(
    "checkpoint, weights, command",
    [
        (Checkpoint(hub_id="gpt2", revision="607a30d"), Weights(status="pretrained"), "add gpt2 --revision 607a30d"),
        (Checkpoint(path="/data/my model"), Weights(status="pretrained"), "add '/data/my model'"),
        (Checkpoint(hub_id="gpt2-xl"), Weights(status="random", seed=3), "add gpt2-xl --random-weights --seed 3"),
    ],
)
def test_how_to_get_names_the_command(checkpoint, weights, command):
    assert f"`gpt2graph weights {command}`" in weightstore.how_to_get(_info(checkpoint, weights))


def test_weights_of_unknown_origin_can_only_be_embedded():
    text = weightstore.how_to_get(_info(None, Weights(status="random")))
    assert "origin is unknown" in text and "--embed-weights" in text


def test_a_hub_model_records_its_id_and_revision(tiny_checkpoint):
    """A model object loaded from the hub carries its id (config.name_or_path) and the commit resolved
    (config._commit_hash); both are recorded so that the weights can be fetched again."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(str(tiny_checkpoint))
    model.config.name_or_path, model.config._commit_hash = "someone/tiny-gpt2", "0123abc"
    graph = gpt2graph.build(PROMPT, model=model)
    assert graph.model.checkpoint == Checkpoint(hub_id="someone/tiny-gpt2", revision="0123abc")
    assert "weights add someone/tiny-gpt2 --revision 0123abc" in weightstore.how_to_get(graph.model)


def test_random_embedded_weights_come_back_from_their_seed(cache, tmp_path, monkeypatch):
    """The message for random weights names their architecture and seed, and running it restores them."""
    from transformers import GPT2Config

    from gpt2graph import loading

    tiny = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=50257)
    monkeypatch.setitem(loading.FAMILY, "gpt2", (1, 2, 16))
    monkeypatch.setattr(loading, "family_config", lambda name: tiny if name == "gpt2" else None)
    graph = gpt2graph.build("seeded", model="gpt2", random_weights=True, seed=5)
    graph.save(tmp_path / "run.gg")
    shutil.rmtree(cache)
    with pytest.raises(WeightsMissingError, match=r"weights add gpt2 --random-weights --seed 5"):
        gpt2graph.load(tmp_path / "run.gg")
    assert main(["weights", "add", "gpt2", "--random-weights", "--seed", "5"]) == 0
    assert gpt2graph.load(tmp_path / "run.gg").verify().ok


def test_graphs_loaded_on_the_same_weights_share_them_until_one_is_edited(tiny_graph, cache, tmp_path):
    tiny_graph.save(tmp_path / "run.gg")
    a, b = gpt2graph.load(tmp_path / "run.gg"), gpt2graph.load(tmp_path / "run.gg")
    assert a.store.params is b.store.params  # read once
    a.store.params["transformer.ln_f.bias"][0] += 1.0  # patching one graph's weights in place
    c = gpt2graph.load(tmp_path / "run.gg")
    assert c.store.params is not a.store.params
    assert torch.equal(c.store.params["transformer.ln_f.bias"], tiny_graph.store.params["transformer.ln_f.bias"])
