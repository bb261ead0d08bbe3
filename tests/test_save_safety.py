"""Saving loses nothing, however it ends: Ctrl-C is one line and exit 130 with the previous graph intact; a save
killed outright leaves temporaries that the next save of the same target cleans up, but never one a running save
holds; files get the usual permissions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROMPT, WITH_CTRL_C

import gpt2graph
from gpt2graph import storage
from gpt2graph.cli import main


def siblings(path: Path) -> list[str]:
    """What a save of ``path`` may leave beside it: hidden entries named after it."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def contents(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_ctrl_c_while_writing_is_one_line_and_keeps_the_old_graph(
    tiny_graph, tiny_checkpoint, tmp_path, monkeypatch, capfd
):
    import safetensors.torch

    target = tmp_path / "run.gg"
    tiny_graph.save(target)
    before = contents(target)

    def interrupted(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    assert main(["build", "Hi", "--model", str(tiny_checkpoint), "-o", str(target)]) == 130
    assert capfd.readouterr().err == "interrupted\n"
    assert contents(target) == before and siblings(target) == []


def test_ctrl_c_between_the_two_renames_puts_the_old_graph_back(tiny_graph, tmp_path, monkeypatch):
    target = tmp_path / "run.gg"
    tiny_graph.save(target)
    before = contents(target)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the old graph is aside, the new one not yet in place
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        tiny_graph.save(target)
    monkeypatch.setattr(os, "replace", real)
    assert contents(target) == before and siblings(target) == []


def _saving_process(tmp_path: Path, ckpt: Path, target: Path) -> tuple[subprocess.Popen, Path]:
    """``gpt2graph build -o target`` in a subprocess that stops for a long while once its temporary is written,
    and says so by creating a file."""
    ready = tmp_path / "ready"
    script = f"""{WITH_CTRL_C}
import sys, time
from pathlib import Path
import gpt2graph.storage as storage
real = storage._swap_in
def slow(*args):
    Path({str(ready)!r}).touch()
    time.sleep(60)
    real(*args)
storage._swap_in = slow
from gpt2graph.cli import main
sys.exit(main(["build", "Hi", "--model", {str(ckpt)!r}, "-o", {str(target)!r}]))
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the save never started"
        time.sleep(0.05)
    return proc, ready


@pytest.mark.slow
def test_a_real_ctrl_c_during_save(tiny_checkpoint, tmp_path):
    target = tmp_path / "run.gg"
    proc, _ = _saving_process(tmp_path, tiny_checkpoint, target)
    assert len(siblings(target)) == 1  # the temporary, complete, about to be swapped in
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "interrupted\n")
    assert not target.exists() and siblings(target) == []


@pytest.mark.slow
def test_a_save_killed_outright_is_cleaned_up_by_the_next(tiny_graph, tiny_checkpoint, tmp_path):
    target = tmp_path / "run.gg"
    proc, _ = _saving_process(tmp_path, tiny_checkpoint, target)
    left = siblings(target)
    proc.kill()  # kill -9: no handler runs
    proc.communicate(timeout=60)
    assert siblings(target) == left and len(left) == 1 and left[0].endswith(".tmp")
    tiny_graph.save(target)
    assert siblings(target) == [] and gpt2graph.load(target).verify().ok


@pytest.mark.slow
def test_a_temporary_of_a_running_save_is_left_alone(tiny_graph, tiny_checkpoint, tmp_path):
    target = tmp_path / "run.gg"
    proc, _ = _saving_process(tmp_path, tiny_checkpoint, target)
    try:
        (running,) = siblings(target)
        tiny_graph.save(target)  # another save of the same target, while the first still runs
        assert siblings(target) == [running]
    finally:
        proc.kill()
        proc.communicate(timeout=60)


def test_an_interrupted_swap_is_undone_by_the_next_save(tiny_graph, tmp_path):
    """Killed between its two renames, a save leaves the previous graph aside and no target: the next save puts
    it back first (so nothing is lost if that save fails too), then replaces it."""
    target = tmp_path / "run.gg"
    tiny_graph.save(target)
    aside = tmp_path / ".run.gg.12345.old"
    os.rename(target, aside)
    storage.remove_stale(target)
    assert target.is_dir() and siblings(target) == [] and gpt2graph.load(target).verify().ok


def test_cleanup_deletes_only_what_a_save_writes(tmp_path):
    target = tmp_path / "run.gg"
    stale = tmp_path / ".run.gg.abc.tmp"
    stale.mkdir()
    (stale / "graph.json").write_text("{}")
    (stale / "mine.txt").write_text("not a graph's file")
    other = tmp_path / ".run.gg-notes.tmp"  # another name: not a temporary of this target
    other.mkdir()
    storage.remove_stale(target)
    assert sorted(p.name for p in stale.iterdir()) == ["mine.txt"] and other.is_dir()


def test_saved_files_get_the_usual_permissions(tiny_graph, tmp_path):
    target = tmp_path / "run.gg"
    old = os.umask(0o022)
    try:
        tiny_graph.save(target)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in target.iterdir()}
    assert modes == {"graph.json": 0o644, "values.safetensors": 0o644}
    assert target.stat().st_mode & 0o777 == 0o755


def test_only_a_directory_that_is_exactly_a_saved_graph_is_replaced(tiny_graph, tmp_path):
    target = tmp_path / "run.gg"
    tiny_graph.save(target)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(gpt2graph.Gpt2GraphError, match="it also holds notes.txt"):
        tiny_graph.save(target)
    assert (target / "notes.txt").read_text() == "mine" and (target / "graph.json").exists()
    (target / "notes.txt").unlink()
    tiny_graph.save(target)  # exactly a saved graph again: replaced
    assert gpt2graph.load(target).tokenization.text == PROMPT
