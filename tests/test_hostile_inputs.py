"""No input breaks the command line. Each malformed, hostile or careless input below is refused with one line
on stderr (``error: ...``, no traceback, never an "internal error"), a nonzero exit, and the file tree around it
exactly as it was: nothing created, nothing changed, nothing deleted.

The saved graphs here are edited the way a person or a tool might edit them, then re-hashed, so that the hash
check passes and the deeper consistency checks are what must catch them. Inputs that could make a careless
reader hang (devices, named pipes) run in a subprocess with a timeout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import PROMPT, make_checkpoint

from gpt2graph.cli import main


# ---- inputs ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def analysed_saved(analysed_graph, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("analysed") / "run.gg"
    analysed_graph.save(path)
    return path


@pytest.fixture(scope="module")
def embedded_saved(tiny_graph, tmp_path_factory) -> Path:
    """A saved graph carrying its weights (the only kind whose parameter tensors a file can get wrong)."""
    path = tmp_path_factory.mktemp("embedded") / "run.gg"
    tiny_graph.save(path, embed_weights=True)
    return path


def tampered(src: Path, dest: Path, header: Callable | None = None, tensors: Callable | None = None) -> Path:
    """A copy of the saved graph ``src`` with its header (a dict) and/or its tensors (name -> tensor) edited in
    place by the given functions, and the values hash recomputed so the pair still matches."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(src, dest)
    values = dest / "values.safetensors"
    if tensors is not None:
        with safe_open(str(values), framework="pt") as f:
            metadata, data = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        tensors(data)
        save_file(data, str(values), metadata=metadata)
    raw = json.loads((dest / "graph.json").read_text())
    if header is not None:
        header(raw)
    raw["values_sha256"] = hashlib.sha256(values.read_bytes()).hexdigest()
    (dest / "graph.json").write_text(json.dumps(raw))
    return dest


def config_dir(tmp: Path, ckpt: Path, **changes) -> Path:
    """A model directory: the tiny checkpoint's config with ``changes`` (no weights: --random-weights)."""
    raw = json.loads((ckpt / "config.json").read_text())
    raw.update(changes)
    (tmp / "model").mkdir()
    (tmp / "model" / "config.json").write_text(json.dumps(raw))
    return tmp / "model"


def _dims(**changes):
    return lambda h: h["model"]["dims"].update(changes)


def _context(n_ctx: int):
    """A header whose context is ``n_ctx`` tokens, its parameter counts made to agree."""

    def edit(h):
        model = h["model"]
        shrink = (model["dims"]["n_ctx"] - n_ctx) * model["dims"]["d_model"]
        model["dims"]["n_ctx"] = n_ctx
        model["parameters"]["positional"] -= shrink
        model["total_parameters"] -= shrink

    return edit


def _tokens(**changes):
    return lambda h: h["tokenization"].update(changes)


def _set(path: str, value):
    """Set a dotted path (list items by number) in the header."""

    def edit(h):
        *parents, last = path.split(".")
        node = h
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return edit


def _tensor(name: str, make: Callable):
    return lambda data: data.__setitem__(name, make(data[name]))


@dataclass
class Case:
    """A command line (``{run}``: a saved graph; ``{analysed}``: a saved analysed graph; ``{ckpt}``: the tiny
    checkpoint; ``{x}``: what ``setup`` returns) and a part of the one-line error it must print."""

    argv: list[str]
    message: str
    setup: Callable[[Path, dict], object] | None = None
    hangs_if_careless: bool = False
    report: bool = False  # validate reports what it finds on stdout (exit 1), every other command errors on stderr


PARAM = "param/transformer.h.0.attn.c_attn.weight"
ACT = "act/blocks.0.hook_resid_mid"
CASES = {
    # ---- files that are not what they claim ----
    "validate /dev/zero": Case(
        ["validate", "/dev/zero"], "refused: a character device", hangs_if_careless=True, report=True
    ),
    "validate a named pipe": Case(
        ["validate", "{x}"],
        "refused: a named pipe",
        lambda t, c: _fifo(t / "notes.yaml"),
        hangs_if_careless=True,
        report=True,
    ),
    "validate a directory": Case(["validate", "{tmp}"], "refused: a directory", report=True),
    "validate against a tampered graph": Case(
        ["validate", "{x}/../notes.yaml", "--graph", "{x}"],
        "d_head (9)",
        lambda t, c: _write(t / "notes.yaml", b"glossary: []\n") and tampered(c["run"], t / "r.gg", _dims(d_head=9)),
    ),
    "annotations from a named pipe": Case(
        ["build", "Hi", "--model", "{ckpt}", "--annotations", "{x}"],
        "refused: a named pipe",
        lambda t, c: _fifo(t / "notes.yaml"),
        hangs_if_careless=True,
    ),
    "annotations over 1 MiB": Case(
        ["build", "Hi", "--model", "{ckpt}", "--annotations", "{x}"],
        "larger than the limit of 1,048,576 bytes",
        lambda t, c: _write(t / "big.yaml", b"#" * (2 << 20)),
    ),
    "annotations with several problems": Case(
        ["build", "Hi", "--model", "{ckpt}", "--annotations", "{x}"],
        "more problems: `gpt2graph validate FILE` lists them",
        lambda t, c: _write(t / "bad.yaml", b"glossary:\n  - id: Bad Id\n  - id: also bad\n"),
    ),
    "a graph whose values file is a named pipe": Case(
        ["info", "{x}"],
        "refused: a named pipe",
        lambda t, c: _fifo_values(c["run"], t / "run.gg"),
        hangs_if_careless=True,
    ),
    "a graph whose header is /dev/zero": Case(
        ["info", "{x}"], "refused: a character device", lambda t, c: _zero_header(c["run"], t / "run.gg")
    ),
    "a model whose config.json is a named pipe": Case(
        ["build", "Hi", "--model", "{x}", "--random-weights"],
        "refused: a named pipe",
        lambda t, c: _fifo_config(t / "model"),
        hangs_if_careless=True,
    ),
    "corpus prompts from /dev/zero": Case(
        ["corpus", "/dev/zero", "--model", "{ckpt}", "-o", "{tmp}/s.ggc"],
        "refused: a character device",
        hangs_if_careless=True,
    ),
    "corpus prompts from a named pipe": Case(
        ["corpus", "{x}", "--model", "{ckpt}", "-o", "{tmp}/s.ggc"],
        "refused: a named pipe",
        lambda t, c: _fifo(t / "prompts.txt"),
        hangs_if_careless=True,
    ),
    "corpus -o at a directory holding other files": Case(
        ["corpus", "{x}/../prompts.txt", "--model", "{ckpt}", "-o", "{x}"],
        "it also holds",
        lambda t, c: _write(t / "prompts.txt", b"Hello world\n") and _corpus_and_notes(t / "s.ggc"),
    ),
    "corpus --workers 0": Case(
        ["corpus", "p.txt", "--model", "{ckpt}", "-o", "{tmp}/s.ggc", "--workers", "0"],
        "argument --workers: expected an integer >= 1, got 0",
    ),
    # ---- saved graphs edited and re-hashed ----
    "d_head that is not d_model / n_head": Case(
        ["verify", "{x}"],
        "d_head (9) x n_head (4) is not d_model (32)",
        lambda t, c: tampered(c["run"], t / "r.gg", _dims(d_head=9)),
    ),
    "a parameter of another shape": Case(
        ["render", "{x}", "-r", "svg", "-o", "{tmp}/out.svg"],
        "transformer.h.0.attn.c_attn.weight has shape (32, 95), expected (32, 96)",
        lambda t, c: tampered(c["embedded"], t / "r.gg", tensors=_tensor(PARAM, lambda w: w[:, :95].contiguous())),
    ),
    "a parameter of another dtype": Case(
        ["analyze", "{x}"],
        "c_attn.weight is float64, expected torch.float32",
        lambda t, c: tampered(c["embedded"], t / "r.gg", tensors=_tensor(PARAM, lambda w: w.double())),
    ),
    "an activation of another shape": Case(
        ["info", "{x}"],
        "blocks.0.hook_resid_mid has shape (5, 31)",
        lambda t, c: tampered(c["run"], t / "r.gg", tensors=_tensor(ACT, lambda a: a[:, :31].contiguous())),
    ),
    "header token ids that are not the stored ones": Case(
        ["verify", "{x}"],
        "token ids are not the stored ones",
        lambda t, c: tampered(c["run"], t / "r.gg", _set("tokenization.token_ids.1", 262)),
    ),
    "a token id outside the vocabulary": Case(
        ["render", "{x}", "-r", "svg", "-o", "{tmp}/out.svg"],
        "token id 99999999 is outside the vocabulary",
        lambda t, c: tampered(c["run"], t / "r.gg", _set("tokenization.token_ids.0", 99999999)),
    ),
    "a negative token id": Case(
        ["verify", "{x}"],
        "token id -5 is outside",
        lambda t, c: tampered(c["run"], t / "r.gg", _set("tokenization.token_ids.0", -5)),
    ),
    "more tokens than token ids": Case(
        ["info", "{x}"],
        "5 token ids, but 6 tokens",
        lambda t, c: tampered(c["run"], t / "r.gg", _tokens(tokens=["a", "b", "c", "d", "e", "f"])),
    ),
    "a visible token that is not the vocabulary's": Case(
        ["info", "{x}"],
        "visible token 'Ġforged' is not the vocabulary's entry",
        lambda t, c: tampered(c["run"], t / "r.gg", _set("tokenization.tokens_visible.2", "Ġforged")),
    ),
    "more tokens than the context": Case(
        ["info", "{x}"], "but a run has 1 to n_ctx = 4", lambda t, c: tampered(c["run"], t / "r.gg", _context(4))
    ),
    "stored token ids edited": Case(
        ["verify", "{x}"],
        "token ids are not the stored ones",
        lambda t, c: tampered(c["run"], t / "r.gg", tensors=_tensor("act/tokens", lambda x: x.flip(0).contiguous())),
    ),
    "parameter counts that do not match the dims": Case(
        ["info", "{x}"],
        "parameter counts",
        lambda t, c: tampered(c["run"], t / "r.gg", _set("model.total_parameters", 7)),
    ),
    "an unknown dtype": Case(
        ["info", "{x}"],
        "unknown dtype 'float8'",
        lambda t, c: tampered(c["run"], t / "r.gg", _set("model.dtype", "float8")),
    ),
    "a future format version": Case(
        ["info", "{x}"],
        "format_version 99 is not supported",
        lambda t, c: tampered(c["run"], t / "r.gg", _set("format_version", 99)),
    ),
    "a vocabulary of the wrong length": Case(
        ["info", "{x}"], "vocabulary is missing or does not have", lambda t, c: _short_vocab(c["run"], t / "r.gg")
    ),
    "an analysis naming head 9 of 4": Case(
        ["render", "{x}", "-r", "bokeh", "-o", "{tmp}/out.html"],
        "analysis: head roles list 8 heads, not the 8 of this model in order",
        lambda t, c: tampered(c["analysed"], t / "r.gg", _set("analysis.roles.heads.3.head", 9)),
    ),
    "an analysis at position 40 of 5": Case(
        ["render", "{x}", "-r", "svg", "-o", "{tmp}/out.svg"],
        "analysis.dla.position = 40 is out of range (0..4)",
        lambda t, c: tampered(c["analysed"], t / "r.gg", _set("analysis.dla.position", 40)),
    ),
    "an analysis naming a component that does not exist": Case(
        ["info", "{x}"],
        "'blocks.7.attn.hook_result[0,0]' is not a node of this run",
        lambda t, c: tampered(
            c["analysed"], t / "r.gg", _set("analysis.dla.contributions.0.component", "blocks.7.attn.hook_result[0,0]")
        ),
    ),
    "an analysis with a token id outside the vocabulary": Case(
        ["info", "{x}"],
        "analysis.decoding.chosen.id = 70000 is not a token id",
        lambda t, c: tampered(c["analysed"], t / "r.gg", _set("analysis.decoding.chosen.id", 70000)),
    ),
    "logit-lens arrays with token ids outside the vocabulary": Case(
        ["render", "{x}", "-r", "svg", "-o", "{tmp}/out.svg"],
        "logit-lens array top_ids holds values a logit lens cannot produce",
        lambda t, c: tampered(c["analysed"], t / "r.gg", tensors=_tensor("lens/top_ids", lambda x: x + 60000)),
    ),
    "logit-lens probabilities above 1": Case(
        ["info", "{x}"],
        "logit-lens array top_probs holds values",
        lambda t, c: tampered(c["analysed"], t / "r.gg", tensors=_tensor("lens/top_probs", lambda x: x + 2)),
    ),
    # ---- models ----
    "a directory with no model, with --random-weights": Case(
        ["build", "Hi", "--model", "{x}", "--random-weights"], "no config.json", lambda t, c: _mkdir(t / "empty")
    ),
    "n_layer -1": Case(
        ["build", "Hi", "--model", "{x}", "--random-weights"],
        "n_layer (blocks) must be a positive integer, got -1",
        lambda t, c: config_dir(t, c["ckpt"], n_layer=-1),
    ),
    "n_head as text": Case(
        ["build", "Hi", "--model", "{x}", "--random-weights"],
        "n_head (heads per block) must be a positive integer, got 'four'",
        lambda t, c: config_dir(t, c["ckpt"], n_head="four"),
    ),
    "layer_norm_epsilon 0": Case(
        ["build", "Hi", "--model", "{x}", "--random-weights"],
        "layer_norm_epsilon must be a number > 0",
        lambda t, c: config_dir(t, c["ckpt"], layer_norm_epsilon=0),
    ),
    "n_layer 10000000 at GPT-2's width": Case(
        ["build", "Hi", "--model", "{x}", "--random-weights"],
        "its parameters alone need",
        lambda t, c: config_dir(t, c["ckpt"], n_layer=10_000_000, n_embd=768, n_head=12),
    ),
    "n_embd 491520": Case(
        ["build", "Hi", "--model", "{x}", "--random-weights"],
        "GB of memory is available",
        lambda t, c: config_dir(t, c["ckpt"], n_embd=491_520, n_head=12),
    ),
    "config.json that is not JSON": Case(
        ["build", "Hi", "--model", "{x}"],
        "config.json: not valid JSON",
        lambda t, c: _write(_mkdir(t / "model") / "config.json", b"{n_layer: 2").parent,
    ),
    "config.json that is a list": Case(
        ["build", "Hi", "--model", "{x}"],
        "not a model config (expected a JSON object)",
        lambda t, c: _write(_mkdir(t / "model") / "config.json", b"[1, 2]").parent,
    ),
    "a model path that is a file": Case(
        ["build", "Hi", "--model", "{x}"], "not a model directory", lambda t, c: _write(t / "model.bin", b"\0" * 10)
    ),
    "a hub id that is not cached, with --random-weights": Case(
        ["build", "Hi", "--model", "nobody/no-such-model", "--random-weights"], "could not load the config of"
    ),
    "gpt2 offline": Case(["build", "Hi", "--model", "gpt2"], "with random weights: --random-weights"),
    "a prompt longer than the context": Case(["build", " a" * 70, "--model", "{ckpt}"], "is 70 tokens long"),
    "an empty prompt": Case(["build", "", "--model", "{ckpt}"], "the prompt is empty"),
    "--seed -1": Case(
        ["build", "Hi", "--random-weights", "--seed", "-1"],
        "argument --seed: expected an integer in 0..18446744073709551615, got -1",
    ),
    "--seed 2**64": Case(
        ["build", "Hi", "--random-weights", "--seed", str(2**64)], "argument --seed: expected an integer in 0.."
    ),
    # ---- where to write ----
    "-o at a directory that holds a graph and other files": Case(
        ["build", "Hi", "--model", "{ckpt}", "-o", "{x}"],
        "it also holds notes.txt",
        lambda t, c: _graph_and_notes(c["run"], t / "run.gg"),
    ),
    "-o at a directory that only looks like a graph": Case(
        ["build", "Hi", "--model", "{ckpt}", "-o", "{x}"],
        "graph.json is not a gpt2graph header",
        lambda t, c: _write(_mkdir(t / "run.gg") / "graph.json", b'{"format": "other"}').parent,
    ),
    "-o at a regular file": Case(
        ["build", "Hi", "--model", "{ckpt}", "-o", "{x}"], "not a directory", lambda t, c: _write(t / "run.gg", b"x")
    ),
    "-o at a symbolic link": Case(
        ["build", "Hi", "--model", "{ckpt}", "-o", "{x}"], "symbolic link", lambda t, c: _link(c["run"], t / "link.gg")
    ),
    "-o in a missing directory": Case(["build", "Hi", "--model", "{ckpt}", "-o", "{tmp}/no/run.gg"], "does not exist"),
    "analyze -o at a directory of other files": Case(
        ["analyze", "{run}", "-o", "{x}"],
        "it also holds",
        lambda t, c: _write(_mkdir(t / "out.gg") / "a.txt", b"").parent,
    ),
    "render into a directory": Case(
        ["render", "{run}", "-r", "svg", "-o", "{x}"], "cannot write", lambda t, c: _mkdir(t / "out.svg")
    ),
    "schema into a file": Case(["schema", "{x}"], "not a directory", lambda t, c: _write(t / "schemas", b"")),
    # ---- numbers out of range, reported under their own flag ----
    "info --top -3": Case(["info", "{run}", "--top", "-3"], "argument --top: expected an integer >= 1, got -3"),
    "info --top 0": Case(["info", "{run}", "--top", "0"], "argument --top: expected an integer >= 1, got 0"),
    "--top-tokens -3": Case(
        ["analyze", "{run}", "--top-tokens", "-3"], "argument --top-tokens: expected an integer >= 1, got -3"
    ),
    "--top-k 0": Case(["analyze", "{run}", "--top-k", "0"], "argument --top-k: expected an integer >= 1"),
    "--top-p 2": Case(["analyze", "{run}", "--top-p", "2"], "argument --top-p: must be in (0, 1]"),
    "--temperature 0": Case(["analyze", "{run}", "--temperature", "0"], "argument --temperature: must be a number > 0"),
    "--temperature nan": Case(["analyze", "{run}", "--temperature", "nan"], "must be a finite number"),
    "--induction-probe 0": Case(["analyze", "{run}", "--induction-probe", "0"], "argument --induction-probe"),
    "--induction-probe too long for the context": Case(
        ["analyze", "{run}", "--induction-probe", "100"], "--induction-probe 100: the prompt (5 tokens)"
    ),
    "--position 99": Case(["analyze", "{run}", "--position", "99"], "position 99 is out of range"),
    "--position x": Case(["analyze", "{run}", "--position", "x"], "argument --position: expected an integer"),
    "--target equal to --contrast": Case(
        ["analyze", "{run}", "--target", " the", "--contrast", " the"], "is the same token as the target"
    ),
    "--contrast equal to the prediction": Case(
        ["analyze", "{run}", "--contrast-id", "{x}"],
        "the model's prediction at this position",
        lambda t, c: int(c["graph"].logits[-1].argmax()),
    ),
    "--target that is two tokens": Case(["analyze", "{run}", "--target", "Transformer"], "is not a single token"),
    "--target-id outside the vocabulary": Case(["analyze", "{run}", "--target-id", "60000"], "outside the vocabulary"),
    "serve --port 70000": Case(["serve", "--port", "70000"], "argument --port: expected an integer in 0..65535"),
    "serve --annotations that do not validate": Case(
        ["serve", "--annotations", "{x}", "--no-browser"],
        "unknown glossary id",
        lambda t, c: _write(
            t / "bad.yaml",
            b"glossary:\n  - id: mine\n    term: Mine\n    summary: s\n    body: b\n    see_also: [nope]\n",
        ),
    ),
    "an unknown command": Case(["bulid", "Hi"], "invalid choice: 'bulid'"),
    "an unknown flag": Case(["info", "{run}", "--colour"], "unrecognized arguments: --colour"),
    # ---- renderer options ----
    "bokeh max_positions=-3": Case(
        ["render", "{run}", "-r", "bokeh", "-o", "{tmp}/o.html", "--option", "max_positions=-3"],
        "option 'max_positions' must be at least 1",
    ),
    "svg head=-1": Case(
        ["render", "{run}", "-r", "svg", "-o", "{tmp}/o.svg", "--option", "head=-1"], "option 'head' must be at least 0"
    ),
    "svg head=99": Case(["render", "{run}", "-r", "svg", "-o", "{tmp}/o.svg", "--option", "head=99"], "head 99"),
    "svg layers=-1,0": Case(
        ["render", "{run}", "-r", "svg", "-o", "{tmp}/o.svg", "--option", "layers=-1,0"], "'layers' must be at least 0"
    ),
    "svg layers=5": Case(["render", "{run}", "-r", "svg", "-o", "{tmp}/o.svg", "--option", "layers=5"], "layer"),
    "svg positions=50": Case(["render", "{run}", "-r", "svg", "-o", "{tmp}/o.svg", "--option", "positions=50"], "50"),
    "svg top_p=3": Case(["render", "{run}", "-r", "svg", "-o", "{tmp}/o.svg", "--option", "top_p=3"], "top-p"),
    "a renderer option without a value": Case(
        ["render", "{run}", "-r", "svg", "-o", "{tmp}/o.svg", "--option", "head"], "--option expects key=value"
    ),
    "an unknown renderer": Case(["render", "{run}", "-r", "png", "-o", "{tmp}/o.png"], "unknown renderer 'png'"),
    "an unknown renderer for build --render": Case(
        ["build", "Hi", "--model", "{ckpt}", "--render", "png"], "unknown renderer 'png'"
    ),
}


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _fifo_values(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    (dest / "values.safetensors").unlink()
    return _fifo(dest / "values.safetensors").parent


def _zero_header(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    (dest / "graph.json").unlink()
    (dest / "graph.json").symlink_to("/dev/zero")
    return dest


def _fifo_config(path: Path) -> Path:
    path.mkdir()
    _fifo(path / "config.json")
    return path


def _short_vocab(src: Path, dest: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(src, dest)
    values = dest / "values.safetensors"
    with safe_open(str(values), framework="pt") as f:
        metadata, data = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    metadata["vocab"] = json.dumps(json.loads(metadata["vocab"])[:100])
    save_file(data, str(values), metadata=metadata)
    return tampered(dest, dest.with_name("rehashed.gg"))


def _graph_and_notes(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    (dest / "notes.txt").write_text("my notes, not a graph's\n")
    return dest


def _corpus_and_notes(dest: Path) -> Path:
    """A directory with a corpus header and a file of the user's: not exactly corpus statistics."""
    dest.mkdir()
    (dest / "corpus.json").write_text('{"format": "gpt2graph-corpus"}')
    (dest / "notes.txt").write_text("mine\n")
    return dest


def _link(src: Path, dest: Path) -> Path:
    dest.symlink_to(src, target_is_directory=True)
    return dest


# ---- the battery ------------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): its type, and for files their size, mtime and content
    hash, for directories their permissions."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            key = str(path.relative_to(root))
            if path.is_symlink():
                out[key] = ("link", os.readlink(path))
            elif path.is_file():
                out[key] = (
                    "file",
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_mode,
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                )
            else:
                out[key] = ("dir" if path.is_dir() else "special", st.st_mode)
    return out


@pytest.mark.parametrize(  # the cases run in a subprocess (a careless read would hang) are slow
    "name", [pytest.param(n, marks=pytest.mark.slow) if c.hangs_if_careless else n for n, c in CASES.items()]
)
def test_refused_in_one_line_leaving_everything_as_it_was(
    name, tmp_path, tiny_checkpoint, saved_graph, analysed_saved, embedded_saved, tiny_graph, capfd, monkeypatch
):
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    context = {
        "run": saved_graph,
        "analysed": analysed_saved,
        "embedded": embedded_saved,
        "ckpt": tiny_checkpoint,
        "graph": tiny_graph,
    }
    x = case.setup(tmp_path, context) if case.setup else None
    places = {"run": saved_graph, "analysed": analysed_saved, "ckpt": tiny_checkpoint, "x": x, "tmp": tmp_path}
    argv = [a.format(**{k: str(v) for k, v in places.items()}) for a in case.argv]
    before = snapshot(tmp_path), snapshot(saved_graph.parent), snapshot(analysed_saved.parent)

    if case.hangs_if_careless:  # a careless read would never return: a subprocess that can be killed
        run = subprocess.run(
            [sys.executable, "-m", "gpt2graph", *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        code, out, err = run.returncode, run.stdout, run.stderr
    else:
        code = main(argv)
        out, err = capfd.readouterr()

    assert code not in (0, None), f"accepted: {argv}"
    assert "Traceback" not in out + err and "internal error" not in err, err
    if case.report:  # one problem per line on stdout, exit 1
        assert (code, err) == (1, "") and len(out.splitlines()) == 1, out
        assert case.message in out, out
    else:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert case.message in lines[0], lines[0]
    assert (snapshot(tmp_path), snapshot(saved_graph.parent), snapshot(analysed_saved.parent)) == before


def test_the_battery_covers_every_command():
    """Every command that reads user input is in the battery."""
    commands = {case.argv[0] for case in CASES.values()}
    assert {"build", "analyze", "info", "verify", "render", "corpus", "serve", "validate", "schema"} <= commands


def test_an_unexpected_error_is_one_line_too(tiny_graph, saved_graph, capfd, monkeypatch):
    """The net under the net: a bug (an exception no check anticipated) is still one line, which says how to
    get the traceback; --debug shows it."""
    import gpt2graph.summary

    def broken(*args, **kwargs):
        raise RuntimeError("a bug\nwith a second line")

    monkeypatch.setattr(gpt2graph.summary, "summarize_graph", broken)
    assert main(["info", str(saved_graph)]) == 70
    err = capfd.readouterr().err
    assert err.splitlines() == [
        "error: internal error: RuntimeError: a bug (a bug in gpt2graph: please report it, with the traceback that "
        "`gpt2graph --debug info ...` prints)"
    ]
    with pytest.raises(RuntimeError, match="a bug"):
        main(["--debug", "info", str(saved_graph)])


def test_tampered_graphs_are_refused_from_python_too(saved_graph, tmp_path):
    """The checks live in load, not in the command line."""
    import gpt2graph
    from gpt2graph.errors import GraphFileError

    bad = tampered(saved_graph, tmp_path / "r.gg", _dims(d_head=9))
    with pytest.raises(GraphFileError, match="graph.json: inconsistent dims"):
        gpt2graph.load(bad)


def test_a_graph_with_a_checkpoint_of_another_width_still_loads(tmp_path):
    """The checks follow the dims, whatever they are (here d_mlp is not 4 d_model)."""
    import gpt2graph

    ckpt = make_checkpoint(tmp_path / "wide", n_inner=48)
    gpt2graph.build(PROMPT, model=str(ckpt)).save(tmp_path / "run.gg")
    assert gpt2graph.load(tmp_path / "run.gg").verify().ok


def test_half_precision_graphs_load(tmp_path, tiny_checkpoint):
    """A model passed in half precision gives a graph of that dtype, and it loads."""
    from transformers import GPT2LMHeadModel

    import gpt2graph

    model = GPT2LMHeadModel.from_pretrained(tiny_checkpoint).to(torch.bfloat16)
    gpt2graph.build(PROMPT, model=model).save(tmp_path / "run.gg")
    assert gpt2graph.load(tmp_path / "run.gg").model.dtype == "bfloat16"
