"""The models ``gpt2graph serve`` offers, each loaded once, in the background, on first use.

A model is named as for ``gpt2graph build`` (a hub id, a directory, or None for the default: pretrained gpt2,
falling back to the embedded architecture with random weights). Loading runs in a thread, so the server
answers at once; a model that fails to load is reported to the page that asked, and asked for again the next
time (a directory may appear, a cache may be filled). Each loaded model carries the lock its forward passes
take: capturing a run hooks the model's modules, so two captures on one model must not overlap.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from gpt2graph.plugin import DEFAULT_MODEL, LoadedModel, load_model

__all__ = ["Model", "ModelPool"]


@dataclass
class Model:
    """A loaded model, what the page says about it, and the lock its captures hold."""

    loaded: LoadedModel
    note: str  # plain text: its name, and whether its weights are random
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelPool:
    """The models named on the command line, by index (0 is the one a new page starts with)."""

    def __init__(
        self, names: list[str | None], random_weights: bool = False, seed: int = 0, revision: str | None = None
    ):
        self.names = list(names) or [None]
        self.random_weights = random_weights
        self.seed = seed
        self.revision = revision
        self._futures: dict[int, Future[Model]] = {}
        self._lock = threading.Lock()

    def label(self, index: int) -> str:
        """How the page names a model choice."""
        name = self.names[index]
        return name if name is not None else f"default ({DEFAULT_MODEL}, else the embedded architecture)"

    def request(self, index: int) -> Future[Model]:
        """The model's future, loading it in a thread if it is not loaded or loading (after a failure: again)."""
        with self._lock:
            future = self._futures.get(index)
            if future is None or (future.done() and future.exception() is not None):
                future = Future()
                future.set_running_or_notify_cancel()
                self._futures[index] = future
                threading.Thread(target=self._load, args=(index, future), daemon=True, name="g2g-load").start()
            return future

    def get(self, index: int) -> Model:
        """The loaded model (blocks until it is loaded; raises what loading raised)."""
        return self.request(index).result()

    def loaded(self, index: int) -> Model | None:
        """The model if it is loaded already, else None (never blocks)."""
        future = self._futures.get(index)
        return future.result() if future is not None and future.done() and future.exception() is None else None

    def _load(self, index: int, future: Future[Model]) -> None:
        try:
            loaded = load_model(
                self.names[index], random_weights=self.random_weights, seed=self.seed, revision=self.revision
            )
            fallback = self.names[index] is None and not self.random_weights
            future.set_result(Model(loaded, _note(loaded, fallback)))
        except BaseException as exc:  # reported to every page waiting for it
            future.set_exception(exc)


def _note(loaded: LoadedModel, fallback: bool) -> str:
    """What the page says about a model; ``fallback``: the default was asked for, so random weights mean
    pretrained gpt2 could not be loaded."""
    info = loaded.info
    d = info.dims
    what = f"{info.name}: {d.n_layer} layers x {d.n_head} heads, d_model {d.d_model}, context {d.n_ctx} tokens"
    if info.weights.status != "random":
        return what
    seed = "" if info.weights.seed is None else f" (seed {info.weights.seed})"
    why = (
        f"pretrained {DEFAULT_MODEL} could not be loaded, so this is the embedded default with RANDOM weights{seed}"
        if fallback
        else f"RANDOM weights{seed}"
    )
    return f"{what}. {why}: its predictions carry no learned meaning; only the structure is real."
