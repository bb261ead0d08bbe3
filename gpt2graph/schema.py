"""The typed vocabulary of a graph: kinds, categories, nodes, edges and the saved-graph header.

These pydantic models are the single source of truth: the JSON Schemas in ``schema/`` are generated
from them (``gpt2graph schema``), and every saved graph is validated against them on load.
Models are strict (``extra="forbid"``) and every field is documented, so the schema documents itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .causal import Counterfactual, PatchSweep, PredictionCircuit
from .results import Analysis

__all__ = [
    "FORMAT_VERSION",
    "Category",
    "Stage",
    "Space",
    "VectorKind",
    "OpKind",
    "ParamKind",
    "EdgeRole",
    "Dims",
    "Weights",
    "ModelInfo",
    "Tokenization",
    "ValueSummary",
    "VectorNode",
    "ParameterNode",
    "OperationNode",
    "Node",
    "Edge",
    "UserDataFile",
    "DecodingSettings",
    "GraphHeader",
]

FORMAT_VERSION = 2


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class Category(StrEnum):
    """Legend category: what a renderer colours a node by."""

    tokenizer = "tokenizer"
    parameter = "parameter"
    operation = "operation"
    residual = "residual"
    attention = "attention"
    mlp = "mlp"
    unembedding = "unembedding"


class Stage(StrEnum):
    """Stage of the forward pass a node belongs to, in execution order."""

    tokenize = "tokenize"
    embed = "embed"
    attention = "attention"
    mlp = "mlp"
    unembed = "unembed"
    decode = "decode"


class Space(StrEnum):
    """The vector space a vector lives in (its length is given by the model's dims)."""

    token = "token"  # a token id
    scalar = "scalar"  # one number (a LayerNorm scale)
    residual = "residual"  # d_model
    head = "head"  # d_head
    mlp = "mlp"  # d_mlp
    keys = "keys"  # one entry per key position <= the query position
    vocab = "vocab"  # n_vocab


class VectorKind(StrEnum):
    """Kinds of vector node, in forward order."""

    token = "token"
    token_embedding = "token_embedding"
    pos_embedding = "pos_embedding"
    input_embedding = "input_embedding"
    resid_pre = "resid_pre"
    ln1_scale = "ln1_scale"  # sqrt(var(x) + eps) of the stream a LayerNorm reads
    ln1_normalized = "ln1_normalized"  # (x - mean(x)) / scale, before the gain and bias
    ln1 = "ln1"  # the LayerNorm output: normalized * w + b
    q = "q"
    k = "k"
    v = "v"
    attn_scores = "attn_scores"
    attn_pattern = "attn_pattern"
    z = "z"
    head_out = "head_out"
    attn_out = "attn_out"
    resid_mid = "resid_mid"
    ln2_scale = "ln2_scale"  # sqrt(var(x) + eps) of the stream a LayerNorm reads
    ln2_normalized = "ln2_normalized"  # (x - mean(x)) / scale, before the gain and bias
    ln2 = "ln2"  # the LayerNorm output: normalized * w + b
    mlp_pre = "mlp_pre"
    mlp_post = "mlp_post"
    mlp_out = "mlp_out"
    resid_post = "resid_post"
    ln_final_scale = "ln_final_scale"  # sqrt(var(x) + eps) of the stream a LayerNorm reads
    ln_final_normalized = "ln_final_normalized"  # (x - mean(x)) / scale, before the gain and bias
    ln_final = "ln_final"  # the LayerNorm output: normalized * w + b
    logits = "logits"
    scaled_logits = "scaled_logits"  # decoding: logits / temperature
    top_k_logits = "top_k_logits"  # decoding: tokens outside the top k set to -inf
    top_p_logits = "top_p_logits"  # decoding: tokens outside the nucleus set to -inf
    probs = "probs"  # decoding: the distribution sampled from
    next_token = "next_token"  # decoding: the chosen token id


class OpKind(StrEnum):
    """Kinds of operation node."""

    tokenize = "tokenize"
    lookup = "lookup"
    add = "add"
    ln_scale = "ln_scale"
    ln_normalize = "ln_normalize"
    ln_affine = "ln_affine"
    head_projection = "head_projection"
    scaled_dot_product = "scaled_dot_product"
    softmax = "softmax"
    weighted_sum = "weighted_sum"
    output_projection = "output_projection"
    sum = "sum"
    linear = "linear"
    gelu = "gelu"
    unembed = "unembed"
    temperature = "temperature"
    top_k = "top_k"
    top_p = "top_p"
    sample = "sample"


class ParamKind(StrEnum):
    """Kinds of parameter node; names follow TransformerLens."""

    W_E = "W_E"
    W_pos = "W_pos"
    ln1_w = "ln1_w"
    ln1_b = "ln1_b"
    W_Q = "W_Q"
    W_K = "W_K"
    W_V = "W_V"
    b_Q = "b_Q"
    b_K = "b_K"
    b_V = "b_V"
    W_O = "W_O"
    b_O = "b_O"
    ln2_w = "ln2_w"
    ln2_b = "ln2_b"
    W_in = "W_in"
    b_in = "b_in"
    W_out = "W_out"
    b_out = "b_out"
    ln_final_w = "ln_final_w"
    ln_final_b = "ln_final_b"
    W_U = "W_U"


class EdgeRole(StrEnum):
    """How an edge connects to its operation."""

    input = "input"  # vector -> operation
    parameter = "parameter"  # parameter -> operation
    output = "output"  # operation -> vector


class Dims(Strict):
    """Model dimensions, read from the model's config (never assumed)."""

    n_layer: int = Field(description="Number of transformer blocks.", ge=1)
    n_head: int = Field(description="Attention heads per block.", ge=1)
    d_model: int = Field(description="Width of the residual stream.", ge=1)
    d_head: int = Field(description="Width of one head's query, key, value and result vectors.", ge=1)
    d_mlp: int = Field(description="Width of the MLP hidden layer.", ge=1)
    n_ctx: int = Field(description="Maximum number of tokens in one context.", ge=1)
    n_vocab: int = Field(description="Number of tokens in the vocabulary.", ge=1)
    layer_norm_eps: float = Field(description="Epsilon added to the variance in every LayerNorm.", gt=0)


class Weights(Strict):
    """Where the weights came from: a trained checkpoint, or a seeded random initialisation."""

    status: Literal["pretrained", "random"] = Field(description="pretrained: trained weights; random: seeded init.")
    seed: int | None = Field(
        default=None,
        description="Seed of the random initialisation (random weights only); "
        "None for a model object built in memory, whose seed is unknown.",
    )


class ModelInfo(Strict):
    """The model a graph was captured from."""

    name: str = Field(description="Hub id, local directory, or a descriptive name of the model.")
    source: Literal["hub", "directory", "object", "embedded-default"] = Field(
        description="How the model was obtained: by hub id (or HF cache), from a local directory, passed in "
        "as an already-loaded model, or an architecture embedded in gpt2graph (a GPT-2 family member with "
        "random weights, needing no network)."
    )
    architecture: str = Field(description="Model class, e.g. GPT2LMHeadModel.")
    weights: Weights = Field(description="Pretrained or random weights.")
    dims: Dims = Field(description="Dimensions from the model's config.")
    dtype: str = Field(description="Parameter and activation dtype, e.g. float32.")
    parameters: dict[str, int] = Field(
        description="Parameter counts per group (embedding, positional, attention, mlp, layernorm); "
        "the tied unembedding is counted once, under embedding."
    )
    total_parameters: int = Field(description="Total number of parameters, tied W_U counted once.", ge=0)


class Tokenization(Strict):
    """The prompt and its tokens."""

    text: str = Field(description="The input text, as given.")
    token_ids: list[int] = Field(description="Token ids, one per position.")
    tokens: list[str] = Field(description="Each token decoded to text (raw, whitespace as is).")
    tokens_visible: list[str] = Field(description="Each token in BPE form, with a leading space shown as Ġ.")


class ValueSummary(Strict):
    """Statistics of one vector's captured value."""

    norm: float = Field(description="L2 norm.")
    mean: float = Field(description="Mean of the components.")
    std: float = Field(description="Population standard deviation of the components.")
    min: float = Field(description="Smallest component.")
    max: float = Field(description="Largest component.")


_LAYER = Field(default=None, description="Block index (0-based); None outside the blocks.")
_HEAD = Field(default=None, description="Head index (0-based); None for nodes not specific to one head.")
_POSITION = Field(default=None, description="Token position (0-based); None for nodes not tied to a position.")


class VectorNode(Strict):
    """One vector of the forward pass: an activation at one (layer, head, position)."""

    node_type: Literal["vector"] = Field(default="vector", description="Discriminator.")
    id: str = Field(
        description="Unique id: the TransformerLens hook name followed by the index, e.g. blocks.3.attn.hook_q[5,2]."
    )
    kind: VectorKind = Field(description="What this vector is.")
    category: Category = Field(description="Legend category.")
    stage: Stage = Field(description="Stage of the forward pass.")
    layer: int | None = _LAYER
    head: int | None = _HEAD
    position: int | None = _POSITION
    space: Space = Field(description="The space the vector lives in.")
    shape: list[int] = Field(description="Shape of the vector's value.")
    hook: str | None = Field(
        description="TransformerLens hook holding this vector (no weight processing), or None where no hook exists."
    )
    index: list[int] = Field(
        description="Index into the hook's activation after the batch dimension: "
        "cache[hook][0][tuple(index)] is this vector (for attention rows, its first "
        "position+1 entries)."
    )
    aliases: list[str] = Field(
        default_factory=list,
        description="Other TransformerLens hooks (with index) that "
        "hold the same vector, e.g. resid_post of the previous block.",
    )
    summary: ValueSummary | None = Field(default=None, description="Statistics of the captured value.")


class ParameterNode(Strict):
    """One parameter tensor, or one head's slice of a fused parameter."""

    node_type: Literal["parameter"] = Field(default="parameter", description="Discriminator.")
    id: str = Field(description="Unique id: the TransformerLens parameter name, with [head] for per-head slices.")
    kind: ParamKind = Field(description="What this parameter is.")
    category: Literal[Category.parameter] = Field(default=Category.parameter, description="Legend category.")
    stage: Stage = Field(description="Stage of the forward pass that uses it.")
    layer: int | None = _LAYER
    head: int | None = _HEAD
    position: None = Field(default=None, description="Always None: parameters are shared across positions.")
    shape: list[int] = Field(description="Shape, in TransformerLens orientation (inputs first: x @ W).")
    n_params: int = Field(description="Number of scalars in this parameter (0 for a tied alias).", ge=0)
    tied_to: str | None = Field(default=None, description="Id of the parameter this one is tied to (W_U -> W_E).")
    transposed: bool = Field(default=False, description="True when this parameter is the transpose of tied_to.")


class OperationNode(Strict):
    """One application of an operation, producing exactly one vector (the tokenizer produces all tokens)."""

    node_type: Literal["operation"] = Field(default="operation", description="Discriminator.")
    id: str = Field(description="Unique id: 'op:' followed by the id of the vector it produces.")
    kind: OpKind = Field(description="Which operation.")
    category: Literal[Category.operation] = Field(default=Category.operation, description="Legend category.")
    stage: Stage = Field(description="Stage of the forward pass.")
    layer: int | None = _LAYER
    head: int | None = _HEAD
    position: int | None = _POSITION


Node = Annotated[VectorNode | ParameterNode | OperationNode, Field(discriminator="node_type")]


class Edge(Strict):
    """A typed edge between an operation and a vector or parameter."""

    source: str = Field(description="Id of the source node.")
    target: str = Field(description="Id of the target node.")
    role: EdgeRole = Field(description="input (vector -> op), parameter (parameter -> op) or output (op -> vector).")
    slot: int = Field(default=0, description="Argument position among the operation's inputs or parameters.", ge=0)


class UserDataFile(Strict):
    """A user's glossary/annotation YAML file, kept verbatim so a saved graph carries its annotations."""

    source: str = Field(description="Where the file was read from (for error messages).")
    text: str = Field(description="The YAML text, as written.")


class DecodingSettings(Strict):
    """How the decoding stage turns each position's logits into a next token (in Hugging Face ``generate``'s
    order): divide by the temperature, keep the top k, keep the nucleus of mass p, softmax, then the most
    probable token or a seeded sample."""

    temperature: float = Field(default=1.0, gt=0, description="Logits are divided by this.")
    top_k: int | None = Field(
        default=None,
        ge=1,
        description="Keep only the k most probable tokens (ties with the k-th kept); None: keep all.",
    )
    top_p: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Keep the smallest set of most probable tokens whose mass reaches p; None: keep all.",
    )
    seed: int | None = Field(
        default=None,
        description="Sample with torch.Generator().manual_seed(seed), once per "
        "position; None: greedy (the most probable token).",
    )


class GraphHeader(Strict):
    """The saved structure of a graph (graph.json). Nodes and edges are derived from it: the graph of a
    GPT-2 run is fully determined by the dims and the tokens, and values live in values.safetensors."""

    format: Literal["gpt2graph"] = Field(default="gpt2graph", description="File format marker.")
    format_version: int = Field(description="Version of this file format.", ge=1)
    created: str = Field(description="ISO 8601 time the run was captured.")
    gpt2graph_version: str = Field(description="Version of gpt2graph that wrote the file.")
    model: ModelInfo = Field(description="The model the graph was captured from.")
    tokenization: Tokenization = Field(description="The prompt and its tokens.")
    values_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of values.safetensors, set when saved: a mismatched or truncated pair is refused.",
    )
    user_data: list[UserDataFile] = Field(
        default_factory=list,
        description="User glossary/annotation YAML files "
        "added with --annotations or graph.annotate(), stored verbatim.",
    )
    decoding: DecodingSettings = Field(
        default_factory=DecodingSettings,
        description="Settings of the decoding stage (its nodes' values are derived from the logits with them).",
    )
    analysis: Analysis | None = Field(
        default=None,
        description="Interpretability results of this run (logit "
        "lens, direct logit attribution, head roles, circuits, decoding), set by "
        "graph.analyze() or build(..., analyze=...).",
    )
    counterfactual: Counterfactual | None = Field(
        default=None,
        description="Set on a counterfactual run (graph.intervene()): which nodes were replaced, and by what. "
        "None for a run captured from the model.",
    )
    patching: list[PatchSweep] = Field(
        default_factory=list,
        description="Activation and attribution patching sweeps against other runs (graph.patch_sweep(), "
        "graph.attribution_patch()); a new sweep replaces one with the same settings.",
    )
    circuit: PredictionCircuit | None = Field(
        default=None, description="The circuit behind a prediction found last (graph.circuit()); None until then."
    )
