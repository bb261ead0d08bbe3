"""The documentation stays true: the examples of README.md and of every docs/*.md run, offline, as written.

A fenced block is run when its info string says ``runnable``: ```` ```python runnable ```` or
```` ```sh runnable ````; a Python or shell block that cannot run says so with ``no-run``. A block
```` ```yaml file=NAME ```` (any language) is written to ``NAME`` first, so the examples after it can use the
file it shows. The blocks of one page run in order, in one fresh directory
and one Python namespace, like a notebook, on a machine with no network and an empty Hugging Face cache: what a
newcomer meets. Pages are discovered, so a new page is checked as soon as it exists. Links between pages and
to files of the repository must lead somewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)

#: runs the steps of one page: python in one shared namespace, sh in bash (set -euo pipefail), files written
RUNNER = r"""
import json, subprocess, sys, traceback
from pathlib import Path
namespace = {"__name__": "__main__"}
for step in json.load(sys.stdin):
    where = f"{step['page']}:{step['line']}"
    print(f"--- {where} ({step['kind']})", flush=True)
    if step["kind"] == "file":
        Path(step["path"]).write_text(step["code"])
    elif step["kind"] == "python":
        try:
            exec(compile(step["code"], where, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            sys.exit(f"FAILED: the python block at {where}")
    else:
        if subprocess.run(["bash", "-euo", "pipefail", "-c", step["code"]]).returncode:
            sys.exit(f"FAILED: the sh block at {where}")
"""


def steps(page: Path) -> list[dict]:
    """The runnable blocks and example files of a page, in order."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        words = m.group("info").split()
        line = text.count("\n", 0, m.start()) + 2
        body = "\n".join(ln[len(m.group("indent")) :] for ln in m.group("body").splitlines()) + "\n"
        files = [w.split("=", 1)[1] for w in words if w.startswith("file=")]
        if files:
            out.append({"kind": "file", "path": files[0], "code": body, "page": page.name, "line": line})
        if "runnable" in words[1:]:
            if words[0] not in ("python", "sh"):
                raise AssertionError(f"{page.name}:{line}: only python and sh blocks can be runnable")
            out.append({"kind": words[0], "code": body, "page": page.name, "line": line})
    return out


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "GPT2GRAPH_"))}
    env.update(
        HF_HUB_OFFLINE="1",  # no network; an empty cache: pretrained weights are not there
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # the installed `gpt2graph`
        BROWSER="true",  # show() "opens" the page with a command that does nothing
        TOKENIZERS_PARALLELISM="false",
        GPT2GRAPH_PROGRESS="0",
    )
    return env


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run_as_written(page, tmp_path):
    todo = steps(page)
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(todo),
        capture_output=True,
        text=True,
        cwd=work,
        env=offline_env(tmp_path),
        timeout=1800,
        check=False,
    )
    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{run.stderr[-6000:]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_runs_or_says_why_not(page):
    """A Python or shell block either runs (``runnable``) or is marked ``no-run``: no example silently escapes."""
    text = page.read_text(encoding="utf-8")
    for m in FENCE.finditer(text):
        words = m.group("info").split()
        if words[:1] in (["python"], ["sh"]) and not {"runnable", "no-run"} & set(words[1:]):
            line = text.count("\n", 0, m.start()) + 1
            raise AssertionError(f"{page.name}:{line}: mark this block ```{words[0]} runnable, or ```{words[0]} no-run")


def test_the_readme_runs_its_first_commands():
    """The README's first command-line example and its Python example are among the blocks that run."""
    todo = steps(ROOT / "README.md")
    sh = [s["code"] for s in todo if s["kind"] == "sh"]
    assert any(s["kind"] == "python" for s in todo)
    first = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("gpt2graph "))
    assert sh and first in sh[0].splitlines()


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_lead_somewhere(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for m in LINK.finditer(text):
        target = m.group("target").split("#")[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue  # a URL, or a link within the page
        assert (page.parent / target).exists(), f"{page.name}: link to {target}, which does not exist"
