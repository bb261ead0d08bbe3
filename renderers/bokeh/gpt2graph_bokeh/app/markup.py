"""HTML of the live page's text panels, built from escaped text only: a prompt, a token, an annotation or an
error message is always shown as text, never as markup (a Div's ``text`` is HTML, see NOTES.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bokeh.models import Div, InlineStyleSheet

from gpt2graph.plugin import Tokenization

from ..document import _CSS
from ..sanitize import escape, markdown
from .walkthrough import TourStep

__all__ = [
    "CSS",
    "download_html",
    "header_html",
    "message_html",
    "text_div",
    "progress_html",
    "tokens_html",
    "tour_html",
]

CSS = (
    _CSS
    + """
.g2g-tokens { display: flex; flex-wrap: wrap; gap: 4px; align-items: flex-start; }
.g2g-tok { display: inline-flex; flex-direction: column; align-items: center; border: 1px solid #c9d3df;
           border-radius: 4px; padding: 1px 5px; background: #f6f8fa; }
.g2g-tok-text { font-family: ui-monospace, monospace; white-space: pre; }
.g2g-tok-id { font-size: 10px; color: #777; font-variant-numeric: tabular-nums; }
.g2g-count { color: #555; margin-right: 6px; align-self: center; }
.g2g-error { background: #fdecea; border: 1px solid #e0a39c; padding: 6px 10px; border-radius: 4px; }
.g2g-info { color: #444; padding: 4px 0; }
.g2g-bar { width: 260px; height: 8px; background: #e8e8e8; border-radius: 4px; overflow: hidden;
           display: inline-block; vertical-align: middle; margin-right: 8px; }
.g2g-bar > div { height: 100%; background: #4c78a8; transition: width .2s; }
.g2g-spin { display: inline-block; width: 10px; height: 10px; border: 2px solid #4c78a8;
            border-right-color: transparent; border-radius: 50%; animation: g2g-spin .8s linear infinite;
            vertical-align: middle; margin-right: 6px; }
@keyframes g2g-spin { to { transform: rotate(360deg); } }
.g2g-facts { margin: 4px 0 0 0; padding-left: 18px; font-variant-numeric: tabular-nums; }
.g2g-step { color: #777; font-size: 12px; }
"""
)


def text_div(name: str, text: str = "", **kw: Any) -> Div:
    """A Div of the page's text (HTML made by this module), styled by :data:`CSS`, named for tests to find."""
    return Div(text=text, name=name, stylesheets=[InlineStyleSheet(css=CSS)], **kw)


def header_html(note: str | None, random: bool) -> str:
    """The page's title and what the model is; random weights in the warning banner."""
    about = ""
    if note is not None:
        about = f'<div class="{"g2g-warning" if random else "g2g-info"}">{escape(note)}</div>'
    return (
        '<div class="g2g-title">gpt2graph: a live GPT-2 forward pass</div>'
        '<div class="g2g-hint">Type a prompt: its tokens appear as you type. Run builds the graph of every vector '
        "of the run; the decoding controls recompute the next token from the stored logits; Next token appends "
        "it and runs again. The arrow keys move the walkthrough.</div>" + about
    )


def tokens_html(tokens: Tokenization) -> str:
    """Every token as its BPE string (Ġ marks a leading space, Ċ a newline) over its id."""
    chips = "".join(
        f'<span class="g2g-tok" title="position {p}"><span class="g2g-tok-text">{escape(t)}</span>'
        f'<span class="g2g-tok-id">{i}</span></span>'
        for p, (t, i) in enumerate(zip(tokens.tokens_visible, tokens.token_ids))
    )
    n = len(tokens.token_ids)
    return (
        f'<div class="g2g-tokens"><span class="g2g-count">{n} token{"s" if n != 1 else ""} '
        f"(Ġ: a leading space)</span>{chips}</div>"
    )


def message_html(text: str, error: bool = False) -> str:
    """A message for the person at the page (an error stands out)."""
    return f'<div class="{"g2g-error" if error else "g2g-info"}">{escape(text)}</div>' if text else ""


def progress_html(what: str, done: float, seconds: float) -> str:
    """A spinner, a bar and what is being done, with the time it has taken so far."""
    width = max(0.0, min(1.0, done)) * 100
    return (
        f'<span class="g2g-spin"></span><span class="g2g-bar"><div style="width: {width:.0f}%"></div></span>'
        f"<span>{escape(what)}… {seconds:.1f} s</span>"
    )


def tour_html(step: TourStep, facts: Sequence[str], number: int, total: int) -> str:
    """One walkthrough step: where it is in the tour, the callout with this run's numbers, where it comes from."""
    caption = f'<div class="g2g-caption">{escape(step.caption)}</div>' if step.caption else ""
    lines = "".join(f"<li>{escape(f)}</li>" for f in facts)
    live = f'<div class="g2g-label">this run</div><ul class="g2g-facts">{lines}</ul>' if lines else ""
    nothing = "" if len(step.nodes) else '<p class="g2g-hint">It applies to no node of this run.</p>'
    return (
        f'<div class="g2g-step">step {number} of {total} · {len(step.nodes):,} nodes highlighted · '
        f"{escape(step.origin)}</div>"
        f'<div class="g2g-callout"><div class="g2g-callout-title">{escape(step.title)}</div>'
        f"{markdown(step.body)}{caption}{live}{nothing}</div>"
    )


def download_html(url: str, name: str, size: int) -> str:
    """A link to a file the server prepared (the page also starts the download by itself)."""
    return (
        f'<div class="g2g-info">Ready: <a href="{escape(url)}" download="{escape(name)}">{escape(name)}</a> '
        f"({size / 2**20:.1f} MB)</div>"
    )
