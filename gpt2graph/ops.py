"""Our own implementation of every operation in the graph, one function per operation kind.

Each function is written for single vectors, as the graph draws it (one query against its keys, one head's
z times that head's slice of W_O), and broadcasts over leading dimensions, so the same code executes one
node or a whole layer of nodes at once. Nothing here calls into transformers: verification compares these
against what the model computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "lookup",
    "add",
    "ln_scale",
    "ln_normalize",
    "ln_affine",
    "head_projection",
    "scaled_dot_product",
    "causal_scores",
    "softmax",
    "weighted_sum",
    "output_projection",
    "sum_heads",
    "attention_output",
    "linear",
    "gelu",
    "unembed",
    "temperature",
    "top_k",
    "top_p",
    "sample",
    "OPS",
]


def lookup(table: Tensor, index: Tensor | int) -> Tensor:
    """Row ``index`` of an embedding table (W_E by token id, W_pos by position)."""
    return table[index]


def add(a: Tensor, b: Tensor) -> Tensor:
    """Residual addition: the stream plus what a component writes into it."""
    return a + b


def ln_scale(x: Tensor, eps: float) -> Tensor:
    """LayerNorm's scale of each vector: sqrt(population variance + eps), eps inside the root. (..., d) -> (..., 1)"""
    centred = x - x.mean(dim=-1, keepdim=True)
    return torch.sqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps)


def ln_normalize(x: Tensor, scale: Tensor) -> Tensor:
    """Centre each vector and divide by its scale: unit variance, before the gain and bias."""
    return (x - x.mean(dim=-1, keepdim=True)) / scale


def ln_affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """LayerNorm's learned gain and bias, per dimension: x * w + b."""
    return x * w + b


def head_projection(x: Tensor, W: Tensor, b: Tensor, per_head_input: bool = False) -> Tensor:
    """One head's query, key or value: x @ W^h + b^h, with W^h of shape (d_model, d_head).

    Every head at once when the heads are stacked: W (n_head, d_model, d_head), b (n_head, d_head), and
    x (..., d_model) -> (..., n_head, d_head), as one matrix product. With ``per_head_input`` each head reads
    its own input, x (..., n_head, d_model) (the stream copied per head, for edge-level patching)."""
    if W.ndim == 3:
        return torch.einsum("...hd,hde->...he" if per_head_input else "...d,hde->...he", x, W) + b
    return x @ W + b


def scaled_dot_product(q: Tensor, keys: Tensor) -> Tensor:
    """Scores of one query against the keys at positions <= its own: (keys @ q) / sqrt(d_head).

    q: (..., d_head); keys: (..., n_keys, d_head) -> (..., n_keys). Causality is structural: the caller
    passes only keys up to the query position, so no mask is needed.
    """
    return (keys @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(q.shape[-1])


def causal_scores(Q: Tensor, K: Tensor) -> Tensor:
    """Every query position of one head at once: row i is ``scaled_dot_product(Q[i], K[:i+1])``, padded with
    -inf above the diagonal (exp(-inf) = 0, so a softmax of a padded row equals the softmax of the row)."""
    n = Q.shape[-2]
    scores = Q @ K.transpose(-1, -2) / math.sqrt(Q.shape[-1])
    future = torch.ones(n, n, dtype=torch.bool, device=Q.device).triu(1)
    return scores.masked_fill(future, float("-inf"))


def softmax(scores: Tensor) -> Tensor:
    """Attention pattern from scores: exp(s - max) normalised to sum to one over the keys."""
    return torch.softmax(scores, dim=-1)


def weighted_sum(pattern: Tensor, values: Tensor) -> Tensor:
    """z for one head and position: the pattern-weighted sum of value vectors. pattern (..., n_keys),
    values (..., n_keys, d_head) -> (..., d_head).

    Every query row at once when ``pattern`` is a matrix (..., n_queries, n_keys) with one more dimension
    than a row: (..., n_queries, d_head), without repeating the values per row."""
    if pattern.ndim == values.ndim:
        return pattern @ values
    return (pattern.unsqueeze(-2) @ values).squeeze(-2)


def output_projection(z: Tensor, W_O: Tensor) -> Tensor:
    """One head's output written to the residual stream: z^h @ W_O^h, W_O^h of shape (d_head, d_model).

    Every head at once when the heads are stacked: z (..., n_head, d_head), W_O (n_head, d_head, d_model)
    -> (..., n_head, d_model)."""
    if W_O.ndim == 3:
        return torch.einsum("...he,hed->...hd", z, W_O)
    return z @ W_O


def sum_heads(head_outputs: Tensor, b_O: Tensor) -> Tensor:
    """Attention output: the sum of the per-head outputs (stacked on dim -2) plus b_O."""
    return head_outputs.sum(dim=-2) + b_O


def attention_output(z: Tensor, W_O: Tensor, b_O: Tensor) -> Tensor:
    """``sum_heads(output_projection(z, W_O), b_O)`` without the per-head outputs: z (..., n_head, d_head)
    times the stacked W_O (n_head, d_head, d_model), summed over heads in one matrix product. Multiplying
    the concatenated z by the full W_O is that same sum; used when no one asks for the heads' own outputs."""
    return torch.einsum("...he,hed->...d", z, W_O) + b_O


def linear(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """MLP projection x @ W + b (W_in: d_model -> d_mlp; W_out: d_mlp -> d_model)."""
    return x @ W + b


def gelu(x: Tensor) -> Tensor:
    """GPT-2's GELU, the tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def unembed(x: Tensor, W_U: Tensor) -> Tensor:
    """Logits: x @ W_U, with W_U = W_E^T (GPT-2 ties them and has no unembedding bias)."""
    return x @ W_U


def temperature(logits: Tensor, t: float) -> Tensor:
    """Sharpen (t < 1) or flatten (t > 1) the next-token distribution: logits / t."""
    return logits / t


def top_k(logits: Tensor, k: int | None) -> Tensor:
    """Logits outside the k largest set to -inf (every token tied with the k-th stays); None keeps all."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits: Tensor, p: float | None) -> Tensor:
    """Logits outside the nucleus set to -inf: tokens, most probable first, are kept while the probability
    mass before them is below ``p``. The most probable token always stays, and p = 1 (or None) keeps every
    token, so rounding in the cumulative sum cannot drop the tail."""
    if p is None or p >= 1:
        return logits
    probs = torch.softmax(logits, dim=-1)
    order = torch.sort(probs, dim=-1, descending=True, stable=True).indices
    sorted_probs = probs.gather(-1, order)
    drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= p
    drop_sorted[..., 0] = False
    return logits.masked_fill(torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted), float("-inf"))


def sample(probs: Tensor, seed: int | None) -> Tensor:
    """The next token id per distribution (..., n_vocab) -> (..., 1): the most probable (seed None), or one
    drawn with ``torch.Generator().manual_seed(seed)``, a fresh generator per distribution so that each
    position's draw does not depend on how many were drawn before it."""
    if seed is None:
        return probs.argmax(dim=-1, keepdim=True)
    rows = probs.reshape(-1, probs.shape[-1])
    drawn = [torch.multinomial(row, 1, generator=torch.Generator().manual_seed(seed)) for row in rows]
    return torch.stack(drawn).reshape(*probs.shape[:-1], 1)


#: operation kind -> implementation (the tokenizer op lives outside torch)
OPS: dict[str, Callable[..., Tensor]] = {
    "lookup": lookup,
    "add": add,
    "ln_scale": ln_scale,
    "ln_normalize": ln_normalize,
    "ln_affine": ln_affine,
    "head_projection": head_projection,
    "scaled_dot_product": scaled_dot_product,
    "softmax": softmax,
    "weighted_sum": weighted_sum,
    "output_projection": output_projection,
    "sum": sum_heads,
    "linear": linear,
    "gelu": gelu,
    "unembed": unembed,
    "temperature": temperature,
    "top_k": top_k,
    "top_p": top_p,
    "sample": sample,
}
