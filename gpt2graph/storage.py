"""Save and load graphs: a ``.gg`` directory holding ``graph.json`` (the header, validated by the schema) and
``values.safetensors`` (activations, the logit lens's arrays, and the parameters when they are embedded).
The header records the SHA-256 of the values file, so a mismatched, truncated or corrupted pair is refused
with a message saying which. Writes are atomic: the new directory is assembled beside the target and swapped
in with a rename; a failure leaves nothing behind.

The parameters are kept once per model in the weight store (:mod:`gpt2graph.weightstore`), keyed by the
hash of their content, which the header records with where the weights came from; ``embed_weights=True``
writes them into the graph instead, for a self-contained file to share. Either way loading checks the hash.

Only the residual stream and z are stored (:data:`gpt2graph.values.STORED_KINDS`): the other captured
activations are recomputed from them on load, with the model's own calls, to the same bits. A counterfactual
run (:mod:`gpt2graph.intervene`) also stores the values it put in place of the vectors it replaced and the
layers that cannot be derived because of them (:func:`gpt2graph.intervene.stored_derived`), and nothing else.

Formats: 3 (this one); 2 (every captured activation, the logits and the parameters stored in every graph)
and 1 (before the LayerNorm split) load upgraded in memory: their logits are dropped (derived now) and their
parameters count as embedded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import Tensor

from . import progress, weightstore
from .errors import GraphFileError
from .files import read_bounded, regular_file, replace_atomically, usual_mode
from .forward import Site
from .graph import Graph
from .integrity import check_header, check_tensors, check_tokens
from .intervene import stored_derived
from .lens import LensTable, lens_blocks, stored_order
from .schema import FORMAT_VERSION, Dims, GraphHeader, StoredWeights
from .schema import VectorKind as V
from .topology import LAYERNORMS, Key, Topology
from .values import CAPTURED_KINDS, TOKENS, Values, activation_shapes, param_names

try:
    import fcntl
except ImportError:  # no advisory locks (Windows): interrupted saves leave temporaries to remove by hand
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "save",
    "load",
    "atomic_write",
    "atomic_directory",
    "sha256_file",
    "schema_problems",
    "check_belongs",
    "check_target",
    "not_exactly",
    "remove_stale",
    "HEADER_FILE",
    "VALUES_FILE",
    "SAVED_FILES",
]

HEADER_FILE = "graph.json"
VALUES_FILE = "values.safetensors"
#: the files a saved graph directory holds, and nothing else
SAVED_FILES = (HEADER_FILE, VALUES_FILE)
#: graph.json holds the header (the analysis's arrays live in the values file): far below this
MAX_HEADER_BYTES = 256 << 20
_ACT, _PARAM, _LENS, _INTERVENTION = "act/", "param/", "lens/", "intervention/"
#: format versions this gpt2graph reads (older ones are upgraded in memory on load)
_READABLE = (1, 2, FORMAT_VERSION)
_QKV = (V.q, V.k, V.v)
_LN_NORMALIZED = {out: normalized for _, normalized, out in LAYERNORMS.values()}
#: what format 2 stored of every run: every captured kind and the logits
_V2_STORED = (*CAPTURED_KINDS, V.logits)


def _v1_names(dims: Dims, n: int) -> dict[Key, str]:
    """Format 1's name of every stored activation (one key per kind and layer): q, k and v fused as one
    ``attn.qkv`` tensor, and each LayerNorm's output under the hook name of its normalized vector."""
    top = Topology(dims, n)
    names = {}
    for kind in CAPTURED_KINDS:  # format 1 stored every captured kind (and the logits: see _stored_shapes)
        for layer in top.layers_of(kind):
            key = Key(kind, layer, None, 0)
            if kind in _QKV:
                names[key] = top.hook_name(key._replace(kind=V.q)).rpartition(".")[0] + ".qkv"
            else:
                names[key] = top.hook_name(key._replace(kind=_LN_NORMALIZED.get(kind, kind)))
    return names


def _stored_shapes(version: int, dims: Dims, n: int, replaced: list[Site]) -> dict[str, tuple[int, ...]]:
    """Activation names and shapes a values file of this format version holds: formats 1 and 2 stored every
    captured kind and the logits, format 3 the residual stream and z; a counterfactual run that replaced
    vectors at the sites ``replaced`` also what its format could not derive (:func:`stored_derived`)."""
    top = Topology(dims, n)
    if version == FORMAT_VERSION:
        return activation_shapes(dims, n, derived=stored_derived(top, replaced))
    logits = {top.hook_name(Key(V.logits, None, None, 0)): (n, dims.n_vocab)}
    if version == 2:
        return activation_shapes(dims, n, CAPTURED_KINDS, stored_derived(top, replaced, _V2_STORED)) | logits
    return _V1_SHAPES(dims, n) | logits  # format 1 predates counterfactual runs


def _V1_SHAPES(dims: Dims, n: int) -> dict[str, tuple[int, ...]]:
    """Activation names and shapes of format 1 (see :func:`_v1_names`; z is flat, (n, d_model))."""
    shapes, top = activation_shapes(dims, n, CAPTURED_KINDS), Topology(dims, n)
    out = {TOKENS: shapes[TOKENS]}
    for key, name in _v1_names(dims, n).items():
        if key.kind in _QKV:
            out[name] = (n, len(_QKV) * dims.d_model)
        elif key.kind == V.z:
            out[name] = (n, dims.d_model)
        else:
            out[name] = shapes[top.hook_name(key)]
    return out


def _upgrade_v1_header(raw: dict[str, Any]) -> dict[str, Any]:
    """A format-1 header under format-2 names: analysis options ``top_k`` (rows kept) became ``top_tokens`` and
    ``top_k_sampling`` (the decoding filter) became ``top_k``, so that each name means one thing."""
    raw = {**raw, "format_version": FORMAT_VERSION}
    analysis = raw.get("analysis")
    if isinstance(analysis, dict):
        options = dict(analysis.get("options") or {})
        renamed = {"top_tokens": options.pop("top_k", None), "top_k": options.pop("top_k_sampling", None)}
        options.update({k: v for k, v in renamed.items() if v is not None or k == "top_k"})
        analysis = {**analysis, "options": options}
        if isinstance(analysis.get("lens"), dict):
            lens = dict(analysis["lens"])
            lens["top_tokens"] = lens.pop("top_k", None)
            analysis["lens"] = lens
        raw["analysis"] = analysis
    return raw


def _upgrade_v2_header(raw: Any) -> Any:
    """A format-1 or 2 header as format 3: it stored the lens of every kind it read."""
    if not isinstance(raw, dict):
        return raw
    raw = {**raw, "format_version": FORMAT_VERSION}
    analysis = raw.get("analysis")
    if isinstance(analysis, dict) and isinstance(analysis.get("lens"), dict):
        lens = analysis["lens"]
        raw["analysis"] = {**analysis, "lens": {**lens, "stored_kinds": lens.get("kinds")}}
    return raw


def _upgrade_v1(acts: dict[str, Tensor], dims: Dims) -> dict[str, Tensor]:
    """Format-1 activations under format-2 names and layouts (the tensors are the same numbers)."""
    H, dh, d = dims.n_head, dims.d_head, dims.d_model
    n = len(acts[TOKENS])
    top = Topology(dims, n)
    out = {TOKENS: acts[TOKENS]}
    for key, name in _v1_names(dims, n).items():
        t = acts[name]
        if key.kind in _QKV:
            i = _QKV.index(key.kind)
            t = t[:, i * d : (i + 1) * d].reshape(-1, H, dh)
        elif key.kind == V.z:
            t = t.reshape(-1, H, dh)
        out[top.hook_name(key)] = t
    return out


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def schema_problems(exc: ValidationError) -> str:
    """The first problems a header's validation found, in one line: ``field.path: message; ...``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])


def check_belongs(path: Path, data: str, header: str, recorded: str | None) -> None:
    """Refuse the directory ``path`` unless its file ``data`` has the SHA-256 that its ``header`` file records."""
    digest = sha256_file(path / data)
    if digest != recorded:
        raise GraphFileError(
            f"{path}: {data} does not belong to {header} (sha256 {digest[:12]}... != recorded "
            f"{str(recorded)[:12]}...): truncated, corrupted or mismatched"
        )


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    replace_atomically(Path(path), write)


def save(graph: Graph, path: str | os.PathLike[str], *, embed_weights: bool = False) -> Path:
    """Save ``graph`` (the whole run, even when called on a subgraph view) to the directory ``path``.

    The parameters go to the weight store (written once per model) unless ``embed_weights`` puts them in the
    graph itself."""
    from safetensors.torch import save_file

    path = check_target(path)
    store = graph.store
    with progress.task("hashing weights"):
        sha = store.weights_digest()
    if not embed_weights:
        weightstore.put(store.params, sha, graph.model.checkpoint)
    with atomic_directory(path, SAVED_FILES) as tmp:
        # the rest is recomputed on load (capture.replay, Values.hook)
        stored = _stored_shapes(FORMAT_VERSION, graph.dims, graph.n_tokens, _replaced_sites(graph.header))
        tensors = {_ACT + k: store.activations[k].contiguous() for k in stored}
        if embed_weights:
            tensors.update({_PARAM + k: v.contiguous() for k, v in store.params.items()})
        tensors.update({f"{_INTERVENTION}{i}": v.contiguous() for i, v in enumerate(store.interventions)})
        if graph.lens is not None:
            tensors.update({_LENS + k: v.contiguous() for k, v in graph.lens.arrays().items()})
        metadata = {"format": "gpt2graph", "vocab": json.dumps(graph.vocab, ensure_ascii=False)}
        with progress.task("saving"):
            save_file(tensors, str(tmp / VALUES_FILE), metadata=metadata)
            digest = sha256_file(tmp / VALUES_FILE)  # the whole run, decoded as this view decodes it
        header = graph.header.model_copy(
            update={
                "format_version": FORMAT_VERSION,
                "values_sha256": digest,
                "decoding": graph.decoding,
                "stored_weights": StoredWeights(sha256=sha, embedded=embed_weights),
            }
        )
        (tmp / HEADER_FILE).write_text(header.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


# ---- save-target safety: replace only what is exactly a saved directory; leave no temporary behind ------------
_TMP, _OLD = ".tmp", ".old"


@contextmanager
def atomic_directory(path: Path, files: tuple[str, ...]) -> Iterator[Path]:
    """A fresh directory beside ``path`` to write ``files`` into; when the block succeeds they are synced, given
    the usual permissions, and the directory replaces ``path`` in one rename; when it fails it is removed and
    ``path`` is left as it was. What interrupted writes of ``path`` left beside it is cleaned up first."""
    remove_stale(path, files)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=_TMP, dir=path.parent))
        lock = _lock(tmp)  # held until the end: a later write sees that this temporary is in use
    except OSError as exc:
        raise GraphFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(f, usual_mode(0o666))  # the usual permissions, whatever the writer chose
        os.chmod(tmp, usual_mode(0o777))  # mkdtemp creates 0700
        _swap_in(tmp, path, files)
    except BaseException as exc:
        _remove_owned(tmp, files)
        if isinstance(exc, OSError):
            raise GraphFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    finally:
        _unlock(lock)


def check_target(path: str | os.PathLike[str]) -> Path:
    """Refuse early a path a graph cannot be saved to (checked again, for real, when writing): a symbolic
    link, or anything that exists and is not exactly a saved graph, is never replaced."""
    path = Path(path)
    reason = not_exactly(path, SAVED_FILES, HEADER_FILE, "gpt2graph") if path.exists() or path.is_symlink() else None
    if reason:
        raise GraphFileError(
            f"cannot write {path}: it exists and is not a saved graph ({reason}); refusing to replace it"
        )
    if not path.parent.is_dir():
        raise GraphFileError(f"cannot write {path}: directory {path.parent} does not exist")
    return path


def not_exactly(path: Path, files: tuple[str, ...], header: str, marker: str) -> str | None:
    """Why ``path`` is not a directory holding some of ``files`` and nothing else, whose ``header`` (a JSON file)
    says ``"format": marker`` (None when it is one, and so may be replaced)."""
    if path.is_symlink():
        return "a symbolic link"
    if not path.is_dir():
        return "not a directory"
    others = sorted(p.name for p in path.iterdir() if p.name not in files)
    if others:
        return f"it also holds {', '.join(others[:3])}{' ...' if len(others) > 3 else ''}"
    try:
        raw = json.loads(read_bounded(path / header, MAX_HEADER_BYTES, GraphFileError))
    except (GraphFileError, UnicodeDecodeError, json.JSONDecodeError):
        return f"no readable {header}"
    return None if isinstance(raw, dict) and raw.get("format") == marker else f"{header} is not a {marker} header"


def _swap_in(tmp: Path, path: Path, files: tuple[str, ...]) -> None:
    """Put the directory ``tmp`` at ``path`` with renames, replacing what is there only once ``tmp`` is in place."""
    if not path.exists():
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.{os.getpid()}{_OLD}")
    lock = _lock(path)  # moved with the directory: a concurrent write's cleanup leaves it alone
    try:
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            raise
        _remove_owned(old, files)
    finally:
        _unlock(lock)


def remove_stale(path: Path, files: tuple[str, ...] = SAVED_FILES) -> None:
    """Clean up what interrupted writes of ``path`` left beside it (a process killed while writing cannot): its
    temporaries, and the previous directory moved aside during a swap, which is put back when ``path`` is
    missing. Only entries no live write holds (an advisory lock) are touched, and of those only ``files``."""
    prefix = f".{path.name}."
    try:
        siblings = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith((_TMP, _OLD))]
    except OSError:
        return
    for entry in siblings:
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            lock = _lock(entry)
        except OSError:  # in use by a write that is running, or not ours to open
            continue
        try:
            if entry.name.endswith(_OLD) and not path.exists():
                os.replace(entry, path)  # the swap was interrupted: the previous directory is the one to keep
            else:
                _remove_owned(entry, files)
        except OSError:
            pass
        finally:
            _unlock(lock)


def _remove_owned(directory: Path, files: tuple[str, ...]) -> None:
    """Delete ``files`` in ``directory``, then the directory if nothing else is in it."""
    for name in files:
        (directory / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else is in it: not ours to delete
        directory.rmdir()


def _lock(directory: Path) -> int | None:
    """An exclusive advisory lock on ``directory`` (released when the process ends, however it ends); OSError
    if another process holds it. None where advisory locks do not exist."""
    if fcntl is None:
        return None
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def load(path: str | os.PathLike[str]) -> Graph:
    """Load a graph saved with :func:`save`; refuse anything missing, corrupted, truncated or mismatched."""
    from safetensors import safe_open

    path = Path(path)
    header_path, values_path = path / HEADER_FILE, path / VALUES_FILE
    if not path.exists():
        raise GraphFileError(f"{path}: no such saved graph")
    if not path.is_dir():
        raise GraphFileError(f"{path}: not a saved graph (expected a directory with {HEADER_FILE} and {VALUES_FILE})")
    for f in (header_path, values_path):
        if not f.exists():
            raise GraphFileError(f"{path}: incomplete saved graph: {f.name} is missing")
    try:
        raw = json.loads(read_bounded(header_path, MAX_HEADER_BYTES, GraphFileError).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraphFileError(f"{header_path}: corrupted: not valid JSON ({exc})") from exc
    regular_file(values_path, GraphFileError)
    version = raw.get("format_version", FORMAT_VERSION) if isinstance(raw, dict) else FORMAT_VERSION
    if version not in _READABLE:
        raise GraphFileError(
            f"{header_path}: format_version {version} is not supported (this gpt2graph reads versions "
            f"{', '.join(map(str, _READABLE))}; rebuild the graph from its prompt with this version)"
        )
    raw = _upgrade_v1_header(raw) if version == 1 else raw
    raw = _upgrade_v2_header(raw) if version < FORMAT_VERSION else raw
    try:
        header = GraphHeader.model_validate(raw)
    except ValidationError as exc:
        raise GraphFileError(f"{header_path}: does not match the graph schema: {schema_problems(exc)}") from exc
    if header.values_sha256 is None:
        raise GraphFileError(f"{header_path}: values_sha256 is missing")
    try:
        check_header(header)
    except GraphFileError as exc:
        raise GraphFileError(f"{header_path}: {exc}") from None
    if version == FORMAT_VERSION and header.stored_weights is None:
        raise GraphFileError(f"{header_path}: stored_weights is missing")
    with progress.task("loading"):
        check_belongs(path, VALUES_FILE, HEADER_FILE, header.values_sha256)
    dims, n = header.model.dims, len(header.tokenization.token_ids)
    lens = header.analysis.lens if header.analysis is not None else None
    records = header.counterfactual.interventions if header.counterfactual is not None else []
    acts: dict[str, Tensor] = {}
    params: dict[str, Tensor] = {}
    lens_arrays: dict[str, Tensor] = {}
    replaced: dict[str, Tensor] = {}
    try:
        with safe_open(str(values_path), framework="pt") as f:
            names = set(f.keys())
            vocab = json.loads((f.metadata() or {}).get("vocab", "null"))
            if not isinstance(vocab, list) or len(vocab) != dims.n_vocab:
                raise GraphFileError(
                    f"{values_path}: the vocabulary is missing or does not have n_vocab = {dims.n_vocab} entries"
                )
            shapes = _stored_shapes(version, dims, n, _replaced_sites(header))
            embedded = version < FORMAT_VERSION or (
                header.stored_weights is not None and header.stored_weights.embedded
            )
            expected = {_ACT + a for a in shapes} | ({_PARAM + p for p in param_names(dims)} if embedded else set())
            expected |= {f"{_INTERVENTION}{i}" for i in range(len(records))}
            if lens is not None:
                expected |= {n for n in names if n.startswith(_LENS)}  # checked against the lens header below
            if names != expected:
                missing, extra = sorted(expected - names)[:3], sorted(names - expected)[:3]
                raise GraphFileError(
                    f"{values_path}: tensors do not match the header's model: missing {missing}, unexpected {extra}"
                )
            for name in names:
                prefix, rest = name.split("/", 1)
                part = {_ACT: acts, _PARAM: params, _LENS: lens_arrays, _INTERVENTION: replaced}[prefix + "/"]
                # a tensor read in place sits at whatever offset the file gives it; vectorised kernels round
                # differently on unaligned memory, so derived values (patterns, head outputs) would differ in
                # their last bit from the ones computed before saving: copy into freshly allocated memory
                part[rest] = f.get_tensor(name).clone()
    except GraphFileError:
        raise
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise GraphFileError(f"{values_path}: corrupted: {exc}") from exc
    try:
        check_tensors(header, acts, params, shapes=shapes)
        check_tokens(header, acts[TOKENS], vocab)
    except GraphFileError as exc:
        raise GraphFileError(f"{values_path}: {exc}") from None
    if version == 1:
        acts = _upgrade_v1(acts, dims)
    topology = Topology(dims, n)
    if (V.logits, None) not in stored_derived(topology, _replaced_sites(header)):
        acts.pop(topology.hook_name(Key(V.logits, None, None, 0)), None)  # formats 1 and 2: derived now
    interventions = [replaced[str(i)] for i in range(len(records))]
    for r, value in zip(records, interventions):
        if tuple(value.shape) != tuple(topology.vector_shape(Key(r.kind, r.layer, r.head, r.position))):
            raise GraphFileError(f"{values_path}: the value recorded for {r.node} has shape {tuple(value.shape)}")
    params, header = _weights(path, header, params, embedded, dims)
    values = Values(acts, params, topology, interventions)
    assert header.stored_weights is not None, "_weights records the hash"
    values.know_digest(header.stored_weights.sha256)
    table = None
    if lens is not None:
        if version < FORMAT_VERSION:  # every kind stored, block after block in forward order
            order = stored_order(lens_blocks(topology, header.tokenization.token_ids, lens.kinds))
            lens_arrays = {name: t[order] if len(t) == len(order) else t for name, t in lens_arrays.items()}
        try:
            table = LensTable(lens, values, header.tokenization.token_ids, vocab, stored=lens_arrays)
        except ValueError as exc:
            raise GraphFileError(f"{values_path}: {exc}") from exc
    return Graph(header, values, vocab, table)


def _replaced_sites(header: GraphHeader) -> list[Site]:
    """The sites (kind, layer) at which a counterfactual run replaced vectors (none for a captured run)."""
    cf = header.counterfactual
    return [] if cf is None else [(r.kind, r.layer) for r in cf.interventions]


def _weights(
    path: Path, header: GraphHeader, embedded_params: dict[str, Tensor], embedded: bool, dims: Dims
) -> tuple[dict[str, Tensor], GraphHeader]:
    """The parameters of a graph being loaded, checked against the hash its header records: its own (embedded)
    or the weight store's. A graph of format 1 or 2 carries them without a recorded hash: it is computed."""
    recorded = header.stored_weights
    if recorded is None:  # formats 1 and 2: always embedded
        sha = weightstore.digest(embedded_params)
        return embedded_params, header.model_copy(update={"stored_weights": StoredWeights(sha256=sha, embedded=True)})
    if embedded:
        with progress.task("checking weights"):
            actual = weightstore.digest(embedded_params)
        if actual != recorded.sha256:
            raise GraphFileError(
                f"{path}: its embedded weights hash to {actual[:12]}..., not the recorded {recorded.sha256[:12]}...: "
                "corrupted or edited"
            )
        return embedded_params, header
    try:
        params = weightstore.get(recorded.sha256, weightstore.how_to_get(header.model))
    except GraphFileError as exc:
        raise type(exc)(f"{path}: {exc}") from exc.__cause__
    if sorted(params) != param_names(dims):
        raise GraphFileError(
            f"{path}: the weights stored under {recorded.sha256[:12]}... are not those of a model with its dims"
        )
    return params, header
