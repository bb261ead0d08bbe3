"""Resolve what a user names in an interpretability request (a token, a position) to indices, or say why not.

A token is an id or a string that is exactly one vocabulary entry. The string may be in BPE form as the
vocabulary stores it (``"Ġthe"``) or raw text (``" the"``): raw text is mapped to GPT-2's byte-level form
(every byte to one printable character) before the lookup, so both spell the same token.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from .errors import InterpretError

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["resolve_token", "resolve_position", "resolve_pair", "check_top_tokens", "check_seed", "byte_level"]


@lru_cache(maxsize=1)
def _byte_chars() -> tuple[str, ...]:
    """GPT-2's byte-to-character table: printable Latin-1 bytes stand for themselves, the other 68 bytes
    (controls, space, ...) map in order to code points 256, 257, ... (so the space byte 0x20 becomes Ġ)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), 256))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return tuple(chars)


def byte_level(text: str) -> str:
    """``text`` in GPT-2's byte-level BPE alphabet, e.g. ``" the"`` -> ``"Ġthe"``."""
    table = _byte_chars()
    return "".join(table[b] for b in text.encode("utf-8"))


def resolve_token(graph: Graph, token: int | str, what: str = "token") -> int:
    """The id of ``token`` (an id, or a string that is exactly one token); ``what`` names it in errors."""
    n_vocab = graph.dims.n_vocab
    if isinstance(token, bool) or not isinstance(token, (int, str)):
        raise InterpretError(f"{what} must be a token id or a one-token string, got {type(token).__name__}")
    if isinstance(token, int):
        if not 0 <= token < n_vocab:
            raise InterpretError(f"{what} id {token} is outside the vocabulary (0..{n_vocab - 1})")
        return token
    vocab = graph.vocab
    for form in (token, byte_level(token)):
        if form in vocab:
            return vocab.index(form)
    hint = ""
    if token and not token.startswith(" ") and byte_level(" " + token) in vocab:
        hint = f" (did you mean {' ' + token!r}, with a leading space?)"
    raise InterpretError(
        f"{what} {token!r} is not a single token of this model's vocabulary{hint}: give a "
        "token id or a string that is exactly one token"
    )


def resolve_position(graph: Graph, position: int) -> int:
    """``position`` as an index in 0..n-1 (negative positions count from the end, like Python's)."""
    n = graph.n_tokens
    if isinstance(position, bool) or not isinstance(position, int):
        raise InterpretError(f"position must be an integer, got {type(position).__name__}")
    if not -n <= position < n:
        raise InterpretError(
            f"position {position} is out of range for a {n}-token prompt (valid: 0..{n - 1}, or -{n}..-1 from the end)"
        )
    return position % n


def resolve_pair(
    graph: Graph, position: int, target: int | str | None, contrast: int | str | None
) -> tuple[int, int | None]:
    """The token whose logit is attributed at ``position`` (``target``, default: the model's prediction there)
    and the ``contrast`` token of a logit difference; a contrast equal to the target is refused, since their
    difference is zero whatever the model does."""
    t = int(graph.logits[position].argmax()) if target is None else resolve_token(graph, target, "target")
    u = None if contrast is None else resolve_token(graph, contrast, "contrast")
    if u == t:
        which = "target" if target is not None else "model's prediction at this position (the default target)"
        raise InterpretError(
            f"contrast {graph.vocab[u]!r} is the same token as the {which}: the logit difference of a token with "
            "itself is 0 whatever the model does; choose two different tokens",
            arguments={"contrast": None},
        )
    return t, u


def check_top_tokens(top_tokens: int) -> None:
    """Refuse a count of kept rows that is not a positive integer (a count above the vocabulary keeps all)."""
    if isinstance(top_tokens, bool) or not isinstance(top_tokens, int) or top_tokens < 1:
        raise InterpretError(
            f"{{top_tokens}} must be a positive integer, got {top_tokens!r}", arguments={"top_tokens": None}
        )


def check_seed(seed: int) -> None:
    """Refuse a seed torch cannot take: an integer from 0 to 2**64 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise InterpretError(f"seed must be an integer from 0 to 2**64 - 1, got {seed!r}")
