"""Activation patching sweeps, and attribution patching: their gradient estimate.

A sweep takes two runs of one model on as many tokens, a clean one and a corrupted one (a prompt changed where
it matters: " Mary" for " John"), and replaces one vector at a time in one run by its value in the other, scoring
each patched run at the last position by the logit difference answer - wrong, or the answer's probability.
``direction="noising"`` puts the corrupted run's vector into the clean run (which vectors does the prediction
need?), ``"denoising"`` the clean run's into the corrupted run (which vectors are enough to restore it?). Scores
are reported raw and normalised so that 0 is the corrupted run's metric and 1 the clean run's.

Patched runs are batched through the forward executor: a run patched at layer L starts at block L from the
receiving run's stored stream (nothing before it can change), joining a batch of runs patched at other layers,
each layer's vectors set with a single scatter; only the last position is unembedded, and batches are cut to a
bounded number of token rows.

Attribution patching (Nanda, https://www.neelnanda.io/mechanistic-interpretability/attribution-patching) is the
first-order estimate of every score at once: metric(receiving) + (donor - receiving) . d metric / d vector, with
the gradient taken in one forward and one backward pass of the receiving run; the donor's vectors are read from
its graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor

from . import forward, progress
from .causal import Axis, AxisName, PatchDirection, PatchKind, PatchMethod, PatchMetric, PatchSweep
from .errors import InterpretError
from .forward import Intervention, Site
from .runs import check_same_length, check_same_model
from .schema import VectorKind
from .targets import resolve_position, resolve_token
from .values import TOKENS

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "patch_sweep",
    "attribution_patch",
    "Setup",
    "setup",
    "receiving_edits",
    "metric_of",
    "stream_site",
    "ROWS_PER_BATCH",
]

V = VectorKind
#: token rows (runs x positions) one batch of patched runs holds: bounds the memory of a sweep whatever its size
ROWS_PER_BATCH = 4096
#: a StrEnum of the settings of an experiment
E = TypeVar("E", bound=StrEnum)
_PER_HEAD = {PatchKind.head_out, PatchKind.z, PatchKind.attn_pattern}


@dataclass(frozen=True)
class Setup:
    """A checked pair of runs and what to score them by."""

    clean: Graph
    corrupted: Graph
    metric: PatchMetric
    direction: PatchDirection
    answer: int
    wrong: int | None
    positions: list[int]
    clean_value: float
    corrupted_value: float

    @property
    def receiving(self) -> Graph:
        return self.clean if self.direction == PatchDirection.noising else self.corrupted

    @property
    def donor(self) -> Graph:
        return self.corrupted if self.direction == PatchDirection.noising else self.clean

    def score(self, logits: Tensor) -> Tensor:
        """The metric of next-token logits (..., n_vocab) at the last position."""
        return metric_of(self.metric, logits, self.answer, self.wrong)

    def normalize(self, raw: Tensor) -> Tensor:
        """0 = the corrupted run's metric, 1 = the clean run's."""
        return (raw - self.corrupted_value) / (self.clean_value - self.corrupted_value)


def metric_of(metric: PatchMetric | str, logits: Tensor, answer: int, wrong: int | None) -> Tensor:
    """logit(answer) - logit(wrong), or the answer's probability, of logits (..., n_vocab)."""
    if metric == PatchMetric.logit_diff:
        return logits[..., answer] - logits[..., wrong]
    return torch.softmax(logits.double(), dim=-1)[..., answer]


def _enum(enum: type[E], value: str, what: str) -> E:
    try:
        return enum(value)
    except ValueError:
        raise InterpretError(f"unknown {what} {value!r}; expected one of {', '.join(e.value for e in enum)}") from None


def setup(
    clean: Graph,
    corrupted: Graph | str | Sequence[int],
    *,
    answer: int | str,
    wrong: int | str | None,
    metric: PatchMetric | str,
    direction: PatchDirection | str,
    positions: Iterable[int] | None,
) -> Setup:
    """Check every argument of a patching experiment before any run (a prompt in place of the corrupted graph
    is run through the clean graph's model, found again from the graph)."""
    scored_by = _enum(PatchMetric, metric, "metric")
    way = _enum(PatchDirection, direction, "direction")
    from .graph import Graph

    if not isinstance(corrupted, Graph):
        from .builder import build_alike

        corrupted = build_alike(clean, corrupted)
    check_same_model(clean, corrupted, "the corrupted run")
    check_same_length(clean, corrupted, "the corrupted run")
    answer_id = resolve_token(clean, answer, "answer")
    if scored_by == PatchMetric.logit_diff:
        if wrong is None:
            raise InterpretError("the logit difference needs a wrong token (answer - wrong); or use metric='prob'")
        wrong_id = resolve_token(clean, wrong, "wrong token")
        if wrong_id == answer_id:
            raise InterpretError(f"answer and wrong token are the same token ({answer_id}): their difference is 0")
    elif wrong is not None:
        raise InterpretError("a wrong token is used only by the logit difference (metric='logit_diff')")
    else:
        wrong_id = None
    chosen = sorted({resolve_position(clean, p) for p in positions}) if positions is not None else None
    if chosen == []:
        raise InterpretError("positions is empty: give at least one position, or None for all")
    values = (float(metric_of(scored_by, g.logits[-1], answer_id, wrong_id)) for g in (clean, corrupted))
    s = Setup(clean, corrupted, scored_by, way, answer_id, wrong_id, chosen or list(range(clean.n_tokens)), *values)
    if abs(s.clean_value - s.corrupted_value) < 1e-12:
        raise InterpretError(
            f"the clean and corrupted runs score the same ({s.clean_value:.6g}), so a normalised score is undefined: "
            "choose prompts, or an answer and wrong token, that the two runs tell apart"
        )
    return s


def receiving_edits(graph: Graph) -> list[Intervention]:
    """The replacements a counterfactual run was made with, to re-apply in runs patched from it."""
    from .intervene import executor_interventions

    cf = graph.header.counterfactual
    return [] if cf is None else executor_interventions(cf.interventions, graph.store.interventions)


def stream_site(graph: Graph, layer: int) -> Site:
    """The site of the residual stream entering block ``layer`` (the input embedding for block 0)."""
    key = graph.topology.stream(layer, 0)
    return (key.kind, key.layer)


# ---- the cells of a table --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cell:
    row: int
    col: int
    layer: int
    head: int | None
    positions: tuple[int, ...]


#: a table's rows, its columns, and its cells
_Plan = tuple[Axis, Axis, list[_Cell]]


def _site(s: Setup, kind: PatchKind, layer: int) -> Site:
    return stream_site(s.clean, layer) if kind == PatchKind.resid_pre else (str(kind), layer)


def _position_axis(s: Setup) -> Axis:
    clean, corrupted = s.clean.tokenization.tokens_visible, s.corrupted.tokenization.tokens_visible
    labels = [f"{p} {clean[p]}" + (f" / {corrupted[p]}" if corrupted[p] != clean[p] else "") for p in s.positions]
    return Axis(name=AxisName.position, labels=labels, positions=s.positions)


def _plan(s: Setup, kind: PatchKind, per_position: bool) -> _Plan:
    """Rows, columns and the cells of the table (what each patched run replaces)."""
    n_layer, n_head = s.clean.dims.n_layer, s.clean.dims.n_head
    layers = list(range(n_layer))
    layer_axis = Axis(name=AxisName.layer, labels=[str(L) for L in layers], layers=layers)
    if kind not in _PER_HEAD:
        cells = [_Cell(L, c, L, None, (p,)) for L in layers for c, p in enumerate(s.positions)]
        return layer_axis, _position_axis(s), cells
    if not per_position:
        heads = list(range(n_head))
        head_axis = Axis(name=AxisName.head, labels=[f"H{h}" for h in heads], heads=heads)
        cells = [_Cell(L, h, L, h, tuple(s.positions)) for L in layers for h in heads]
        return layer_axis, head_axis, cells
    pairs = [(L, h) for L in layers for h in range(n_head)]
    rows = Axis(
        name=AxisName.head,
        labels=[f"L{L}H{h}" for L, h in pairs],
        layers=[L for L, _ in pairs],
        heads=[h for _, h in pairs],
    )
    cells = [_Cell(r, c, L, h, (p,)) for r, (L, h) in enumerate(pairs) for c, p in enumerate(s.positions)]
    return rows, _position_axis(s), cells


def _donor_values(s: Setup, kind: PatchKind, layer: int, cells: list[_Cell]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For a batch of cells of one layer: (run index, head, position) of every vector set, and the donor's
    vectors, one row each."""
    runs, heads, positions = [], [], []
    for i, c in enumerate(cells):
        runs += [i] * len(c.positions)
        heads += [c.head or 0] * len(c.positions)
        positions += list(c.positions)
    runs_t, heads_t, pos_t = (torch.tensor(x, dtype=torch.long) for x in (runs, heads, positions))
    whole = s.donor.hook(*_site(s, kind, layer))
    if kind == PatchKind.attn_pattern:  # (n_head, n, n): a query's whole row
        values = whole[heads_t, pos_t]
    elif kind in _PER_HEAD:  # (n, n_head, width)
        values = whole[pos_t, heads_t]
    else:
        values = whole[pos_t]
    return runs_t, heads_t, pos_t, values


def _table(rows: Axis, cols: Axis, cells: list[_Cell], scores: Sequence[float]) -> Tensor:
    table = torch.full((len(rows.labels), len(cols.labels)), float("nan"), dtype=torch.float64)
    for c, v in zip(cells, scores):
        table[c.row, c.col] = v
    return table


def _result(
    s: Setup, method: PatchMethod, kind: PatchKind, per_position: bool, plan: _Plan, raw: Tensor, runs: int
) -> PatchSweep:
    rows, cols, _ = plan
    return PatchSweep(
        method=method,
        kind=kind,
        metric=s.metric,
        direction=s.direction,
        answer_id=s.answer,
        answer=s.clean.decode_token(s.answer),
        wrong_id=s.wrong,
        wrong=None if s.wrong is None else s.clean.decode_token(s.wrong),
        position=s.clean.n_tokens - 1,
        per_position=per_position,
        corrupted_text=s.corrupted.tokenization.text,
        corrupted_tokens=list(s.corrupted.tokenization.tokens_visible),
        rows=rows,
        cols=cols,
        clean_value=s.clean_value,
        corrupted_value=s.corrupted_value,
        raw=raw.tolist(),
        normalized=s.normalize(raw).tolist(),
        runs=runs,
    )


def _patch_kind(kind: str) -> PatchKind:
    return _enum(PatchKind, kind, "patching kind")


# ---- activation patching -----------------------------------------------------------------------------------
def patch_sweep(
    clean: Graph,
    corrupted: Graph | str | Sequence[int],
    *,
    kind: str,
    answer: int | str,
    wrong: int | str | None = None,
    positions: Iterable[int] | None = None,
    direction: str = "noising",
    metric: str = "logit_diff",
    per_position: bool = False,
) -> PatchSweep:
    """Activation patching between ``clean`` and ``corrupted`` (a graph, or a prompt run through ``clean``'s
    model): patch one vector (or, for per-head kinds, one head at every chosen position) at a time, and score each
    patched run (see the module docstring). The sweep is stored on the clean run (``graph.header.patching``),
    replacing one of the same settings. ``Graph.patch_sweep`` is this function.

    ``kind``: resid_pre, attn_out, mlp_out (a layer x position table), head_out, z, attn_pattern (layer x head,
    or with ``per_position`` head x position). ``positions``: the positions patched (default all).

    Example::

        sweep = clean.patch_sweep(corrupted, kind="head_out", answer=" Mary", wrong=" John")
        sweep.normalized    # [layer][head]: 0 = as corrupted, 1 = as clean
    """
    kind = _patch_kind(kind)
    s = setup(clean, corrupted, answer=answer, wrong=wrong, metric=metric, direction=direction, positions=positions)
    plan = _plan(s, kind, per_position)
    cells = plan[2]
    receiving = s.receiving
    edits = receiving_edits(receiving)
    n, last = receiving.n_tokens, receiving.n_tokens - 1
    batch = max(1, ROWS_PER_BATCH // n)
    tokens = receiving.store.activations[TOKENS]
    streams = {L: receiving.hook(*stream_site(receiving, L)) for L in sorted({c.layer for c in cells})}
    scores: list[float] = []
    with progress.task(f"patching {kind}", total=len(cells), unit="run") as bar, torch.no_grad():
        for i in range(0, len(cells), batch):  # cells are in layer order: each run joins the batch at its layer
            chunk = cells[i : i + batch]
            patches, offset = [], 0
            for layer in dict.fromkeys(c.layer for c in chunk):
                group = [c for c in chunk if c.layer == layer]
                runs, heads, pos, values = _donor_values(s, kind, layer, group)
                site_kind, site_layer = _site(s, kind, layer)
                head = heads if kind in _PER_HEAD else None
                patches.append(Intervention(site_kind, site_layer, head, pos, value=values, run=runs + offset))
                offset += len(group)
            out = forward.run(
                receiving.store.stacked,
                receiving.dims,
                tokens.expand(len(chunk), n),
                interventions=[*edits, *patches],
                logits=[last],
                start=([c.layer for c in chunk], torch.stack([streams[c.layer] for c in chunk])),
            )
            assert out.logits is not None, "logits were asked for"
            scores += s.score(out.logits[:, 0]).tolist()
            bar.update(len(chunk))
    raw = _table(plan[0], plan[1], cells, scores)
    result = _result(s, PatchMethod.activation, kind, per_position, plan, raw, len(cells))
    _keep(clean, [result])
    return result


# ---- attribution patching ----------------------------------------------------------------------------------
def _gradient_sites(s: Setup, kinds: list[PatchKind]) -> list[Site]:
    return [_site(s, k, L) for k in kinds for L in range(s.clean.dims.n_layer)]


def _per_position_scores(kind: PatchKind, delta: Tensor, grad: Tensor) -> Tensor:
    """(donor - receiving) . gradient summed over each vector: (n,) per position, or (n, n_head) per head."""
    if kind == PatchKind.attn_pattern:  # (n_head, n, n) -> (n, n_head)
        return (delta * grad).sum(-1).transpose(0, 1)
    return (delta * grad).sum(-1)


def attribution_patch(
    clean: Graph,
    corrupted: Graph | str | Sequence[int],
    *,
    answer: int | str,
    wrong: int | str | None = None,
    kinds: Iterable[str] | None = None,
    positions: Iterable[int] | None = None,
    direction: str = "noising",
    metric: str = "logit_diff",
    per_position: bool = False,
) -> list[PatchSweep]:
    """Attribution patching: the gradient estimate of the activation patching sweep of every kind in ``kinds``
    (default: all six) at once, from one forward and one backward pass of the receiving run. Same tables as
    :func:`patch_sweep`, with ``method="attribution"``, stored on the clean run as its sweeps are.
    ``Graph.attribution_patch`` is this function.

    Example::

        estimates = clean.attribution_patch(corrupted, answer=" Mary", wrong=" John")
        {e.kind: e.normalized for e in estimates}
    """
    chosen = [_patch_kind(k) for k in kinds] if kinds is not None else list(PatchKind)
    if not chosen:
        raise InterpretError("kinds is empty: give at least one patching kind, or None for all")
    s = setup(clean, corrupted, answer=answer, wrong=wrong, metric=metric, direction=direction, positions=positions)
    receiving = s.receiving
    last = receiving.n_tokens - 1
    sites = _gradient_sites(s, chosen)
    with torch.enable_grad():
        out = forward.run(
            receiving.store.stacked,
            receiving.dims,
            receiving.store.activations[TOKENS],
            observe=sites,
            interventions=receiving_edits(receiving),
            logits=[last],
            grad=True,
        )
        assert out.logits is not None, "logits were asked for"
        value = s.score(out.logits[0, 0])
        grads = dict(zip(sites, torch.autograd.grad(value, [out[site] for site in sites], allow_unused=True)))
    base = float(s.score(receiving.logits[-1]))
    positions = torch.tensor(s.positions)
    results = []
    for kind in chosen:
        per_layer = []  # (n,) or, per head, (n, n_head) scores of each layer
        for L in range(receiving.dims.n_layer):
            site = _site(s, kind, L)
            mine = out[site][0].detach()
            grad = grads[site]
            grad = torch.zeros_like(mine) if grad is None else grad[0]
            per_layer.append(_per_position_scores(kind, s.donor.hook(*site) - mine, grad))
        chosen_positions = torch.stack(per_layer)[:, positions].double()  # (layers, positions[, heads])
        if kind not in _PER_HEAD:
            table = chosen_positions
        elif per_position:
            table = chosen_positions.permute(0, 2, 1).flatten(0, 1)  # (layer, head) rows, positions columns
        else:
            table = chosen_positions.sum(1)  # a head patched at every chosen position at once
        plan = _plan(s, kind, per_position)
        results.append(_result(s, PatchMethod.attribution, kind, per_position, plan, base + table, 0))
    _keep(clean, results)
    return results


def _keep(clean: Graph, results: list[PatchSweep]) -> None:
    """Store sweeps on the clean run, each replacing a stored one of the same settings."""
    fields = ("method", "kind", "metric", "direction", "answer_id", "wrong_id", "per_position", "corrupted_tokens")

    def settings(s: PatchSweep) -> tuple[Any, ...]:
        values = (*(getattr(s, f) for f in fields), s.cols.positions)
        return tuple(tuple(v) if isinstance(v, list) else v for v in values)

    new = {settings(r) for r in results}
    kept = [s for s in clean.header.patching if settings(s) not in new]
    clean._store(patching=[*kept, *results])
