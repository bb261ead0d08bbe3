"""Prompts of a corpus, read one record at a time from a text file (one prompt per line), a JSON Lines file
(one object with a string ``text`` per line) or a directory of ``.txt`` files (one prompt per file).

Nothing is read ahead: :func:`records` streams. A record that cannot be a prompt (an empty line, a line that
is not valid JSON or UTF-8, an object without ``text``) is still yielded, with a ``problem`` and a message
naming its line, so the caller can report it, count it and go on, or stop (``--strict``). Every record has a
stable index (its ordinal in the source), which is what a corpus checkpoint records as done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import Gpt2GraphError
from .files import regular_file

__all__ = ["Record", "SourceFormat", "Problem", "PromptSourceError", "source_format", "records", "fingerprint"]

SourceFormat = Literal["lines", "jsonl", "directory"]
#: why a record is not a prompt (too_long is found when it is tokenized)
Problem = Literal["empty", "invalid_utf8", "invalid_json", "no_text", "too_long"]
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


class PromptSourceError(Gpt2GraphError):
    """A prompt source that cannot be read, or (strict mode) a record that is not a prompt."""


@dataclass(frozen=True)
class Record:
    """One record of a source: its index, where it is (``file:line`` or the file), and its text or a problem."""

    index: int
    where: str
    text: str | None
    problem: Problem | None = None
    message: str | None = None


def source_format(path: str | Path) -> SourceFormat:
    """How ``path`` is read: a directory of .txt files, JSON Lines (.jsonl, .ndjson), or lines of text."""
    path = Path(path)
    if not path.exists():
        raise PromptSourceError(f"{path}: no such file or directory")
    if path.is_dir():
        return "directory"
    regular_file(path, PromptSourceError)  # a device or a named pipe would never end
    return "jsonl" if path.suffix.lower() in _JSONL_SUFFIXES else "lines"


def _files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
    if not files:
        raise PromptSourceError(f"{path}: the directory has no .txt files")
    return files


def _bad(index: int, where: str, problem: Problem, message: str) -> Record:
    return Record(index, where, None, problem, f"{where}: {message}")


def _parse_line(index: int, where: str, raw: bytes, fmt: SourceFormat) -> Record:
    try:
        line = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError as exc:
        return _bad(index, where, "invalid_utf8", f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
    if not line.strip():
        return _bad(index, where, "empty", "empty line")
    if fmt == "lines":
        return Record(index, where, line)
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return _bad(index, where, "invalid_json", f"not valid JSON ({exc.msg} at column {exc.colno})")
    text = obj.get("text") if isinstance(obj, dict) else None
    if not isinstance(text, str):
        return _bad(index, where, "no_text", 'expected a JSON object with a string field "text"')
    if not text.strip():
        return _bad(index, where, "empty", 'the "text" field is empty')
    return Record(index, where, text)


def records(path: str | Path) -> Iterator[Record]:
    """Every record of the source at ``path``, in order, read lazily."""
    path = Path(path)
    fmt = source_format(path)
    if fmt == "directory":
        for index, file in enumerate(_files(path)):
            where = str(file)
            try:
                text = file.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
            except UnicodeDecodeError as exc:
                yield _bad(index, where, "invalid_utf8", f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            yield Record(index, where, text) if text.strip() else _bad(index, where, "empty", "empty file")
        return
    try:
        with open(path, "rb") as f:
            for index, raw in enumerate(f):
                yield _parse_line(index, f"{path}:{index + 1}", raw, fmt)
    except OSError as exc:
        raise PromptSourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def fingerprint(path: str | Path) -> str:
    """SHA-256 of the source's content (for a directory: of each .txt file's name and content, in order), so
    a checkpoint is only resumed over the very prompts it was started on."""
    path = Path(path)
    h = hashlib.sha256()
    files = _files(path) if source_format(path) == "directory" else [path]
    for file in files:
        if path.is_dir():
            h.update(file.name.encode("utf-8") + b"\0")
        try:
            with open(file, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
        except OSError as exc:
            raise PromptSourceError(f"{file}: cannot read: {exc.strerror or exc}") from exc
        h.update(b"\0")
    return h.hexdigest()
