"""Glossary entries and annotations: validated data under ``data/``, extensible with the user's YAML files.

A glossary entry explains a concept; an annotation is a callout pinned to parts of a graph by selectors,
whose text may use template fields (``{n_tokens} x {d_model}``) filled in from the live run. Both come from
YAML that is parsed safely (plain data only: no Python object tags) and boundedly (a size limit and a limit
on nodes, so a document of nested aliases cannot expand into a huge structure), validated against the
pydantic models below (the source of ``schema/data.schema.json``) and cross-checked: unique ids, resolvable
links, known template fields, and, given a graph, selectors that select something in it. Every problem is
reported at once, as ``FILE:LINE:COL: field.path: message``. Text is kept as written; renderers escape it.

Example::

    g = gpt2graph.build("When Mary and John went to the store, John gave a drink to")
    g.glossary["residual-stream"].summary
    g.annotate("my-heads.yaml")               # raises DataValidationError listing every problem
    g.annotations_for("blocks.5.attn.hook_pattern[1,12]")
"""

from ..yamlsafe import MAX_NODES
from . import loading, mapping, models
from .checks import MAX_BYTES
from .loading import *  # noqa: F403
from .mapping import *  # noqa: F403
from .models import *  # noqa: F403

#: the public names of the glossary's modules, and its limits
__all__ = ["MAX_BYTES", "MAX_NODES"]
__all__ += models.__all__
__all__ += mapping.__all__
__all__ += loading.__all__
