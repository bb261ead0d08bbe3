"""Where the glossary comes from: the built-in data directory, the user's files stored with a graph, and the
validation of files a contributor edits."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataValidationError, InputFileError
from ..files import read_bounded
from ..schema import UserDataFile
from .checks import MAX_BYTES, extend
from .mapping import Glossary

if TYPE_CHECKING:
    from ..graph import Graph

__all__ = ["DATA_ENV", "data_dir", "builtin_glossary", "load_glossary", "read_user_file", "validate_files"]

DATA_ENV = "GPT2GRAPH_DATA"


def data_dir() -> Path:
    """The built-in data directory: ``$GPT2GRAPH_DATA``, else ``data/`` of the checkout the package runs from,
    else the copy an installed wheel carries as ``gpt2graph/data``."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    package = Path(__file__).resolve().parent.parent
    checkout = package.parent / "data"
    return checkout if checkout.is_dir() else package / "data"


def _builtin_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataValidationError(
            [
                f"{root}: built-in data directory not found (set {DATA_ENV} to the data/ "
                f"directory of a gpt2graph checkout)"
            ]
        )
    return sorted(root.rglob("*.yaml"))


def _builtin_source(root: Path, path: Path) -> str:
    return str(Path(root.name) / path.relative_to(root))


def _read_text(path: str | os.PathLike[str]) -> str:
    """A data file's text, or a DataValidationError that says why it cannot be read."""
    try:
        data = read_bounded(path, MAX_BYTES)
    except InputFileError as exc:
        raise DataValidationError([str(exc)]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataValidationError([f"{path}: not UTF-8 text (invalid byte at offset {exc.start})"]) from None


@lru_cache(maxsize=4)
def _builtin(root: Path) -> Glossary:
    files = [(_builtin_source(root, p), _read_text(p)) for p in _builtin_files(root)]
    glossary, problems = extend(Glossary(), files)
    if problems:
        raise DataValidationError(problems)
    return glossary


def builtin_glossary() -> Glossary:
    """The built-in entries and annotations (parsed and validated once per data directory)."""
    return _builtin(data_dir())


def load_glossary(user_data: Sequence[UserDataFile] = ()) -> Glossary:
    """The built-in glossary with the user's files applied on top, in the order they were added."""
    glossary = builtin_glossary()
    for user_file in user_data:
        glossary, problems = extend(glossary, [(user_file.source, user_file.text)])
        if problems:
            raise DataValidationError(problems)
    return glossary


def read_user_file(path: str | os.PathLike[str], graph: Graph | None = None) -> UserDataFile:
    """Read and validate a user's glossary/annotation file on top of ``graph``'s glossary (or the built-in
    one); raise DataValidationError listing every problem, else return the file to store with the graph."""
    text = _read_text(path)
    base = graph.glossary if graph is not None else builtin_glossary()
    _, problems = extend(base, [(str(path), text)], graph)
    if problems:
        raise DataValidationError(problems)
    return UserDataFile(source=str(path), text=text)


def validate_files(paths: Sequence[str | os.PathLike[str]], graph: Graph | None = None) -> list[str]:
    """Every problem in these files, validated together on top of the built-in data. A built-in file named
    here is checked as part of the built-in set as it now is on disk (with ``graph``, so is that whole set),
    so contributors can check their edits, including links other built-in files make into them."""
    root = data_dir()
    builtin = _builtin_files(root)
    given = {Path(p).resolve() for p in paths}
    problems: list[str] = []
    texts = []
    for p in paths:
        if Path(p).resolve() not in set(map(Path.resolve, builtin)):
            try:
                texts.append((str(p), _read_text(p)))
            except DataValidationError as exc:
                problems += exc.problems
    edited = any(f.resolve() in given for f in builtin)
    base, found = extend(
        Glossary(), [(_builtin_source(root, f), _read_text(f)) for f in builtin], graph if edited else None
    )
    _, more = extend(base, texts, graph)
    return problems + found + more
