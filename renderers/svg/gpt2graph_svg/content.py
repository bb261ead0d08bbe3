"""What the infographic says, apart from where it goes: callouts from the glossary data, the decoding step's
numbers, and the tooltip text of nodes. Everything here is plain data, computed from the graph."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from gpt2graph.glossary import ResolvedAnnotation, template_values

from .text import markdown_paragraphs

__all__ = ["Link", "Callout", "Content", "Candidate", "Decoding", "decoding", "safe_url", "DECODE_STEPS"]

#: decoding steps drawn after the logits, as (annotation target kind, label)
DECODE_STEPS = (("temperature", "temperature"), ("top_k", "top-k"), ("probs", "softmax"), ("top_p", "top-p"),
                ("sample", "sample"))


@dataclass(frozen=True)
class Link:
    text: str
    url: str
    tip: str


@dataclass(frozen=True)
class Callout:
    """A resolved annotation, ready to be laid out as plain text."""

    id: str
    title: str
    caption: str
    paragraphs: tuple[str, ...]
    links: tuple[Link, ...]


def safe_url(url: str) -> str | None:
    """Only web and mail links become hyperlinks: a ``javascript:`` or ``data:`` URL is shown as nothing."""
    lowered = url.strip().lower()
    return url.strip() if lowered.startswith(("https://", "http://", "mailto:")) else None


class Content:
    """Callouts for the parts drawn, each shown once, at the first part it applies to."""

    TERMINOLOGY = "terminology"

    def __init__(self, graph: Any, enabled: bool):
        self.graph = graph
        self.enabled = enabled
        self._shown: set[str] = set()

    def callouts_for(self, node_ids: Iterable[str]) -> list[Callout]:
        if not self.enabled:
            return []
        out = []
        for node_id in node_ids:
            for a in self.graph.annotations_for(node_id):
                if a.id not in self._shown and a.id != self.TERMINOLOGY:
                    self._shown.add(a.id)
                    out.append(self._callout(a))
        return out

    def decoding_callouts(self) -> list[Callout]:
        """Callouts aimed at the decoding steps, which have no graph nodes yet: matched by target kind or stage,
        with their template fields filled from the run."""
        if not self.enabled:
            return []
        kinds = {k for k, _ in DECODE_STEPS}
        out = []
        for a in self.graph.glossary.annotations:
            if a.id in self._shown or not any(set(t.kind or ()) & kinds or t.stage == "decode" for t in a.targets):
                continue
            self._shown.add(a.id)
            out.append(self._resolved(a))
        return out

    def terminology(self) -> Callout | None:
        """The terminology note, drawn in its own box near the legend rather than beside one part."""
        return next((self._resolved(a) for a in self.graph.glossary.annotations if a.id == self.TERMINOLOGY), None)

    def _resolved(self, a: Any) -> Callout:
        values = template_values(self.graph)
        return self._callout(ResolvedAnnotation(a.id, a.title.format_map(values), a.body.format_map(values),
                                                None if a.caption is None else a.caption.format_map(values),
                                                tuple(a.glossary)))

    def _callout(self, a: Any) -> Callout:
        links = []
        for gid in a.glossary:
            entry = self.graph.glossary.get(gid)
            if entry is None:
                continue
            source = next((s for s in entry.sources if safe_url(s.url)), None)
            if source is not None:
                links.append(Link(entry.term, safe_url(source.url), f"{entry.term}: {entry.summary} "
                                  f"(source: {source.title})"))
        return Callout(a.id, a.title, a.caption or "", tuple(markdown_paragraphs(a.body)), tuple(links))


@dataclass(frozen=True)
class Candidate:
    token_id: int
    token: str
    logit: float
    probability: float  # after temperature, top-k, softmax and top-p; 0 when filtered out


@dataclass(frozen=True)
class Decoding:
    """The decoding of the last position's logits with given settings. Later analyses (a stored decoding
    table, a logit lens) can supply the same shape of data."""

    position: int
    temperature: float
    top_k: int
    top_p: float
    kept_top_k: int
    kept_top_p: int
    candidates: tuple[Candidate, ...]

    @property
    def choice(self) -> Candidate:
        """The most probable token, which greedy decoding picks and sampling picks most often."""
        return max(self.candidates, key=lambda c: (c.probability, c.logit))


def decoding(graph: Any, temperature: float, top_k: int, top_p: float, n: int = 8) -> Decoding:
    """Temperature, top-k (0 = off), softmax and top-p (nucleus) applied to the last position's logits."""
    logits = graph.logits[-1].double()
    scaled = logits / temperature
    order = torch.argsort(scaled, descending=True, stable=True)
    kept_k = len(order) if top_k <= 0 else min(top_k, len(order))
    kept = order[:kept_k]
    probs = torch.softmax(scaled[kept], dim=-1)
    cumulative = torch.cumsum(probs, dim=-1)
    kept_p = int(torch.searchsorted(cumulative, torch.tensor(top_p, dtype=cumulative.dtype)).item()) + 1
    kept_p = min(kept_p, kept_k)
    final = torch.zeros_like(scaled)
    final[kept[:kept_p]] = probs[:kept_p] / probs[:kept_p].sum()
    candidates = tuple(Candidate(int(i), graph.decode_token(int(i)), float(logits[i]), float(final[i]))
                       for i in order[:n])
    return Decoding(graph.n_tokens - 1, temperature, top_k, top_p, kept_k, kept_p, candidates)
