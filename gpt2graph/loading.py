"""Load a GPT-2-family model and its tokenizer: by hub id (honouring the HF cache and offline mode), from a
local directory, or as an already-loaded ``GPT2LMHeadModel``; or the embedded default, the exact GPT-2 124M
architecture with seeded random weights, which needs no network.
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import urlparse

import torch

from . import progress
from .errors import ModelLoadError, NotGpt2Error
from .files import read_bounded, regular_file
from .schema import Checkpoint, Dims, ModelInfo, Weights
from .targets import check_seed
from .tokenizer import gpt2_bpe_tokenizer

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerBase

    from .graph import Graph

__all__ = [
    "LoadedModel",
    "load_model",
    "DEFAULT_MODEL",
    "FAMILY",
    "family_config",
    "SUPPORTED_ACTIVATIONS",
    "dims_of",
    "parameter_groups",
    "DEVICES",
    "check_model_directory",
    "check_fits",
    "available_memory",
    "model_of",
]

DEFAULT_MODEL = "gpt2"
#: the published GPT-2 family, by hub id: (n_layer, n_head, d_model); all read 1024 tokens of a 50257-token
#: vocabulary. ``random_weights`` with one of these ids needs no network: the architecture is embedded here.
FAMILY: dict[str, tuple[int, int, int]] = {
    "gpt2": (12, 12, 768),
    "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600),
    "distilgpt2": (6, 12, 768),
}
#: the hub's newer names for the same checkpoints
FAMILY_ALIASES = {
    **{f"openai-community/{k}": k for k in FAMILY if k != "distilgpt2"},
    "distilbert/distilgpt2": "distilgpt2",
}
#: devices a model can run on (values are brought back to the CPU for storage)
DEVICES = ("cpu", "cuda", "mps")
#: GPT-2's GELU is the tanh approximation; these config names all mean exactly that
SUPPORTED_ACTIVATIONS = set(get_args(Dims.model_fields["activation_function"].annotation))


@dataclass
class LoadedModel:
    model: Any  # GPT2LMHeadModel, in eval mode
    tokenizer: Any  # a transformers tokenizer
    info: ModelInfo


def load_model(
    model: Any = None,
    *,
    tokenizer: Any = None,
    random_weights: bool = False,
    seed: int = 0,
    revision: str | None = None,
    device: str | None = None,
) -> LoadedModel:
    """Resolve ``model`` (None, hub id, directory, ``GPT2LMHeadModel``, TransformerLens ``TransformerBridge``, or
    a :class:`LoadedModel`, returned as is) to a checked, loaded model.

    With ``model=None`` pretrained ``gpt2`` is tried (HF cache first); if it cannot be loaded, the embedded
    default (GPT-2 124M architecture, seeded random weights) is used and one warning says so. A named model
    that cannot be loaded is an error. ``random_weights=True`` initialises the named architecture randomly and
    never uses the network: a GPT-2 family hub id has its architecture embedded, any other hub id needs its
    config in the HF cache. Every config is checked (dims, then the memory its parameters need) before a
    single weight is allocated.
    ``revision`` picks a hub revision (branch, tag or commit). ``device`` (cpu, cuda, mps; None: where the
    model is, cpu for a loaded checkpoint) is where the model runs; a model object passed in is moved there.
    """
    torch_device = check_device(device)
    with progress.task("loading model"), _without_hf_bars():
        loaded = _load(model, tokenizer, random_weights, seed, revision)
    if torch_device is not None:
        loaded.model.to(torch_device)
    return loaded


@contextmanager
def _without_hf_bars() -> Iterator[None]:
    """Hugging Face's own bars off while loading: ours (gpt2graph.progress) say it, on a terminal only."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def check_device(device: str | None) -> torch.device | None:
    """``device`` as a torch device, after checking this machine has it (a clear error otherwise)."""
    if device is None:
        return None
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"unknown device {device!r}: expected one of {', '.join(DEVICES)}") from exc
    if torch_device.type not in DEVICES:
        raise ModelLoadError(f"unknown device {device!r}: expected one of {', '.join(DEVICES)}")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if not available[torch_device.type]:
        raise ModelLoadError(f"device {device!r} is not available on this machine (this torch build or hardware)")
    return torch_device


def _load(model: Any, tokenizer: Any, random_weights: bool, seed: int, revision: str | None) -> LoadedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    if isinstance(model, LoadedModel):
        if random_weights:
            raise ModelLoadError("random_weights applies when a model is loaded; this one is loaded already")
        return model if tokenizer is None else LoadedModel(model.model, tokenizer, model.info)
    check_seed(seed)
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return _from_object(model, tokenizer, random_weights, seed)
    if model is None and random_weights:
        return _embedded_default(seed, tokenizer)
    name = str(model) if model is not None else DEFAULT_MODEL
    source = "directory" if Path(name).exists() else "hub"
    if random_weights and source == "hub" and family_config(name) is not None:
        return _embedded(name, seed, tokenizer)  # a known architecture: nothing to fetch
    if source == "hub" and (name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1)):
        raise ModelLoadError(f"model path {name!r} does not exist")
    if source == "directory":
        check_model_directory(Path(name))
    kwargs: dict[str, Any] = {"local_files_only": True} if random_weights else _hub_kwargs(source)
    if revision and source == "hub":
        kwargs["revision"] = revision
    try:
        config = GPT2Config.from_pretrained(name, **kwargs)
        _check_gpt2(config, name)
        check_fits(config, name)
        if random_weights:
            hf = _random_model(config, seed)
            weights = Weights(status="random", seed=seed)
        else:
            hf = GPT2LMHeadModel.from_pretrained(name, config=config, dtype=torch.float32, **kwargs).eval()
            weights = Weights(status="pretrained")
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors, ...
        if model is None:
            warnings.warn(
                f"pretrained {DEFAULT_MODEL!r} could not be loaded ({_first_line(exc)}); using the embedded default: "
                "the GPT-2 124M architecture with seeded RANDOM weights (predictions are meaningless)",
                stacklevel=4,
            )
            return _embedded_default(seed, tokenizer)
        raise _load_error(name, source, random_weights, exc) from exc
    checkpoint = _origin(name, config if random_weights else hf.config, revision)
    return LoadedModel(hf, tokenizer or _tokenizer_for(name), _info(hf, name, source, weights, checkpoint))


def _origin(name: str, config: Any, revision: str | None = None) -> Checkpoint | None:
    """Where weights named ``name`` can be loaded from again: a local directory, or a hub id with the commit
    that was resolved (``config._commit_hash``, set by ``from_pretrained``)."""
    if not name:
        return None
    if Path(name).is_dir():
        return Checkpoint(path=str(Path(name).resolve()))
    return Checkpoint(hub_id=name, revision=getattr(config, "_commit_hash", None) or revision)


def _from_object(model: Any, tokenizer: Any, random_weights: bool, seed: int) -> LoadedModel:
    """A model object: a ``GPT2LMHeadModel``, or a TransformerLens bridge over one (checked to compute what the
    GPT-2 its weights make computes, so a bridge whose weights were processed or edited is refused)."""
    from transformers import GPT2LMHeadModel

    hf = getattr(model, "original_model", model)  # a TransformerBridge keeps the HF model it wraps
    if not isinstance(hf, GPT2LMHeadModel):
        raise NotGpt2Error(f"expected a GPT2LMHeadModel or a TransformerBridge over one, got {type(model).__name__}")
    _check_gpt2(hf.config, "the model passed in")
    booted = hf is not model or any(_BRIDGE_PART in name for name in hf.state_dict())
    if booted:
        hf = _unbridged(hf)
        _check_same_function(model, hf)
        tokenizer = tokenizer or getattr(model, "tokenizer", None)
    hf = hf.eval()
    loaded_from = getattr(hf.config, "name_or_path", "")
    name = loaded_from or "GPT2LMHeadModel"
    # built in memory rather than loaded from a checkpoint: an initialisation whose seed we cannot know
    weights = (
        Weights(status="random", seed=seed)
        if random_weights
        else Weights(status="pretrained")
        if loaded_from
        else Weights(status="random")
    )
    if random_weights:
        hf = _random_model(hf.config, seed)
    # an object was loaded already: look for its tokenizer locally (directory or HF cache), never online
    info = _info(hf, name, "object", weights, _origin(loaded_from, hf.config))
    return LoadedModel(hf, tokenizer or _tokenizer_for(name, local_only=True), info)


#: what booting a TransformerBridge inserts into the names of the HF model's parameters it wraps
_BRIDGE_PART = "._original_component"


def _unbridged(hf: Any) -> Any:
    """The plain ``GPT2LMHeadModel`` a bridge was booted over: booting wraps the HF model's modules in place
    (and adds split copies of the fused attention weights), so its own parameters are found under their HF
    names with the wrappers' ``._original_component`` removed. The new model shares those tensors."""
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):  # no allocation, no initialisation: every tensor is assigned below
        plain = GPT2LMHeadModel(copy.deepcopy(hf.config))
    wanted = set(plain.state_dict())
    found: dict[str, torch.Tensor] = {}
    for name, tensor in hf.state_dict().items():
        plain_name = name.replace(_BRIDGE_PART, "")
        if plain_name in wanted:
            found.setdefault(plain_name, tensor)
    missing = sorted(wanted - set(found))
    if missing:
        raise NotGpt2Error(f"the bridged model has no GPT-2 parameters {', '.join(missing[:3])}: not GPT-2-shaped")
    plain.load_state_dict(found, assign=True)
    plain.tie_weights()
    return plain.eval()


def _check_same_function(model: Any, plain: Any) -> None:
    """Refuse a bridge whose own forward pass disagrees with the GPT-2 its weights make (weights processed with
    fold_ln and friends, or edited through the bridge), on a short probe of token ids."""
    probe = torch.arange(min(8, plain.config.n_positions), device=plain.device)[None]
    with torch.no_grad():
        theirs = model(probe)
        theirs = getattr(theirs, "logits", theirs)
        ours = plain(input_ids=probe, use_cache=False).logits
    if not torch.allclose(theirs.to(ours.dtype), ours, rtol=1e-4, atol=1e-4):
        diff = float((theirs.to(ours.dtype) - ours).abs().max())
        raise NotGpt2Error(
            f"the bridge computes logits up to {diff:.3g} away from the GPT-2 its weights make: its weights were "
            "processed (fold_ln, centring) or edited. Boot it without processing: "
            "bridge.enable_compatibility_mode(no_processing=True)"
        )


def check_model_directory(path: Path) -> None:
    """Refuse before transformers reads anything a directory that holds no model (no config.json), or whose
    files are not all regular files (a named pipe or a device would make a read hang or never end)."""
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a model directory (a checkpoint is a directory saved with save_pretrained)")
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for entry in entries:
        if not entry.is_dir() and not (entry.is_file() or not entry.exists()):  # a dangling link fails on use
            regular_file(entry, ModelLoadError)
    config = path / "config.json"
    if not config.exists():
        raise ModelLoadError(
            f"{path}: no config.json: not a model directory (a checkpoint saved with save_pretrained has one)"
        )
    try:
        raw = json.loads(read_bounded(config, MAX_CONFIG_BYTES, ModelLoadError))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{config}: not a model config (expected a JSON object)")
    if raw.get("model_type") == "gpt2":  # its dims as written, before transformers reads them its own way
        from transformers import GPT2Config

        defaults = GPT2Config()
        _check_dims(SimpleNamespace(**{k: raw.get(k, getattr(defaults, k)) for k in _CONFIG_FIELDS}), str(path))


#: config.json of every GPT-2 is under 2 kB
MAX_CONFIG_BYTES = 1 << 20


def model_of(graph: Graph) -> LoadedModel:
    """The model ``graph`` was captured from, found again: rebuilt exactly from the parameters the graph carries
    (no file or network needed), with its tokenizer from where the graph's model came from (its directory, the
    HF cache, or GPT-2's own BPE), checked against the vocabulary the graph stores.

    Raises :class:`ModelLoadError` when no tokenizer with that vocabulary can be found here."""
    from transformers import GPT2Config, GPT2LMHeadModel

    d, info = graph.dims, graph.model
    config = GPT2Config(
        n_layer=d.n_layer,
        n_head=d.n_head,
        n_embd=d.d_model,
        n_inner=d.d_mlp,
        n_positions=d.n_ctx,
        vocab_size=d.n_vocab,
        layer_norm_epsilon=d.layer_norm_eps,
    )
    with torch.device("meta"):  # no initialisation: every parameter comes from the graph
        hf = GPT2LMHeadModel(config)
    missing, unexpected = hf.load_state_dict(graph.store.params, strict=False, assign=True)
    if set(missing) - {"lm_head.weight"} or unexpected:  # lm_head is tied to the token embedding
        raise ModelLoadError(
            f"the parameters of {info.name} do not fit a GPT-2: missing {missing}, unexpected {unexpected}"
        )
    hf.tie_weights()
    hf.eval()
    tokenizer: PreTrainedTokenizerBase
    if info.source == "embedded-default":
        tokenizer = gpt2_bpe_tokenizer()
    else:
        tokenizer = _tokenizer_for(info.name, local_only=True)  # GPT-2's BPE when nothing else is found
    from .builder import vocabulary

    loaded = LoadedModel(hf, tokenizer, info)
    if vocabulary(loaded) != list(graph.vocab):
        raise ModelLoadError(
            f"cannot tokenize another prompt for {info.name} ({info.source}): its weights are in the graph, but its "
            "tokenizer is not available here and GPT-2's own has another vocabulary; give the other run as a "
            "saved graph (.gg) built where the model is"
        )
    return loaded


def _hub_kwargs(source: str) -> dict[str, Any]:
    """Read only local files (directory, HF cache) in offline mode or when the hub's host does not resolve:
    a cache miss then fails at once instead of after a minute of retries."""
    offline = any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return {"local_files_only": True} if source == "directory" or offline or not _hub_resolves() else {}


@lru_cache(maxsize=1)
def _hub_resolves() -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def family_config(name: str) -> Any | None:
    """The ``GPT2Config`` of a GPT-2 family member named by its hub id (or the hub's newer name), else None."""
    from transformers import GPT2Config

    dims = FAMILY.get(FAMILY_ALIASES.get(name, name))
    if dims is None:
        return None
    n_layer, n_head, d_model = dims
    return GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=d_model, n_positions=1024, vocab_size=50257)


def _embedded(name: str, seed: int, tokenizer: Any) -> LoadedModel:
    """A family member's architecture with seeded random weights and GPT-2's own tokenizer: no network."""
    hf = _random_model(family_config(name), seed)
    info = _info(hf, name, "embedded-default", Weights(status="random", seed=seed), Checkpoint(hub_id=name))
    return LoadedModel(hf, tokenizer or gpt2_bpe_tokenizer(), info)


def _embedded_default(seed: int, tokenizer: Any) -> LoadedModel:
    """GPT-2 124M with seeded random weights: what runs when no model is named and none can be loaded."""
    return _embedded("gpt2", seed, tokenizer)


def _random_model(config: Any, seed: int) -> GPT2LMHeadModel:
    from transformers import GPT2LMHeadModel

    check_fits(config, getattr(config, "name_or_path", "") or "the model")
    cpu_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model: GPT2LMHeadModel = GPT2LMHeadModel(config).eval()
        return model
    finally:
        torch.random.set_rng_state(cpu_state)


_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def _tokenizer_for(name: str, local_only: bool = False) -> PreTrainedTokenizerBase:
    """The model directory's (or hub repo's) tokenizer when it has one, else GPT-2's own BPE. Loaded once per
    model and kept (loading one costs more than a short forward pass); a directory's tokenizer is read again
    when its files change."""
    path = Path(name)
    is_dir = path.is_dir()
    if is_dir:
        files = [path / f for f in _TOKENIZER_FILES if (path / f).exists()]
        if not files:
            return gpt2_bpe_tokenizer()
        stamp = tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        return _cached_tokenizer(str(path.resolve()), True, stamp)
    return _cached_tokenizer(name, local_only, ())


@lru_cache(maxsize=8)
def _cached_tokenizer(name: str, local_only: bool, _stamp: tuple[tuple[str, int, int], ...]) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    kwargs = {"local_files_only": True} if local_only else _hub_kwargs("hub")
    try:
        return AutoTokenizer.from_pretrained(name, **kwargs)
    except Exception:
        return gpt2_bpe_tokenizer()


def _check_gpt2(config: Any, where: str) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type != "gpt2":
        arch = ", ".join(getattr(config, "architectures", None) or []) or "unknown architecture"
        raise NotGpt2Error(f"{where}: not a GPT-2 model: found model_type {model_type!r} ({arch})")
    _check_dims(config, where)
    problems = []
    if config.n_embd % config.n_head:
        problems.append(f"n_embd {config.n_embd} is not divisible by n_head {config.n_head}")
    if config.activation_function not in SUPPORTED_ACTIVATIONS:
        problems.append(
            f"activation_function {config.activation_function!r} (expected GPT-2's tanh GELU: "
            f"{', '.join(sorted(SUPPORTED_ACTIVATIONS))})"
        )
    if getattr(config, "scale_attn_by_inverse_layer_idx", False) or not getattr(config, "scale_attn_weights", True):
        problems.append("non-standard attention scaling (scale_attn_by_inverse_layer_idx / scale_attn_weights)")
    if getattr(config, "add_cross_attention", False):
        problems.append("cross-attention layers")
    if not getattr(config, "tie_word_embeddings", True):
        problems.append("untied word embeddings (GPT-2 ties W_U to W_E)")
    if problems:
        raise NotGpt2Error(f"{where}: not GPT-2-shaped: " + "; ".join(problems))


#: config field -> what it is, for each dimension a GPT-2 is built from
_DIMS = {
    "n_layer": "blocks",
    "n_head": "heads per block",
    "n_embd": "the width of the residual stream",
    "n_positions": "the context length",
    "vocab_size": "the vocabulary size",
}


_CONFIG_FIELDS = (*_DIMS, "n_inner", "layer_norm_epsilon")


def _check_dims(config: Any, where: str) -> None:
    """Every dimension a positive integer and eps a positive number, before anything is sized by them."""
    problems = []
    for field, what in _DIMS.items():
        value = getattr(config, field, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{field} ({what}) must be a positive integer, got {value!r}")
    inner = getattr(config, "n_inner", None)
    if inner is not None and (isinstance(inner, bool) or not isinstance(inner, int) or inner < 1):
        problems.append(f"n_inner (the MLP width) must be a positive integer or null, got {inner!r}")
    eps = getattr(config, "layer_norm_epsilon", None)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        problems.append(f"layer_norm_epsilon must be a number > 0, got {eps!r}")
    if problems:
        raise NotGpt2Error(f"{where}: invalid config: " + "; ".join(problems))


def check_fits(config: Any, where: str) -> None:
    """Refuse, before allocating, a model whose parameters alone (fp32) need more memory than is available."""
    needed = 4 * sum(parameter_groups(dims_of(config)).values())
    available = available_memory()
    if available is not None and needed > available:
        raise ModelLoadError(
            f"{where}: its parameters alone need {needed / 1e9:,.1f} GB ({needed // 4:,} fp32 numbers, from "
            f"n_layer={config.n_layer}, n_embd={config.n_embd}, n_positions={config.n_positions}, "
            f"vocab_size={config.vocab_size}), but {available / 1e9:,.1f} GB of memory is available"
        )


def available_memory() -> int | None:
    """Bytes of memory this process can still use: what the system has available, capped by the cgroup's
    limit (containers); None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def dims_of(config: Any) -> Dims:
    return Dims(
        n_layer=config.n_layer,
        n_head=config.n_head,
        d_model=config.n_embd,
        d_head=config.n_embd // config.n_head,
        d_mlp=config.n_inner or 4 * config.n_embd,
        n_ctx=config.n_positions,
        n_vocab=config.vocab_size,
        layer_norm_eps=config.layer_norm_epsilon,
        activation_function=config.activation_function,
    )


def parameter_groups(dims: Dims) -> dict[str, int]:
    """Parameter count per group, from the dims alone (W_U is tied to W_E and counted once)."""
    D, L = dims.d_model, dims.n_layer
    return {
        "embedding": dims.n_vocab * D,
        "positional": dims.n_ctx * D,
        "attention": L * (4 * D * D + 4 * D),
        "mlp": L * (2 * D * dims.d_mlp + dims.d_mlp + D),
        "layernorm": (2 * L + 1) * 2 * D,
    }


def _info(hf: Any, name: str, source: str, weights: Weights, checkpoint: Checkpoint | None) -> ModelInfo:
    dims = dims_of(hf.config)
    groups = parameter_groups(dims)
    actual = sum(p.numel() for p in hf.parameters())  # parameters() yields the tied tensor once
    if actual != sum(groups.values()):
        raise NotGpt2Error(
            f"{name}: has {actual:,} parameters, but a GPT-2 with these dims has "
            f"{sum(groups.values()):,}: not GPT-2-shaped"
        )
    return ModelInfo(
        name=name,
        source=source,
        architecture=type(hf).__name__,
        weights=weights,
        checkpoint=checkpoint,
        dims=dims,
        dtype=str(next(hf.parameters()).dtype).removeprefix("torch."),
        parameters=groups,
        total_parameters=actual,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_error(name: str, source: str, random_weights: bool, exc: BaseException) -> ModelLoadError:
    """What went wrong, and advice that works: random weights are advised only where they need nothing more
    (a GPT-2 family hub id, whose architecture is embedded)."""
    if source == "directory":
        return ModelLoadError(f"could not load a GPT-2 model from directory {name!r}: {_first_line(exc)}")
    where = "in the HF cache" if random_weights else "from the Hugging Face hub or cache"
    what = f"the config of {name!r}" if random_weights else f"model {name!r}"
    if family_config(name) is not None:
        return ModelLoadError(
            f"could not load {what} {where}: {_first_line(exc)}. Give a local directory, or use the "
            f"{name} architecture with random weights: {{random_weights}}",
            arguments={"random_weights": True},
        )
    return ModelLoadError(
        f"could not load {what} {where}: {_first_line(exc)}. Give a hub id that is in the HF cache, a "
        f"local directory (saved with save_pretrained), or a GPT-2 family id ({', '.join(FAMILY)})"
    )
