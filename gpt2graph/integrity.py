"""A saved graph is checked on load, not trusted: every number a file states is checked against the others.

The schema checks each field alone; these checks relate them: the dims to one another, the tokens of the
header to the stored ones and to the vocabulary, every tensor's shape and dtype to the topology, and every
index an analysis records (layer, head, position, token id, node id) to the run it belongs to. A file edited
by hand, or by a tool that re-hashed it, is refused here with one message instead of failing later in a
renderer. Each function raises :class:`~gpt2graph.errors.GraphFileError` with a message saying what is wrong;
the caller names the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor

from .errors import GraphFileError, NodeNotFoundError
from .loading import parameter_groups
from .schema import GraphHeader
from .topology import Topology
from .values import TOKENS, activation_shapes, param_shapes

__all__ = ["check_header", "check_tensors", "check_tokens", "DTYPES"]

#: the floating dtypes a graph's values may have (a model passed in may be half precision)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def check_header(header: GraphHeader) -> None:
    """The header agrees with itself: dims, parameter counts, tokens and the analysis's indices."""
    m, tok = header.model, header.tokenization
    d = m.dims
    if d.d_head * d.n_head != d.d_model:
        raise GraphFileError(
            f"inconsistent dims: d_head ({d.d_head}) x n_head ({d.n_head}) is not d_model ({d.d_model})"
        )
    if not math.isfinite(d.layer_norm_eps):
        raise GraphFileError(f"inconsistent dims: layer_norm_eps is {d.layer_norm_eps}")
    if m.dtype not in DTYPES:
        raise GraphFileError(f"unknown dtype {m.dtype!r} (expected one of {', '.join(DTYPES)})")
    groups = parameter_groups(d)
    if m.parameters != groups or m.total_parameters != sum(groups.values()):
        raise GraphFileError(
            f"the parameter counts ({m.total_parameters:,} in all) do not match a GPT-2 with these dims "
            f"({sum(groups.values()):,})"
        )
    n = len(tok.token_ids)
    if not 1 <= n <= d.n_ctx:
        raise GraphFileError(f"{n} token ids, but a run has 1 to n_ctx = {d.n_ctx}")
    if len(tok.tokens) != n or len(tok.tokens_visible) != n:
        raise GraphFileError(
            f"{n} token ids, but {len(tok.tokens)} tokens and {len(tok.tokens_visible)} visible tokens: one per id"
        )
    bad = [i for i in tok.token_ids if not 0 <= i < d.n_vocab]
    if bad:
        raise GraphFileError(f"token id {bad[0]} is outside the vocabulary (0..{d.n_vocab - 1})")
    if header.analysis is not None:
        _check_analysis(header, Topology(d, n))


def check_tokens(header: GraphHeader, stored: Tensor, vocab: list[Any]) -> None:
    """The header's tokens are the stored ones, and each visible token is that id's vocabulary entry."""
    ids = header.tokenization.token_ids
    if stored.dtype != torch.int64 or stored.tolist() != ids:
        raise GraphFileError("the header's token ids are not the stored ones")
    if not all(isinstance(t, str) for t in vocab):
        raise GraphFileError("the vocabulary holds entries that are not strings")
    wrong = [(i, t) for i, t in zip(ids, header.tokenization.tokens_visible) if vocab[i] != t]
    if wrong:
        i, t = wrong[0]
        raise GraphFileError(f"visible token {t!r} is not the vocabulary's entry {vocab[i]!r} for id {i}")


def check_tensors(
    header: GraphHeader,
    activations: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> None:
    """Every tensor given has the shape the topology gives its name and the graph's dtype (token ids: int64).
    ``shapes``: the activation shapes of the file's format (default: the current one's)."""
    dims, n = header.model.dims, len(header.tokenization.token_ids)
    dtype = DTYPES[header.model.dtype]
    expected = {
        **{("activation", k): v for k, v in (shapes or activation_shapes(dims, n)).items()},
        **{("parameter", k): v for k, v in param_shapes(dims).items()},
    }
    tensors = [("activation", k, t) for k, t in activations.items()] + [("parameter", k, t) for k, t in params.items()]
    for what, name, t in tensors:
        shape = expected.get((what, name))
        if shape is None:
            raise GraphFileError(f"unexpected {what} {name}")
        if tuple(t.shape) != tuple(shape):
            raise GraphFileError(f"{what} {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        want = torch.int64 if name == TOKENS and what == "activation" else dtype
        if t.dtype != want:
            raise GraphFileError(f"{what} {name} is {str(t.dtype).removeprefix('torch.')}, expected {want}")


# ---- the analysis ---------------------------------------------------------------------------------------------
#: result fields holding a token id (a list of them for token_ids), checked against the vocabulary
_TOKEN_FIELDS = {"id", "token_id", "contrast_id", "input_token_id", "token_ids", "target", "contrast", "circuit_token"}


def _check_analysis(header: GraphHeader, top: Topology) -> None:
    d, a = top.dims, header.analysis
    assert a is not None  # called for a header with an analysis
    heads = d.n_layer * d.n_head
    for what, listed in (("head roles", a.roles.heads), ("circuits", a.circuits.heads)):
        if [(h.layer, h.head) for h in listed] != [(L, h) for L in range(d.n_layer) for h in range(d.n_head)]:
            raise GraphFileError(f"analysis: {what} list {len(listed)} heads, not the {heads} of this model in order")
    limits = {"layer": d.n_layer, "head": d.n_head, "position": top.n_tokens}
    for path, name, value in _fields(a, "analysis"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            continue
        if name == "component" and isinstance(value, str):
            try:
                top.parse(value)
            except NodeNotFoundError:
                raise GraphFileError(f"{path}: {value!r} is not a node of this run") from None
        elif isinstance(value, str):
            continue
        elif name in limits and path != "analysis.options.position" and not 0 <= value < limits[name]:
            raise GraphFileError(f"{path} = {value} is out of range (0..{limits[name] - 1})")
        elif name in _TOKEN_FIELDS and not 0 <= value < d.n_vocab:
            raise GraphFileError(f"{path} = {value} is not a token id (0..{d.n_vocab - 1})")
    p = a.options.position
    if not -top.n_tokens <= p < top.n_tokens:
        raise GraphFileError(f"analysis.options.position = {p} is out of range for {top.n_tokens} tokens")


def _fields(model: BaseModel, path: str) -> Iterator[tuple[str, str, Any]]:
    """(path, field name, value) of every scalar in a result, lists' items under their list's name."""
    for name, value in model:
        for i, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
            where = f"{path}.{name}" if i is None else f"{path}.{name}[{i}]"
            if isinstance(item, BaseModel):
                yield from _fields(item, where)
            elif not isinstance(item, dict):
                yield where, name, item
