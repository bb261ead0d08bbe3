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


def _run_on(stderr_is_tty: bool, env: dict | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if k != progress.ENV} | (env or {})
    if not stderr_is_tty:
        out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=environ, check=True)
        return out.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.DEVNULL, stderr=follower, env=environ)
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
    proc.wait()
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
