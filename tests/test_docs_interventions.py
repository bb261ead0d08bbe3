"""docs/interventions.md: its walkthrough runs as written (GPT-2 124M architecture, random weights, offline)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gpt2graph.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "interventions.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _walkthrough() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## 6. Walkthrough", 1)[1].split("\n## ", 1)[0]
    return BLOCK.findall(section)


def test_the_walkthrough_has_python_and_command_lines():
    languages = [lang for lang, _ in _walkthrough()]
    assert "python" in languages and "sh" in languages


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for language, code in _walkthrough():
        if language == "python":
            exec(compile(code, str(DOC), "exec"), namespace)
            continue
        for line in code.strip().splitlines():
            argv = shlex.split(line)
            assert argv[0] == "gpt2graph", line
            assert main(argv[1:]) == 0, line
    out = capsys.readouterr().out
    assert "14 14" in out
    assert "9 ĠJohn / ĠMary 1.0" in out  # the patched stream at the differing position restores the clean run
    assert (tmp_path / "ioi.gg").is_dir() and '"top": 20' in out
    assert b"patch-cell" in (tmp_path / "ioi-patching.svg").read_bytes()
    assert b"circuit-edge" in (tmp_path / "ioi-circuit.svg").read_bytes()
    circuit = namespace["circuit"]
    assert len(circuit.edges) >= 20 and circuit.faithfulness.ablation == "corrupted"
