"""The weight store: model parameters kept once per model, not once per graph, addressed by their content.

A saved graph normally does not carry the model's weights (500 MB for GPT-2 124M): it records their SHA-256
(:func:`digest`) and where they came from (:class:`~gpt2graph.schema.Checkpoint`), and the weights themselves
live in ``<cache>/weights/<sha256>.safetensors``. The cache directory follows the platform's conventions
(``platformdirs.user_cache_dir("gpt2graph")``: ``~/.cache/gpt2graph`` on Linux) unless the environment
variable ``GPT2GRAPH_CACHE`` names another. Loading checks the hash of what it reads, so a corrupted or
replaced file is refused rather than silently used.

The digest is of the content, not of a file: SHA-256 over a small JSON list of (name, dtype, shape), sorted
by name, followed by every tensor's bytes in that order. The same weights give the same key however they
were loaded or saved.

    gpt2graph weights add gpt2            # put a checkpoint's weights into the store (what load asks for)
    gpt2graph weights list                # what the store holds, and where it is
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import progress
from .errors import GraphFileError
from .files import replace_atomically
from .schema import Checkpoint, ModelInfo

__all__ = [
    "ENV",
    "cache_dir",
    "store_dir",
    "digest",
    "path_of",
    "contains",
    "put",
    "get",
    "add",
    "how_to_get",
    "entries",
    "StoredEntry",
    "WeightsMissingError",
    "WeightsCorruptedError",
]

#: environment variable naming the cache directory (default: the platform's user cache directory)
ENV = "GPT2GRAPH_CACHE"
_SUFFIX = ".safetensors"
_FORMAT = "gpt2graph-weights"


class WeightsMissingError(GraphFileError):
    """A saved graph's weights are neither embedded in it nor in the weight store."""


class WeightsCorruptedError(GraphFileError):
    """A file of the weight store does not hold the weights its name promises."""


def cache_dir() -> Path:
    """The user's gpt2graph cache directory: ``$GPT2GRAPH_CACHE``, else the platform's user cache directory."""
    given = os.environ.get(ENV, "").strip()
    if given:
        return Path(given).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("gpt2graph", appauthor=False))


def store_dir() -> Path:
    """Where the weight store keeps its files."""
    return cache_dir() / "weights"


def path_of(sha256: str) -> Path:
    return store_dir() / f"{sha256}{_SUFFIX}"


def digest(params: dict[str, Tensor]) -> str:
    """SHA-256 of the content of ``params``: (name, dtype, shape) of each, by name, then their bytes."""
    names = sorted(params)
    index = [[name, str(params[name].dtype).removeprefix("torch."), list(params[name].shape)] for name in names]
    head = json.dumps(index, separators=(",", ":")).encode()
    h = hashlib.sha256(struct.pack("<Q", len(head)) + head)
    for name in names:
        t = params[name].detach()
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def contains(sha256: str) -> bool:
    return path_of(sha256).is_file()


def put(params: dict[str, Tensor], sha256: str, checkpoint: Checkpoint | None = None) -> Path:
    """Store ``params`` (whose :func:`digest` is ``sha256``) unless the store has them; atomic (a temporary
    file renamed into place), so a concurrent writer or a crash never leaves a half-written entry."""
    from safetensors.torch import save_file

    path = path_of(sha256)
    if path.is_file():
        return path
    where = f"to the weight store {path.parent}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GraphFileError(f"cannot write {where}: {exc.strerror or exc}") from exc
    metadata = {"format": _FORMAT, "sha256": sha256}
    if checkpoint is not None:
        metadata["checkpoint"] = checkpoint.model_dump_json(exclude_none=True)

    def write(tmp: str) -> None:
        tensors = {name: t.detach().cpu().contiguous() for name, t in params.items()}
        with progress.task("storing weights"):
            save_file(tensors, tmp, metadata=metadata)

    replace_atomically(path, write, mode=0o644, where=where)
    _VERIFIED[_stamp(path)] = sha256
    return path


class _Params(dict[str, Tensor]):
    """The parameters read from one store file; shared (weakly) by every graph loaded on them while none of
    them is edited in place."""

    def seal(self) -> _Params:
        self._versions = {name: t._version for name, t in self.items()}
        return self

    def unedited(self) -> bool:
        return all(t._version == self._versions[name] for name, t in self.items())


#: store files whose content was hashed in this process: (path, size, mtime, inode) -> sha256
_VERIFIED: dict[tuple[str, int, int, int], str] = {}
#: parameters read in this process and still held by a graph, by store file: shared, not read twice
_LOADED: weakref.WeakValueDictionary[str, _Params] = weakref.WeakValueDictionary()


def _stamp(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ino)


def get(sha256: str, how_to_get: str) -> dict[str, Tensor]:
    """The parameters stored under ``sha256``, checked against it. ``how_to_get`` completes the error message
    when they are missing (what to run to put them back)."""
    path = path_of(sha256)
    shared = _LOADED.get(str(path))
    if shared is not None and shared.unedited():
        return shared
    if not path.is_file():
        raise WeightsMissingError(
            f"the weights (sha256 {sha256[:12]}...) are not in the weight store {store_dir()} "
            f"(set {ENV} to use another cache directory): {how_to_get}"
        )
    from safetensors import safe_open

    try:
        with progress.task("loading weights"), safe_open(str(path), framework="pt") as f:
            # copied into aligned memory, as storage.load does with activations (same rounding as before saving)
            params = _Params({name: f.get_tensor(name).clone() for name in f.keys()})  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise WeightsCorruptedError(
            f"weight store file {path} is corrupted ({exc}): delete it, then {_lower_first(how_to_get)}"
        ) from exc
    stamp = _stamp(path)
    if _VERIFIED.get(stamp) != sha256:
        with progress.task("checking weights"):
            actual = digest(params)
        if actual != sha256:
            raise WeightsCorruptedError(
                f"weight store file {path} is corrupted: its content hashes to {actual[:12]}..., not "
                f"{sha256[:12]}...: delete it, then {_lower_first(how_to_get)}"
            )
        _VERIFIED[stamp] = sha256
    _LOADED[str(path)] = params.seal()
    return params


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def add(
    model: Any, *, revision: str | None = None, random_weights: bool = False, seed: int = 0, device: str | None = None
) -> str:
    """Put a checkpoint's weights into the store (hub id, directory, or loaded ``GPT2LMHeadModel``; see
    :func:`gpt2graph.build` for the arguments) and return their digest."""
    from .loading import load_model

    loaded = load_model(model, revision=revision, random_weights=random_weights, seed=seed)
    params = {name: t.detach() for name, t in loaded.model.state_dict().items() if name != "lm_head.weight"}
    sha = digest(params)
    put(params, sha, loaded.info.checkpoint)
    return sha


def how_to_get(model: ModelInfo) -> str:
    """What to run to put the weights of ``model`` back into the store, as one sentence."""
    c, w = model.checkpoint, model.weights
    origin = None if c is None else c.path or c.hub_id
    embed = "or rebuild the graph and save it with --embed-weights (save(..., embed_weights=True)) to carry them"
    if origin is None or (w.status == "random" and w.seed is None):
        return (
            "their origin is unknown (a model object built in memory), so they cannot be fetched again; "
            "rebuild the graph from its model and save it with --embed-weights (save(..., embed_weights=True))"
        )
    args = [_quote(origin)]
    if c is not None and c.revision and not c.path:
        args += ["--revision", c.revision]
    if w.status == "random":
        args += ["--random-weights", "--seed", str(w.seed)]
    return f"run `gpt2graph weights add {' '.join(args)}` to put them back, {embed}"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@dataclass(frozen=True)
class StoredEntry:
    sha256: str
    path: Path
    size: int
    checkpoint: Checkpoint | None


def entries() -> list[StoredEntry]:
    """What the store holds, largest first."""
    from safetensors import safe_open

    out = []
    folder = store_dir()
    for path in sorted(folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []:
        checkpoint = None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if "checkpoint" in meta:
                checkpoint = Checkpoint.model_validate_json(meta["checkpoint"])
        except Exception:  # an unreadable entry is still listed: get() says what is wrong with it
            pass
        out.append(StoredEntry(path.name.removesuffix(_SUFFIX), path, path.stat().st_size, checkpoint))
    return sorted(out, key=lambda e: -e.size)
