"""An installed wheel works without the checkout: it carries the built-in glossary and callouts as
gpt2graph/data, and the package finds them there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_data_and_finds_it(tmp_path):
    source = tmp_path / "src"  # build from a copy: setuptools leaves build/ and *.egg-info behind
    for name in ("gpt2graph", "data", "schema"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("gpt2graph-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    shipped = sorted(p.relative_to(site / "gpt2graph" / "data") for p in (site / "gpt2graph" / "data").rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(ROOT / "data") for p in (ROOT / "data").rglob("*.yaml"))

    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import gpt2graph.glossary as g; "
        "print(g.__file__); print(g.data_dir()); print(len(g.builtin_glossary()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(site)],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    ).stdout.split()
    from gpt2graph.glossary import builtin_glossary

    assert out[0].startswith(str(site)) and out[1] == str(site / "gpt2graph" / "data")
    assert int(out[2]) == len(builtin_glossary())
