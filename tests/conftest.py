"""Shared fixtures: tiny random GPT-2 checkpoints written with save_pretrained and loaded back through the
same path users take, graphs built from them, and the headless browser. Nothing here touches the network."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# never reach for a hub: every model in the tests is created here
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the weight store of the tests is their own: the user's cache is never read or written
_CACHE = tempfile.mkdtemp(prefix="gpt2graph-test-cache-")
os.environ["GPT2GRAPH_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

TINY = dict(n_layer=2, n_head=4, n_embd=32, n_positions=64, vocab_size=50257)
PROMPT = "Transformer tokens are vectors"  # 5 GPT-2 tokens


#: standard deviation (or, for LayerNorm gains, the spread around 1) each parameter is drawn with, by the end of
#: its name: magnitudes like a trained GPT-2's, so that no bias is zero, no gain is one, and attention
#: patterns are far from uniform (scores with a standard deviation of a few units)
TRAINED_LIKE = {
    "wte.weight": 0.1,
    "wpe.weight": 0.05,
    "ln_1.weight": 0.5,
    "ln_2.weight": 0.5,
    "ln_f.weight": 0.5,
    "ln_1.bias": 0.2,
    "ln_2.bias": 0.2,
    "ln_f.bias": 0.2,
    "attn.c_attn.weight": 0.3,
    "attn.c_attn.bias": 0.3,
    "attn.c_proj.weight": 0.1,
    "attn.c_proj.bias": 0.1,
    "mlp.c_fc.weight": 0.3,
    "mlp.c_fc.bias": 0.2,
    "mlp.c_proj.weight": 0.05,
    "mlp.c_proj.bias": 0.1,
    "lm_head.weight": 0.1,  # only when untied (a variant the loader refuses)
}


def every_parameter_matters(model, seed: int = 0) -> None:
    """Redraw every parameter of ``model`` at trained-like magnitudes (:data:`TRAINED_LIKE`), in place.

    A default random init zeroes every bias and sets every LayerNorm gain to one, so a test on it cannot see
    a bias or a gain that an implementation drops. On these weights it can."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1_000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            spread = next(v for k, v in TRAINED_LIKE.items() if name.endswith(k))
            noise = torch.randn(p.shape, generator=generator)
            gain = name.endswith("weight") and ".ln_" in name
            p.copy_(1 + spread * (2 * torch.rand(p.shape, generator=generator) - 1) if gain else spread * noise)


def make_checkpoint(path: Path, seed: int = 0, *, default_init: bool = False, **overrides) -> Path:
    """Save a random GPT-2 with the given config overrides to ``path`` (as a user's checkpoint would be): every
    parameter drawn at trained-like magnitudes, or, with ``default_init``, HF's own initialisation."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**{**TINY, **overrides}))
    if not default_init:
        every_parameter_matters(model, seed)
    model.save_pretrained(path)
    return path


def in_a_notebook(monkeypatch) -> list:
    """Make this process look like a Jupyter kernel (an IPython shell with a kernel), with an IPython.display that
    records what is displayed: the returned list."""
    import types

    displayed: list = []
    shell = types.SimpleNamespace(kernel=object())
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    display = types.ModuleType("IPython.display")
    display.SVG = lambda data=None, **_: ("svg", data)
    display.display = displayed.append
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    return displayed


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_graph(tiny_checkpoint):
    import gpt2graph

    return gpt2graph.build(PROMPT, model=str(tiny_checkpoint))


@pytest.fixture(scope="session")
def analysed_graph(tiny_checkpoint):
    """A separate build of the tiny run carrying every interpretability result (``graph.analysis``)."""
    import gpt2graph

    return gpt2graph.build(PROMPT, model=str(tiny_checkpoint), analyze={"target": " the", "induction_probe": 5})


@pytest.fixture(scope="session")
def saved_graph(tiny_graph, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "run.gg"
    tiny_graph.save(path)
    return path


@pytest.fixture(scope="session")
def corpus_path(tiny_checkpoint, tmp_path_factory) -> Path:
    """Corpus statistics (a .ggc) of the tiny model over three prompts, for mean ablation."""
    from gpt2graph.engine import run_corpus

    root = tmp_path_factory.mktemp("corpus")
    (root / "prompts.txt").write_text("The cat sat on the mat\nHello world\nTransformer tokens are numbers\n")
    run_corpus(root / "prompts.txt", root / "stats.ggc", model=str(tiny_checkpoint), workers=1)
    return root / "stats.ggc"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and renderings for people to look at (kept after the run)."""
    path = Path(os.environ.get("GPT2GRAPH_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the system Chromium. The test command installs it (scripts/system-deps): a missing browser is a
    failure, never a skip, so pages are always tested as a person sees them."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is not installed: run scripts/system-deps (apt-get install chromium chromium-driver)")
    return path


@pytest.fixture(scope="session")
def chromedriver(chromium) -> str:
    """Path of the chromedriver that drives the system Chromium (same package source, same version)."""
    path = shutil.which("chromedriver")
    if not path:
        pytest.fail("chromedriver is not installed: run scripts/system-deps (apt-get install chromium-driver)")
    return path


#: flags that keep headless Chromium quiet and offline
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


#: the first lines of a child Python script whose Ctrl-C is a terminal's: a test run started in the background
#: (``cmd &`` in a script) ignores SIGINT, its children inherit that, and Python then raises no KeyboardInterrupt
WITH_CTRL_C = "import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)"


def screenshot(chromium: str, page: Path, png: Path, size: tuple[int, int], profile: Path) -> None:
    """``page`` (an SVG or HTML file) drawn by headless Chromium into ``png``, ``size`` (width, height) px."""
    png.unlink(missing_ok=True)
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
