"""Progress bars for the steps that can take more than about a second (loading, building, verifying,
analysing, saving, rendering, sweeps, corpora), drawn with tqdm.

Bars appear only where a person watches: on a terminal (stderr is a TTY), unless turned off. In a pipe, a
log file or a test they stay silent, so output that scripts read is never interleaved with them. The CLI's
``--quiet`` turns them off; the Python API turns them on or off on request::

    import gpt2graph.progress
    gpt2graph.progress.configure(True)     # bars even when stderr is not a terminal (e.g. a notebook)
    gpt2graph.progress.configure(False)    # never
    gpt2graph.progress.configure(None)     # back to the default: only on a terminal

Code that does long work reports it through :func:`task` (a bar with a total, or a spinner without one) or
:func:`steps` (a bar over an iterable), and never prints progress itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["configure", "active", "task", "steps", "Progress", "ENV"]

T = TypeVar("T")
#: environment variable that sets the default: 1 (always), 0 (never); unset: only on a terminal
ENV = "GPT2GRAPH_PROGRESS"
_setting: bool | None = None


def configure(enabled: bool | None) -> None:
    """Show bars always (True), never (False), or only when stderr is a terminal (None, the default)."""
    global _setting  # noqa: PLW0603 - one process-wide switch, like logging's level
    _setting = enabled


def active() -> bool:
    """Whether bars are drawn now."""
    if _setting is not None:
        return _setting
    env = os.environ.get(ENV, "")
    if env in ("0", "1"):
        return env == "1"
    return sys.stderr.isatty()


class Progress:
    """One running bar; does nothing when bars are off."""

    def __init__(self, bar: Any | None):
        self._bar = bar

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units done."""
        if self._bar is not None:
            self._bar.update(n)

    def describe(self, text: str) -> None:
        """Change what the bar says it is doing (e.g. the part of an analysis that runs now)."""
        if self._bar is not None:
            self._bar.set_description_str(text, refresh=True)


@contextmanager
def task(description: str, total: float | None = None, unit: str = "it", initial: float = 0) -> Iterator[Progress]:
    """A bar for one long step: ``total`` units (None: no total, a counter) advanced with ``update``;
    ``initial`` units were done before (a resumed run), so the rate and the time left count only new work."""
    if not active():
        yield Progress(None)
        return
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total, initial=initial, desc=description, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True
    )
    try:
        yield Progress(bar)
    finally:
        bar.close()


def steps(iterable: Iterable[T], description: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate over ``iterable`` with a bar (``total`` defaults to its length when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with task(description, total, unit) as bar:
        for item in iterable:
            yield item
            bar.update()
