"""The renderer API: everything a renderer plugin may import from gpt2graph, in one place.

A renderer receives a :class:`~gpt2graph.graph.Graph` (``from gpt2graph import Graph``) and draws it; one that
also has ``render_corpus(stats, path)`` draws :class:`~gpt2graph.corpus.CorpusStats` (a ``.ggc``) too. Besides
the graph's own methods, a plugin may use the names below and nothing else from gpt2graph; the test suite
fails when a plugin under ``renderers/`` imports anything else, so this list is the contract the core keeps
stable for plugins. ``renderers/template`` shows a whole renderer written against it.

The contract (see ``renderers/template/README.md``):

* declare options with :class:`Option` (a plugin's own entry points check them with :func:`check_options`, the
  rules ``graph.render`` applies); report bad input with :class:`RendererError`;
* write files with :func:`atomic_write` (an unwritable path is a :class:`~gpt2graph.errors.GraphFileError`);
* **draw the view you are given**: a ``graph.subgraph(...)`` view's selection of layers, heads and positions
  is the part to draw (``graph.selection``; the renderer's own options narrow it further, never widen it);
* present with :mod:`gpt2graph.presentation`: its category colours, number formats and Markdown reading
  (with its one link policy), so that every renderer says the same thing the same way;
* treat every text from the graph (prompt, tokens, glossary, annotations) as untrusted: escape it for your
  format.

Structure (ids, kinds, what reads what) comes from :mod:`gpt2graph.topology`; values from the graph
(``graph.values``, ``graph.hook``, ``graph.summaries``); interpretability results from ``graph.analysis``
(:mod:`gpt2graph.results`), and the logit lens's entries from ``graph.lens`` (:class:`LensTable`: ask for the
nodes you draw; the lens of head and MLP outputs is computed for those only); patching sweeps and the circuit
behind a prediction from ``graph.header.patching`` and ``graph.header.circuit`` (:mod:`gpt2graph.causal`), with
:func:`writer_key` and :func:`reader_key` naming the vectors through which a circuit's components write and read,
and :func:`component_stage` their forward order.

An *app* (the ``gpt2graph.apps`` entry-point group, e.g. the Bokeh plugin's live server behind ``gpt2graph
serve``) holds a model and builds graphs as its user works, so it may also load a model once
(:func:`load_model`), tokenize with it (:func:`tokenize`), build from it (``gpt2graph.build(prompt,
model=loaded)``, text or token ids), check decoding settings (:func:`settings`), and tell its user what went
wrong (:class:`PromptError`, :class:`ModelLoadError`, :class:`DataValidationError`).
"""

from __future__ import annotations

from . import presentation
from .builder import tokenize
from .causal import (
    Axis,
    CircuitEdge,
    Component,
    ComponentType,
    HeadInput,
    PatchDirection,
    PatchKind,
    PatchMetric,
    PatchSweep,
    PredictionCircuit,
)
from .circuit import component_stage, reader_key, writer_key
from .corpus import CorpusStats, LensRow
from .decoding import decode_next, settings
from .errors import DataValidationError, InterpretError, ModelLoadError, PromptError, RendererError
from .glossary import ResolvedAnnotation, template_values
from .graph import Graph, Selection
from .lens import LensTable, lens_blocks, lens_logits, read_logits
from .loading import DEFAULT_MODEL, LoadedModel, load_model
from .presentation import *  # noqa: F403
from .registry import Option, check_options
from .results import Analysis, Attribution, DecodingResult, DLAResult, LensEntry, LogitLens, Role
from .schema import Category, DecodingSettings, EdgeRole, ModelInfo, ParamKind, Tokenization, VectorKind
from .storage import atomic_write
from .topology import (
    BLOCK_KINDS,
    DECODE_KINDS,
    EMBED_KINDS,
    FINAL_KINDS,
    LAYERNORMS,
    PARAM_CONSUMER,
    PARAM_SPECS,
    READS,
    SAME,
    TIED,
    UPTO,
    VECTOR_SPECS,
    Key,
    Topology,
)
from .values import SUMMARY_FIELDS, summaries

__all__ = [
    # the contract
    "Graph",
    "Selection",
    "CorpusStats",
    "LensRow",
    "ModelInfo",
    "Option",
    "check_options",
    "RendererError",
    "InterpretError",
    "atomic_write",
    # structure
    "Key",
    "Topology",
    "Category",
    "VectorKind",
    "ParamKind",
    "VECTOR_SPECS",
    "PARAM_SPECS",
    "READS",
    "SAME",
    "UPTO",
    "PARAM_CONSUMER",
    "TIED",
    "EMBED_KINDS",
    "BLOCK_KINDS",
    "FINAL_KINDS",
    "DECODE_KINDS",
    "LAYERNORMS",
    # values and results
    "SUMMARY_FIELDS",
    "summaries",
    "Analysis",
    "Attribution",
    "DecodingResult",
    "DLAResult",
    "LensEntry",
    "LensTable",
    "LogitLens",
    "Role",
    "decode_next",
    "lens_blocks",
    "lens_logits",
    "read_logits",
    "ResolvedAnnotation",
    "template_values",
    # causal experiments stored on a run (graph.header.patching, graph.header.circuit)
    "PatchSweep",
    "PatchKind",
    "PatchMetric",
    "PatchDirection",
    "Axis",
    "PredictionCircuit",
    "Component",
    "ComponentType",
    "CircuitEdge",
    "HeadInput",
    "writer_key",
    "reader_key",
    "component_stage",
    # apps: they hold a model and build graphs (gpt2graph.apps)
    "DEFAULT_MODEL",
    "LoadedModel",
    "load_model",
    "tokenize",
    "settings",
    "DecodingSettings",
    "Tokenization",
    "EdgeRole",
    "PromptError",
    "ModelLoadError",
    "DataValidationError",
]
# presentation: every name of gpt2graph.presentation
__all__ += presentation.__all__
