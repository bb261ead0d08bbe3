"""Shared fixtures: tiny random GPT-2 checkpoints written with save_pretrained and loaded back through the
same path users take, graphs built from them, and the headless browser. Nothing here touches the network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# never reach for a hub: every model in the tests is created here
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = dict(n_layer=2, n_head=4, n_embd=32, n_positions=64, vocab_size=50257)
PROMPT = "Transformer tokens are vectors"  # 5 GPT-2 tokens


def make_checkpoint(path: Path, seed: int = 0, **overrides) -> Path:
    """Save a random-init GPT-2 with the given config overrides to ``path`` (as a user's checkpoint would be)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    GPT2LMHeadModel(GPT2Config(**{**TINY, **overrides})).save_pretrained(path)
    return path


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
