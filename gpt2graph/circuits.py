"""QK and OV circuits of every head, from the weights alone, kept in factored form.

A head's QK circuit W_Q^h W_K^h^T and OV circuit W_V^h W_O^h are d_model x d_model matrices of rank at most
d_head; through the embedding and unembedding they become n_vocab x n_vocab. Neither is ever formed here:

* singular values of A B (A: d_model x d_head, B: d_head x d_model) are those of R_A R_B^T for any d_head x
  d_head factors with R_A^T R_A = A^T A and R_B^T R_B = B B^T (A = Q_A R_A, B^T = Q_B R_B with Q_A, Q_B of
  orthonormal columns); R is the Cholesky factor of the small Gram matrix (two orders of magnitude cheaper
  than a QR factorisation of A), or, for a rank-deficient head, from its eigendecomposition;
* the non-zero eigenvalues of the full OV circuit (W_E W_V)(W_O W_U) are those of the d_head x d_head
  matrix (W_O W_U)(W_E W_V) = W_O (W_U W_E) W_V, and W_U W_E = W_E^T W_E is one d_model x d_model product
  shared by every head;
* the tokens a head boosts for one input token t need only the row W_E[t] W_V W_O W_U.

LayerNorm (``fold_ln=True``, the default): a LayerNorm is centring, division by a per-token scale, a gain
and a bias. Centring and the gain are linear and the same for every token, so they are folded into the
matrix read after them (ln1 before W_Q, W_K, W_V; ln_final before W_U), as TransformerLens's weight
processing does. The scale depends on the token and the biases are not part of a bilinear circuit, so both
are left out: the circuits stay properties of the weights. The scale is a positive factor per token, so it
does not change which tokens a head boosts for a given input token, only by how much.
``fold_ln=False`` uses the raw weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .results import Circuits, HeadCircuit, TokenScore
from .schema import ParamKind
from .targets import check_top_tokens, resolve_token

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["head_circuits", "factored_singular_values", "copying_scores", "head_factors"]

P = ParamKind


def factored_singular_values(A: Tensor, B: Tensor) -> Tensor:
    """Singular values of A @ B, largest first, for A (..., m, r) and B (..., r, m) with r << m: the square
    roots of the eigenvalues of M^T M for the r x r matrix M = R_A R_B^T."""
    M = _gram_root(A) @ _gram_root(B.transpose(-1, -2)).transpose(-1, -2)
    values: Tensor = torch.linalg.eigvalsh(M.transpose(-1, -2) @ M).clamp(min=0).sqrt().flip(-1)
    return values


def _gram_root(X: Tensor) -> Tensor:
    """An (..., r, r) R with R^T R = X^T X, for X (..., m, r): the transposed Cholesky factor of the Gram
    matrix, or diag(sqrt(eigenvalues)) V^T where that is singular."""
    gram = X.transpose(-1, -2) @ X
    L, info = torch.linalg.cholesky_ex(gram)
    root: Tensor = L.transpose(-1, -2)
    singular = info != 0
    if bool(singular.any()):  # a rank-deficient head (W_Q = 0, say): the eigendecomposition copes
        eigenvalues, V = torch.linalg.eigh(gram[singular])
        root[singular] = eigenvalues.clamp(min=0).sqrt()[..., :, None] * V.transpose(-1, -2)
    return root


def _centre_after_gain(W: Tensor, gain: Tensor) -> Tensor:
    """P diag(gain) W, with P = I - 11^T/d the centring projection: a LayerNorm's linear part folded into
    the matrix W (..., d_model, k) that reads its output."""
    M = gain[:, None] * W
    return M - M.mean(dim=-2, keepdim=True)


def head_factors(graph: Graph, layer: int, fold_ln: bool = True) -> dict[str, Tensor]:
    """W_Q, W_K, W_V (n_head, d_model, d_head) and W_O (n_head, d_head, d_model) of one layer, float64,
    with ln1 folded into the first three when ``fold_ln``."""
    out: dict[str, Tensor] = {kind: graph.store.stacked(kind, layer).double() for kind in (P.W_Q, P.W_K, P.W_V, P.W_O)}
    if fold_ln:
        gain = graph.param(P.ln1_w, layer).double()
        for kind in (P.W_Q, P.W_K, P.W_V):
            out[kind] = _centre_after_gain(out[kind], gain)
    return out


def copying_scores(W_V: Tensor, W_O: Tensor, unembed_embed: Tensor) -> Tensor:
    """Positive share of eigenvalue mass of W_E W_V W_O W_U per head, via W_O (W_U W_E) W_V (d_head^2).

    ``unembed_embed`` is W_U W_E (d_model x d_model, LayerNorm folded as the caller chose)."""
    eig = torch.linalg.eigvals(W_O @ unembed_embed @ W_V)
    mass = eig.abs()
    total = mass.sum(-1)
    positive = (mass * (eig.real > 0)).sum(-1)
    return torch.where(total > 0, positive / total.clamp(min=torch.finfo(total.dtype).tiny), 0.0)


def _readout(graph: Graph, x: Tensor, fold_ln: bool) -> Tensor:
    """x @ U for the unembedding U (= P diag(ln_final.w) W_U when folded), without forming U."""
    if fold_ln:
        x = (x - x.mean(-1, keepdim=True)) * graph.param(P.ln_final_w).double()
    return x.float() @ graph.param(P.W_U)


def head_circuits(
    graph: Graph, *, input_token: int | str | None = None, top_tokens: int = 5, fold_ln: bool = True
) -> Circuits:
    """QK/OV singular values, OV copying score and the tokens boosted for ``input_token`` (default: the
    prompt's last token), for every head.

    Example::

        circuits = head_circuits(graph, input_token=" Paris")
        max(circuits.heads, key=lambda h: h.ov_copying_score)   # the most copying head
    """
    check_top_tokens(top_tokens)
    t = graph.tokenization.token_ids[-1] if input_token is None else resolve_token(graph, input_token, "input token")
    W_E = graph.param(P.W_E)
    L, H = graph.dims.n_layer, graph.dims.n_head
    k = min(top_tokens, graph.dims.n_vocab)
    with torch.no_grad():
        gram = (W_E.T @ W_E).double()  # W_U W_E, since W_U = W_E^T
        unembed_embed = _centre_after_gain(gram, graph.param(P.ln_final_w).double()) if fold_ln else gram
        parts = []
        for layer in range(L):
            f = head_factors(graph, layer, fold_ln)
            parts.append(
                (
                    factored_singular_values(f[P.W_Q], f[P.W_K].transpose(-1, -2)),
                    factored_singular_values(f[P.W_V], f[P.W_O]),
                    copying_scores(f[P.W_V], f[P.W_O], unembed_embed),
                    ((W_E[t].double() @ f[P.W_V]).unsqueeze(-2) @ f[P.W_O]).squeeze(-2),  # what each head writes
                )
            )
        qk, ov, copying, written = (torch.cat(column) for column in zip(*parts))  # (n_layer * n_head, ...)
        boosted = torch.topk(_readout(graph, written, fold_ln), k, dim=-1)  # every head in one pass over W_U
    qk_values, ov_values, copying_values = qk.tolist(), ov.tolist(), copying.tolist()
    ids, values = boosted.indices.tolist(), boosted.values.tolist()
    heads = [
        HeadCircuit(
            layer=i // H,
            head=i % H,
            qk_singular_values=qk_values[i],
            ov_singular_values=ov_values[i],
            ov_copying_score=copying_values[i],
            boosted=[TokenScore(id=j, token=graph.decode_token(j), value=v) for j, v in zip(ids[i], values[i])],
        )
        for i in range(L * H)
    ]
    return Circuits(fold_ln=fold_ln, input_token_id=t, input_token=graph.decode_token(t), heads=heads)
