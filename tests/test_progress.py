"""Progress bars appear on a terminal and stay out of pipes."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from gpt2graph import progress

SCRIPT = "from gpt2graph import progress\nfor _ in progress.steps(range(3), 'counting'): pass\nprint('done')\n"


def _run_on(stderr_is_tty: bool, env: dict | None = None, argv: list[str] | None = None) -> str:
    """What a command (by default SCRIPT) writes to stderr, when stderr is a terminal or a pipe."""
    environ = {k: v for k, v in os.environ.items() if k != progress.ENV} | (env or {})
    argv = argv or ["-c", SCRIPT]
    if not stderr_is_tty:
        out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=environ, check=True)
        return out.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=follower, env=environ)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait() == 0, b"".join(chunks).decode(errors="replace")
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_bar_is_drawn_on_a_terminal():
    assert "counting" in _run_on(stderr_is_tty=True)


@pytest.mark.slow
def test_nothing_is_drawn_in_a_pipe_or_when_turned_off():
    assert _run_on(stderr_is_tty=False) == ""
    assert _run_on(stderr_is_tty=True, env={progress.ENV: "0"}) == ""
    assert "counting" in _run_on(stderr_is_tty=False, env={progress.ENV: "1"})


def test_configure_overrides_the_terminal_check(capsys):
    progress.configure(True)
    try:
        list(progress.steps(range(2), "forced"))
    finally:
        progress.configure(None)
    assert "forced" in capsys.readouterr().err
    list(progress.steps(range(2), "quiet"))  # pytest's stderr is not a terminal
    assert capsys.readouterr().err == ""


#: what the CLI's bars say, step by step (the analysis has one step per part)
CLI_STEPS = {
    "build": ["loading model", "build", "verify", "analyze: head roles", "analyze: circuits", "analyze: logit lens",
              "hashing weights", "storing weights", "saving", "render svg"],
    "verify": ["loading", "loading weights", "verify"],
    "render": ["loading", "render svg"],
}  # fmt: skip


def _cli(tmp_path, tiny_checkpoint, command: str, *extra: str) -> list[str]:
    run = tmp_path / "run.gg"
    argv = {
        "build": ["build", "Transformer tokens", "--model", str(tiny_checkpoint), "-o", str(run), "--verify",
                  "--analyze", "--render", f"svg={tmp_path / 'run.svg'}"],
        "verify": ["verify", str(run)],
        "render": ["render", str(run), "-r", "svg", "-o", str(tmp_path / "again.svg")],
    }[command]  # fmt: skip
    return ["-m", "gpt2graph.cli", *extra, *argv]


def test_every_long_cli_step_shows_a_bar_on_a_terminal_and_none_in_a_pipe(tiny_checkpoint, tmp_path):
    cache = {"GPT2GRAPH_CACHE": str(tmp_path / "cache")}  # weights stored by this build, read by verify
    for command, steps in CLI_STEPS.items():
        drawn = _run_on(stderr_is_tty=True, env=cache, argv=_cli(tmp_path, tiny_checkpoint, command))
        for step in steps:
            assert f"\r{step}" in drawn, (command, step, drawn)  # a bar starts with what it is doing
        assert "it/s]" in drawn  # tqdm's own drawing, not our text
        piped = _run_on(stderr_is_tty=False, env=cache, argv=_cli(tmp_path, tiny_checkpoint, command))
        assert "\r" not in piped and not any(step in piped for step in steps), (command, piped)


def test_quiet_silences_the_bars_on_a_terminal(tiny_checkpoint, tmp_path):
    cache = {"GPT2GRAPH_CACHE": str(tmp_path / "cache")}
    for extra in (["--quiet"], ["-q"]):
        drawn = _run_on(stderr_is_tty=True, env=cache, argv=_cli(tmp_path, tiny_checkpoint, "build", *extra))
        assert "\r" not in drawn and not any(step in drawn for step in CLI_STEPS["build"]), drawn
    after = [*_cli(tmp_path, tiny_checkpoint, "verify"), "--quiet"]  # after the command, too
    assert "\r" not in _run_on(stderr_is_tty=True, env=cache, argv=after)


def test_the_python_api_reports_progress_on_request(tiny_checkpoint, capsys):
    import gpt2graph

    progress.configure(True)
    try:
        gpt2graph.build("Transformer tokens", model=str(tiny_checkpoint), analyze=True)
    finally:
        progress.configure(None)
    err = capsys.readouterr().err
    assert all(f"\r{step}" in err for step in ("loading model", "build", "analyze: logit lens")), err
    gpt2graph.build("Transformer tokens", model=str(tiny_checkpoint))
    assert capsys.readouterr().err == ""
