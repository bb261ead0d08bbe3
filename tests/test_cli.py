"""The command line: build, info (text and JSON), verify; bad input exits 2 with one clear message."""

import json

import pytest

import gpt2graph
from gpt2graph.cli import main


def test_build_info_verify(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "run.gg"
    assert main(["build", "Hello world", "--model", str(tiny_checkpoint), "-o", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "Hello (15496) | Ġworld (995)" in text and f"saved {out}" in text
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "n_layer=2" in info and "embedding" in info and "next token" in info
    assert "decoding     temperature 1, top-k off, top-p off, greedy: " in info
    assert main(["info", str(out), "--json", "--top", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"model", "weights", "dims", "parameters", "tokens", "top_predictions"} <= set(data)
    assert data["tokens"] == {"text": "Hello world", "ids": [15496, 995], "strings": ["Hello", "Ġworld"]}
    assert data["parameters"]["total"] == sum(g["count"] for g in data["parameters"]["groups"].values())
    assert len(data["top_predictions"]) == 3
    assert data["decoding"]["next_token"]["id"] == data["top_predictions"][0]["id"]  # greedy: the argmax
    assert abs(sum(g["share"] for g in data["parameters"]["groups"].values()) - 1) < 1e-9
    assert main(["verify", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_random_weights_are_said_everywhere(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "random.gg"
    assert (
        main(["build", "Hi", "--model", str(tiny_checkpoint), "--random-weights", "--seed", "7", "-o", str(out)]) == 0
    )
    capsys.readouterr()
    main(["info", str(out)])
    assert "RANDOM (seed 7)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "", "--model", "{ckpt}"], "prompt is empty"),
        (["build", "x", "--model", "/no/such/model"], "does not exist"),
        (["info", "/no/such/run.gg"], "no such saved graph"),
        (["build", "x", "--model", "{ckpt}", "-o", "/proc/forbidden/run.gg"], "cannot write"),
        (["build", "x", "--model", "{ckpt}", "--device", "cuda"], "device 'cuda' is not available on this machine"),
        (["build", "x", "--model", "{ckpt}", "--device", "mps"], "device 'mps' is not available on this machine"),
    ],
)
def test_bad_input_is_one_clear_error(tiny_checkpoint, capsys, argv, message):
    argv = [a.replace("{ckpt}", str(tiny_checkpoint)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_the_device_is_threaded_through_to_the_model(tiny_checkpoint, monkeypatch, capsys):
    """Only the CPU runs here: pretend CUDA is there and record where the model is sent. The model object is
    moved, and the graph's values are on the CPU whatever the device."""
    import torch
    from transformers import GPT2LMHeadModel

    from gpt2graph.loading import check_device

    moved = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(GPT2LMHeadModel, "to", lambda self, device: moved.append(device) or self)
    assert check_device("cuda:1") == torch.device("cuda", 1)
    assert main(["build", "Hi", "--model", str(tiny_checkpoint), "--device", "cuda"]) == 0
    assert moved == [torch.device("cuda")]
    graph = gpt2graph.build("Hi", model=str(tiny_checkpoint), device="cpu")
    assert moved[-1] == torch.device("cpu")
    assert {t.device.type for t in [*graph.store.activations.values(), *graph.store.params.values()]} == {"cpu"}
    with pytest.raises(gpt2graph.Gpt2GraphError, match="unknown device 'tpu'"):
        check_device("tpu")
