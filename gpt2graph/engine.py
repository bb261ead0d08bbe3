"""Run a corpus: read and check the prompts, hand them to workers in chunks, reduce their tallies as they
arrive, checkpoint, and write the statistics (``gpt2graph corpus``).

One worker class (:class:`Worker`: load the model once, then build and measure each prompt's graph) runs in
three places, so every engine computes the same thing:

* **in this process** (``engine="local"``, one worker): nothing to start, nothing to send;
* **local worker processes** (``engine="local"``, ``workers > 1``): a process pool over this machine's cores;
* **Ray actors** (``engine="ray"``): on an existing cluster (``address``), or on a small Ray instance started
  here and always shut down.

The tallies merge exactly in any order (:mod:`gpt2graph.moments`), so the result does not depend on the
engine, the worker count or the order in which chunks finish. A run is **resumable**: the output directory
is rewritten atomically as a checkpoint (``complete: false``) every ``checkpoint_every`` seconds and when
the run is interrupted (Ctrl-C, a worker that dies, an error); the same command continues from it, skipping
exactly the records it lists as done. A prompt is counted when its chunk's tally is merged, so none is
counted twice and none is lost.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from . import progress
from .builder import capture_graph, parameters, tokenize
from .corpus import (
    ACTIVATION_KINDS,
    CorpusError,
    CorpusHeader,
    CorpusStats,
    SkippedRecord,
    SourceInfo,
    Tally,
    check_corpus_target,
    corpus_weights,
    is_corpus,
    load_corpus,
    measure,
    new_header,
)
from .errors import Gpt2GraphError
from .loading import LoadedModel, load_model
from .prompts import PromptSourceError, fingerprint, records, source_format
from .topology import Topology
from .values import Values

if TYPE_CHECKING:
    from concurrent.futures import Future

#: prompts handed to a worker at once: (record index, text)
Chunk = list[tuple[int, str]]

__all__ = [
    "run_corpus",
    "ModelSpec",
    "Worker",
    "CorpusInterrupted",
    "model_fingerprint",
    "RAY_OBJECT_STORE",
    "RAY_RESTARTS",
]

Engine = Literal["local", "ray"]
#: object store of a Ray instance started here (bytes): small, the tallies pass through it one at a time
RAY_OBJECT_STORE = 200 * 1024 * 1024
#: times Ray restarts a worker actor that died (its process killed, its node lost) and computes its chunks again
RAY_RESTARTS = 3


class CorpusInterrupted(Gpt2GraphError):
    """The run stopped before the end (a worker died); the checkpoint holds every prompt merged so far."""


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the model (by name: a model object cannot be sent to another process)."""

    model: str | None
    random_weights: bool = False
    seed: int = 0
    revision: str | None = None

    def load(self) -> LoadedModel:
        return load_model(self.model, random_weights=self.random_weights, seed=self.seed, revision=self.revision)


def model_fingerprint(loaded: LoadedModel) -> str:
    """The weight-store digest of every parameter (:func:`gpt2graph.weightstore.digest`): workers elsewhere
    must have loaded the very same model."""
    from .weightstore import digest

    return digest(parameters(loaded))


class Worker:
    """Loads the model once, then turns chunks of ``(record, text)`` into tallies. The same class runs in this
    process, in a local worker process and as a Ray actor."""

    def __init__(self, spec: ModelSpec, kinds: tuple[str, ...], expected_sha256: str, threads: int | None = None,
                 loaded: LoadedModel | None = None):  # fmt: skip
        import warnings

        import torch

        if threads:
            torch.set_num_threads(threads)
        if loaded is None:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a worker has no terminal of its own
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the driver already said what it loaded
                loaded = spec.load()
            if model_fingerprint(loaded) != expected_sha256:
                raise CorpusError(
                    f"a worker loaded {spec.model!r} with different weights than the driver (on a cluster, every "
                    "node must see the same model files)"
                )
        self.loaded, self.kinds = loaded, kinds

    def work(self, chunk: Chunk) -> Tally:
        import torch

        tally = Tally()
        with torch.no_grad():
            for record, text in chunk:
                graph = capture_graph(self.loaded, tokenize(text, self.loaded))
                tally = tally.merge(measure(graph, record, self.kinds))
                del graph  # one prompt's graph at a time
        return tally


# ---- pools: submit chunks, get tallies back in the order they finish ---------------------------------------
class _Pool(Protocol):
    """What the run needs of a pool of workers."""

    @property
    def in_flight(self) -> int: ...
    def submit(self, chunk: Chunk) -> None: ...
    def next(self) -> Tally: ...


class _InProcess:
    def __init__(self, worker: Worker):
        self.worker = worker
        self.done: list[Tally] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @property
    def in_flight(self) -> int:
        return len(self.done)

    def submit(self, chunk: Chunk) -> None:
        self.done.append(self.worker.work(chunk))

    def next(self) -> Tally:
        return self.done.pop()


_PROCESS_WORKER: Worker | None = None


def _start_process_worker(*args: Any) -> None:
    global _PROCESS_WORKER  # noqa: PLW0603 - one worker per process, built by the pool's initializer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it checkpoints and stops the pool
    _PROCESS_WORKER = Worker(*args)


def _process_work(chunk: Chunk) -> Tally:
    assert _PROCESS_WORKER is not None, "the pool's initializer makes the worker"
    return _PROCESS_WORKER.work(chunk)


class _Processes:
    def __init__(self, n: int, init_args: tuple[Any, ...]):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("spawn"), initializer=_start_process_worker, initargs=init_args
        )
        self.pending: set[Future[Tally]] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)  # tasks under way finish; their tallies are dropped

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def submit(self, chunk: Chunk) -> None:
        with _died():
            self.pending.add(self.pool.submit(_process_work, chunk))

    def next(self) -> Tally:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
        future = done.pop()
        self.pending.discard(future)
        with _died():
            return future.result()


@contextmanager
def _died() -> Iterator[None]:
    """A pool whose worker process died, as the error that says so."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        yield
    except BrokenProcessPool as exc:
        raise CorpusInterrupted(f"a worker process died ({exc})") from exc


class _Ray:
    def __init__(self, n: int, init_args: tuple[Any, ...], address: str | None):
        if not address or address.split(":")[0] in ("127.0.0.1", "localhost"):
            # a Ray instance on this machine only: every Ray process takes 127.0.0.1 as its node address (Ray
            # otherwise uses the machine's network address), read when ray is first imported
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if not address:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # one user's instance, reachable from loopback only
        try:
            import ray
        except ImportError:
            raise CorpusError("the ray engine needs Ray: pip install 'gpt2graph[ray]'") from None
        self.ray: Any = ray  # untyped where it matters: actors' methods are made at run time
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(
                num_cpus=n,
                include_dashboard=False,
                object_store_memory=RAY_OBJECT_STORE,
                log_to_driver=False,
                configure_logging=False,
            )
        try:
            # a dead actor is made again (it loads the model again) and its chunks computed again: a chunk whose
            # tally never arrived was never counted, so each is counted once
            actor: Any = ray.remote(num_cpus=1, max_restarts=RAY_RESTARTS, max_task_retries=RAY_RESTARTS)(Worker)
            self.actors: list[Any] = [actor.remote(*init_args) for _ in range(n)]
        except BaseException:
            ray.shutdown()
            raise
        self.pending: dict[Any, int] = {}  # object ref -> index of the actor computing it

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.ray.shutdown()

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def submit(self, chunk: Chunk) -> None:
        busy = list(self.pending.values())
        i = min(range(len(self.actors)), key=busy.count)  # the least loaded actor
        self.pending[self.actors[i].work.remote(chunk)] = i

    def next(self) -> Tally:
        from ray.exceptions import ActorDiedError, RayActorError

        (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
        del self.pending[ref]
        try:
            tally: Tally = self.ray.get(ref)
            return tally
        except (RayActorError, ActorDiedError) as exc:
            raise CorpusInterrupted(f"a Ray worker died more than {RAY_RESTARTS} times ({type(exc).__name__})") from exc


# ---- the run ------------------------------------------------------------------------------------------------
def _check(
    loaded: LoadedModel, source: str | Path, strict: bool, warn: Callable[[str], None]
) -> tuple[list[int], list[SkippedRecord]]:
    """One pass over the source: the records that are prompts (indices) and those that are not (reported)."""
    n_ctx = loaded.info.dims.n_ctx
    valid: list[int] = []
    skipped: list[SkippedRecord] = []
    for r in records(source):
        problem, message = r.problem, r.message
        if problem is None:
            n = len(loaded.tokenizer(r.text, add_special_tokens=False)["input_ids"])
            if n > n_ctx:
                problem, message = "too_long", f"{r.where}: {n} tokens, more than the model's context of {n_ctx}"
        if problem is None:
            valid.append(r.index)
            continue
        if strict:
            raise PromptSourceError(f"{message} (--strict: stopped before computing anything)")
        warn(f"skipped {message}")
        skipped.append(SkippedRecord(record=r.index, where=r.where, reason=problem, message=message))
    return valid, skipped


def _chunks(source: str | Path, todo: set[int], size: int) -> Iterator[Chunk]:
    chunk: Chunk = []
    for r in records(source):
        if r.index in todo and r.text is not None:
            chunk.append((r.index, r.text))
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _previous(output: Path, header: CorpusHeader) -> CorpusStats | None:
    """The statistics an existing output holds for this run (a checkpoint, or finished), or None when there is
    no output yet; a file of another run is refused."""
    if not is_corpus(output):
        return None
    old = load_corpus(output)
    different = [
        what
        for what, mine, theirs in (
            ("model", header.model_sha256, old.header.model_sha256),
            ("prompts", header.source.sha256, old.header.source.sha256),
            ("aggregated kinds", header.kinds, old.header.kinds),
        )
        if mine != theirs
    ]
    if different:
        raise CorpusError(
            f"{output} holds statistics of another run (different {', '.join(different)}): remove it or write "
            "to another -o"
        )
    return old


def run_corpus(
    source: str | Path,
    output: str | Path,
    *,
    model: str | None = None,
    random_weights: bool = False,
    seed: int = 0,
    revision: str | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    address: str | None = None,
    strict: bool = False,
    kinds: tuple[str, ...] = ACTIVATION_KINDS,
    chunk_size: int = 4,
    checkpoint_every: float = 60.0,
    warn: Callable[[str], None] = lambda message: None,
) -> CorpusStats:
    """Statistics of ``model`` over the prompts in ``source``, written to the directory ``output`` (see the
    module docstring). ``model``, ``random_weights``, ``seed`` and ``revision`` say which model every worker
    loads, as for :func:`~gpt2graph.loading.load_model`. ``workers``: local processes or Ray actors (default: one
    per core locally, 2 on Ray; 1 on the local engine runs in this process). ``warn`` receives one line per
    skipped record."""
    if engine not in ("local", "ray"):
        raise CorpusError(f"unknown engine {engine!r}; expected local or ray")
    if address and engine != "ray":
        raise CorpusError("--address names a Ray cluster: use it with --engine ray")
    unknown = sorted(set(kinds) - set(ACTIVATION_KINDS))
    if unknown:
        raise CorpusError(f"cannot aggregate {unknown}; aggregated kinds are {', '.join(ACTIVATION_KINDS)}")
    kinds = tuple(k for k in ACTIVATION_KINDS if k in kinds)
    workers = workers or ((os.cpu_count() or 1) if engine == "local" else 2)
    if workers < 1 or chunk_size < 1:
        raise CorpusError("--workers and the chunk size must be at least 1")
    output = check_corpus_target(output)
    fmt = source_format(source)

    spec = ModelSpec(model, random_weights, seed, revision)
    loaded = spec.load()
    sha = model_fingerprint(loaded)
    valid, skipped = _check(loaded, source, strict, warn)
    source_info = SourceInfo(
        path=str(source), format=fmt, sha256=fingerprint(source), records=len(valid) + len(skipped)
    )
    base = new_header(loaded.info, sha, source_info, kinds, skipped)
    dims = loaded.info.dims
    weights = corpus_weights(Values({}, parameters(loaded), Topology(dims, 1)), dims)
    previous = _previous(output, base)
    if previous is not None and previous.header.complete:
        return previous
    tally = Tally() if previous is None else previous.tally()
    if previous is not None:
        base = base.model_copy(update={"created": previous.header.created})
    todo = set(valid) - set(tally.records)

    def checkpoint(complete: bool) -> CorpusStats:
        stats = CorpusStats.from_tally(base, tally, weights, complete)
        stats.save(output)
        return stats

    threads = max(1, _torch_threads() // workers)
    init = (spec, kinds, sha, threads)
    if engine == "ray":
        pool: Any = _Ray(workers, init, address)
    elif workers > 1:
        pool = _Processes(workers, init)
    else:
        pool = _InProcess(Worker(spec, kinds, sha, loaded=loaded))
    last = time.monotonic()
    try:
        with pool, progress.task("corpus", total=len(valid), unit="prompt", initial=len(valid) - len(todo)) as bar:
            chunks = _chunks(source, todo, chunk_size)
            limit = 2 * workers
            for chunk in chunks:
                pool.submit(chunk)
                while pool.in_flight >= limit:
                    tally, last = _reduce(pool, tally, bar, checkpoint, last, checkpoint_every)
            while pool.in_flight:
                tally, last = _reduce(pool, tally, bar, checkpoint, last, checkpoint_every)
    except BaseException as exc:
        checkpoint(False)
        if isinstance(exc, CorpusInterrupted):
            counted = len(tally.records)
            raise CorpusInterrupted(
                f"{exc}: {counted} of {len(valid)} prompts counted and saved in {output}; run the same command "
                "again to continue"
            ) from exc
        raise
    return checkpoint(True)


def _reduce(
    pool: _Pool,
    tally: Tally,
    bar: progress.Progress,
    checkpoint: Callable[[bool], CorpusStats],
    last: float,
    every: float,
) -> tuple[Tally, float]:
    part = pool.next()
    tally = tally.merge(part)
    bar.update(len(part.records))
    if time.monotonic() - last >= every:
        checkpoint(False)
        last = time.monotonic()
    return tally, last


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
