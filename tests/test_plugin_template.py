"""A third-party renderer, installed by pip as a real distribution, is found through its entry point and
renders through the API and the CLI: the worked example in renderers/template."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2graph.errors import RendererError
from gpt2graph.registry import registry

TEMPLATE = Path(__file__).resolve().parent.parent / "renderers" / "template"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pip-install the template into a private directory (offline, without touching the environment)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "template"
    shutil.copytree(TEMPLATE, source)  # setuptools builds in the source tree: keep the checkout clean
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=source,
    )
    return target


@pytest.fixture
def on_path(installed, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(installed))
    registry.refresh()
    yield installed
    monkeypatch.undo()
    registry.refresh()


def test_installed_template_renders_through_the_api(on_path, tiny_graph, tmp_path):
    assert "dot" in registry.names()
    assert registry.info("dot").distribution == "gpt2graph-template"
    out = tiny_graph.render("dot", tmp_path / "g.dot", layers=[1], heads=[2, 3], positions=[0])
    text = out.read_text(encoding="utf-8")
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    assert '"blocks.1.attn.hook_q[0,3]"' in text and '"blocks.0.attn.hook_q[0,3]"' not in text
    assert '"blocks.1.attn.hook_z[0,2]" -> "op:blocks.1.attn.hook_result[0,2]"' in text
    with pytest.raises(RendererError, match="layer"):
        tiny_graph.render("dot", tmp_path / "bad.dot", layers=[7])
    assert not (tmp_path / "bad.dot").exists()


@pytest.mark.slow
def test_installed_template_is_listed_and_used_by_the_cli(installed, saved_graph, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "gpt2graph.cli"]
    listing = subprocess.run([*cli, "renderers"], env=env, capture_output=True, text=True, check=True)
    assert "dot 0.1.0 (gpt2graph-template)" in listing.stdout and "--option heads=<list[int]>" in listing.stdout
    out = tmp_path / "run.gv"
    subprocess.run(
        [
            *cli,
            "render",
            str(saved_graph),
            "-r",
            "dot",
            "-o",
            str(out),
            "--option",
            "layers=all",
            "--option",
            "heads=0",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"blocks.1.hook_mlp_out[4]"' in out.read_text(encoding="utf-8")
