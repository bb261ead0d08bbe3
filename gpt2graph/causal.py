"""Typed results of causal experiments on a run: what a counterfactual run changed, activation and attribution
patching sweeps, and the circuit behind a prediction.

Like :mod:`gpt2graph.results` these pydantic models are what a graph stores and a saved graph carries
(strict, frozen, every field documented for the generated JSON Schema), and they import nothing from the rest
of the package, so the graph header's schema can include them without a cycle. Node ids are the graph's own.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import networkx

__all__ = [
    "Baseline",
    "InterventionRecord",
    "Counterfactual",
    "PatchKind",
    "PatchMetric",
    "PatchDirection",
    "PatchMethod",
    "AxisName",
    "Axis",
    "PatchSweep",
    "ComponentType",
    "HeadInput",
    "Component",
    "CircuitEdge",
    "Ablation",
    "Faithfulness",
    "PredictionCircuit",
]


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


_LAYER = Field(default=None, description="Block index (0-based); None outside the blocks.")
_HEAD = Field(default=None, description="Head index (0-based); None when not specific to one head.")


# ---- counterfactual runs -----------------------------------------------------------------------------------
class Baseline(StrEnum):
    """Where the value an intervention puts in a node comes from."""

    value = "value"  # a tensor given by the caller
    zero = "zero"  # zeros (zero ablation)
    mean = "mean"  # the mean over the positions of the run intervened on (mean ablation)
    graph = "graph"  # the same node in another run of the same model on as many tokens (patching)
    prompts = "prompts"  # a mean over a set of prompts (corpus statistics, or a set of graphs)


class InterventionRecord(_Result):
    """One node of a counterfactual run whose value was replaced. The value itself is stored with the run's
    values (``intervention/<index in the list>`` in values.safetensors), so the run can be re-executed."""

    node: str = Field(description="Id of the vector node replaced, e.g. blocks.1.attn.hook_result[4,0].")
    kind: str = Field(description="Its vector kind.")
    layer: int | None = _LAYER
    head: int | None = _HEAD
    position: int = Field(description="Its token position.", ge=0)
    baseline: Baseline = Field(description="Where the new value comes from.")
    source: str | None = Field(
        default=None,
        description="What the value was taken from: the other run (its model and prompt) for 'graph', the mean "
        "source for 'prompts'; None otherwise.",
    )
    norm_before: float = Field(description="L2 norm of the node's value in the run intervened on.", ge=0)
    norm_after: float = Field(description="L2 norm of the value put in its place.", ge=0)


class Counterfactual(_Result):
    """How a counterfactual run differs from the run it was made from: the same model, tokens and parameters,
    with some vectors replaced. Its values are computed by gpt2graph's forward executor with these
    interventions (every vector downstream of one sees it), not captured from the model."""

    base_created: str = Field(description="ISO 8601 time the run intervened on was captured (or computed).")
    base_values_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the saved values of the run intervened on, when it had been saved; else None.",
    )
    interventions: list[InterventionRecord] = Field(
        description="Every replaced node, in the order applied (a later one on the same node wins); "
        "a counterfactual of a counterfactual keeps the earlier ones first."
    )


# ---- patching ----------------------------------------------------------------------------------------------
class PatchKind(StrEnum):
    """Vectors a patching sweep replaces, one node (or one head at every position) at a time."""

    resid_pre = "resid_pre"  # the stream entering each block (the input embedding for block 0)
    attn_out = "attn_out"
    mlp_out = "mlp_out"
    head_out = "head_out"  # per head
    z = "z"  # per head
    attn_pattern = "attn_pattern"  # per head: the query's whole row


class PatchMetric(StrEnum):
    """What a patched run is scored by, at the last position."""

    logit_diff = "logit_diff"  # logit(answer) - logit(wrong)
    prob = "prob"  # softmax probability of the answer


class PatchDirection(StrEnum):
    """Which run receives the patched vector."""

    noising = "noising"  # the corrupted run's vector into the clean run: what breaks the prediction
    denoising = "denoising"  # the clean run's vector into the corrupted run: what restores it


class PatchMethod(StrEnum):
    """How a score was obtained."""

    activation = "activation"  # one patched forward pass per score
    attribution = "attribution"  # first-order (gradient) estimate of the same scores, all from one backward pass


class AxisName(StrEnum):
    """What the rows or columns of a patching table run over."""

    layer = "layer"
    head = "head"
    position = "position"


class Axis(_Result):
    """The rows or the columns of a patching table: each entry's label and its layer, head or position."""

    name: AxisName = Field(description="What the axis runs over (head: one entry per (layer, head)).")
    labels: list[str] = Field(description="One label per entry, e.g. '3', 'L3H5' or '4: Mary'.")
    layers: list[int] | None = Field(default=None, description="Layer of each entry; None when the axis has none.")
    heads: list[int] | None = Field(default=None, description="Head of each entry; None when the axis has none.")
    positions: list[int] | None = Field(
        default=None, description="Token position of each entry; None when the axis has none."
    )


class _Measured(_Result):
    """What an experiment between a clean and a corrupted run scores a run by, and the score of each of the two:
    the same for a patching sweep and for a circuit."""

    metric: PatchMetric = Field(description="The score of a run, at the last position.")
    answer_id: int = Field(description="Token whose logit (or probability) is scored.", ge=0)
    answer: str = Field(description="That token in BPE form.")
    wrong_id: int | None = Field(default=None, ge=0, description="Token subtracted for a logit difference.")
    wrong: str | None = Field(default=None, description="That token in BPE form.")
    position: int = Field(description="The position scored (the last).", ge=0)
    corrupted_text: str = Field(description="The corrupted run's prompt.")
    clean_value: float = Field(description="The metric on the clean run.")
    corrupted_value: float = Field(description="The metric on the corrupted run.")

    @property
    def metric_text(self) -> str:
        """What is measured, as a formula: ``logit(ĠMary) − logit(ĠJohn)``, or ``p(ĠMary)``."""
        if self.metric == PatchMetric.logit_diff:
            return f"logit({self.answer}) − logit({self.wrong})"
        return f"p({self.answer})"


class PatchSweep(_Measured):
    """Scores of patching one node (or one head) at a time between a clean and a corrupted run of the same
    model on as many tokens, as a table: layer x position, or for per-head kinds layer x head (the head patched
    at every chosen position at once) or head x position."""

    method: PatchMethod = Field(description="activation: measured; attribution: gradient estimate.")
    kind: PatchKind = Field(description="The vectors patched.")
    direction: PatchDirection = Field(description="Which run receives the patch.")
    per_position: bool = Field(description="Per-head kinds: one score per position instead of all positions at once.")
    corrupted_tokens: list[str] = Field(description="The corrupted run's tokens in BPE form.")
    rows: Axis = Field(description="The rows of the tables.")
    cols: Axis = Field(description="The columns of the tables.")
    raw: list[list[float]] = Field(description="The metric of each patched run (rows x cols).")
    normalized: list[list[float]] = Field(
        description="(raw - corrupted_value) / (clean_value - corrupted_value): 0 = corrupted, 1 = clean."
    )
    runs: int = Field(description="Patched forward passes computed (0 for attribution).", ge=0)

    def as_json(self) -> dict[str, Any]:
        """The object ``gpt2graph patch --json`` prints; scripts rely on exactly these keys."""
        keys = ("kind", "metric", "rows", "cols", "clean_value", "corrupted_value", "raw", "normalized")
        return self.model_dump(mode="json", include=set(keys))


# ---- circuits ----------------------------------------------------------------------------------------------
class ComponentType(StrEnum):
    """Components of a circuit: what writes into the residual stream, and what reads it."""

    embed = "embed"  # token plus positional embedding: writes only
    head = "head"  # one attention head: reads (q, k, v separately) and writes
    mlp = "mlp"  # one MLP: reads and writes
    logits = "logits"  # the unembedding (through ln_final): reads only


class HeadInput(StrEnum):
    """Which of a head's three inputs an edge feeds."""

    q = "q"
    k = "k"
    v = "v"


class Component(_Result):
    """One component of a circuit."""

    id: str = Field(description="'embed', 'L3H5' (head 5 of layer 3), 'MLP3' or 'logits'.")
    type: ComponentType = Field(description="What the component is.")
    layer: int | None = _LAYER
    head: int | None = _HEAD


class CircuitEdge(_Result):
    """One component's output read by a later one through the residual stream, with its score."""

    source: str = Field(description="Id of the writing component.")
    target: str = Field(description="Id of the reading component.")
    input: HeadInput | None = Field(default=None, description="The head input read (q, k or v); None otherwise.")
    score: float = Field(
        description="Edge attribution patching score: the estimated change of the metric when only this edge "
        "carries the ablated (corrupted or mean) value, (a_ablated - a_clean) . d metric / d input, summed "
        "over positions."
    )


class Ablation(StrEnum):
    """The value an edge outside the circuit carries."""

    corrupted = "corrupted"  # the sender's output in the corrupted run
    mean = "mean"  # the sender's output averaged over the positions of the clean run
    prompts = "prompts"  # the sender's output averaged over a set of prompts (a mean source)


class Faithfulness(_Result):
    """How much of the clean metric the circuit alone carries, measured by running the model with every edge
    outside the circuit ablated (not estimated)."""

    ablation: Ablation = Field(description="What the edges outside the circuit carry.")
    clean_value: float = Field(description="The metric with every edge clean (the clean run).")
    ablated_value: float = Field(description="The metric with every edge ablated.")
    circuit_value: float = Field(description="The metric with only the circuit's edges clean.")
    recovered: float = Field(
        description="(circuit_value - ablated_value) / (clean_value - ablated_value): 1 = the circuit carries "
        "the whole effect, 0 = none of it."
    )


class PredictionCircuit(_Measured):
    """The circuit behind a prediction: the edges between components that edge attribution patching scores
    highest among those leading to the logits (by the metric), pruned of those that cannot affect the metric,
    with their components and a measured faithfulness."""

    top: int | None = Field(default=None, ge=1, description="Edges selected by largest |score|; None: by threshold.")
    threshold: float | None = Field(default=None, ge=0, description="Edges with |score| >= threshold; None: by top.")
    n_scored: int = Field(description="Edges scored (every edge of the model).", ge=0)
    n_selected: int = Field(
        description="Edges selected before pruning: grown greedily from the logits, each the edge of largest |score| "
        "into a component already in the circuit, until at least top of them survive pruning (or every edge above the "
        "threshold that leads to the logits through such edges).",
        ge=0,
    )
    components: list[Component] = Field(description="Components touched by the circuit's edges, in forward order.")
    edges: list[CircuitEdge] = Field(
        description="The circuit's edges, largest |score| first. With corrupted ablation, selected edges that cannot "
        "affect the metric are pruned: those whose writer (other than the embedding) reads nothing through a "
        "circuit edge (its inputs are all corrupted, so its output is exactly the corrupted value), and then those "
        "that no longer lead to the logits."
    )
    faithfulness: Faithfulness = Field(description="Measured share of the clean metric the circuit recovers.")

    def to_networkx(self) -> networkx.DiGraph[str]:
        """A ``DiGraph`` of the components (attributes ``type``, ``layer``, ``head``); an edge into a head is
        drawn to a node of that head's input (``L3H5.q``), which leads to the head, so that q, k and v edges stay
        apart. Edge attributes: ``score`` and ``input``. Graph attributes: the metric and the faithfulness."""
        import networkx as nx

        g: networkx.DiGraph[str] = nx.DiGraph(
            metric=self.metric,
            answer=self.answer,
            wrong=self.wrong,
            corrupted_text=self.corrupted_text,
            faithfulness=self.faithfulness.model_dump(),
        )
        for c in self.components:
            g.add_node(c.id, type=c.type, layer=c.layer, head=c.head)
        for e in self.edges:
            target = e.target
            if e.input is not None:
                target = f"{e.target}.{e.input}"
                g.add_node(target, type="head_input", input=e.input, head_of=e.target)
                g.add_edge(target, e.target, score=None, input=e.input)
            g.add_edge(e.source, target, score=e.score, input=e.input)
        return g
