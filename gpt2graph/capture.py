"""Capture one forward pass of a HF GPT-2 as TransformerLens-named activation tensors.

Forward hooks keep references to the tensors the model computes anyway: nothing is recomputed, the model
runs with its default (fast, fused) attention, and the logits are bit-identical to an unhooked run. What a
fused kernel never materialises (attention scores and patterns, O(n_tokens^2) per head) and what is cheap to
derive (each head's output z_h @ W_O^h) are computed on demand from the captured q, k and z.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["capture"]


def _first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


@contextmanager
def _hooks(model: Any, store: dict[str, torch.Tensor]):
    """Register the hooks that fill ``store`` with TransformerLens-named activations (batch dim dropped)."""
    t = model.transformer
    handles = []

    def out(name: str) -> Callable:
        def hook(_module, _args, output):
            store[name] = _first(output)[0].detach()

        return hook

    def inp(name: str) -> Callable:
        def hook(_module, args):
            store[name] = args[0][0].detach()

        return hook

    def fwd(module, name):
        handles.append(module.register_forward_hook(out(name)))

    def pre(module, name):
        handles.append(module.register_forward_pre_hook(inp(name)))

    fwd(t.wte, "hook_embed")
    fwd(t.wpe, "hook_pos_embed")
    for L, block in enumerate(t.h):
        b = f"blocks.{L}."
        pre(block, b + "hook_resid_pre")
        fwd(block.ln_1, b + "ln1.hook_normalized")
        fwd(block.attn.c_attn, b + "attn.qkv")
        pre(block.attn.c_proj, b + "attn.hook_z")
        fwd(block.attn, b + "hook_attn_out")
        pre(block.ln_2, b + "hook_resid_mid")
        fwd(block.ln_2, b + "ln2.hook_normalized")
        fwd(block.mlp.c_fc, b + "mlp.hook_pre")
        fwd(block.mlp.act, b + "mlp.hook_post")
        fwd(block.mlp, b + "hook_mlp_out")
    fwd(t.h[-1], f"blocks.{len(t.h) - 1}.hook_resid_post")
    fwd(t.ln_f, "ln_final.hook_normalized")
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture(model: Any, token_ids: list[int]) -> dict[str, torch.Tensor]:
    """Run ``model`` once on ``token_ids`` and return every activation the graph needs, as tensors."""
    store: dict[str, torch.Tensor] = {}
    ids = torch.tensor([token_ids], dtype=torch.long, device=model.device)
    with torch.no_grad(), _hooks(model, store):  # not inference_mode: users may edit values (patching)
        output = model(input_ids=ids, use_cache=False)
    store["hook_unembed"] = output.logits[0].detach()
    store["tokens"] = ids[0]
    return store
