"""Exceptions with messages a user can act on.

Every error the package raises on bad input derives from :class:`Gpt2GraphError`, so the CLI can print
its message and exit non-zero without a traceback.
"""

from __future__ import annotations

__all__ = [
    "Gpt2GraphError",
    "PromptError",
    "ModelLoadError",
    "NotGpt2Error",
    "GraphFileError",
    "NodeNotFoundError",
    "DataValidationError",
    "RendererError",
    "InterpretError",
    "RunMismatchError",
]


class Gpt2GraphError(Exception):
    """Base class: a problem with the user's input, reported in one clear message."""


class PromptError(Gpt2GraphError, ValueError):
    """The prompt is empty or longer than the model's context."""


class ModelLoadError(Gpt2GraphError):
    """A named model could not be loaded (unknown id, missing files, no network)."""


class NotGpt2Error(ModelLoadError):
    """The model loaded, but it is not GPT-2-shaped."""


class GraphFileError(Gpt2GraphError):
    """A saved graph is missing, corrupted, truncated, mismatched, or cannot be written."""


class NodeNotFoundError(Gpt2GraphError, KeyError):
    """A node id that is not in the graph."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class DataValidationError(Gpt2GraphError):
    """Glossary or annotation data failed validation; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class RendererError(Gpt2GraphError):
    """An unknown renderer, a bad renderer option, or a plugin conflict."""


class InterpretError(Gpt2GraphError, ValueError):
    """Bad arguments to an interpretability computation (unknown token, position out of range, ...)."""


class RunMismatchError(Gpt2GraphError, ValueError):
    """Two runs that cannot be compared vector by vector: another model, or another number of tokens."""
