"""The :class:`Graph`: typed nodes and edges of one GPT-2 run, with its values, queried lazily.

Structure is derived from the dims and the tokens (see :mod:`gpt2graph.topology`); values are tensors
(see :mod:`gpt2graph.values`). Node objects are built only when asked for, so a 1024-token graph costs
its tensors and a handful of Python objects until a caller enumerates a part of it.

**Views are live.** A ``Graph`` is a view of one run. ``subgraph()`` and ``with_decoding()`` return other
views of the same run: what ``analyze()`` and ``annotate()`` add through any view is seen through every
view, taken before or after. A view's own choices stay its own: its selection of layers, heads and
positions (which ``node``, ``nodes``, ``values``, ``edges`` and the renderers honour), and decoding
settings given with ``with_decoding``. An operation that makes a different run returns a new graph with a
run of its own.

**A renderer draws the view it is given.** Nodes outside a view's selection are not drawn. On each axis
(layers, heads, positions) the view restricts, the view decides; a renderer's own options (``layers=``,
``positions=``, ...) choose only on the axes the view leaves whole (:meth:`Selection.filled`), so a default
never empties a view and a whole graph renders as its options say.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import torch
from torch import Tensor

from .circuit import find_circuit
from .decoding import decode_steps, settings
from .errors import NodeNotFoundError
from .patching import attribution_patch, patch_sweep
from .schema import (
    DecodingSettings,
    Dims,
    Edge,
    EdgeRole,
    GraphHeader,
    ModelInfo,
    OperationNode,
    OpKind,
    ParameterNode,
    ParamKind,
    Stage,
    Tokenization,
    VectorKind,
    VectorNode,
)
from .topology import DECODE_KINDS, PARAM_SPECS, TIED, TOKENIZE_OP_ID, VECTOR_SPECS, Filter, Key, KindFilter, matches
from .values import Values, summaries, summarize

if TYPE_CHECKING:
    import os
    from pathlib import Path

    import networkx

    from .cache import Cache
    from .causal import Counterfactual
    from .glossary import Glossary, GlossaryEntry, ResolvedAnnotation
    from .lens import LensTable
    from .results import Analysis
    from .verify import VerifyReport

__all__ = ["Graph", "Selection"]

AnyNode = VectorNode | ParameterNode | OperationNode
P = ParamSpec("P")
T = TypeVar("T")
NodeTypes = {"vector", "parameter", "operation"}


@dataclass(frozen=True)
class Selection:
    """Which layers, heads and positions a (sub)graph covers; None means all."""

    layers: frozenset[int] | None = None
    heads: frozenset[int] | None = None
    positions: frozenset[int] | None = None

    def admits(self, layer: int | None, head: int | None, position: int | None) -> bool:
        return all(
            sel is None or val is None or val in sel
            for sel, val in ((self.layers, layer), (self.heads, head), (self.positions, position))
        )

    def filled(self, layers: Filter = None, heads: Filter = None, positions: Filter = None) -> Selection:
        """This selection, with the given values (each an int, a collection, or None for all) on the axes it
        leaves whole: what a renderer draws of a view given its own options."""

        def axis(own: frozenset[int] | None, given: Filter) -> frozenset[int] | None:
            if own is not None or given is None:
                return own
            return frozenset([given] if isinstance(given, int) else (x for x in given if x is not None))

        return Selection(axis(self.layers, layers), axis(self.heads, heads), axis(self.positions, positions))


def _narrow(requested: Filter, selected: frozenset[int] | None) -> Filter:
    """Intersect a query filter (value, collection or None) with a selection set (or None). Nodes that have
    no layer (head, position) are inside every selection of layers (heads, positions), hence the None."""
    if selected is None:
        return requested
    if requested is None:
        return {*selected, None}
    req = {requested} if isinstance(requested, int) else set(requested)
    return req & set(selected)


def _listing(items: Callable[P, Iterator[T]], name: str, doc: str) -> Callable[P, list[T]]:
    """The method ``name``: a list of what the method ``items`` yields, taking its parameters (stated once, there;
    ``help`` shows them)."""

    @functools.wraps(items)
    def listed(*args: P.args, **kwargs: P.kwargs) -> list[T]:
        return list(items(*args, **kwargs))

    listed.__name__, listed.__qualname__, listed.__doc__ = name, items.__qualname__.replace(items.__name__, name), doc
    return listed


@dataclass
class _Run:
    """What every view of one run shares: the header (annotations and analysis included), the values, the
    vocabulary, the logit lens's table, and what is derived from them once."""

    header: GraphHeader
    values: Values
    vocab: list[str]
    lens: LensTable | None = None
    glossary: Glossary | None = None


class Graph:
    """A typed, vector-level graph of one GPT-2 forward pass, with its captured values.

    Example::

        g = gpt2graph.build("Transformer tokens")
        g.node("blocks.0.attn.hook_q[1,3]")       # VectorNode: layer 0, position 1, head 3
        g.values("blocks.0.attn.hook_q[1,3]")     # its value, a tensor of shape (d_head,)
        g.nodes(kind="head_out", layer=0)         # every head output of block 0
        g.verify().ok                             # re-executed vector by vector: equals the model
    """

    def __init__(self, header: GraphHeader, values: Values, vocab: list[str], lens: LensTable | None = None):
        self._run = _Run(header, values, vocab, lens)
        self.topology = values.topology
        self.selection = Selection()
        self._decoding: DecodingSettings | None = None  # this view's own settings; None: the run's

    def _view(self, selection: Selection, decoding: DecodingSettings | None) -> Graph:
        view = object.__new__(Graph)
        view._run, view.topology, view.selection, view._decoding = self._run, self.topology, selection, decoding
        return view

    @property
    def header(self) -> GraphHeader:
        """The run's header: model, tokens, decoding settings, annotations and analysis (shared by all views)."""
        return self._run.header

    def _store(self, **fields: Any) -> None:
        """Put ``fields`` in the run's header: every view of the run sees them, and ``save`` writes them."""
        self._run.header = self.header.model_copy(update=fields)

    @property
    def _values(self) -> Values:
        return self._run.values

    @property
    def vocab(self) -> list[str]:
        """Every token id's string in BPE form (Ġ for a leading space), for decoding outputs."""
        return self._run.vocab

    # ---- metadata -----------------------------------------------------------------------------------
    @property
    def model(self) -> ModelInfo:
        return self.header.model

    @property
    def tokenization(self) -> Tokenization:
        return self.header.tokenization

    @property
    def dims(self) -> Dims:
        return self.header.model.dims

    @property
    def n_tokens(self) -> int:
        return self.topology.n_tokens

    @property
    def decoding(self) -> DecodingSettings:
        """How the decoding stage turns each position's logits into a next token (this view's own settings
        when made by ``with_decoding``, else the run's)."""
        return self._decoding or self.header.decoding

    def with_decoding(
        self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, seed: int | None = None
    ) -> Graph:
        """This run with other decoding settings (temperature, top-k, top-p, sample seed; None: greedy): a
        view sharing the values, whose decoding nodes (``decode.*``) follow the new settings. ``analyze``
        sets a graph's settings from its own decoding options."""
        return self._view(self.selection, settings(temperature, top_k, top_p, seed))

    def decode_token(self, token_id: int) -> str:
        """A vocabulary entry in BPE form (a leading space shown as Ġ), as the tokenizer stores it."""
        return self.vocab[token_id]

    @property
    def random_weights(self) -> bool:
        return self.model.weights.status == "random"

    def __repr__(self) -> str:
        d = self.dims
        part = "" if self.selection == Selection() else " (subgraph)"
        return (
            f"<Graph{part} {self.model.name} [{self.model.weights.status} weights] {self.n_tokens} tokens, "
            f"{d.n_layer} layers x {d.n_head} heads, d_model {d.d_model}>"
        )

    # ---- nodes --------------------------------------------------------------------------------------
    def __contains__(self, node_id: object) -> bool:
        """True when ``node_id`` names a node of this view (an id of the run outside the view's selection, or
        of no node at all, is not in it)."""
        if not isinstance(node_id, str):
            return False
        try:
            node_type, key = self.topology.parse(node_id)
        except NodeNotFoundError:
            return False
        return self._admits_key(node_type, key)

    def node(self, node_id: str) -> AnyNode:
        """The node with this id (TransformerLens aliases such as blocks.2.hook_resid_post[0] resolve too)."""
        node_type, key = self.topology.parse(node_id)
        if not self._admits_key(node_type, key):
            raise NodeNotFoundError(f"node {node_id!r} is outside this subgraph")
        return self._make(node_type, key)

    def iter_nodes(
        self,
        kind: KindFilter = None,
        layer: Filter = None,
        head: Filter = None,
        position: Filter = None,
        node_type: str | None = None,
    ) -> Iterator[AnyNode]:
        """Nodes matching every given filter (a value, a collection of values, or None for any), in forward
        order: vectors, then the operations producing them, then parameters, one at a time (:meth:`nodes` lists
        them). ``kind`` may name vector, operation or parameter kinds."""
        if node_type is not None and node_type not in NodeTypes:
            raise ValueError(f"unknown node_type {node_type!r}; expected one of {sorted(NodeTypes)}")
        kinds = None if kind is None else ({kind} if isinstance(kind, str) else set(kind))
        known = set(VECTOR_SPECS) | set(PARAM_SPECS) | set(OpKind)
        if kinds is not None and kinds - known:
            raise ValueError(f"unknown kind(s) {sorted(kinds - known)}; known: {', '.join(sorted(known))}")
        sel = self.selection
        layer, head, position = (_narrow(layer, sel.layers), _narrow(head, sel.heads), _narrow(position, sel.positions))
        if node_type in (None, "vector"):
            vkinds = None if kinds is None else kinds & set(VECTOR_SPECS)
            if vkinds is None or vkinds:
                for key in self.topology.vector_keys(vkinds, layer, head, position):
                    yield self._make("vector", key)
        if node_type in (None, "operation"):
            yield from self._iter_ops(kinds, layer, head, position)
        if node_type in (None, "parameter") and matches(position, None):
            pkinds = None if kinds is None else kinds & set(PARAM_SPECS)
            if pkinds is None or pkinds:
                for key in self.topology.param_keys(pkinds, layer, head):
                    yield self._make("parameter", key)

    nodes = _listing(
        iter_nodes, "nodes", "Nodes matching every given filter, as :meth:`iter_nodes` yields them, in a list."
    )

    def _iter_ops(self, kinds: set[str] | None, layer: Filter, head: Filter, position: Filter) -> Iterator[AnyNode]:
        out_kinds = [k for k, s in VECTOR_SPECS.items() if kinds is None or s.op in kinds]
        if OpKind.tokenize in (kinds or {OpKind.tokenize}) and all(matches(f, None) for f in (layer, head, position)):
            yield self._make("operation", Key(OpKind.tokenize))
        layers = (
            None
            if layer is None
            else {None}
            | {x + d for x in ([layer] if isinstance(layer, int) else layer) if x is not None for d in (0, 1)}
        )
        for key in self.topology.vector_keys([k for k in out_kinds if k != VectorKind.token], layers, head, position):
            op_layer = self.topology.op_layer(key)
            if matches(layer, op_layer):
                yield self._make("operation", key)

    def _admits_key(self, node_type: str, key: Key) -> bool:
        if node_type == "operation" and key.kind == OpKind.tokenize:
            return True
        layer = self.topology.op_layer(key) if node_type == "operation" else key.layer
        return self.selection.admits(layer, key.head, key.position)

    def _make(self, node_type: str, key: Key) -> AnyNode:
        top = self.topology
        if node_type == "parameter":
            spec = PARAM_SPECS[key.kind]
            shape = top.param_shape(key)
            tied = top.param_id(Key(TIED[ParamKind(key.kind)])) if key.kind in TIED else None
            n = 0 if tied else _prod(shape)
            return ParameterNode(
                id=top.param_id(key),
                kind=key.kind,
                stage=spec.stage,
                layer=key.layer,
                head=key.head,
                shape=shape,
                n_params=n,
                tied_to=tied,
                transposed=bool(tied),
            )
        if node_type == "operation":
            if key.kind == OpKind.tokenize:
                return OperationNode(id=TOKENIZE_OP_ID, kind=OpKind.tokenize, stage=Stage.tokenize)
            out = VECTOR_SPECS[key.kind]
            return OperationNode(
                id=top.op_id(key),
                kind=out.op,
                stage=out.op_stage,
                layer=top.op_layer(key),
                head=key.head,
                position=key.position,
            )
        vector = VECTOR_SPECS[key.kind]
        value = self.vector_value(key)
        return VectorNode(
            id=top.vector_id(key),
            kind=key.kind,
            category=vector.category,
            stage=vector.stage,
            layer=key.layer,
            head=key.head,
            position=key.position,
            space=vector.space,
            shape=list(value.shape),
            hook=top.hook(key),
            index=top.vector_index(key),
            aliases=top.aliases(key),
            summary=summarize(value),
        )

    # ---- edges --------------------------------------------------------------------------------------
    def edges(self, node_id: str | None = None) -> list[Edge]:
        """Edges touching ``node_id`` (inputs, parameters and output of an operation; or the edges into and
        out of a vector or parameter), or every edge of the (sub)graph when ``node_id`` is None."""
        if node_id is None:
            return list(self.iter_edges())
        node = self.node(node_id)
        if isinstance(node, OperationNode):
            out_key = self._op_output_key(node)
            return [e for e in self._op_edges(out_key) if self._edge_inside(e)]
        return [e for e in self._edges_touching(node) if self._edge_inside(e)]

    def iter_edges(self) -> Iterator[Edge]:
        for op in self._iter_ops(None, None, None, None):
            if self._admits_key("operation", self.topology.parse(op.id)[1]):
                for e in self._op_edges(self._op_output_key(op)):
                    if self._edge_inside(e):
                        yield e

    def inputs(self, node_id: str) -> list[AnyNode]:
        """The nodes an operation reads (vectors, then parameters), or the operation producing a vector."""
        return [self.node(e.source) for e in self.edges(node_id) if e.target == self.node(node_id).id]

    def _op_output_key(self, op: AnyNode) -> Key:
        return self.topology.parse(op.id)[1]

    def _op_edges(self, out: Key) -> list[Edge]:
        if out.kind == OpKind.tokenize:
            return [
                Edge(
                    source=TOKENIZE_OP_ID,
                    target=self.topology.vector_id(Key(VectorKind.token, None, None, p)),
                    role=EdgeRole.output,
                    slot=p,
                )
                for p in range(self.n_tokens)
            ]
        return [Edge(source=s, target=t, role=r, slot=i) for s, t, r, i in self.topology.edges_of_op(out)]

    def _edges_touching(self, node: AnyNode) -> list[Edge]:
        top = self.topology
        _, key = top.parse(node.id)
        edges = [e for e in self._op_edges(key) if e.target == node.id] if isinstance(node, VectorNode) else []
        for out in top.consumers(key):
            edges += [e for e in self._op_edges(out) if e.source == node.id]
        return edges

    def _edge_inside(self, e: Edge) -> bool:
        if self.selection == Selection():
            return True
        return all(self._id_inside(i) for i in (e.source, e.target))

    def _id_inside(self, node_id: str) -> bool:
        node_type, key = self.topology.parse(node_id)
        return self._admits_key(node_type, key)

    # ---- values -------------------------------------------------------------------------------------
    def values(self, node_id: str) -> Tensor:
        """The value of a vector node (or the tensor of a parameter node), as a tensor."""
        node_type, key = self.topology.parse(node_id)
        if node_type == "operation":
            raise NodeNotFoundError(f"{node_id!r} is an operation; it has no value (its output vector does)")
        if not self._admits_key(node_type, key):
            raise NodeNotFoundError(f"node {node_id!r} is outside this subgraph")
        return self._values.param(key) if node_type == "parameter" else self.vector_value(key)

    def vector_value(self, key: Key) -> Tensor:
        """The value of the vector at topology ``key``: captured, or derived on demand (attention rows, head
        outputs; the decoding stage, from the logits with this graph's decoding settings, in float64)."""
        if key.kind in DECODE_KINDS:
            return decode_steps(self._values.logits(key.position), self.decoding, until=key.kind)[key.kind]
        return self._values.vector(key)

    def hook(self, name: str, layer: int | None = None) -> Tensor:
        """A whole activation in TransformerLens layout without the batch dimension (see :meth:`Values.hook`),
        named by its TransformerLens hook (``"blocks.0.attn.hook_pattern"``) or by its kind and layer
        (``"attn_pattern", 0``); a decoding kind is (n_tokens, n_vocab), or (n_tokens, 1) for next_token. The
        whole run, whatever this view's selection: :meth:`cache` has them all, batched."""
        kind, layer = self.topology.site(name, layer)
        if kind in DECODE_KINDS:
            return decode_steps(self.logits, self.decoding, until=kind)[kind]
        return self._values.hook(kind, layer)

    def summaries(self, kind: str, layer: int | None = None) -> dict[str, Tensor]:
        """The summary statistics of every vector of one kind and layer at once (norm, mean, std, min, max, as
        in each node's ``summary``), each shaped like :meth:`hook` without its last dimension (tokens:
        ``(n_tokens,)``). An attention row counts only the keys its query sees; a decoding vector only the
        tokens still in the running."""
        kind, layer = self.topology.site(kind, layer)
        return _summaries(kind, self.hook(kind, layer))

    def decoding_summaries(self, positions: Iterable[int] | None = None) -> dict[str, dict[str, Tensor]]:
        """:meth:`summaries` of every kind of the decoding stage at these positions (all: None), by kind, from
        one pass of the decoding steps: what a decoding control changes, for the cost of one kind."""
        logits = self.logits if positions is None else self.logits[list(positions)]
        return {kind: _summaries(kind, x) for kind, x in decode_steps(logits, self.decoding).items()}

    def cache(self) -> Cache:
        """Every hooked activation of the run as TransformerLens's ``ActivationCache`` holds it: a mapping from
        hook name to a tensor with a batch dimension of 1 (``cache["blocks.0.attn.hook_pattern"]`` is
        (1, n_head, n, n)), each computed on first access."""
        from .cache import Cache

        return Cache(self)

    def pattern(self, layer: int, head: int) -> Tensor:
        """Attention pattern of one head as an (n, n) lower-triangular matrix, computed on demand."""
        return self._values.head_matrix(VectorKind.attn_pattern, layer, head)

    def param(self, kind: str, layer: int | None = None, head: int | None = None) -> Tensor:
        return self._values.param(Key(kind, layer, head))

    @property
    def logits(self) -> Tensor:
        """(n_tokens, n_vocab) logits the model produced."""
        return self._values.logits()

    @property
    def store(self) -> Values:
        return self._values

    # ---- glossary and annotations ---------------------------------------------------------------------
    @property
    def glossary(self) -> Glossary:
        """Built-in glossary entries and callouts plus the user's (``annotate``), e.g.
        ``graph.glossary["residual-stream"]``."""
        if self._run.glossary is None:
            from .glossary import load_glossary

            self._run.glossary = load_glossary(self.header.user_data)
        return self._run.glossary

    def annotate(self, path: str | os.PathLike[str]) -> Graph:
        """Add the glossary entries and annotations of a user YAML file; every problem (with file, line and
        field) is reported at once and nothing is added when there is any."""
        from .glossary import read_user_file

        user_file = read_user_file(path, graph=self)
        self._store(user_data=[*self.header.user_data, user_file])
        self._run.glossary = None
        return self

    def glossary_for(self, node: AnyNode | str) -> list[GlossaryEntry]:
        """Glossary entries whose ``applies_to`` selects this node."""
        return self.glossary.entries_for(self.node(node) if isinstance(node, str) else node)

    def annotations_for(self, node: AnyNode | str) -> list[ResolvedAnnotation]:
        """Callouts whose targets select this node, with template fields filled in from this run."""
        return self.glossary.annotations_for(self.node(node) if isinstance(node, str) else node, self)

    # ---- views and exports --------------------------------------------------------------------------
    def subgraph(self, layers: Filter = None, heads: Filter = None, positions: Filter = None) -> Graph:
        """A view restricted to these layers, heads and positions (each an int, a collection, or None for all).
        Nodes without a layer/head/position (embeddings, parameters shared by all heads) stay in."""

        def norm(v: Filter, limit: int, what: str) -> frozenset[int] | None:
            if v is None:
                return None
            s = frozenset([v] if isinstance(v, int) else (x for x in v if x is not None))
            bad = sorted(x for x in s if not 0 <= x < limit)
            if bad:
                raise ValueError(f"{what} {bad} out of range 0..{limit - 1}")
            return s

        d = self.dims
        sel = Selection(
            norm(layers, d.n_layer, "layer"), norm(heads, d.n_head, "head"), norm(positions, self.n_tokens, "position")
        )
        return self._view(sel, self._decoding)

    def to_networkx(
        self, layers: Filter = None, heads: Filter = None, positions: Filter = None
    ) -> networkx.DiGraph[str]:
        """Export as a ``networkx.DiGraph``: node attributes are the node's schema fields (``node_type``,
        ``kind``, ``category``, ``layer``...), edge attributes ``role`` and ``slot``."""
        from .export import to_networkx

        view = self if (layers, heads, positions) == (None, None, None) else self.subgraph(layers, heads, positions)
        return to_networkx(view)

    def save(self, path: str | os.PathLike[str], *, embed_weights: bool = False) -> None:
        """Write the graph to a ``.gg`` directory (graph.json + values.safetensors), atomically. The weights go
        to the weight store in the user's cache (once per model) unless ``embed_weights`` puts them in the
        graph, for a self-contained file to share (see :mod:`gpt2graph.weightstore`)."""
        from .storage import save

        save(self, path, embed_weights=embed_weights)

    def verify(self, mode: str = "batched") -> VerifyReport:
        """Re-execute the graph from its inputs and parameters with our own ops and compare every vector."""
        from .verify import verify

        return verify(self, mode=mode)

    def render(self, renderer: str, path: str | os.PathLike[str], **options: Any) -> Path:
        """Render with an installed renderer plugin (see ``gpt2graph renderers``)."""
        from .registry import render

        return render(self, renderer, path, **options)

    def show(self, renderer: str = "bokeh", **options: Any) -> Path | None:
        """Display with a renderer (the Bokeh explorer by default): inline in a Jupyter notebook, elsewhere
        written to a temporary file and opened in the web browser (the file's path is returned)."""
        from .registry import show

        return show(self, renderer, **options)

    @property
    def analysis(self) -> Analysis | None:
        """The interpretability results stored with this run (None until :meth:`analyze` is called)."""
        return self.header.analysis

    @property
    def lens(self) -> LensTable | None:
        """The logit lens of this run (None until analysed with a lens): ``lens.entry(node_id)``,
        ``lens.entries``; what components write is read when first asked for (see :mod:`gpt2graph.lens`)."""
        return self._run.lens

    def analyze(self, **options: Any) -> Analysis:
        """Compute the logit lens, direct logit attribution, head roles, circuits and decoding (options: see
        :func:`gpt2graph.analyze.compute`) and store them on the run, so every view sees them and ``save``
        writes them. The run's decoding settings become the ones analysed, so the decoding nodes and the
        decoding table agree."""
        from .analyze import compute

        result, table = compute(self, **options)
        o = result.options
        decoding = settings(o.temperature, o.top_k, o.top_p, o.seed)
        self._store(analysis=result, decoding=decoding)
        self._run.lens = table
        return result

    # ---- causal experiments -------------------------------------------------------------------------
    @property
    def counterfactual(self) -> Counterfactual | None:
        """What this run changed, when it is a counterfactual of another (:meth:`intervene`); None when captured."""
        return self.header.counterfactual

    def intervene(self, changes: dict[str, Any]) -> Graph:
        """A counterfactual run with the named vectors replaced: ``{node_id: tensor | "zero" | "mean" |
        other_graph | mean_source | "corpus.ggc"}``, as a new graph with values of its own (see
        :mod:`gpt2graph.intervene`).

        Example::

            ablated = g.intervene({"blocks.1.attn.hook_result[4,0]": "zero", "blocks.0.hook_mlp_out[2]": "mean"})
        """
        from .intervene import intervene

        return intervene(self, changes)

    #: activation and attribution patching, and the circuit behind a prediction: the functions of
    #: :mod:`gpt2graph.patching` and :mod:`gpt2graph.circuit`, whose first parameter is this (clean) run
    patch_sweep = patch_sweep
    attribution_patch = attribution_patch
    circuit = find_circuit

    def summary(self) -> dict[str, Any]:
        """Model, weights, dims, parameter shares, tokens and top predictions, as plain data."""
        from .summary import summarize_graph

        return summarize_graph(self)


def _summaries(kind: str, x: Tensor) -> dict[str, Tensor]:
    """Summary statistics of vectors of ``kind`` along the last dimension of ``x``, counting what a node of that
    kind counts: an attention row its query's keys, a decoding vector the tokens still in the running."""
    keep = None
    if kind == VectorKind.token:
        x = x[:, None]
    elif kind in (VectorKind.attn_scores, VectorKind.attn_pattern):
        keep = torch.ones(x.shape[-2:], dtype=torch.bool).tril()
    elif kind in DECODE_KINDS:
        keep = x != -torch.inf
    return summaries(x, keep)


def _prod(shape: list[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
