"""Exactness: re-execute the graph from its inputs (token ids) and parameters with our own operations
(:mod:`gpt2graph.ops`, per head, no concatenation) and compare every vector with the captured run.

Two executions of the same ops:

* ``mode="vector"`` walks every operation node in topological order and applies it to its input vectors,
  exactly as the graph draws it. Python-heavy: meant for small graphs and for tests.
* ``mode="batched"`` (default) runs the forward executor (:mod:`gpt2graph.forward`), every head and position
  of a layer at once, observing every vector kind, so a 1024-token graph verifies in seconds. Both
  recompute from the inputs, never from captured values.

A counterfactual run (``graph.intervene``) was never captured from the model: its values come from the forward
executor with some vectors replaced. Its reference is therefore weaker, and the report says so
(``reference="counterfactual"``): both modes re-execute it from its tokens and parameters with the recorded
replacements, and every replaced node must hold exactly the value recorded for it (read through the graph's own
indexing, not the executor's), so a value stored at the wrong node, head or position fails. That the executor
equals the model without replacements is what verifying the run it was made from shows.

The decoding stage is not captured from the model: it is derived from the logits. Verification decodes the
re-executed logits with our ops and compares with Hugging Face's own decoding (its ``generate`` logits warpers)
of the captured ones, so the whole chain from token ids to the chosen next token is checked against the
libraries the model comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from . import forward, ops, progress
from .decoding import decode_step, decode_steps
from .schema import DecodingSettings, OpKind, VectorKind
from .topology import DECODE_KINDS, VECTOR_SPECS, Key
from .values import TOKENS

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["verify", "VerifyReport", "reference_decoding", "ATOL", "RTOL"]

V = VectorKind
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
    #: what the re-executed values are compared with: "model" (captured from it) or "counterfactual" (computed
    #: by the executor with recorded replacements; see the module docstring)
    reference: str = "model"

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

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "mode": self.mode,
            "reference": self.reference,
            "vectors": self.vectors,
            "atol": ATOL,
            "rtol": RTOL,
            "kinds": {
                k: {"max_abs": e.max_abs, "max_rel": e.max_rel, "vectors": e.vectors, "ok": e.ok}
                for k, e in self.kinds.items()
            },
        }

    def __repr__(self) -> str:
        worst = max(self.kinds, key=lambda k: self.kinds[k].max_abs, default=None)
        where = f" (at {worst})" if worst is not None else ""
        return (
            f"<VerifyReport {'PASS' if self.ok else 'FAIL'}: {self.vectors} vectors of {len(self.kinds)} kinds "
            f"re-executed ({self.mode}), max abs error {self.max_abs:.3g}{where}>"
        )

    def format(self) -> str:
        lines = [f"{'kind':<16}{'vectors':>9}{'max abs err':>14}{'max rel err':>14}  ok"]
        for k, e in self.kinds.items():
            lines.append(f"{k:<16}{e.vectors:>9}{e.max_abs:>14.3e}{e.max_rel:>14.3e}  {'yes' if e.ok else 'NO'}")
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(
            f"{verdict}: {self.vectors} vectors re-executed ({self.mode}); tolerance {ATOL:g} abs + "
            f"{RTOL:g} x max |value| per kind"
        )
        if self.reference == "counterfactual":
            lines.append(
                f"reference: a counterfactual run, re-executed with its recorded replacements ({_REPLACED} rows: each "
                "replaced node holds its recorded value); it has no model run of its own to compare with"
            )
        return "\n".join(lines)


def verify(graph: Graph, mode: str = "batched") -> VerifyReport:
    """Re-execute ``graph`` (the whole run) and compare with its captured values."""
    if mode == "batched":
        report = _verify_batched(graph)
    elif mode == "vector":
        report = _verify_vectors(graph)
    else:
        raise ValueError(f"unknown verify mode {mode!r}; expected 'batched' or 'vector'")
    replaced = _replaced(graph)
    if replaced:
        report.reference = "counterfactual"
        for key, value in replaced.items():
            report.record(_REPLACED, graph.vector_value(key), value, 1)
    return report


#: the report's row for the replaced nodes of a counterfactual run
_REPLACED = "replaced"


def _replaced(graph: Graph) -> dict[Key, Tensor]:
    """The value each replaced node of a counterfactual run must hold (the last replacement of a node wins)."""
    cf = graph.header.counterfactual
    if cf is None:
        return {}
    return {Key(r.kind, r.layer, r.head, r.position): v for r, v in zip(cf.interventions, graph.store.interventions)}


def _interventions(graph: Graph) -> list[forward.Intervention]:
    from .intervene import executor_interventions

    cf = graph.header.counterfactual
    return [] if cf is None else executor_interventions(cf.interventions, graph.store.interventions)


def _verify_vectors(graph: Graph) -> VerifyReport:
    """Apply every operation node to its own input vectors, in topological order."""
    store, top = graph.store, graph.topology
    eps = graph.dims.layer_norm_eps
    report = VerifyReport("vector")
    replaced = _replaced(graph)
    computed: dict[Key, Tensor] = {}
    references: dict[int, dict[str, Tensor]] = {}  # Hugging Face's decoding of the captured logits, per position
    tokens = store.activations[TOKENS]
    for key in top.vector_keys():
        p = key.position
        assert p is not None, "a vector key has a position"
        if key.kind == V.token:
            computed[key] = tokens[p : p + 1]
            continue
        in_keys, param_keys = top.op_inputs(key)
        xs = [computed[k] for k in in_keys]
        ws = [store.param(k) for k in param_keys]
        if key.kind in DECODE_KINDS:
            computed[key] = out = decode_step(key.kind, xs[0], graph.decoding)
            if p not in references:
                references[p] = reference_decoding(store.logits()[p], graph.decoding)
            report.record(key.kind, out, references[p][key.kind], 1)
            continue
        computed[key] = out = replaced.get(key, _apply(VECTOR_SPECS[key.kind].op, key, xs, ws, eps))
        report.record(key.kind, out, graph.vector_value(key), 1)
    return report


def _apply(op: str, key: Key, xs: list[Tensor], ws: list[Tensor], eps: float) -> Tensor:
    """Apply one operation node to its inputs, in the argument order of ``Topology.op_inputs``."""
    if op == OpKind.lookup:
        index = xs[0][0] if xs else key.position  # token id, or the position for W_pos
        assert index is not None
        return ops.lookup(ws[0], index)
    if op == OpKind.ln_scale:
        return ops.ln_scale(xs[0], eps)
    if op == OpKind.scaled_dot_product:
        return ops.scaled_dot_product(xs[0], torch.stack(xs[1:]))
    if op == OpKind.weighted_sum:
        return ops.weighted_sum(xs[0], torch.stack(xs[1:]))
    if op == OpKind.sum:
        return ops.sum_heads(torch.stack(xs), *ws)
    return ops.OPS[op](*xs, *ws)


def _verify_batched(graph: Graph) -> VerifyReport:
    """The forward executor (all heads and positions of a layer at once), observing every site."""
    store, n = graph.store, graph.n_tokens
    report = VerifyReport("batched")
    edits = _interventions(graph)
    chunks = range(0, n, _DECODE_ROWS)
    with progress.task("verify", total=3 + len(chunks), unit="step") as bar:
        bar.describe("verify: re-executing every vector")
        with torch.no_grad():
            result = forward.run(
                store.stacked, graph.dims, store.activations[TOKENS], observe=True, interventions=edits
            )
        bar.update()
        bar.describe("verify: comparing")
        for (kind, layer), value in result.observed.items():
            captured = graph.hook(kind, layer)
            vectors = n * (graph.dims.n_head if VECTOR_SPECS[kind].per_head else 1)
            report.record(kind, value[0], captured, vectors)
        bar.update()
        assert result.logits is not None
        logits = result.logits[0]
        bar.describe("verify: the fused path")
        with torch.no_grad():  # the fused paths (attention kernel, one product for attn_out) that patching runs take
            fused_logits = forward.run(store.stacked, graph.dims, store.activations[TOKENS], interventions=edits).logits
        assert fused_logits is not None
        report.record(V.logits, fused_logits[0], graph.hook(V.logits), 0)  # the same vectors, by the other path
        bar.update()
        bar.describe("verify: decoding")
        for start in chunks:  # (rows, n_vocab) float64 per step: a chunk at a time
            rows = slice(start, start + _DECODE_ROWS)
            mine = decode_steps(logits[rows], graph.decoding)
            theirs = reference_decoding(store.logits()[rows], graph.decoding)
            for kind in DECODE_KINDS:
                report.record(kind, mine[kind], theirs[kind], mine[kind].shape[0])
            bar.update()
    return report


def reference_decoding(logits: Tensor, decoding: DecodingSettings) -> dict[str, Tensor]:
    """The decoding stage as Hugging Face's ``generate`` computes it, with its own logits warpers (float64):
    the independent reference the graph's decoding nodes are checked against, as the model's activations are
    the reference of the other nodes."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    shape = logits.shape
    x = logits.double().reshape(-1, shape[-1])  # the warpers take (batch, n_vocab)
    out = {V.scaled_logits: TemperatureLogitsWarper(decoding.temperature)(None, x.clone())}
    k, p = decoding.top_k, decoding.top_p
    out[V.top_k_logits] = TopKLogitsWarper(k)(None, out[V.scaled_logits].clone()) if k else out[V.scaled_logits]
    out[V.top_p_logits] = TopPLogitsWarper(p)(None, out[V.top_k_logits].clone()) if p else out[V.top_k_logits]
    out[V.probs] = probs = torch.nn.functional.softmax(out[V.top_p_logits], dim=-1)
    if decoding.seed is None:
        out[V.next_token] = probs.argmax(dim=-1, keepdim=True)
    else:  # one fresh generator per distribution, seeded alike (the graph's sampling rule)
        drawn = [torch.multinomial(r, 1, generator=torch.Generator().manual_seed(decoding.seed)) for r in probs]
        out[V.next_token] = torch.stack(drawn)
    return {kind: t.reshape(*shape[:-1], t.shape[-1]) for kind, t in out.items()}
