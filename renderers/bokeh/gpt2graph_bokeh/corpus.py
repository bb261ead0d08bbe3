"""Corpus statistics (``gpt2graph corpus``, a ``.ggc``) as one interactive page: a heat map per head role
(mean score of every head, hover for the numbers), the logit lens's top-1 accuracy and mean rank on each
residual stream, and the loss at each position with how many prompts reach it.

Every text from the statistics (model name, source path, role names) reaches the page as Bokeh text
properties or data columns, which Bokeh draws as text, never as HTML.
"""

from __future__ import annotations

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, LinearColorMapper, Paragraph
from bokeh.plotting import figure

from gpt2graph.plugin import CATEGORY_COLOURS, CorpusStats, fixed, tint

__all__ = ["build_corpus_page", "corpus_title"]

#: the heat maps' palette: white to the attention colour (role scores are attention weights, 0 to 1)
_STEPS = 16


def _palette() -> list[str]:
    return [tint(CATEGORY_COLOURS["attention"], i / (_STEPS - 1)) for i in range(_STEPS)]


def corpus_title(stats: CorpusStats) -> str:
    h = stats.header
    state = "" if h.complete else " (partial)"
    return f"Corpus statistics{state}: {h.model.name}, {h.prompts} prompts"


def build_corpus_page(stats: CorpusStats):
    """The page's root layout (a pure function of the statistics)."""
    h = stats.header
    weights = "pretrained weights" if h.model.weights.status == "pretrained" else "RANDOM weights"
    summary = column(
        Paragraph(text=corpus_title(stats), styles={"font-size": "18pt", "font-weight": "bold"}),
        Paragraph(  # plain text: Bokeh escapes it
            text=f"{h.tokens} tokens, longest {h.max_tokens}; {len(h.skipped)} records skipped; {weights}; "
            f"prompts from {h.source.path}",
            width=900,
        ),
    )
    if not h.prompts:
        return column(summary)
    return column(summary, row(*_role_maps(stats)), row(_lens_chart(stats), _loss_chart(stats)))


def _role_maps(stats: CorpusStats) -> list:
    dims = stats.dims
    chance = stats.role_chance()
    mapper = LinearColorMapper(palette=_palette(), low=0.0, high=1.0)
    maps = []
    for role, scores in stats.role_means().items():
        layers, heads = zip(*[(L, H) for L in range(dims.n_layer) for H in range(dims.n_head)])
        source = ColumnDataSource(
            {
                "layer": list(layers),
                "head": list(heads),
                "score": [float(scores[L, H]) for L, H in zip(layers, heads)],
                "chance": [chance[role]] * len(layers),
            }
        )
        counted = int(stats.moments[f"roles/{role}"].count)
        fig = figure(
            title=f"{role.replace('_', ' ')} ({counted} prompts)",
            width=max(200, 70 + 22 * dims.n_head),
            height=max(180, 90 + 18 * dims.n_layer),
            x_range=(-0.5, dims.n_head - 0.5),
            y_range=(dims.n_layer - 0.5, -0.5),
            x_axis_label="head",
            y_axis_label="layer",
            tools="",
            toolbar_location=None,
            name=f"roles-{role}",
        )
        fig.xaxis.ticker = FixedTicker(ticks=list(range(dims.n_head)))
        fig.yaxis.ticker = FixedTicker(ticks=list(range(dims.n_layer)))
        fig.rect("head", "layer", 1, 1, source=source, fill_color={"field": "score", "transform": mapper},
                 line_color="white")  # fmt: skip
        fig.add_tools(
            HoverTool(
                tooltips=[
                    ("head", "L@layer H@head"),
                    ("mean score", "@score{0.000}"),
                    ("uniform head", "@chance{0.000}"),
                ]
            )
        )
        maps.append(fig)
    return maps


def _lens_chart(stats: CorpusStats):
    rows = stats.lens_rows
    names = [r.kind if r.layer is None else f"{r.kind} {r.layer}" for r in rows]
    source = ColumnDataSource(
        {"stream": names, "accuracy": stats.lens_accuracy.tolist(), "rank": stats.lens_rank.tolist()}
    )
    fig = figure(
        title="Logit lens: top-1 accuracy by residual stream",
        x_range=names,
        y_range=(0, 1),
        width=max(360, 46 * len(names)),
        height=320,
        y_axis_label="share of positions",
        tools="",
        toolbar_location=None,
        name="lens",
    )
    fig.vbar(x="stream", top="accuracy", width=0.7, source=source, color=CATEGORY_COLOURS["residual"])
    fig.xaxis.major_label_orientation = 0.9
    fig.add_tools(
        HoverTool(tooltips=[("stream", "@stream"), ("top-1", "@accuracy{0.0%}"), ("mean rank", "@rank{0.0}")])
    )
    return fig


def _loss_chart(stats: CorpusStats):
    loss = stats.loss_by_position.tolist()
    source = ColumnDataSource(
        {"position": list(range(len(loss))), "loss": loss, "prompts": stats.moments["loss/position"].count.tolist()}
    )
    fig = figure(
        title=f"Loss by position (mean {fixed(stats.loss, 3)} nats per token)",
        width=420,
        height=320,
        x_axis_label="position",
        y_axis_label="mean -log p(next token), nats",
        tools="",
        toolbar_location=None,
        name="loss",
    )
    colour = CATEGORY_COLOURS["unembedding"]
    fig.line("position", "loss", source=source, color=colour)
    fig.scatter("position", "loss", source=source, size=7, color=colour)
    fig.add_tools(HoverTool(tooltips=[("position", "@position"), ("loss", "@loss{0.000}"), ("prompts", "@prompts")]))
    return fig
