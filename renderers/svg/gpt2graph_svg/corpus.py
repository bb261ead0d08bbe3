"""Corpus statistics (``gpt2graph corpus``, a ``.ggc``) as one SVG page: a heat map of the mean score of every
head in every role, the logit lens's top-1 accuracy on each residual stream, and the loss at each position.

Each heat-map cell, bar and point is a group with a tooltip giving the exact numbers and ``data-*``
attributes naming what it shows (role, layer, head; stream; position), like the poster's node groups.
"""

from __future__ import annotations

from gpt2graph.plugin import CATEGORY_COLOURS, CorpusStats, LensRow, fixed, percent

from . import colors as C
from .scene import FS, PAD, Box, Group, Rect, Scene, text_at

__all__ = ["corpus_scene"]

CELL = 18  # one head in the heat maps (px)
BAR_W, BAR_H = 26, 120  # one bar of the lens and loss charts, and the charts' height
LABEL_W = 34  # row labels of a heat map


def corpus_scene(stats: CorpusStats) -> Scene:
    """Lay the statistics out: a pure function of them (no file is touched)."""
    h = stats.header
    weights = "pretrained weights" if h.model.weights.status == "pretrained" else "RANDOM weights"
    state = "" if h.complete else f" — PARTIAL: {sum(b - a for a, b in h.done)} of {h.source.records} records done"
    title = f"Corpus statistics: {h.model.name}"
    subtitle = (
        f"{h.prompts} prompts from {h.source.path}, {h.tokens} tokens, longest {h.max_tokens}; "
        f"{len(h.skipped)} records skipped; {weights}{state}"
    )
    groups = [Group(texts=[text_at(PAD, PAD, [title], FS["title"], bold=True)])]
    groups.append(Group(texts=[text_at(PAD, PAD + 36, [subtitle], FS["body"], colour=C.MUTED)]))
    y = PAD + 66
    width = 640.0
    if h.prompts:
        y, w = _role_maps(stats, groups, y)
        width = max(width, w)
        y, w = _lens_chart(stats, groups, y)
        width = max(width, w)
        y, w = _loss_chart(stats, groups, y)
        width = max(width, w)
    else:
        groups.append(Group(texts=[text_at(PAD, y, ["No prompt counted yet."], FS["h2"])]))
        y += 30
    return Scene(width + PAD, y + PAD, title, subtitle, groups)


def _heading(groups: list[Group], y: float, text: str, note: str) -> float:
    groups.append(Group(texts=[text_at(PAD, y, [text], FS["h1"], bold=True)]))
    groups.append(Group(texts=[text_at(PAD, y + 20, [note], FS["small"], colour=C.MUTED)]))
    return y + 42


def _role_maps(stats: CorpusStats, groups: list[Group], y: float) -> tuple[float, float]:
    dims = stats.dims
    y = _heading(
        groups,
        y,
        "Head roles: mean score over the corpus",
        "attention each head pays to the key its role picks out (0 to 1), averaged over the prompts where the "
        "role is defined; hover a cell for the uniform head's score",
    )
    chance = stats.role_chance()
    x = PAD
    for role, scores in stats.role_means().items():
        counted = int(stats.moments[f"roles/{role}"].count)
        group = Group(cls="role-map", data={"role": role})
        group.texts.append(text_at(x, y, [f"{role.replace('_', ' ')} ({counted} prompts)"], FS["h2"], bold=True))
        top = y + 20
        for head in range(dims.n_head):
            group.texts.append(
                text_at(x + LABEL_W + head * CELL + CELL / 2, top, [str(head)], FS["tiny"], anchor="middle")
            )
        for layer in range(dims.n_layer):
            cy = top + 12 + layer * CELL
            group.texts.append(text_at(x, cy + 3, [f"L{layer}"], FS["tiny"], colour=C.MUTED))
            for head in range(dims.n_head):
                score = float(scores[layer, head])
                groups.append(
                    Group(
                        parts=[Rect(Box(x + LABEL_W + head * CELL, cy, CELL - 1, CELL - 1), C.sequential(score))],
                        tip=f"L{layer}H{head} {role}: mean {fixed(score, 3)} over {counted} prompts "
                        f"(uniform head: {fixed(chance[role], 3)})",
                        cls="role-cell",
                        data={"role": role, "layer": str(layer), "head": str(head), "score": repr(score)},
                    )
                )
        groups.append(group)
        x += LABEL_W + dims.n_head * CELL + 24
    return top + 12 + dims.n_layer * CELL + 30, x


def _bars(groups, y, values, labels, tips, data, cls, scale, fill) -> float:
    x = PAD + LABEL_W
    base = y + BAR_H
    groups.append(Group(parts=[Rect(Box(PAD + LABEL_W - 2, base, len(values) * BAR_W + 4, 1), C.RULE)]))
    for i, (value, label, tip, d) in enumerate(zip(values, labels, tips, data)):
        height = 0 if scale <= 0 else BAR_H * value / scale
        bar = Rect(Box(x + i * BAR_W + 3, base - height, BAR_W - 6, height), fill)
        texts = [text_at(x + i * BAR_W + BAR_W / 2, base + 4, [label], FS["tiny"], anchor="middle", colour=C.MUTED)]
        groups.append(Group(parts=[bar], texts=texts, tip=tip, cls=cls, data=d))
    return max(PAD + LABEL_W + len(values) * BAR_W, 0)


def _lens_chart(stats: CorpusStats, groups: list[Group], y: float) -> tuple[float, float]:
    y = _heading(
        groups,
        y,
        "Logit lens: top-1 accuracy by layer",
        "share of positions whose next token is the lens's top token, reading each residual stream through the "
        "final LayerNorm and W_U; the last bar is the model itself",
    )
    rows = stats.lens_rows
    accuracy, rank = stats.lens_accuracy.tolist(), stats.lens_rank.tolist()
    labels = [_stream_label(r) for r in rows]
    names = [r.kind if r.layer is None else f"{r.kind} {r.layer}" for r in rows]
    tips = [f"{n}: top-1 {percent(a)}, mean rank {fixed(k, 1)}" for n, a, k in zip(names, accuracy, rank)]
    data = [{"kind": str(r.kind), "layer": "" if r.layer is None else str(r.layer), "accuracy": repr(a)}
            for r, a in zip(rows, accuracy)]  # fmt: skip
    groups.append(Group(texts=[text_at(PAD, y, ["100%"], FS["tiny"], colour=C.MUTED)]))
    w = _bars(groups, y, accuracy, labels, tips, data, "lens-bar", 1.0, CATEGORY_COLOURS["residual"])
    note = "emb: input embedding; N: the stream entering block N; Nm: between its attention and MLP; out: the output"
    groups.append(Group(texts=[text_at(PAD, y + BAR_H + 18, [note], FS["tiny"], colour=C.MUTED)]))
    return y + BAR_H + 44, w


def _stream_label(row: LensRow) -> str:
    return {"input_embedding": "emb", "resid_pre": f"{row.layer}", "resid_mid": f"{row.layer}m"}.get(row.kind, "out")


def _loss_chart(stats: CorpusStats, groups: list[Group], y: float) -> tuple[float, float]:
    loss = stats.loss_by_position.tolist()
    counts = stats.moments["loss/position"].count.tolist()
    y = _heading(
        groups,
        y,
        f"Loss by position (mean {fixed(stats.loss, 3)} nats per token)",
        "mean -log p of the token that comes next, at each position of the prompts that reach it",
    )
    top = max(loss, default=0.0)
    groups.append(Group(texts=[text_at(PAD, y, [fixed(top, 2)], FS["tiny"], colour=C.MUTED)]))
    tips = [f"position {p}: {fixed(v, 3)} nats over {c} prompts" for p, (v, c) in enumerate(zip(loss, counts))]
    data = [{"position": str(p), "loss": repr(v)} for p, v in enumerate(loss)]
    w = _bars(
        groups,
        y,
        loss,
        [str(p) for p in range(len(loss))],
        tips,
        data,
        "loss-bar",
        top,
        CATEGORY_COLOURS["unembedding"],
    )
    return y + BAR_H + 30, w
