"""An installed wheel works without the checkout: it carries the built-in glossary and callouts as
gpt2graph/data and the JSON Schemas as gpt2graph/schemas, finds them there, and never writes into itself.

The install test makes a fresh virtual environment, installs the wheels of the core and of the SVG renderer
into it with pip (``--no-deps``), and gives it the dependencies already installed here (torch and the rest)
through a directory of links to them, leaving out this checkout's own editable installs: so what runs is the
wheel, and nothing from the checkout."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from gpt2graph.schemagen import SCHEMAS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _wheel(source: Path, names: list[str], dist: Path) -> Path:
    """Build a wheel from a copy of ``names`` under ``source`` (setuptools leaves build/ and *.egg-info behind)."""
    copy = dist / "src"
    copy.mkdir(parents=True)
    for name in names:
        if (source / name).is_dir():
            shutil.copytree(source / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source / name, copy / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(copy)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    dist = tmp_path_factory.mktemp("dist")
    return {
        "core": _wheel(ROOT, ["gpt2graph", "data", "schema", "pyproject.toml", "README.md"], dist / "core"),
        "svg": _wheel(ROOT / "renderers" / "svg", ["gpt2graph_svg", "pyproject.toml"], dist / "svg"),
    }


def test_the_wheel_carries_the_data_and_the_schemas(wheels, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheels["core"]) as zf:
        zf.extractall(site)
    shipped = sorted(p.relative_to(site / "gpt2graph" / "data") for p in (site / "gpt2graph" / "data").rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(ROOT / "data") for p in (ROOT / "data").rglob("*.yaml"))
    schemas = site / "gpt2graph" / "schemas"
    assert sorted(p.name for p in schemas.iterdir()) == sorted(p.name for p in (ROOT / "schema").glob("*.schema.json"))
    for name in SCHEMAS:
        assert (schemas / name).read_bytes() == (ROOT / "schema" / name).read_bytes()


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its content hash."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_a_pip_installed_wheel_works_and_writes_nothing_into_itself(wheels, tmp_path, tiny_checkpoint):
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            *map(str, wheels.values()),
        ],
        check=True,
        capture_output=True,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # the dependencies installed here, but not this checkout's own packages (editable installs)
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("gpt2graph", "__editable__")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    (site / "zz-test-dependencies.pth").write_text(f"{deps}\n")
    installed = tree(site)

    work = tmp_path / "work"  # outside the checkout
    work.mkdir()
    environ = {
        "PATH": f"{env / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONDONTWRITEBYTECODE": "1",  # a byte-code cache would be a write, too
        "TOKENIZERS_PARALLELISM": "false",
    }

    def run(*argv: str, code: int = 0) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=work, env=environ, check=False)
        assert done.returncode == code, f"{argv}: {done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    assert run(str(python), "-c", "import gpt2graph; print(gpt2graph.__file__)").startswith(str(site))
    assert "up to date" in run("gpt2graph", "schema", "--check")
    assert "is installed, not run from a checkout" in run("gpt2graph", "schema", code=2)
    run("gpt2graph", "schema", "schemas")
    assert sorted(p.name for p in (work / "schemas").iterdir()) == sorted(SCHEMAS)
    assert "residual-stream" in run("gpt2graph", "glossary")
    assert "PASS" in run(
        "gpt2graph", "build", "Hello world", "--model", str(tiny_checkpoint), "-o", "run.gg", "--verify"
    )
    run("gpt2graph", "render", "run.gg", "-r", "svg", "-o", "run.svg")
    assert "<svg" in (work / "run.svg").read_text()[:200]
    assert run(str(python), "-m", "gpt2graph", "--version").strip() == "gpt2graph 0.1.0"
    assert "svg 0.1.0 (gpt2graph-svg)" in run(str(python), "-m", "gpt2graph", "renderers")
    assert tree(site) == installed, "something was written inside site-packages"
