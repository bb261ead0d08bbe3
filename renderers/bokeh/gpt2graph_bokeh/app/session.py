"""One browser session's work, apart from any widget: its steps (prompts built, tokens appended), its decoding
settings, and its graphs, kept in the server's shared :class:`~.store.GraphStore`.

A step is what was built: the token ids and their text, with the model. Steps are never lost; a step's graph
may be dropped from memory (the store's limits) and is rebuilt from its token ids when it is shown again.
Building runs in a worker thread (the methods that block say so); the rest is quick.

Example::

    session = Session("id", pool, store)
    step, graph = session.build("The cat sat", model=0)     # worker thread
    session.set_decoding(temperature=0.7, top_k=None, top_p=0.9, seed=0)
    step2, _ = session.build(session.continuation(graph), model=0, added=True)
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpt2graph import build
from gpt2graph.plugin import (
    DataValidationError,
    DecodingSettings,
    Key,
    PromptError,
    Tokenization,
    VectorKind,
    settings,
    tokenize,
)

from .models import ModelPool
from .store import GraphStore

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["Report", "Session", "Step"]

#: progress of a long step: what is being done, and the share of the whole done so far (0..1)
Report = Callable[[str, float], None]


def _silent(_what: str, _done: float) -> None:
    return None


@dataclass(frozen=True)
class Step:
    """One built run of a session: the tokens it read, with which model."""

    key: int
    model: int
    token_ids: tuple[int, ...]
    text: str
    added: str | None  # the token a "next token" step appended (BPE form), None for a typed prompt

    def label(self, limit: int = 60) -> str:
        """How the steps list names it (plain text)."""
        text = self.text if len(self.text) <= limit else "…" + self.text[-limit:]
        how = f"+ {self.added}" if self.added is not None else "prompt"
        return f"{self.key}. {how} · {len(self.token_ids)} tokens · {text!r}"


class Session:
    """State of one browser session; its graphs live in ``store`` under ``id``."""

    def __init__(
        self,
        id: str,
        pool: ModelPool,
        store: GraphStore,
        annotations: Sequence[str] = (),
        max_tokens: int | None = None,
    ):
        self.id = id
        self.pool = pool
        self.store = store
        self.annotations = list(annotations)
        self.max_tokens = max_tokens
        self.steps: list[Step] = []
        self.problems: dict[int, list[str]] = {}  # per step: annotation files that do not fit its run
        self.decoding: DecodingSettings = settings()
        self.closed = False
        self._keys = itertools.count(1)
        self._lock = threading.Lock()

    # ---- tokens -------------------------------------------------------------------------------------
    def tokenize(self, prompt: str | Sequence[int], model: int) -> Tokenization:
        """The prompt's tokens with a model that is loaded (the page waits for it otherwise); a prompt that is
        empty, longer than the model's context or than this server accepts is a :class:`PromptError`."""
        loaded = self.pool.loaded(model)
        if loaded is None:
            raise PromptError(f"the model {self.pool.label(model)} is not loaded yet")
        return self._checked(tokenize(prompt, loaded.loaded))

    def _checked(self, tokens: Tokenization) -> Tokenization:
        n = len(tokens.token_ids)
        if self.max_tokens is not None and n > self.max_tokens:
            raise PromptError(
                f"the prompt is {n} tokens long; this server draws prompts of at most {self.max_tokens} tokens "
                f"(gpt2graph serve --max-tokens): shorten it by {n - self.max_tokens}"
            )
        return tokens

    # ---- building (worker threads) ------------------------------------------------------------------
    def build(
        self, prompt: str | Sequence[int], model: int, added: str | None = None, report: Report = _silent
    ) -> tuple[Step, Graph]:
        """Build a new step (blocks: loads the model if needed, then one forward pass) and keep its graph."""
        graph = self.run_alone(prompt, model, report)
        tokens = graph.tokenization
        step = Step(next(self._keys), model, tuple(tokens.token_ids), tokens.text, added)
        self.problems[step.key] = self._annotate(graph)
        self.keep(step, graph)
        return step, graph

    def run_alone(
        self, prompt: str | Sequence[int], model: int, report: Report = _silent, what: str = "the prompt"
    ) -> Graph:
        """A checked run that is not kept (a step's, or the corrupted prompt of a patching experiment; blocks:
        loads the model if needed, then one forward pass)."""
        if isinstance(prompt, str) and not prompt.strip():
            raise PromptError(f"{what} is empty: type some text first")
        if self.pool.loaded(model) is None:
            report(f"loading the model {self.pool.label(model)}", 0.02)
        loaded = self.pool.get(model)
        self._checked(tokenize(prompt, loaded.loaded))
        report("running the model (one forward pass, captured)", 0.1)
        return self._run(prompt, model)

    def rebuild(self, step: Step, report: Report = _silent) -> Graph:
        """The graph of a step that was dropped from memory, built again from its token ids (blocks)."""
        report("rebuilding this step's graph (it was dropped to stay within the memory limit)", 0.05)
        graph = self._run(list(step.token_ids), step.model)
        self._annotate(graph)
        self.keep(step, graph)
        return graph

    def _run(self, prompt: str | Sequence[int], model: int) -> Graph:
        loaded = self.pool.get(model)
        with loaded.lock:  # a capture hooks the model's modules
            return build(prompt, model=loaded.loaded)

    def _annotate(self, graph: Graph) -> list[str]:
        """Apply the user's annotation files; a file whose selectors do not fit this run (a position beyond
        its tokens) is left out of it, and what was wrong is returned for the page to say."""
        problems = []
        for path in self.annotations:
            try:
                graph.annotate(path)
            except DataValidationError as exc:
                problems.append(f"{path} is not applied to this run: {'; '.join(exc.problems)}")
        return problems

    def keep(self, step: Step, graph: Graph) -> None:
        """Put a step's graph in the store, unless the session was closed meanwhile (a closed tab keeps nothing)."""
        with self._lock:
            if not self.closed:
                self.store.put(self.id, step.key, graph)

    def graph(self, step: Step) -> Graph | None:
        """The step's graph if it is still in memory."""
        return self.store.get(self.id, step.key)

    # ---- decoding -----------------------------------------------------------------------------------
    def set_decoding(self, temperature: float, top_k: int | None, top_p: float | None, seed: int | None) -> None:
        """New decoding settings (checked: a value out of range is an error and changes nothing)."""
        self.decoding = settings(temperature, top_k, top_p, seed)

    def view(self, graph: Graph) -> Graph:
        """``graph`` decoded with this session's settings (a view: the values are shared, nothing is rerun)."""
        d = self.decoding
        return graph.with_decoding(d.temperature, d.top_k, d.top_p, d.seed)

    def continuation(self, graph: Graph) -> tuple[list[int], str]:
        """The token ids of ``graph``'s prompt followed by the token its decoding stage chooses after the last
        position, and that token (BPE form)."""
        view = self.view(graph)
        last = graph.topology.vector_id(Key(VectorKind.next_token, None, None, graph.n_tokens - 1))
        chosen = int(view.values(last).reshape(-1)[0])
        return [*graph.tokenization.token_ids, chosen], graph.decode_token(chosen)

    # ---- end ----------------------------------------------------------------------------------------
    def close(self) -> int:
        """The tab was closed: forget every graph (and keep none a running build finishes later)."""
        with self._lock:
            self.closed = True
            return self.store.drop_session(self.id)
