"""How every renderer presents a graph: one category palette, one way to write numbers, and one reading of
the Markdown people write (glossary entries, annotations) with one rule for which links may be followed.

Renderers differ in what they draw, not in these: a category has the same colour on the poster and in the
explorer, a probability reads the same in a tooltip and in a table, and a link a user wrote is a link in
both or in neither.

Example::

    CATEGORY_COLOURS["attention"], tint(CATEGORY_COLOURS["attention"], 0.2)   # '#d0661b', a light orange
    percent(0.125), percent(3.28e-5), signed(-1.2e-5), fixed(-0.004, 2)     # '12.5%', '0.00328%', '−1.2e-05', '0'
    [b.text for b in parse_markdown("Use **W_Q**.\\n\\n- [a](https://x.org)\\n- b")]   # ['Use W_Q.', 'a b']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .schema import Category

__all__ = [
    "CATEGORY_COLOURS",
    "CATEGORY_LABELS",
    "tint",
    "percent",
    "signed",
    "fixed",
    "safe_url",
    "Span",
    "Block",
    "parse_markdown",
    "parse_inline",
]

# ---- colours ----------------------------------------------------------------------------------------------
#: the colour of each legend category (strokes, swatches, fills); tints of it for backgrounds
CATEGORY_COLOURS: dict[str, str] = {
    Category.tokenizer: "#7b52ab",
    Category.parameter: "#a87b2f",
    Category.operation: "#5b6472",
    Category.residual: "#2b6cb0",
    Category.attention: "#d0661b",
    Category.mlp: "#2f8a4e",
    Category.unembedding: "#b8326e",
}
#: how a legend names each category
CATEGORY_LABELS: dict[str, str] = {
    Category.tokenizer: "tokenizer",
    Category.parameter: "parameters (learned weights)",
    Category.operation: "operations",
    Category.residual: "residual stream",
    Category.attention: "attention",
    Category.mlp: "MLP",
    Category.unembedding: "unembedding and decoding",
}


def tint(colour: str, amount: float) -> str:
    """``colour`` (``#rrggbb``) mixed with white: amount 0 is white, 1 the colour itself."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 + (c - 255) * amount):02x}" for c in rgb)


# ---- numbers ----------------------------------------------------------------------------------------------
def percent(p: float) -> str:
    """A probability as a percentage in three significant digits: an untrained model's 0.00328% stays
    readable where a fixed number of decimals would print 0.0%."""
    return f"{100 * p:.3g}%"


def signed(v: float, digits: int = 4) -> str:
    """A signed quantity (a logit, an effect) in ``digits`` significant digits with a real minus sign; zero has
    no sign."""
    return "0" if v == 0 else f"{v:+.{digits}g}".replace("-", "−")


def fixed(v: float, digits: int = 2) -> str:
    """A number with ``digits`` decimals (cells of one table line up) and a real minus sign; a value that rounds
    to zero is ``0``, without a sign."""
    s = f"{v:.{digits}f}".replace("-", "−")
    return "0" if s.lstrip("−").strip("0.") == "" else s


# ---- text -------------------------------------------------------------------------------------------------
_URL = re.compile(r"^https?://[^\s<>\"'`]+$")


def safe_url(url: str) -> str | None:
    """The one link policy of every renderer: a web address (http or https, with no space, quote, angle bracket
    or backtick in it) may become a link; anything else (``javascript:``, ``data:``, ``mailto:``, relative
    paths) is shown as text, never followed. Glossary sources are validated to the same rule."""
    url = url.strip()
    return url if _URL.match(url) else None


@dataclass(frozen=True)
class Span:
    """A run of text with one style: strong and emphasis can combine; ``code`` is verbatim; ``url`` makes it a
    link (always one :func:`safe_url` allows)."""

    text: str
    strong: bool = False
    em: bool = False
    code: bool = False
    url: str | None = None


@dataclass(frozen=True)
class Block:
    """A paragraph (one item) or a list (one item per entry; ``ordered`` for ``1.`` lists)."""

    items: tuple[tuple[Span, ...], ...]
    is_list: bool = False
    ordered: bool = False

    @property
    def text(self) -> str:
        """The block as plain text: a list's entries joined by spaces (numbered for an ordered list)."""
        items = ["".join(s.text for s in item) for item in self.items]
        if self.ordered:
            items = [f"{i}. {item}" for i, item in enumerate(items, 1)]
        return " ".join(items)


_LINK = re.compile(r"\[([^\[\]]+)\]\(([^()\s]+)\)")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_ITEM = re.compile(r"^\s*(?:[-*]|(\d+)\.)\s+")
_MARK = re.compile("\x01([SsEe])|\x00(\\d+)\x00")


def parse_markdown(text: str) -> list[Block]:
    """The subset of Markdown glossary and annotation texts use: paragraphs (blank-line separated; lines
    joined), ``-``/``*``/``1.`` lists, ``code``, ``**strong**``, ``*emphasis*`` and ``[links](https://...)``.
    Nothing else is markup: every other character is text, to be escaped by whoever draws it."""
    blocks = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = [line for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        items = [m for m in map(_ITEM.match, lines) if m is not None]
        if len(items) == len(lines):
            blocks.append(
                Block(
                    tuple(parse_inline(line[m.end() :]) for line, m in zip(lines, items)),
                    is_list=True,
                    ordered=all(m.group(1) for m in items),
                )
            )
        else:
            blocks.append(Block((parse_inline(" ".join(line.strip() for line in lines)),)))
    return blocks


def parse_inline(text: str) -> tuple[Span, ...]:
    """One line of Markdown as spans: code spans are verbatim (an unmatched backtick stays a character); the
    rest gets emphasis and links, a link only when :func:`safe_url` allows its target (else it stays text)."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    spans: list[Span] = []
    for i, part in enumerate(parts):
        if i % 2:
            spans.append(Span(part, code=True))
        elif part:
            spans += _styled(part)
    return tuple(spans)


def _styled(text: str) -> list[Span]:
    """Emphasis and links in text without code spans. Links are set aside first, so emphasis marks never
    land inside a target."""
    links: list[tuple[str, str]] = []

    def set_aside(m: re.Match[str]) -> str:
        url = safe_url(m.group(2))
        if url is None:
            return str(m.group(0))
        links.append((m.group(1), url))
        return f"\x00{len(links) - 1}\x00"

    text = _LINK.sub(set_aside, text.replace("\x00", "").replace("\x01", ""))
    text = _STRONG.sub("\x01S\\1\x01s", text)
    text = _EM.sub("\x01E\\1\x01e", text)
    spans: list[Span] = []
    strong = em = False
    at = 0
    for m in _MARK.finditer(text):
        if m.start() > at:
            spans.append(Span(text[at : m.start()], strong, em))
        at = m.end()
        if m.group(2) is not None:
            label, url = links[int(m.group(2))]
            spans.append(Span(label, strong, em, url=url))
        else:
            mark = m.group(1)
            strong = mark == "S" if mark in "Ss" else strong
            em = mark == "E" if mark in "Ee" else em
    if at < len(text):
        spans.append(Span(text[at:], strong, em))
    return spans
