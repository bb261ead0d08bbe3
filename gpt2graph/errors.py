"""Exceptions with messages a user can act on.

Every error the package raises on bad input derives from :class:`Gpt2GraphError`, so the CLI can print
its message and exit non-zero without a traceback.

An error that advises an argument names it in its message as ``{keyword}`` and lists it in ``arguments``
(with the value to pass, if any), so that each interface spells it its own way: ``str(error)`` as Python's
keyword argument (``random_weights=True``), the command line as its flag (``--random-weights``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "Gpt2GraphError",
    "PromptError",
    "ModelLoadError",
    "NotGpt2Error",
    "GraphFileError",
    "InputFileError",
    "NodeNotFoundError",
    "DataValidationError",
    "RendererError",
    "InterpretError",
    "RunMismatchError",
    "python_spelling",
]


class Gpt2GraphError(Exception):
    """Base class: a problem with the user's input, reported in one clear message."""

    def __init__(self, *args: Any, arguments: Mapping[str, Any] | None = None):
        super().__init__(*args)
        #: keyword -> the value the message advises (None: the argument itself), for ``{keyword}`` in the message
        self.arguments = dict(arguments or {})

    def spelt(self, spell: Callable[[str, Any], str]) -> str:
        """The message with each advised argument written by ``spell(keyword, value)``."""
        text = self.args[0] if len(self.args) == 1 and isinstance(self.args[0], str) else Exception.__str__(self)
        if not self.arguments:
            return text
        return text.format_map({k: spell(k, v) for k, v in self.arguments.items()})

    def __str__(self) -> str:
        return self.spelt(python_spelling)


def python_spelling(keyword: str, value: Any) -> str:
    """How Python code passes an argument: ``top_tokens``, or ``random_weights=True`` with a value."""
    return keyword if value is None else f"{keyword}={value!r}"


class PromptError(Gpt2GraphError, ValueError):
    """The prompt is empty or longer than the model's context."""


class ModelLoadError(Gpt2GraphError):
    """A named model could not be loaded (unknown id, missing files, no network)."""


class NotGpt2Error(ModelLoadError):
    """The model loaded, but it is not GPT-2-shaped."""


class GraphFileError(Gpt2GraphError):
    """A saved graph is missing, corrupted, truncated, mismatched, or cannot be written."""


class InputFileError(Gpt2GraphError):
    """A file the user named is not a regular file, cannot be read, or is larger than allowed."""


class NodeNotFoundError(Gpt2GraphError, KeyError):
    """A node id that is not in the graph."""

    __str__ = Gpt2GraphError.__str__  # KeyError's would print the repr of the message


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
