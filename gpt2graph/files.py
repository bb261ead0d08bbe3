"""Reading files a user names: regular files only, and never more bytes than a limit; and writing files so that
no reader ever sees one half-written.

A size taken from ``stat`` says nothing about a device, a FIFO or a file that grows while it is read
(``/dev/zero`` reports 0 bytes and never ends), so every read of user-supplied data goes through
:func:`read_bounded`, which refuses anything that is not a regular file and stops after ``limit + 1`` bytes.
Every file written goes through :func:`replace_atomically`: a temporary file beside it, renamed into place.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from .errors import Gpt2GraphError, GraphFileError, InputFileError

__all__ = ["read_bounded", "regular_file", "file_kind", "checkout", "replace_atomically", "usual_mode"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a directory", "a character device", ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refusal(path: Path, mode: int) -> str:
    return f"{path}: refused: {file_kind(mode)}, not a regular file"


def regular_file(path: str | os.PathLike[str], error: type[Gpt2GraphError] = InputFileError) -> os.stat_result:
    """``stat`` of ``path`` (following links) when it is a regular file; else ``error`` saying what it is."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(_refusal(path, st.st_mode))
    return st


def read_bounded(path: str | os.PathLike[str], limit: int, error: type[Gpt2GraphError] = InputFileError) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; anything else raises ``error``.

    The file is opened without blocking (a FIFO with no writer would otherwise wait forever), checked to be a
    regular file on the open descriptor (no window for a swap), and read up to ``limit + 1`` bytes, so a file
    that is larger than it said, or grows, is refused after reading no more than that."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(_refusal(path, mode))
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path}: refused: larger than the limit of {limit:,} bytes")
    return data


@lru_cache(maxsize=1)
def checkout() -> Path | None:
    """The root of the gpt2graph checkout this package runs from (an editable install), or None when it is
    installed: a checkout has the package's ``pyproject.toml`` beside the ``gpt2graph`` directory."""
    root = Path(__file__).resolve().parent.parent
    try:
        is_ours = 'name = "gpt2graph"' in (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if is_ours else None


def usual_mode(mode: int) -> int:
    """``mode`` less the process's umask: the permissions a plainly created file (0o666) or directory (0o777)
    gets."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def replace_atomically(
    path: Path, write: Callable[[str], None], *, mode: int | None = None, where: str | None = None
) -> None:
    """Write ``path`` through ``write(temporary)``: into a temporary file beside it, given ``mode`` (default: the
    usual permissions) and renamed into place, so that a reader sees the old file or the whole new one, and a
    failure leaves nothing behind. An OS error is a :class:`GraphFileError` saying it cannot write ``where``
    (default: the path)."""
    where = where or str(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise GraphFileError(f"cannot write {where}: {exc.strerror or exc}") from exc
    try:
        write(tmp)
        os.chmod(tmp, usual_mode(0o666) if mode is None else mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise GraphFileError(f"cannot write {where}: {exc.strerror or exc}") from exc
        raise
