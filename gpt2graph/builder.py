"""``build``: from a prompt and a model to a captured, typed graph."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

from torch import Tensor, nn

from . import __version__
from .capture import capture
from .errors import PromptError
from .graph import Graph
from .loading import LoadedModel, load_model, model_of
from .schema import FORMAT_VERSION, GraphHeader, Tokenization
from .topology import Topology
from .values import Stamp, Values, same_stamp, stamp

__all__ = ["build", "build_alike", "capture_graph", "parameters", "tokenize", "vocabulary"]


def build(
    prompt: str | Sequence[int],
    model: Any = None,
    tokenizer: Any = None,
    *,
    random_weights: bool = False,
    seed: int = 0,
    revision: str | None = None,
    device: str | None = None,
    annotations: Any = None,
    analyze: bool | dict[str, Any] = False,
) -> Graph:
    """Run ``model`` on ``prompt`` once and return the graph of every vector and operation.

    ``prompt`` is text, or token ids (a list, or a tensor of shape (n,) or (1, n): e.g. with a BOS token first, as
    TransformerLens's ``to_tokens`` gives them, or a generated continuation, which re-tokenising its text would
    not always give back). ``model`` is a hub id (e.g. ``"gpt2"``, ``"distilgpt2"``; the HF cache is honoured),
    a local directory, an already-loaded ``GPT2LMHeadModel``, a TransformerLens ``TransformerBridge`` over one,
    or a :class:`LoadedModel` from :func:`gpt2graph.loading.load_model` (used as is: a server loads once and
    builds many graphs). Left as None it means pretrained ``gpt2``, falling back (with one warning) to the
    embedded GPT-2 124M architecture with seeded random weights when that cannot be loaded.
    The tokenizer comes from the model's directory when it has one, else it is GPT-2's own BPE (either is
    loaded once per model and kept). ``revision``: a hub revision (branch, tag or commit). ``device``: where
    the model runs (cpu, cuda, mps; default: where it is); the values are brought to the CPU.
    ``annotations``: YAML file path(s) of extra glossary entries and callouts (see ``graph.annotate``).
    ``analyze``: True, or a dict of options for :func:`gpt2graph.analyze.analyze`, to compute and store the
    interpretability layers (``graph.analysis``) right away.
    """
    if prompt is None or (isinstance(prompt, str) and not prompt):
        raise PromptError("the prompt is empty: give at least one character of text")
    loaded = load_model(
        model, tokenizer=tokenizer, random_weights=random_weights, seed=seed, revision=revision, device=device
    )
    graph = capture_graph(loaded, tokenize(prompt, loaded))
    if annotations:
        for path in (
            [annotations]
            if isinstance(annotations, (str, bytes)) or hasattr(annotations, "__fspath__")
            else annotations
        ):
            graph.annotate(path)
    if analyze:
        graph.analyze(**({} if analyze is True else analyze))
    return graph


def capture_graph(loaded: LoadedModel, tokenization: Tokenization) -> Graph:
    """The graph of one run of an already-loaded model on already-tokenized text (what ``build`` does after
    loading; a corpus run loads once and calls this per prompt)."""
    header = GraphHeader(
        format_version=FORMAT_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        gpt2graph_version=__version__,
        model=loaded.info,
        tokenization=tokenization,
    )
    topology = Topology(loaded.info.dims, len(tokenization.token_ids))
    activations = capture(loaded.model, tokenization.token_ids, topology)
    return Graph(header, Values(activations, parameters(loaded), topology), vocabulary(loaded))


#: per model: its parameters (and buffers) as they were read, and the CPU tensors handed out for them
_PARAMETERS: WeakKeyDictionary[nn.Module, tuple[Stamp, dict[str, Tensor]]] = WeakKeyDictionary()


def parameters(loaded: LoadedModel) -> dict[str, Tensor]:
    """The model's own parameter tensors by state-dict name (the tied unembedding once, as W_E), on the CPU
    (a no-op there; a copy from another device). Every graph of one model gets the same tensor objects while
    the model's parameters are unchanged (none replaced, none edited in place), so what is derived from them
    (their statistics, their digest) is computed once per model; each graph has its own dict."""
    live = {name: t for name, t in loaded.model.state_dict(keep_vars=True).items() if name != "lm_head.weight"}
    now = stamp(*live.values())
    held = _PARAMETERS.get(loaded.model)
    if held is None or list(live) != list(held[1]) or not same_stamp(held[0], now):
        held = (now, {name: t.detach().cpu() for name, t in live.items()})
        _PARAMETERS[loaded.model] = held
    return dict(held[1])


def _token_ids(prompt: Any) -> list[int]:
    """Token ids given instead of text: a sequence of ints, or a tensor of shape (n,) or (1, n)."""
    if isinstance(prompt, Tensor):
        if prompt.ndim == 2 and prompt.shape[0] == 1:
            prompt = prompt[0]
        if prompt.ndim != 1 or prompt.is_floating_point() or prompt.is_complex():
            raise PromptError(f"token ids must be a 1-d integer tensor (or of shape (1, n)), got {tuple(prompt.shape)}")
        prompt = prompt.tolist()
    if isinstance(prompt, bytes) or not isinstance(prompt, Sequence):
        raise PromptError(f"the prompt must be text or a sequence of token ids, got {type(prompt).__name__}")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in prompt):
        raise PromptError("token ids must be integers")
    if any(i < 0 for i in prompt):
        raise PromptError(f"token ids are >= 0, got {min(prompt)}")
    return list(prompt)


def build_alike(graph: Graph, prompt: str | Sequence[int]) -> Graph:
    """``prompt`` run through the model ``graph`` was captured from, found again from the graph alone
    (:func:`gpt2graph.loading.model_of`): a captured run of the same model, e.g. the corrupted run of a patching
    experiment given as text."""
    loaded = model_of(graph)
    other = capture_graph(loaded, tokenize(prompt, loaded))
    other._run.header = other.header.model_copy(update={"model": graph.model})  # the same model, as recorded
    return other


def tokenize(prompt: str | Sequence[int] | Tensor, loaded: LoadedModel) -> Tokenization:
    """Token ids and strings of ``prompt`` (text, or token ids whose text is their decoding); a prompt longer
    than the context is an error that says by how much."""
    tok = loaded.tokenizer
    ids = list(tok(prompt, add_special_tokens=False)["input_ids"]) if isinstance(prompt, str) else _token_ids(prompt)
    n_ctx, n_vocab = loaded.info.dims.n_ctx, loaded.info.dims.n_vocab
    if not ids:
        raise PromptError("the prompt produced no tokens")
    if len(ids) > n_ctx:
        raise PromptError(
            f"the prompt is {len(ids)} tokens long, but {loaded.info.name} reads at most n_ctx = "
            f"{n_ctx} tokens: shorten it by {len(ids) - n_ctx} tokens"
        )
    if not 0 <= min(ids) <= max(ids) < n_vocab:
        bad = next(i for i in ids if not 0 <= i < n_vocab)
        raise PromptError(f"token id {bad} is outside the model's vocabulary (0..{n_vocab - 1})")
    text = prompt if isinstance(prompt, str) else tok.decode(ids)
    return Tokenization(
        text=text, token_ids=ids, tokens=[tok.decode([i]) for i in ids], tokens_visible=tok.convert_ids_to_tokens(ids)
    )


def vocabulary(loaded: LoadedModel) -> list[str]:
    """Every token id's string in BPE form; ids the tokenizer does not know show as <id>."""
    return _vocabulary(loaded.tokenizer, loaded.info.dims.n_vocab)


@lru_cache(maxsize=4)  # the same loaded tokenizer builds many graphs; its vocabulary does not change
def _vocabulary(tokenizer: Any, n_vocab: int) -> list[str]:
    tokens = tokenizer.convert_ids_to_tokens(list(range(n_vocab)))
    return [t if isinstance(t, str) else f"<{i}>" for i, t in enumerate(tokens)]
