"""The furniture of the pages: the title block (model facts, the prompt or the corpus, a banner on random weights),
the poster's legend (category colours, colour scales, how to read it, the terminology note) and the footer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gpt2graph.plugin import CATEGORY_COLOURS, CATEGORY_LABELS, ModelInfo, tint

from . import colors as C
from .engine import MARGIN, Page, bottom, colour_scale
from .rows import SAMPLE_HEAD, SAMPLE_TAIL
from .scene import FS, PAD, Box, Group, Rect, text_at
from .text import line_height

if TYPE_CHECKING:
    from gpt2graph import Graph

__all__ = ["title_block", "heading", "legend_block", "footer", "GRAPH_FOOTER"]


def title_block(page: Page, graph: Graph, title: str, lines: Sequence[str] = ()) -> None:
    """The title block of a page about one run: its model, its prompt (and ``lines`` about what the page shows
    of the run)."""
    tok, h = graph.tokenization, graph.header
    heading(
        page,
        title,
        graph.model,
        f"prompt: “{tok.text}” → {graph.n_tokens} tokens",
        f"captured {h.created} · gpt2graph {h.gpt2graph_version} · values exact from one forward pass",
        lines,
    )


def heading(page: Page, title: str, model: ModelInfo, subject: str, provenance: str, lines: Sequence[str] = ()) -> None:
    """The title, the model's facts, what the page is about (``subject``: the prompt, the corpus), how and when
    it was computed (``provenance``), ``lines`` more about it, and a banner that says whether the weights are
    trained."""
    m, d = model, model.dims
    x, w = MARGIN, page.frame.width - 2 * MARGIN
    t = page.wrapped(x, page.y, title, w, FS["title"], bold=True)
    page.label(t)
    page.y = t.box.bottom + 6
    facts = (
        f"model {m.name} ({m.architecture}) · {m.total_parameters:,} parameters · {d.n_layer} layers × "
        f"{d.n_head} heads · d_model {d.d_model} · d_head {d.d_head} · d_mlp {d.d_mlp} · "
        f"n_ctx {d.n_ctx} · n_vocab {d.n_vocab} · {m.dtype}"
    )
    f = page.wrapped(x, page.y, facts, w, FS["body"] + 1, colour=C.MUTED)
    about = page.wrapped(x, f.box.bottom + 4, subject, w, FS["h1"], bold=True)
    date = page.wrapped(x, about.box.bottom + 4, provenance, w, FS["small"], colour=C.MUTED)
    page.label(f, about, date)
    page.y = date.box.bottom + 4
    for line in lines:
        page.note(x, page.y, line, w, FS["body"], gap=2)
    page.y += 6
    if m.weights.status == "random":
        seed = "unknown seed" if m.weights.seed is None else f"seed {m.weights.seed}"
        msg = (
            f"RANDOM WEIGHTS ({seed}): this model was never trained. The structure and "
            f"the arithmetic are exact, but every value and prediction shown is meaningless."
        )
        fill = C.WARNING
    else:
        msg = "Pretrained weights: the values below are those of the trained model."
        fill = "#2f8a4e"
    t = page.wrapped(x + 14, page.y + 9, msg, w - 28, FS["h2"] + 1, bold=True, colour="#ffffff")
    page.front.append(Group([Rect(Box(x, page.y, w, t.box.h + 18), fill, rx=6)], [t], cls="weights-banner"))
    page.y = t.box.bottom + 9 + 16


def legend_block(page: Page) -> None:
    """The legend: the category colours, the colour scales, how to read the page; the terminology note."""
    x0, w_all = MARGIN, page.frame.width - 2 * MARGIN
    top = page.y
    col_w = (w_all - 2 * 14) / 3
    # categories
    x, y = x0 + PAD, top + PAD
    group = Group(cls="legend")
    group.texts.append(text_at(x, y, ["Legend"], FS["h2"], bold=True))
    y += line_height(FS["h2"]) + 4
    for cat, label in CATEGORY_LABELS.items():
        group.parts.append(
            Rect(Box(x, y + 1, 14, 11), tint(CATEGORY_COLOURS[cat], 0.25), CATEGORY_COLOURS[cat], 1.2, 2)
        )
        group.texts.append(text_at(x + 20, y, [label], FS["body"]))
        y += line_height(FS["body"]) + 3
    bottom = y
    # colour scales
    x = x0 + col_w + 14 + PAD
    y = top + PAD
    group.texts.append(text_at(x, y, ["Colour scales"], FS["h2"], bold=True))
    y += line_height(FS["h2"]) + 6
    bar_w = col_w - 2 * PAD
    y = _scale(group, colour_scale(x, y, bar_w, C.diverging, -1.0, [(0.0, "−max"), (0.5, "0"), (1.0, "+max")]))
    t = page.wrapped(
        x,
        y,
        "Vector cells: value ÷ the row's largest |value| (each row gives its max as "
        "'colour scale ±…'); blue negative, red positive.",
        bar_w,
        FS["small"],
    )
    group.texts.append(t)
    y = t.box.bottom + 8
    y = _scale(group, colour_scale(x, y, bar_w, C.sequential, 0.0, [(0.0, "0"), (1.0, "1")]))
    t = page.wrapped(
        x,
        y,
        "Attention weights (pattern). Raw scores use the blue–red scale; masked future positions are grey.",
        bar_w,
        FS["small"],
    )
    group.texts.append(t)
    bottom = max(bottom, t.box.bottom)
    # how to read
    x = x0 + 2 * (col_w + 14) + PAD
    y = top + PAD
    group.texts.append(text_at(x, y, ["How to read it"], FS["h2"], bold=True))
    y += line_height(FS["h2"]) + 4
    n_show = SAMPLE_HEAD + SAMPLE_TAIL
    for line in (
        f"One lane per token position; each strip is one vector. Long vectors show {n_show} of "
        f"their components: the first {SAMPLE_HEAD}, a gap, the last {SAMPLE_TAIL}, with index "
        "labels under the first lane.",
        "▶ marks the operation that produced the vector to its right. Hover any element for its "
        "graph node id and statistics (the id is also in its data-node attribute).",
        "Ġ marks a token's leading space and Ċ a newline, as GPT-2's tokenizer stores them.",
        "Indices (layer, head, position) start at 0.",
    ):
        t = page.wrapped(x, y, line, col_w - 2 * PAD, FS["small"])
        group.texts.append(t)
        y = t.box.bottom + 4
    bottom = max(bottom, y)
    for i in range(3):
        group.parts.insert(0, Rect(Box(x0 + i * (col_w + 14), top, col_w, bottom - top + PAD), "#ffffff", C.RULE, 1, 6))
    page.front.append(group)
    page.y = bottom + PAD + 14
    term = page.content.terminology() if page.content.enabled else None
    if term is not None:
        group = Group(cls="terminology")
        x, w = x0 + PAD, w_all - 2 * PAD
        y = page.y + PAD
        t = text_at(x, y, [term.title], FS["h2"], bold=True)
        group.texts.append(t)
        if term.caption:
            group.texts.append(
                text_at(t.box.right + 10, y + 2, [term.caption], FS["small"], italic=True, colour=C.MUTED)
            )
        y = t.box.bottom + 4
        for para in term.paragraphs:
            p = page.wrapped(x, y, para, w, FS["body"])
            group.texts.append(p)
            y = p.box.bottom + 4
        group.parts.append(Rect(Box(x0, page.y, w_all, y - page.y + PAD - 4), "#ffffff", C.RULE, 1, 6))
        page.front.append(group)
        page.y = y + PAD + 14


def _scale(group: Group, scale: Group) -> float:
    """Draw a colour scale in ``group``; returns where the text under it goes."""
    group.parts += scale.parts
    group.texts += scale.texts
    return bottom(scale) + 2


#: what the foot of a page about a run says
GRAPH_FOOTER = (
    "Generated by gpt2graph-svg from a saved forward pass. Every element that draws a graph node carries the node "
    "id in data-node (and n-<escaped id> as its XML id)."
)


def footer(page: Page, text: str = GRAPH_FOOTER) -> None:
    """How the page was made and how its elements say what they show."""
    page.y += 6
    t = page.wrapped(MARGIN, page.y, text, page.frame.width - 2 * MARGIN, FS["small"], colour=C.MUTED)
    page.label(t)
    page.y = t.box.bottom + MARGIN
