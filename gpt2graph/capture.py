"""Capture one forward pass of a HF GPT-2 as TransformerLens-named activation tensors.

Forward hooks keep references to the tensors the model computes anyway: nothing is recomputed and the model
runs with its default (fast, fused) attention. Which kinds are captured is
:data:`gpt2graph.values.CAPTURED_KINDS`, and their names are the topology's hook names; this module only knows
where in Hugging Face's ``GPT2LMHeadModel`` each of them is computed. The run stops at the final LayerNorm:
the logits are derived from it (:meth:`gpt2graph.values.Values.logits`), exactly as the model's tied
``lm_head`` computes them, so the unembedding is paid only when they are read. On another device the values
are copied to the CPU as the pass produces them.

:func:`replay` recomputes a captured kind that a saved graph does not store from the one its module reads,
with the call that module makes (HF's ``Conv1D`` is ``addmm``, its LayerNorm ``F.layer_norm``, its activation
``ACT2FN[config.activation_function]``), so the result is the captured tensor, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from . import progress
from .schema import VectorKind
from .topology import Key, Topology
from .values import CAPTURED_KINDS, TOKENS, Values

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
    t = t[0].detach().cpu()  # a no-op on the CPU
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
    for kind in CAPTURED_KINDS:
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
    """Run ``model`` once on ``token_ids`` (up to its final LayerNorm) and return every stored activation, by
    hook name, on the CPU."""
    store: dict[str, torch.Tensor] = {}
    ids = torch.tensor([token_ids], dtype=torch.long, device=model.device)
    blocks = model.transformer.h
    with (
        torch.no_grad(),  # not inference_mode: users may edit values (patching)
        _hooks(model, topology, store),
        progress.task("build", total=len(blocks), unit="block") as bar,
    ):
        ticks = [b.register_forward_hook(lambda *_: bar.update()) for b in blocks] if progress.active() else []
        try:
            model.transformer(input_ids=ids, use_cache=False)
        finally:
            for t in ticks:
                t.remove()
    store[TOKENS] = ids[0].cpu()
    return store


#: how each captured kind that is not stored is recomputed: the module of HF's model whose call computes it
#: and the kind that call reads ({L} = layer)
REPLAY: dict[str, tuple[str, str]] = {
    V.token_embedding: ("transformer.wte", V.token),
    V.pos_embedding: ("transformer.wpe", V.token),  # reads the positions 0..n-1
    V.ln1: ("transformer.h.{L}.ln_1", V.resid_pre),  # the stream entering the block (input_embedding at block 0)
    V.q: ("transformer.h.{L}.attn.c_attn", V.ln1),
    V.k: ("transformer.h.{L}.attn.c_attn", V.ln1),
    V.v: ("transformer.h.{L}.attn.c_attn", V.ln1),
    V.attn_out: ("transformer.h.{L}.attn.c_proj", V.z),
    V.ln2: ("transformer.h.{L}.ln_2", V.resid_mid),
    V.mlp_pre: ("transformer.h.{L}.mlp.c_fc", V.ln2),
    V.mlp_post: ("transformer.h.{L}.mlp.act", V.mlp_pre),
    V.mlp_out: ("transformer.h.{L}.mlp.c_proj", V.mlp_post),
    V.ln_final: ("transformer.ln_f", V.resid_post),
}


def replay(values: Values, kind: str, layer: int | None) -> dict[str, torch.Tensor]:
    """``kind`` at ``layer`` (and the kinds computed by the same call: q, k and v) recomputed from the
    activation its module reads, with that module's own computation, by hook name."""
    top, dims, params = values.topology, values.dims, values.params
    module, reads = REPLAY[kind]
    module = module.replace("{L}", str(layer or 0))
    weight, bias = params.get(f"{module}.weight"), params.get(f"{module}.bias")  # an activation has neither
    if kind == V.token_embedding:
        out = torch.nn.functional.embedding(values.hook(V.token), params[f"{module}.weight"])
    elif kind == V.pos_embedding:
        out = torch.nn.functional.embedding(torch.arange(top.n_tokens), params[f"{module}.weight"])
    else:
        source = top.ln_input(kind, layer, 0) if kind in (V.ln1, V.ln2, V.ln_final) else Key(reads, layer)
        x = values.hook(source.kind, source.layer)
        x = x.reshape(x.shape[0], -1)  # z: (n, n_head, d_head) -> (n, d_model), head-major as c_proj reads it
        with torch.no_grad():
            if module.endswith(("ln_1", "ln_2", "ln_f")):
                out = torch.nn.functional.layer_norm(x, (dims.d_model,), weight, bias, dims.layer_norm_eps)
            elif module.endswith(".act"):
                from transformers.activations import ACT2FN

                out = ACT2FN[dims.activation_function](x)
            else:  # Conv1D
                out = torch.addmm(params[f"{module}.bias"], x, params[f"{module}.weight"])
    produced = _QKV if kind in _QKV else (kind,)
    return {top.hook_name(Key(k, layer, None, 0)): _layout(k, out[None], top) for k in produced}
