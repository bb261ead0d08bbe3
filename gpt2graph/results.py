"""Typed results of the interpretability computations: logit lens, direct logit attribution, head roles,
circuits and decoding, bundled as :class:`Analysis`.

These pydantic models are what a graph stores and a saved graph carries, so they are strict
(``extra="forbid"``), frozen, and every field is documented for the generated JSON Schema. They import
nothing from the rest of the package but its errors, so the graph header's schema can include them without
a cycle.
Node ids in these results are the graph's own ids (``blocks.3.attn.hook_result[7,5]``, ``blocks.3.attn.b_O``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TokenProb",
    "TokenScore",
    "LensKind",
    "LensEntry",
    "LogitLens",
    "ComponentKind",
    "Attribution",
    "DLAResult",
    "Role",
    "HeadRole",
    "HeadRoles",
    "HeadCircuit",
    "Circuits",
    "DecodingStepKind",
    "DecodingStep",
    "DecodingResult",
    "AnalysisOptions",
    "Analysis",
]


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)

    def __repr__(self) -> str:
        return _summary(self, depth=0)

    __str__ = __repr__


def _summary(value: Any, depth: int) -> str:
    """A short repr: a result's scalar fields, its nested results one level down (deeper ones as ``Name(...)``),
    lists longer than three as their length and item type, long strings cut."""
    if isinstance(value, BaseModel):
        if depth >= 2:
            return f"{type(value).__name__}(...)"
        fields = ", ".join(f"{k}={_summary(v, depth + 1)}" for k, v in value if v is not None)
        return f"{type(value).__name__}({fields})"
    if isinstance(value, list):
        if len(value) > 3:
            return f"[{len(value)} x {type(value[0]).__name__}]"
        return "[" + ", ".join(_summary(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_summary(v, depth + 1)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and len(value) > 40:
        return repr(value[:37] + "...")
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


_LAYER = Field(default=None, description="Block index (0-based); None outside the blocks.")
_HEAD = Field(default=None, description="Head index (0-based); None when not specific to one head.")


class TokenProb(_Result):
    """One vocabulary entry with its probability and logit in some distribution."""

    id: int = Field(description="Token id.", ge=0)
    token: str = Field(description="The token in BPE form (a leading space shown as Ġ).")
    prob: float = Field(description="Probability in this distribution.", ge=0, le=1)
    logit: float = Field(description="Logit (unnormalised log-probability) in this distribution.")


class TokenScore(_Result):
    """One vocabulary entry with a score that is not a probability (e.g. a direct effect on its logit)."""

    id: int = Field(description="Token id.", ge=0)
    token: str = Field(description="The token in BPE form (a leading space shown as Ġ).")
    value: float = Field(description="The score.")


# ---- logit lens ----------------------------------------------------------------------------------------
class LensKind(StrEnum):
    """Vectors the logit lens reads: the residual stream, and what each component writes into it."""

    input_embedding = "input_embedding"
    resid_pre = "resid_pre"
    resid_mid = "resid_mid"
    resid_post = "resid_post"
    head_out = "head_out"
    b_O = "b_O"
    mlp_out = "mlp_out"


class LensEntry(_Result):
    """The logit lens of one vector: ``softmax(ln_final(x) @ W_U)``, with the final LayerNorm applied to the
    vector itself (for a component's output too, which is read as if it were the whole stream)."""

    node: str = Field(description="Id of the vector node (or of the b_O parameter node) read.")
    kind: LensKind = Field(description="What the vector is.")
    top: list[TokenProb] = Field(description="The most probable tokens under the lens, most probable first.")
    next_token_rank: int | None = Field(
        default=None,
        ge=1,
        description="Rank (1 = most probable) of the token "
        "that actually follows this position in the prompt; None at the last "
        "position and for position-independent vectors (b_O).",
    )
    next_token_prob: float | None = Field(default=None, ge=0, le=1, description="Its probability under the lens.")
    target_rank: int | None = Field(
        default=None,
        ge=1,
        description="Rank (1 = most probable) of the user's target token; None when no target was chosen.",
    )
    target_prob: float | None = Field(default=None, ge=0, le=1, description="Its probability under the lens.")


class LogitLens(_Result):
    """Logit lens of every residual-stream vector and every vector written into the stream: what was read.

    The per-vector results are arrays (top token ids, logits and probabilities, ranks) kept with the run,
    not in this header: read them through ``graph.lens`` (:class:`gpt2graph.lens.LensTable`), e.g.
    ``graph.lens.entry(node_id)``. The kinds in ``stored_kinds`` are computed with the analysis and saved in
    ``values.safetensors``; the others are computed from the run when first read.
    """

    top_tokens: int = Field(description="Number of top tokens kept per vector.", ge=1)
    target: int | None = Field(
        default=None,
        description="Token id whose rank and probability every entry reports; None when no target was chosen.",
    )
    kinds: list[LensKind] = Field(
        description="Kinds of vector read. The entries are in forward order (per layer: "
        "the stream entering it, head outputs (position-major), b_O, the stream between "
        "attention and MLP, MLP outputs; finally the stream leaving the last block)."
    )
    stored_kinds: list[LensKind] = Field(
        description="The kinds computed with the analysis and stored with the graph: the residual stream and b_O "
        "by default, every kind with the eager option; the other kinds are computed when their entries are read. "
        "The stored arrays hold the rows of the stream and b_O in forward order, then (eager) those of the head "
        "and MLP outputs in forward order."
    )
    n_entries: int = Field(description="Number of vectors read, of every kind.", ge=0)


# ---- direct logit attribution ------------------------------------------------------------------------------
class ComponentKind(StrEnum):
    """Terms the final residual stream is the sum of, plus the final LayerNorm's bias."""

    token_embedding = "token_embedding"
    pos_embedding = "pos_embedding"
    head_out = "head_out"
    b_O = "b_O"
    mlp_out = "mlp_out"
    b_out = "b_out"
    ln_final_b = "ln_final_b"


class Attribution(_Result):
    """One component's direct contribution to a logit (or logit difference)."""

    component: str = Field(
        description="Id of the component's node, e.g. blocks.3.attn.hook_result[7,5] (head 5 "
        "of layer 3 at position 7), blocks.2.hook_mlp_out[7], blocks.2.attn.b_O, ln_final.b."
    )
    kind: ComponentKind = Field(
        description="What the component is. For mlp_out the contribution is that of "
        "mlp_post @ W_out only: the bias b_out is its own component."
    )
    layer: int | None = _LAYER
    head: int | None = _HEAD
    contribution: float = Field(
        description="Contribution to the logit (difference): the component, centred and "
        "divided by the frozen final LayerNorm scale, times ln_final.w, dotted with the "
        "unembedding direction."
    )


class DLAResult(_Result):
    """Direct logit attribution at one position, with the final LayerNorm scale frozen. The contributions sum
    to the model's own logit (difference); ``residual_error`` is the difference, checked against ``tolerance``."""

    position: int = Field(description="Position whose next-token logits are attributed.", ge=0)
    token_id: int = Field(description="Token whose logit is attributed (default: the model's prediction).", ge=0)
    token: str = Field(description="That token in BPE form.")
    contrast_id: int | None = Field(
        default=None,
        ge=0,
        description="Token whose logit is subtracted, for a logit difference; None for a plain logit.",
    )
    contrast: str | None = Field(default=None, description="That token in BPE form.")
    metric: Literal["logit", "logit_difference"] = Field(description="What is attributed.")
    ln_scale: float = Field(
        description="The frozen final LayerNorm scale sqrt(var(x) + eps) of the final "
        "residual stream at this position.",
        gt=0,
    )
    model_value: float = Field(description="The model's own logit (difference) at this position.")
    total: float = Field(description="Sum of all contributions.")
    residual_error: float = Field(description="model_value - total.")
    tolerance: float = Field(description="Largest |residual_error| accepted.", gt=0)
    contributions: list[Attribution] = Field(description="Every component, in forward order.")

    def top(self, k: int = 10) -> list[Attribution]:
        """The k components with the largest absolute contribution, largest first."""
        return sorted(self.contributions, key=lambda a: -abs(a.contribution))[:k]

    def by_head(self) -> dict[tuple[int, int], float]:
        """Each head's contribution (its output at the attributed position), by ``(layer, head)``."""
        return {
            (a.layer, a.head): a.contribution
            for a in self.contributions
            if a.kind == "head_out" and a.layer is not None and a.head is not None
        }


# ---- head roles ---------------------------------------------------------------------------------------------
class Role(StrEnum):
    """Attention roles scored per head."""

    previous_token = "previous_token"
    first_token = "first_token"
    current_token = "current_token"
    induction = "induction"


class HeadRole(_Result):
    """Role scores of one head: the mean attention its queries pay to each role's key position."""

    layer: int = Field(description="Block index (0-based).", ge=0)
    head: int = Field(description="Head index (0-based).", ge=0)
    previous_token: float | None = Field(
        description="Mean attention from position p to p-1, over p >= 1; None for a one-token sequence."
    )
    first_token: float | None = Field(
        description="Mean attention from position p to position 0 (the attention sink), over p >= 1."
    )
    current_token: float | None = Field(
        description="Mean attention from position p to itself (the diagonal), over p >= 1."
    )
    induction: float | None = Field(
        description="Mean attention from position p to the positions right after "
        "earlier occurrences of p's token, over positions whose token occurred "
        "before; None when no token repeats."
    )
    label: Role | None = Field(
        default=None,
        description="The role with the largest lift (score above a uniform "
        "causal head's, as a share of the possible excess), when that lift reaches the "
        "threshold; None otherwise.",
    )


class HeadRoles(_Result):
    """Role scores of every head, from the attention patterns of this run (or of the induction probe)."""

    source: Literal["prompt", "probe"] = Field(
        description="prompt: scored on the prompt's own run; probe: on "
        "the prompt followed by a random sequence repeated twice."
    )
    token_ids: list[int] = Field(description="The sequence the patterns were computed on.")
    probe_length: int | None = Field(default=None, ge=1, description="Length of the random sequence (probe only).")
    probe_seed: int | None = Field(default=None, description="Seed of the random sequence (probe only).")
    chance: dict[Role, float | None] = Field(
        description="Each score for a head attending uniformly to all "
        "positions <= its own: the baseline a score should be read against."
    )
    label_threshold: float = Field(
        description="Smallest lift (score - chance) / (1 - chance) that labels a head.", gt=0, le=1
    )
    heads: list[HeadRole] = Field(description="One entry per head, layer-major.")

    def ranked(self, role: Role | str, k: int | None = None) -> list[HeadRole]:
        """Heads by decreasing score for ``role`` (heads without a score last)."""
        key = str(role)
        out = sorted(self.heads, key=lambda h: -1.0 if getattr(h, key) is None else -getattr(h, key))
        return out if k is None else out[:k]


# ---- circuits -----------------------------------------------------------------------------------------------
class HeadCircuit(_Result):
    """Summaries of one head's QK and OV circuits, computed from their low-rank factors."""

    layer: int = Field(description="Block index (0-based).", ge=0)
    head: int = Field(description="Head index (0-based).", ge=0)
    qk_singular_values: list[float] = Field(
        description="Singular values of the QK circuit W_Q^h W_K^h^T "
        "(d_model x d_model, rank <= d_head), largest first."
    )
    ov_singular_values: list[float] = Field(description="Singular values of the OV circuit W_V^h W_O^h, largest first.")
    ov_copying_score: float = Field(
        description="Share of the eigenvalue mass of the full OV circuit "
        "W_E W_V^h W_O^h W_U that lies on eigenvalues with positive real part: "
        "sum |l| over Re(l) > 0 divided by sum |l|. Near 1: the head copies the "
        "tokens it attends to.",
        ge=0,
        le=1,
    )
    boosted: list[TokenScore] = Field(
        description="Tokens whose logits the head raises most when it attends "
        "to the input token: W_E[t] W_V^h W_O^h W_U, largest first."
    )


class Circuits(_Result):
    """QK and OV circuit summaries of every head."""

    fold_ln: bool = Field(
        description="True: LayerNorm centring and gains are folded into the circuits (ln1 "
        "before W_Q, W_K, W_V; ln_final before W_U); the per-token scale and the biases are "
        "left out. False: raw weights."
    )
    input_token_id: int = Field(description="Input token the boosted tokens are computed for.", ge=0)
    input_token: str = Field(description="That token in BPE form.")
    heads: list[HeadCircuit] = Field(description="One entry per head, layer-major.")


# ---- decoding -----------------------------------------------------------------------------------------------
class DecodingStepKind(StrEnum):
    """Steps from logits to a chosen token, in the order they are applied."""

    softmax = "softmax"
    temperature = "temperature"
    top_k = "top_k"
    top_p = "top_p"


class DecodingStep(_Result):
    """The distribution after one decoding step."""

    kind: DecodingStepKind = Field(description="The step.")
    value: float | None = Field(default=None, description="Its parameter (temperature, k or p); None for softmax.")
    kept: int = Field(
        description="Number of tokens still in the running after this step (not filtered out by top-k or top-p).", ge=1
    )
    candidates: list[TokenProb] = Field(
        description="The most probable tokens after this step (logits after the "
        "step: scaled by the temperature), most probable first."
    )


class DecodingResult(_Result):
    """Decoding the next token after one position: temperature, top-k, top-p, then a sample or the argmax."""

    position: int = Field(description="Position whose next-token logits are decoded.", ge=0)
    temperature: float = Field(description="Logits are divided by this.", gt=0)
    top_k: int | None = Field(
        default=None, ge=1, description="Keep only the k most probable tokens; None: no top-k step."
    )
    top_p: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Keep the smallest set of most probable tokens whose mass reaches p; None: no top-p step.",
    )
    greedy: bool = Field(description="True: the most probable token is chosen; False: one is sampled.")
    seed: int | None = Field(default=None, description="Seed of the sample; None when greedy.")
    steps: list[DecodingStep] = Field(description="The distribution after each step, in order.")
    chosen: TokenProb = Field(description="The chosen token, with its probability and logit after the last step.")


# ---- bundle -------------------------------------------------------------------------------------------------
class AnalysisOptions(_Result):
    """The options an analysis was computed with, as given (tokens may be ids or strings)."""

    position: int = Field(description="Position analysed (DLA, decoding); negative counts from the end.")
    target: int | str | None = Field(
        default=None,
        description="Target token (id or single-token string): "
        "attributed by DLA and ranked by the logit lens; None: the prediction.",
    )
    contrast: int | str | None = Field(default=None, description="Token for a DLA logit difference.")
    top_tokens: int = Field(
        description="Tokens kept per logit-lens entry, boosted tokens per head, and candidates per decoding step.", ge=1
    )
    temperature: float = Field(description="Decoding temperature.", gt=0)
    top_k: int | None = Field(default=None, ge=1, description="Decoding top-k; None: off.")
    top_p: float | None = Field(default=None, gt=0, le=1, description="Decoding top-p; None: off.")
    seed: int | None = Field(default=None, description="Decoding sample seed; None: greedy.")
    induction_probe: int | None = Field(
        default=None,
        ge=1,
        description="Length of the repeated random sequence "
        "appended for head roles; None: roles from the prompt alone.",
    )
    probe_seed: int = Field(default=0, description="Seed of the induction probe's random sequence.")
    circuit_token: int | str | None = Field(
        default=None,
        description="Input token for the circuits' boosted tokens; None: the token at the analysed position.",
    )
    fold_ln: bool = Field(default=True, description="Fold LayerNorm into the circuits (see Circuits.fold_ln).")
    lens_kinds: list[LensKind] = Field(description="Vector kinds the logit lens was computed for; empty: none.")
    eager_lens: bool = Field(
        default=False,
        description="True: the lens of every kind was computed and stored with the analysis; False: the "
        "vectors written into the stream (head outputs, b_O, MLP outputs) are read when first asked for.",
    )

    def as_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`gpt2graph.analyze.analyze` that compute this analysis again."""
        args = self.model_dump(exclude={"lens_kinds"})
        kinds = [str(k) for k in self.lens_kinds]
        args["lens"] = True if set(kinds) == {str(k) for k in LensKind} else kinds or False
        return args


class Analysis(_Result):
    """Every interpretability result of one run."""

    options: AnalysisOptions = Field(description="Options used.")
    lens: LogitLens | None = Field(default=None, description="Logit lens; None when not computed.")
    dla: DLAResult = Field(description="Direct logit attribution.")
    roles: HeadRoles = Field(description="Head role scores.")
    circuits: Circuits = Field(description="QK/OV circuit summaries.")
    decoding: DecodingResult = Field(description="Decoding of the next token.")
