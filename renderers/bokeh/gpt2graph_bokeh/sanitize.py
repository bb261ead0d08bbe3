"""Text to HTML for the places where Bokeh interprets HTML (a Div's text): escape first, then add only our tags.

Glossary bodies and annotations are Markdown written by people (built-in data, or a user's file), and token
strings come from the prompt, so none of it may reach the page as markup. Everything is escaped with
:func:`html.escape`; only then are a few Markdown constructs turned into tags we write ourselves: paragraphs,
``-`` lists, ``code``, ``**strong**``, ``*emphasis*`` and ``[links](https://...)`` whose target is http or
https (anything else stays text).

Example::

    markdown("Use **W_Q** <script>")   # '<p>Use <strong>W_Q</strong> &lt;script&gt;</p>'
"""

from __future__ import annotations

import html
import re

__all__ = ["escape", "inline", "link", "markdown"]

_URL = re.compile(r"^https?://[^\s<>\"'`]+$")
_LINK = re.compile(r"\[([^\[\]]+)\]\(([^()\s]+)\)")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_ITEM = re.compile(r"^\s*(?:[-*]|\d+\.)\s+")


def escape(text: str) -> str:
    """``text`` as HTML text (quotes too, so it is safe inside attribute values)."""
    return html.escape(text, quote=True)


def link(url: str, title: str) -> str:
    """An ``<a>`` to ``url`` opening in a new tab, or just the escaped title when ``url`` is not http(s)."""
    if not _URL.match(url):
        return escape(title)
    return f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(title)}</a>'


def _span(escaped: str) -> str:
    """Markdown emphasis and links inside already-escaped text without code spans. Links are set aside
    first, so emphasis never lands inside an href."""
    links: list[str] = []

    def set_aside(m: re.Match) -> str:
        url = html.unescape(m.group(2))
        if not _URL.match(url):
            return m.group(0)
        links.append(link(url, html.unescape(m.group(1))))
        return f"\x00{len(links) - 1}\x00"

    escaped = _LINK.sub(set_aside, escaped.replace("\x00", ""))
    escaped = _STRONG.sub(r"<strong>\1</strong>", escaped)
    escaped = _EM.sub(r"<em>\1</em>", escaped)
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m.group(1))], escaped)


def inline(text: str) -> str:
    """One line of Markdown as safe HTML: code spans are kept verbatim (escaped), the rest gets emphasis and
    links."""
    parts = escape(text).split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: leave it as a character
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    return "".join(f"<code>{p}</code>" if i % 2 else _span(p) for i, p in enumerate(parts))


def markdown(text: str) -> str:
    """Paragraphs and lists of Markdown as safe HTML."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        if all(_ITEM.match(line) for line in lines):
            items = "".join(f"<li>{inline(_ITEM.sub('', line))}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{inline(' '.join(line.strip() for line in lines))}</p>")
    return "".join(out)
