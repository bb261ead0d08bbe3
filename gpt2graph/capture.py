"""Capture one forward pass of a HF GPT-2 as TransformerLens-named activation tensors.

Forward hooks keep references to the tensors the model computes anyway: nothing is recomputed, the model
runs with its default (fast, fused) attention, and the logits are bit-identical to an unhooked run. Which
kinds are stored is :data:`gpt2graph.values.STORED_KINDS`, and their names are the topology's hook names;
this module only knows where in Hugging Face's ``GPT2LMHeadModel`` each of them is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .schema import VectorKind
from .topology import Key, Topology
from .values import STORED_KINDS, TOKENS

__all__ = ["capture"]

V = VectorKind
IN, OUT = "input", "output"
#: where HF's GPT2LMHeadModel computes each stored kind: (submodule, its input or its output); {L} = layer
SOURCES: dict[str, tuple[str, str]] = {
    V.token_embedding: ("transformer.wte", OUT),
    V.pos_embedding: ("transformer.wpe", OUT),
    V.input_embedding: ("transformer.h.0", IN),
    V.resid_pre: ("transformer.h.{L}", IN),
    V.ln1: ("transformer.h.{L}.ln_1", OUT),
    V.q: ("transformer.h.{L}.attn.c_attn", OUT),  # the fused projection: q | k | v along the last dim
    V.k: ("transformer.h.{L}.attn.c_attn", OUT),
    V.v: ("transformer.h.{L}.attn.c_attn", OUT),
    V.z: ("transformer.h.{L}.attn.c_proj", IN),  # z of every head, concatenated, head-major
    V.attn_out: ("transformer.h.{L}.attn", OUT),
    V.resid_mid: ("transformer.h.{L}.ln_2", IN),
    V.ln2: ("transformer.h.{L}.ln_2", OUT),
    V.mlp_pre: ("transformer.h.{L}.mlp.c_fc", OUT),
    V.mlp_post: ("transformer.h.{L}.mlp.act", OUT),
    V.mlp_out: ("transformer.h.{L}.mlp", OUT),
    V.resid_post: ("transformer.h.{L}", OUT),
    V.ln_final: ("transformer.ln_f", OUT),
}
_QKV = (V.q, V.k, V.v)


def _first(x: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
    """A module's output tensor (HF blocks return a tuple whose first item it is)."""
    return x[0] if isinstance(x, (tuple, list)) else x


def _layout(kind: str, t: torch.Tensor, topology: Topology) -> torch.Tensor:
    """One stored activation in its hook's layout (batch dropped), from the tensor HF computed."""
    d = topology.dims
    t = t[0].detach()
    if kind in _QKV:
        i = _QKV.index(kind)
        return t[:, i * d.d_model : (i + 1) * d.d_model].view(-1, d.n_head, d.d_head)
    if kind == V.z:
        return t.view(-1, d.n_head, d.d_head)
    return t


@contextmanager
def _hooks(model: Any, topology: Topology, store: dict[str, torch.Tensor]) -> Iterator[None]:
    """Register the hooks that fill ``store``: one per (submodule, direction), writing every kind it holds."""
    readers: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for kind in STORED_KINDS:
        if kind not in SOURCES:
            continue  # the logits come from the model's output
        module, direction = SOURCES[kind]
        for layer in topology.layers_of(kind):
            name = topology.hook_name(Key(kind, layer, None, 0))
            readers.setdefault((module.replace("{L}", str(layer or 0)), direction), []).append((kind, name))

    def writer(kinds: list[tuple[str, str]]) -> Callable[[torch.Tensor], None]:
        def write(t: torch.Tensor) -> None:
            for kind, name in kinds:
                store[name] = _layout(kind, t, topology)

        return write

    handles = []
    for (module, direction), kinds in readers.items():
        write = writer(kinds)
        sub = model.get_submodule(module)
        if direction == IN:
            handles.append(sub.register_forward_pre_hook(lambda _m, args, w=write: w(args[0])))
        else:
            handles.append(sub.register_forward_hook(lambda _m, _a, out, w=write: w(_first(out))))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture(model: Any, token_ids: list[int], topology: Topology) -> dict[str, torch.Tensor]:
    """Run ``model`` once on ``token_ids`` and return every stored activation, by hook name."""
    store: dict[str, torch.Tensor] = {}
    ids = torch.tensor([token_ids], dtype=torch.long, device=model.device)
    with torch.no_grad(), _hooks(model, topology, store):  # not inference_mode: users may edit values (patching)
        output = model(input_ids=ids, use_cache=False)
    store[topology.hook_name(Key(V.logits, None, None, 0))] = output.logits[0].detach()
    store[TOKENS] = ids[0]
    return store
