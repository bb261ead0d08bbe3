"""The patching tab: the current step (the clean run) against a second prompt (the corrupted run, as many tokens),
by the core's experiments: activation patching sweeps (one patched run per cell) or their gradient estimate
(attribution patching), and the circuit behind the prediction (edge attribution patching, measured
faithfulness). The results are stored on the step's graph, as ``graph.patch_sweep`` and ``graph.circuit`` store
them: the sweeps are drawn here as heat maps, the circuit on the explorer's canvas.

Models the tests look up by name: ``corrupted``, ``patch-answer``, ``patch-wrong``, ``patch-kinds``,
``patch-method``, ``patch-direction``, ``patch-metric``, ``circuit-edges-count``, ``patch`` (the button),
``patching-result`` (the summary Div) and, from the explorer's drawing, ``patching-<i>`` (heat maps).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    CheckboxGroup,
    RadioButtonGroup,
    Spinner,
    TextAreaInput,
    TextInput,
)
from bokeh.models.layouts import LayoutDOM

from gpt2graph.plugin import PatchDirection, PatchKind, PatchMetric, PatchSweep, PredictionCircuit, percent, signed

from ..causal import patching_panel
from ..sanitize import escape
from .markup import message_html, text_div
from .session import Report

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["Experiment", "Outcome", "PatchingControls", "run_experiment"]

#: the sweeps the tab offers, in the order of the forward pass (z and attention rows: the library's API)
KINDS = (PatchKind.resid_pre, PatchKind.attn_out, PatchKind.mlp_out, PatchKind.head_out)
METHODS: tuple[Literal["activation", "attribution"], ...] = ("activation", "attribution")


@dataclass(frozen=True)
class Experiment:
    """What the tab asks for: the corrupted prompt and the settings of the sweeps and the circuit."""

    corrupted: str
    answer: str | None  # one token's text; None: the clean run's prediction
    wrong: str | None  # one token's text; None: the corrupted run's prediction (logit difference only)
    kinds: tuple[PatchKind, ...]
    method: Literal["activation", "attribution"]  # one patched run per cell, or their gradient estimate
    direction: PatchDirection
    metric: PatchMetric
    circuit_edges: int  # 0: no circuit


@dataclass(frozen=True)
class Outcome:
    """What an experiment found, as the tab shows it (the graph stores it too)."""

    experiment: Experiment
    sweeps: list[PatchSweep]
    circuit: PredictionCircuit | None


def _predicted(graph: Graph) -> int:
    return int(graph.logits[-1].argmax())


def run_experiment(
    clean: Graph, corrupted: Graph, experiment: Experiment, report: Report = lambda _what, _share: None
) -> Outcome:
    """Run the sweeps and the circuit of ``experiment`` on ``clean`` against ``corrupted`` (both built already;
    blocks: one patched run per cell for activation patching). A setting the core refuses (a token that is not
    one token, runs of different lengths, a metric that cannot tell the runs apart) raises its error."""
    e = experiment
    answer: int | str = e.answer if e.answer else _predicted(clean)
    wrong: int | str | None = None
    if e.metric == PatchMetric.logit_diff:
        wrong = e.wrong if e.wrong else _predicted(corrupted)
    common = dict(answer=answer, wrong=wrong, direction=e.direction, metric=e.metric)
    sweeps: list[PatchSweep] = []
    if e.method == "attribution" and e.kinds:
        report("attribution patching: one forward and one backward pass", 0.2)
        sweeps = clean.attribution_patch(corrupted, kinds=e.kinds, **common)
    else:
        for i, kind in enumerate(e.kinds):
            report(f"patching {kind}: one patched run per cell", 0.1 + 0.6 * i / len(e.kinds))
            sweeps.append(clean.patch_sweep(corrupted, kind=kind, **common))
    circuit = None
    if e.circuit_edges > 0:
        report(f"finding the circuit: the top {e.circuit_edges} edges, then their faithfulness", 0.75)
        circuit = clean.circuit(corrupted, answer=answer, wrong=wrong, top=e.circuit_edges, metric=e.metric)
    return Outcome(e, sweeps, circuit)


class PatchingControls:
    """The tab's widgets, what they ask for, and where its results are shown."""

    def __init__(self) -> None:
        self.corrupted = TextAreaInput(
            title="corrupted prompt (as many tokens as the current step; e.g. a name swapped)",
            rows=2,
            width=820,
            name="corrupted",
            placeholder="When Mary and John went to the store, Mary gave a drink to",
        )
        self.answer = TextInput(title="answer token (empty: the clean run's prediction)", width=300)
        self.wrong = TextInput(title="wrong token (empty: the corrupted run's prediction)", width=300)
        self.answer.name, self.wrong.name = "patch-answer", "patch-wrong"
        self.kinds = CheckboxGroup(labels=[str(k) for k in KINDS], active=[0, 3], inline=True, name="patch-kinds")
        methods = ["activation patching (exact)", "attribution patching (estimate)"]
        self.method = RadioButtonGroup(labels=methods, active=0, name="patch-method")
        self.direction = RadioButtonGroup(labels=[str(d) for d in PatchDirection], active=0, name="patch-direction")
        self.metric = RadioButtonGroup(labels=[str(m) for m in PatchMetric], active=0, name="patch-metric")
        self.circuit_edges = Spinner(title="circuit: top edges (0: none)", low=0, high=500, step=5, value=20)
        self.circuit_edges.update(width=200, name="circuit-edges-count")
        self.button = Button(label="Patch", button_type="primary", name="patch", width=120, disabled=True)
        self.result = text_div(
            "patching-result",
            message_html(
                "Run a prompt, then give a corrupted prompt of as many tokens: patching replaces the run's vectors "
                "one at a time by the corrupted run's and measures what the prediction needs."
            ),
            width=1200,
        )
        self.no_heat_maps = text_div("patching-none")  # a layout is never empty (Bokeh warns of one)
        self.heat_maps = column(self.no_heat_maps, name="patching-heat-maps")
        self._typed: dict[str, str] = {}  # the texts as typed (a text field's value follows only when it is left)
        for field in (self.corrupted, self.answer, self.wrong):
            for what in ("value", "value_input"):
                field.on_change(what, partial(self._on_typing, field.name))

    def _on_typing(self, name: str, _attr: str, _old: str, new: str) -> None:
        self._typed[name] = new

    def layout(self) -> LayoutDOM:
        settings = column(
            self.kinds,
            row(self.method, self.direction, self.metric),
        )
        return column(
            row(self.corrupted, self.button),
            row(self.answer, self.wrong, self.circuit_edges),
            settings,
            self.result,
            self.heat_maps,
        )

    def experiment(self) -> Experiment:
        """The settings as they are now (the texts as typed: a token keeps its leading space)."""
        typed = self._typed
        return Experiment(
            corrupted=typed.get("corrupted", ""),
            answer=typed.get("patch-answer") or None,
            wrong=typed.get("patch-wrong") or None,
            kinds=tuple(KINDS[i] for i in sorted(self.kinds.active)),
            method=METHODS[self.method.active],
            direction=list(PatchDirection)[self.direction.active],
            metric=list(PatchMetric)[self.metric.active],
            circuit_edges=int(self.circuit_edges.value or 0),
        )

    def show(self, outcome: Outcome | None) -> None:
        """Show an experiment's results (None: the step has none yet)."""
        if outcome is None:
            self.result.text = message_html("No patching experiment on this step yet.")
            self.heat_maps.children = [self.no_heat_maps]
            return
        self.result.text = summary_html(outcome)
        self.heat_maps.children = [patching_panel(i, s) for i, s in enumerate(outcome.sweeps)] or [self.no_heat_maps]


def summary_html(outcome: Outcome) -> str:
    """What the experiment measured, in words: the metric on both runs, the sweeps, the circuit's faithfulness."""
    e, c = outcome.experiment, outcome.circuit
    measured = outcome.sweeps[0] if outcome.sweeps else c
    if measured is None:
        return message_html("Nothing was asked for: choose a sweep or a number of circuit edges.")
    parts = [
        f"<p>{escape(measured.metric_text)}: clean {escape(signed(measured.clean_value))}, corrupted "
        f"{escape(signed(measured.corrupted_value))} (<span class='g2g-prompt'>{escape(e.corrupted)}</span>).</p>"
    ]
    if outcome.sweeps:
        n = len(outcome.sweeps)
        parts.append(
            f"<p>{n} sweep{'s' if n != 1 else ''} by {escape(e.method)} patching, {escape(str(e.direction))}: in "
            "each heat map 0 is the corrupted run and 1 the clean run.</p>"
        )
    if c is not None:
        f = c.faithfulness
        parts.append(
            f"<p><b>Circuit</b>: {len(c.edges)} edges recover {escape(percent(f.recovered))} of the clean metric "
            f"(every edge ablated {escape(signed(f.ablated_value))}, the circuit alone "
            f"{escape(signed(f.circuit_value))}). It is drawn on the explorer's canvas (first tab): click an edge "
            "there for its score.</p>"
        )
    return "".join(parts)
