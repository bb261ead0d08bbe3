"""Text to HTML for the places where Bokeh interprets HTML (a Div's text): escape everything, add only our tags.

Glossary bodies and annotations are Markdown written by people (built-in data, or a user's file), and token
strings come from the prompt, so none of it may reach the page as markup. The core reads the Markdown
(:func:`gpt2graph.plugin.parse_markdown`, which decides what may be a link); here every span is escaped with
:func:`html.escape` and wrapped in tags we write ourselves: paragraphs, lists, ``code``, ``strong``, ``em`` and
``a`` (new tab, no referrer).

Example::

    markdown("Use **W_Q** <script>")   # '<p>Use <strong>W_Q</strong> &lt;script&gt;</p>'
"""

from __future__ import annotations

import html

from gpt2graph.plugin import Span, parse_inline, parse_markdown, safe_url

__all__ = ["escape", "inline", "link", "markdown"]


def escape(text: str) -> str:
    """``text`` as HTML text (quotes too, so it is safe inside attribute values)."""
    return html.escape(text, quote=True)


def link(url: str, title: str) -> str:
    """An ``<a>`` to ``url`` opening in a new tab, or just the escaped title when the link policy refuses it."""
    url = safe_url(url)
    if url is None:
        return escape(title)
    return f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(title)}</a>'


def _span(s: Span) -> str:
    if s.code:
        return f"<code>{escape(s.text)}</code>"
    out = escape(s.text) if s.url is None else link(s.url, s.text)
    if s.em:
        out = f"<em>{out}</em>"
    return f"<strong>{out}</strong>" if s.strong else out


def inline(text: str) -> str:
    """One line of Markdown as safe HTML."""
    return "".join(_span(s) for s in parse_inline(text))


def markdown(text: str) -> str:
    """Paragraphs and lists of Markdown as safe HTML."""
    out = []
    for block in parse_markdown(text):
        items = ["".join(_span(s) for s in item) for item in block.items]
        if block.is_list:
            out.append("<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>")
        else:
            out.append(f"<p>{items[0]}</p>")
    return "".join(out)
