"""Exactness: re-execute the graph from its inputs (token ids) and parameters with our own operations
(:mod:`gpt2graph.ops`, per head, no concatenation) and compare every vector with the captured run.

Two executions of the same ops:

* ``mode="vector"`` walks every operation node in topological order and applies it to its input vectors,
  exactly as the graph draws it. Python-heavy: meant for small graphs and for tests.
* ``mode="batched"`` (default) applies each op to all positions of a layer at once (heads still one by one),
  so a 1024-token graph verifies in seconds. Both recompute from the inputs, never from captured values.

The decoding stage is not captured from the model: it is derived from the logits. Verification decodes the
re-executed logits and compares with the decoding of the captured ones, so the whole chain from token ids
to the chosen next token is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import ops
from .decoding import decode_step, decode_steps
from .schema import OpKind, ParamKind, VectorKind
from .topology import DECODE_KINDS, VECTOR_SPECS, Key

__all__ = ["verify", "VerifyReport", "ATOL", "RTOL"]

V, P = VectorKind, ParamKind
#: absolute tolerance (fp32, GPT-2 124M); plus RTOL times the largest magnitude of the kind, for trained
#: weights whose logits reach tens
ATOL, RTOL = 1e-4, 1e-5
#: positions decoded at once when verifying the decoding stage
_DECODE_ROWS = 64


@dataclass
class KindError:
    max_abs: float = 0.0
    max_ref: float = 0.0  # largest |captured| component seen, to judge relative error
    vectors: int = 0

    def add(self, recomputed: Tensor, captured: Tensor, vectors: int) -> None:
        finite = torch.isfinite(captured)
        diff = (recomputed.double() - captured.double()).abs().masked_fill(~finite, 0)
        mismatch = finite != torch.isfinite(recomputed)  # a masked entry that should not be, or vice versa
        self.max_abs = max(self.max_abs, float("inf") if bool(mismatch.any()) else float(diff.max()))
        self.max_ref = max(self.max_ref, float(captured.double().abs().masked_fill(~finite, 0).max()))
        self.vectors += vectors

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.max_ref if self.max_ref else self.max_abs

    @property
    def ok(self) -> bool:
        return self.max_abs <= ATOL + RTOL * self.max_ref


@dataclass
class VerifyReport:
    """Max abs error per vector kind between re-execution and the captured run."""

    mode: str
    kinds: dict[str, KindError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.kinds.values())

    @property
    def max_abs(self) -> float:
        return max((e.max_abs for e in self.kinds.values()), default=0.0)

    @property
    def vectors(self) -> int:
        return sum(e.vectors for e in self.kinds.values())

    def record(self, kind: str, recomputed: Tensor, captured: Tensor, vectors: int) -> None:
        self.kinds.setdefault(str(kind), KindError()).add(recomputed, captured, vectors)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "mode": self.mode,
            "vectors": self.vectors,
            "atol": ATOL,
            "rtol": RTOL,
            "kinds": {
                k: {"max_abs": e.max_abs, "max_rel": e.max_rel, "vectors": e.vectors, "ok": e.ok}
                for k, e in self.kinds.items()
            },
        }

    def format(self) -> str:
        lines = [f"{'kind':<16}{'vectors':>9}{'max abs err':>14}{'max rel err':>14}  ok"]
        for k, e in self.kinds.items():
            lines.append(f"{k:<16}{e.vectors:>9}{e.max_abs:>14.3e}{e.max_rel:>14.3e}  {'yes' if e.ok else 'NO'}")
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(
            f"{verdict}: {self.vectors} vectors re-executed ({self.mode}); tolerance {ATOL:g} abs + "
            f"{RTOL:g} x max |value| per kind"
        )
        return "\n".join(lines)


def verify(graph, mode: str = "batched") -> VerifyReport:
    """Re-execute ``graph`` (the whole run) and compare with its captured values."""
    if mode == "batched":
        return _verify_batched(graph)
    if mode == "vector":
        return _verify_vectors(graph)
    raise ValueError(f"unknown verify mode {mode!r}; expected 'batched' or 'vector'")


def _verify_vectors(graph) -> VerifyReport:
    """Apply every operation node to its own input vectors, in topological order."""
    store, top = graph.store, graph.topology
    eps = graph.dims.layer_norm_eps
    report = VerifyReport("vector")
    computed: dict[Key, Tensor] = {}
    tokens = store.activations["tokens"]
    for key in top.vector_keys():
        if key.kind == V.token:
            computed[key] = tokens[key.position : key.position + 1]
            continue
        in_keys, param_keys = top.op_inputs(key)
        xs = [computed[k] for k in in_keys]
        ws = [store.param(k) for k in param_keys]
        if key.kind in DECODE_KINDS:
            computed[key] = out = decode_step(key.kind, xs[0], graph.decoding)
        else:
            computed[key] = out = _apply(VECTOR_SPECS[key.kind].op, key, xs, ws, eps)
        report.record(key.kind, out, graph.vector_value(key), 1)
    return report


def _apply(op: str, key: Key, xs: list[Tensor], ws: list[Tensor], eps: float) -> Tensor:
    """Apply one operation node to its inputs, in the argument order of ``Topology.op_inputs``."""
    if op == OpKind.lookup:
        index = xs[0][0] if xs else key.position  # token id, or the position for W_pos
        return ops.lookup(ws[0], index)
    if op == OpKind.layernorm:
        return ops.layernorm(xs[0], *ws, eps)
    if op == OpKind.scaled_dot_product:
        return ops.scaled_dot_product(xs[0], torch.stack(xs[1:]))
    if op == OpKind.weighted_sum:
        return ops.weighted_sum(xs[0], torch.stack(xs[1:]))
    if op == OpKind.sum:
        return ops.sum_heads(torch.stack(xs), *ws)
    return ops.OPS[op](*xs, *ws)


def _verify_batched(graph) -> VerifyReport:
    """Same ops, applied to all positions of a layer at once; heads one by one."""
    store, dims = graph.store, graph.dims
    eps, H = dims.layer_norm_eps, dims.n_head
    report = VerifyReport("batched")
    n = graph.n_tokens

    def param(kind, layer=None, head=None):
        return store.param(Key(kind, layer, head))

    def check(kind, layer, value):
        report.record(kind, value, store.hook(kind, layer), value.shape[0] * (value.shape[1] if value.ndim == 3 else 1))

    tokens = store.activations["tokens"]
    emb = ops.lookup(param(P.W_E), tokens)
    pos = ops.lookup(param(P.W_pos), torch.arange(n))
    check(V.token_embedding, None, emb)
    check(V.pos_embedding, None, pos)
    x = ops.add(emb, pos)
    check(V.input_embedding, None, x)
    for L in range(dims.n_layer):
        if L:
            check(V.resid_pre, L, x)
        ln1 = ops.layernorm(x, param(P.ln1_w, L), param(P.ln1_b, L), eps)
        check(V.ln1, L, ln1)
        per_head: dict[str, list[Tensor]] = {k: [] for k in (V.q, V.k, V.v, V.z, V.head_out)}
        for h in range(H):
            q, k, v = (
                ops.head_projection(ln1, param(w, L, h), param(b, L, h))
                for w, b in ((P.W_Q, P.b_Q), (P.W_K, P.b_K), (P.W_V, P.b_V))
            )
            scores = ops.causal_scores(q, k)
            pattern = ops.softmax(scores)
            report.record(V.attn_scores, scores, store.head_matrix(V.attn_scores, L, h), n)
            report.record(V.attn_pattern, pattern, store.head_matrix(V.attn_pattern, L, h), n)
            z = ops.weighted_sum(pattern, v)
            head_out = ops.output_projection(z, param(P.W_O, L, h))
            for kind, t in ((V.q, q), (V.k, k), (V.v, v), (V.z, z), (V.head_out, head_out)):
                per_head[kind].append(t)
        for kind, ts in per_head.items():
            check(kind, L, torch.stack(ts, dim=1))
        attn_out = ops.sum_heads(torch.stack(per_head[V.head_out], dim=-2), param(P.b_O, L))
        check(V.attn_out, L, attn_out)
        x = ops.add(x, attn_out)
        check(V.resid_mid, L, x)
        ln2 = ops.layernorm(x, param(P.ln2_w, L), param(P.ln2_b, L), eps)
        check(V.ln2, L, ln2)
        pre = ops.linear(ln2, param(P.W_in, L), param(P.b_in, L))
        check(V.mlp_pre, L, pre)
        post = ops.gelu(pre)
        check(V.mlp_post, L, post)
        mlp_out = ops.linear(post, param(P.W_out, L), param(P.b_out, L))
        check(V.mlp_out, L, mlp_out)
        x = ops.add(x, mlp_out)
    check(V.resid_post, dims.n_layer - 1, x)
    ln_final = ops.layernorm(x, param(P.ln_final_w), param(P.ln_final_b), eps)
    check(V.ln_final, None, ln_final)
    logits = ops.unembed(ln_final, param(P.W_U))
    check(V.logits, None, logits)
    for start in range(0, n, _DECODE_ROWS):  # (rows, n_vocab) float64 per step: a chunk at a time
        rows = slice(start, start + _DECODE_ROWS)
        mine, theirs = decode_steps(logits[rows], graph.decoding), decode_steps(store.logits()[rows], graph.decoding)
        for kind in DECODE_KINDS:
            report.record(kind, mine[kind], theirs[kind], mine[kind].shape[0])
    return report
