"""The graphs the live app keeps in memory: bounded per browser session and in all, the least recently used
dropped first.

A graph of GPT-2 124M holds about 1 MB of activations per token (its parameters are shared with the loaded
model), so the bound is a count of graphs. A dropped graph is not lost: its step keeps the token ids, and the
page rebuilds it when it is shown again.

Example::

    store = GraphStore(max_total=16, max_per_session=4)
    store.put("session-a", 1, graph)
    store.get("session-a", 1)           # the graph, now the most recently used
    store.drop_session("session-a")     # a closed tab frees its graphs
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["GraphStore"]

Key = tuple[str, int]  # (session id, step key)


class GraphStore:
    """Graphs by (session, step), least recently used first; safe to use from worker threads."""

    def __init__(self, max_total: int, max_per_session: int):
        if max_total < 1 or max_per_session < 1:
            raise ValueError(f"limits must be >= 1, got {max_total} in all and {max_per_session} per session")
        self.max_total = max_total
        self.max_per_session = min(max_per_session, max_total)
        self._graphs: OrderedDict[Key, Graph] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, step: int, graph: Graph) -> list[Key]:
        """Keep ``graph`` as the most recently used; return the keys dropped to stay within the limits (never
        the one just put)."""
        key = (session, step)
        with self._lock:
            self._graphs[key] = graph
            self._graphs.move_to_end(key)
            dropped = []
            mine = [k for k in self._graphs if k[0] == session]
            for old in mine[: max(0, len(mine) - self.max_per_session)]:
                del self._graphs[old]
                dropped.append(old)
            while len(self._graphs) > self.max_total:
                old = next(iter(self._graphs))
                del self._graphs[old]
                dropped.append(old)
            return dropped

    def get(self, session: str, step: int) -> Graph | None:
        """The graph of a step, marked as just used, or None when it was dropped (or never kept)."""
        key = (session, step)
        with self._lock:
            graph = self._graphs.get(key)
            if graph is not None:
                self._graphs.move_to_end(key)
            return graph

    def holds(self, session: str, step: int) -> bool:
        """Whether a step's graph is kept (without counting as a use of it)."""
        with self._lock:
            return (session, step) in self._graphs

    def drop_session(self, session: str) -> int:
        """Forget every graph of ``session``; how many there were."""
        with self._lock:
            keys = [k for k in self._graphs if k[0] == session]
            for k in keys:
                del self._graphs[k]
            return len(keys)

    def count(self, session: str | None = None) -> int:
        """Graphs kept, in all or for one session."""
        with self._lock:
            return len(self._graphs) if session is None else sum(1 for k in self._graphs if k[0] == session)
