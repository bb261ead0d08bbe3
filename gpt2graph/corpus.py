"""Statistics of a model over a corpus of prompts: what one prompt contributes, how contributions add up, and
the typed, saved result (a ``.ggc`` directory).

Per prompt (:func:`measure`, on the prompt's own graph, reusing the analyses a single run has):

* **head roles** of every head on the prompt itself (:func:`gpt2graph.roles.head_roles`; induction only on
  prompts whose tokens repeat), and the score of a uniform head for reference;
* **mean activations** of every vector kind and layer (per head for per-head kinds), over all positions and
  per position: the baselines of mean ablation. Head outputs are derived from z and W_O (linear, so exact),
  as the graph derives them; attention rows and the logits are not aggregated (n^2 per head, n_vocab wide);
* **logit-lens accuracy** of every residual stream (top-1 is the token that comes next) and the mean rank of
  that token (:func:`gpt2graph.lens.lens_logits`, :func:`gpt2graph.lens.read_logits`);
* **loss** (-log p of the next token) per position;
* **direct logit attribution** of the model's prediction at the last position, by component
  (:func:`gpt2graph.dla.direct_logit_attribution`).

Each is aggregated as :class:`~gpt2graph.moments.Moments` (count, mean, M2, float64) that merge exactly in
any order, so a corpus split over processes, machines or interrupted runs gives the same numbers.

On disk a ``.ggc`` is a directory: ``corpus.json`` (:class:`CorpusHeader`, validated by
``schema/corpus.schema.json``) and ``stats.safetensors`` (each statistic's ``count``, ``mean`` and ``m2``),
tied by the SHA-256 of the arrays and written atomically, like a saved graph.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from . import __version__, ops
from .dla import direct_logit_attribution
from .errors import Gpt2GraphError, GraphFileError
from .lens import CHUNK_ELEMENTS, lens_blocks, lens_logits, read_logits
from .moments import Moments
from .results import ComponentKind, LensKind, Role
from .roles import head_roles
from .schema import Dims, ModelInfo, ParamKind, Stage, VectorKind
from .storage import HEADER_FILE, atomic_directory, check_belongs, not_exactly, schema_problems, sha256_file
from .topology import VECTOR_SPECS, Key, Topology

if TYPE_CHECKING:
    from .graph import Graph
    from .values import Values

__all__ = [
    "ACTIVATION_KINDS",
    "CORPUS_FILE",
    "STATS_FILE",
    "CorpusError",
    "SourceInfo",
    "SkippedRecord",
    "LensRow",
    "DlaComponent",
    "CorpusHeader",
    "Tally",
    "measure",
    "CorpusStats",
    "load_corpus",
    "is_corpus",
]

V, P = VectorKind, ParamKind
CORPUS_FILE = "corpus.json"
STATS_FILE = "stats.safetensors"
#: the files a corpus statistics directory holds, and nothing else
CORPUS_FILES = (CORPUS_FILE, STATS_FILE)
FORMAT_VERSION = 1
#: kinds whose mean activations are aggregated by default: every vector of fixed width the model computes,
#: except the head outputs (derived from z), the attention rows (a length per position, n^2 per head) and
#: the logits (n_vocab wide)
ACTIVATION_KINDS = tuple(
    k
    for k, s in VECTOR_SPECS.items()
    if s.stage not in (Stage.tokenize, Stage.decode) and k not in (V.head_out, V.attn_scores, V.attn_pattern, V.logits)
)
#: the residual streams the corpus lens reads, in forward order
LENS_KINDS = (LensKind.input_embedding, LensKind.resid_pre, LensKind.resid_mid, LensKind.resid_post)


class CorpusError(Gpt2GraphError, ValueError):
    """A corpus statistic that was not measured, or a request outside the corpus (kind, layer, head, position)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class SourceInfo(_Strict):
    """Where the prompts came from."""

    path: str = Field(description="The prompt file or directory, as given.")
    format: Literal["lines", "jsonl", "directory"] = Field(
        description="lines: one prompt per line; jsonl: one JSON object with a string 'text' per line; "
        "directory: one prompt per .txt file, in file-name order."
    )
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the source's content: a checkpoint is resumed only over the same prompts.",
    )
    records: int = Field(description="Records (lines or files) in the source, prompts and bad ones.", ge=0)


class SkippedRecord(_Strict):
    """A record that is not a prompt, skipped and counted."""

    record: int = Field(description="Index of the record in the source (0-based).", ge=0)
    where: str = Field(description="file:line of the record (or the file, for a directory).")
    reason: Literal["empty", "invalid_utf8", "invalid_json", "no_text", "too_long"] = Field(
        description="Why it is not a prompt."
    )
    message: str = Field(description="The message reported for it.")


class LensRow(_Strict):
    """One residual stream the corpus logit lens reads."""

    kind: LensKind = Field(description="input_embedding, resid_pre, resid_mid or resid_post.")
    layer: int | None = Field(description="Its block (None for the input embedding).")


class DlaComponent(_Strict):
    """One component of the final residual stream (the position is always the prompt's last)."""

    kind: ComponentKind = Field(description="What the component is.")
    layer: int | None = Field(default=None, description="Block index; None outside the blocks.")
    head: int | None = Field(default=None, description="Head index, for head outputs.")


class CorpusHeader(_Strict):
    """The header of a corpus statistics file (corpus.json); the statistics are arrays in stats.safetensors,
    three per statistic: ``NAME/count`` (int64), ``NAME/mean`` and ``NAME/m2`` (float64), variance = m2 / count.
    Names: ``roles/ROLE`` and ``roles_chance/ROLE`` (n_layer x n_head, and a uniform head's score);
    ``lens/top1`` and ``lens/rank`` (one per row of lens_rows); ``loss/all`` and ``loss/position``;
    ``dla/contribution`` (one per dla_components) and ``dla/logit``; ``act/HOOK/all`` and
    ``act/HOOK/position`` (per position, the first axis) for each aggregated vector kind under its
    TransformerLens hook name; plus ``weights/blocks.L.attn.W_O`` from which head outputs are derived."""

    format: Literal["gpt2graph-corpus"] = Field(default="gpt2graph-corpus", description="File format marker.")
    format_version: int = Field(default=FORMAT_VERSION, description="Version of this file format.", ge=1)
    created: str = Field(description="ISO 8601 time the run started.")
    gpt2graph_version: str = Field(description="Version of gpt2graph that wrote the file.")
    model: ModelInfo = Field(description="The model the statistics are of.")
    model_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the model's parameters (their weight-store key): every worker checks it.",
    )
    source: SourceInfo = Field(description="The prompts.")
    kinds: list[VectorKind] = Field(description="Vector kinds whose activations are aggregated.")
    complete: bool = Field(description="False while the run is under way or was interrupted (a checkpoint).")
    done: list[tuple[int, int]] = Field(
        description="Records finished (counted or skipped), as half-open index ranges [start, stop)."
    )
    prompts: int = Field(description="Prompts counted.", ge=0)
    tokens: int = Field(description="Tokens counted (positions of all counted prompts).", ge=0)
    max_tokens: int = Field(description="Length of the longest counted prompt: the per-position arrays.", ge=0)
    skipped: list[SkippedRecord] = Field(description="Records that are not prompts, in source order.")
    lens_rows: list[LensRow] = Field(description="The residual streams the lens statistics are per, in order.")
    dla_components: list[DlaComponent] = Field(description="The components the DLA statistics are per, in order.")
    stats_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of stats.safetensors, set when saved."
    )


def _act_name(top: Topology, kind: str, layer: int | None) -> str:
    return f"act/{top.hook(Key(kind, layer, None, 0))}"


def _lens_rows(top: Topology) -> list[LensRow]:
    return [LensRow(kind=b.kind, layer=b.layer) for b in lens_blocks(top, [0] * top.n_tokens, LENS_KINDS)]


# ---- one prompt ---------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """The moments of some prompts, and which records they are (what a worker hands back)."""

    moments: dict[str, Moments] = field(default_factory=dict)
    records: list[int] = field(default_factory=list)
    dla_components: list[DlaComponent] = field(default_factory=list)

    def merge(self, other: Tally) -> Tally:
        """Both tallies together (the records must be disjoint: a record is counted once)."""
        moments = dict(self.moments)
        for name, m in other.moments.items():
            moments[name] = moments[name].merge(m) if name in moments else m
        return Tally(moments, self.records + other.records, self.dla_components or other.dla_components)


def measure(graph: Graph, record: int, kinds: tuple[str, ...] = ACTIVATION_KINDS) -> Tally:
    """Everything one prompt contributes, from its graph (see the module docstring)."""
    top, n = graph.topology, graph.n_tokens
    ids = torch.tensor(graph.tokenization.token_ids)
    out: dict[str, Moments] = {}

    roles = head_roles(graph)
    shape = (graph.dims.n_layer, graph.dims.n_head)
    for role in Role:
        scores = [getattr(h, role) for h in roles.heads]
        if scores[0] is not None:  # defined on this prompt (induction: only where a token repeats)
            out[f"roles/{role}"] = Moments.each(torch.tensor(scores).view(shape), 0)
            out[f"roles_chance/{role}"] = Moments.each(torch.tensor(roles.chance[role]), 0)

    if n > 1:
        rows = max(1, CHUNK_ELEMENTS // graph.dims.n_vocab)
        top1, rank = [], []
        with torch.no_grad():
            for block in lens_blocks(top, graph.tokenization.token_ids, LENS_KINDS):
                x = graph.hook(block.kind, block.layer)[: n - 1]  # the last position has no next token
                following = block.following[: n - 1]
                read = [
                    read_logits(lens_logits(graph, x[i : i + rows]), following[i : i + rows], 1, consume=True)
                    for i in range(0, n - 1, rows)
                ]
                top1.append(torch.cat([r["top_ids"][:, 0] for r in read]) == following)
                rank.append(torch.cat([r["next_rank"] for r in read]))
        out["lens/top1"] = Moments.of(torch.stack(top1, dim=1))
        out["lens/rank"] = Moments.of(torch.stack(rank, dim=1))
        logp = torch.log_softmax(graph.logits[:-1].double(), dim=-1)
        loss = -logp.gather(1, ids[1:, None])[:, 0]
        out["loss/all"] = Moments.of(loss)
        out["loss/position"] = Moments.each(loss, 1)

    dla = direct_logit_attribution(graph)
    out["dla/contribution"] = Moments.each(torch.tensor([a.contribution for a in dla.contributions]), 0)
    out["dla/logit"] = Moments.each(torch.tensor(dla.model_value), 0)
    components = [DlaComponent(kind=a.kind, layer=a.layer, head=a.head) for a in dla.contributions]

    for kind in kinds:
        for layer in top.layers_of(kind):
            x = graph.hook(kind, layer)  # (n, ...) in TransformerLens layout
            name = _act_name(top, kind, layer)
            out[f"{name}/all"] = Moments.of(x)
            out[f"{name}/position"] = Moments.each(x, 1)
    return Tally(out, [record], components)


# ---- the result ---------------------------------------------------------------------------------------------
def _ranges(indices: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


class CorpusStats:
    """Statistics of a model over a corpus (``gpt2graph corpus``, :func:`load_corpus`).

    Example::

        stats = gpt2graph.load_corpus("stats.ggc")
        stats.mean("resid_pre", 3)                       # mean residual stream entering block 3, all positions
        stats.mean("z", 5, head=1, position=4)           # head 1's z at position 4: a mean-ablation baseline
        stats.role_means()["induction"]                  # (n_layer, n_head) mean induction scores
        stats.lens_accuracy, stats.loss_by_position
    """

    def __init__(self, header: CorpusHeader, moments: dict[str, Moments], weights: dict[str, Tensor]):
        self.header = header
        self.moments = moments
        self.weights = weights
        self.topology = Topology(header.model.dims, 1)
        self._checked: weakref.WeakSet[Values] = weakref.WeakSet()  # the runs check_model found to be of this model

    @property
    def dims(self) -> Dims:
        return self.header.model.dims

    def __repr__(self) -> str:
        state = "" if self.header.complete else " (partial)"
        return (
            f"<CorpusStats{state} {self.header.model.name} [{self.header.model.weights.status} weights] "
            f"{self.header.prompts} prompts, {self.header.tokens} tokens>"
        )

    def _get(self, name: str, what: str) -> Moments:
        if name not in self.moments:
            raise CorpusError(f"{what}: not measured on this corpus ({self.header.prompts} prompts counted)")
        return self.moments[name]

    def check_model(self, graph: Graph) -> None:
        """Refuse a run of another model than the one these statistics are of (the weight-store digest of its
        parameters, :func:`gpt2graph.weightstore.digest`), e.g. before ablating it with these means
        (:mod:`gpt2graph.baselines`)."""
        if graph.store in self._checked:
            return
        if graph.store.weights_digest() != self.header.model_sha256:
            raise CorpusError(
                f"these corpus statistics are of {self.header.model.name}, and the run of {graph.model.name} is of "
                "another model (its parameters differ): their means cannot stand in for its vectors"
            )
        self._checked.add(graph.store)

    # ---- activations --------------------------------------------------------------------------------
    def mean(self, kind: str, layer: int | None, head: int | None = None, position: int | None = None) -> Tensor:
        """Mean activation of ``kind`` at ``layer`` over the corpus: over every position (``position`` None) or
        at one position; of one head, or of every head stacked (per-head kinds with ``head`` None). In the
        model's dtype, shaped like one vector of the graph (or (n_head, width) for all heads)."""
        if kind == V.head_out:  # z^h W_O^h is linear in z: the mean of head outputs is the mean z through W_O
            z = self._activation(V.z, layer, head, position, "mean")
            assert layer is not None, "head outputs belong to a block"
            W_O = self.weights[_weight_name(self.topology, layer)]
            return ops.output_projection(z, W_O if head is None else W_O[head])
        return self._activation(kind, layer, head, position, "mean")

    def variance(self, kind: str, layer: int | None, head: int | None = None, position: int | None = None) -> Tensor:
        """Population variance of each component, shaped as :meth:`mean` (not for head outputs, which are
        derived)."""
        if kind == V.head_out:
            raise CorpusError("the variance of head outputs is not aggregated (their mean is derived from z's)")
        return self._activation(kind, layer, head, position, "variance")

    def _activation(self, kind: str, layer: int | None, head: int | None, position: int | None, which: str) -> Tensor:
        if kind not in VECTOR_SPECS:
            raise CorpusError(f"unknown vector kind {kind!r}; aggregated: {', '.join(self.header.kinds)}, head_out")
        if kind not in self.header.kinds:
            raise CorpusError(
                f"{kind} activations were not aggregated on this corpus; aggregated: "
                f"{', '.join(self.header.kinds)}" + (", head_out" if V.z in self.header.kinds else "")
            )
        layers = self.topology.layers_of(kind)
        if layer not in layers:
            raise CorpusError(f"{kind} has no layer {layer!r}; its layers: {layers}")
        spec = VECTOR_SPECS[kind]
        if head is not None and not spec.per_head:
            raise CorpusError(f"{kind} is not per head: give head=None")
        if head is not None and not 0 <= head < self.dims.n_head:
            raise CorpusError(f"head {head} out of range 0..{self.dims.n_head - 1}")
        name = _act_name(self.topology, kind, layer)
        m = self._get(f"{name}/{'all' if position is None else 'position'}", f"{kind} at layer {layer}")
        value = m.mean if which == "mean" else m.variance
        if position is not None:
            counted = int(m.count[position]) if 0 <= position < m.count.shape[0] else 0
            if not counted:
                raise CorpusError(
                    f"position {position}: no prompt of this corpus reaches it (the longest has "
                    f"{self.header.max_tokens} tokens)"
                )
            value = value[position]
        if head is not None:
            value = value[head]
        return value.to(getattr(torch, self.header.model.dtype))

    # ---- analyses -----------------------------------------------------------------------------------
    def role_means(self) -> dict[str, Tensor]:
        """Mean score of each role per head, (n_layer, n_head), for the roles measured (induction needs
        prompts whose tokens repeat)."""
        return {str(r): self.moments[f"roles/{r}"].mean for r in Role if f"roles/{r}" in self.moments}

    def role_chance(self) -> dict[str, float]:
        """Mean score a uniform head would get for each measured role (the baseline to read scores against)."""
        return {str(r): float(self.moments[f"roles_chance/{r}"].mean) for r in Role if f"roles/{r}" in self.moments}

    @property
    def lens_accuracy(self) -> Tensor:
        """Share of positions whose next token is the lens's top-1, per residual stream (:attr:`lens_rows`)."""
        return self._get("lens/top1", "logit-lens accuracy").mean

    @property
    def lens_rank(self) -> Tensor:
        """Mean rank (1 = top) of the next token under the lens, per residual stream."""
        return self._get("lens/rank", "logit-lens rank").mean

    @property
    def lens_rows(self) -> list[LensRow]:
        return self.header.lens_rows

    @property
    def loss_by_position(self) -> Tensor:
        """Mean next-token loss (nats) at each position (the last position of the longest prompt has none)."""
        return self._get("loss/position", "loss").mean

    @property
    def loss(self) -> float:
        """Mean next-token loss over every predicted token of the corpus, in nats."""
        return float(self._get("loss/all", "loss").mean)

    @property
    def dla(self) -> Tensor:
        """Mean direct logit attribution of the model's prediction per component (:attr:`header.dla_components`)."""
        return self._get("dla/contribution", "direct logit attribution").mean

    def render(self, renderer: str, path: str | os.PathLike[str]) -> Path:
        """Draw these statistics with an installed renderer that can (``gpt2graph renderers`` says which)."""
        from .registry import render_corpus

        return render_corpus(self, renderer, path)

    # ---- files --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to the directory ``path`` atomically (replacing a corpus file there, nothing else)."""
        from safetensors.torch import save_file

        path = check_corpus_target(path)
        tensors = {f"{n}/{part}": getattr(m, part).contiguous() for n, m in self.moments.items() for part in _PARTS}
        tensors.update({n: t.contiguous() for n, t in self.weights.items()})
        with atomic_directory(path, CORPUS_FILES) as tmp:
            save_file(tensors, str(tmp / STATS_FILE), metadata={"format": "gpt2graph-corpus"})
            header = self.header.model_copy(update={"stats_sha256": sha256_file(tmp / STATS_FILE)})
            (tmp / CORPUS_FILE).write_text(header.model_dump_json(indent=2) + "\n", encoding="utf-8")
        self.header = header
        return path

    @staticmethod
    def from_tally(base: CorpusHeader, tally: Tally, weights: dict[str, Tensor], complete: bool) -> CorpusStats:
        """The statistics of ``tally`` under ``base``'s header (model, source, skipped records, ...)."""
        m = tally.moments
        prompts = int(m["dla/logit"].count) if "dla/logit" in m else 0
        first = next((x for name, x in m.items() if name.startswith("act/") and name.endswith("/position")), None)
        header = base.model_copy(
            update={
                "complete": complete,
                "done": _ranges(tally.records + [s.record for s in base.skipped]),
                "prompts": prompts,
                "tokens": int(first.count.sum()) if first is not None else 0,
                "max_tokens": first.count.shape[0] if first is not None else 0,
                "dla_components": tally.dla_components,
                "stats_sha256": None,
            }
        )
        return CorpusStats(header, m, weights)

    def tally(self) -> Tally:
        """The counted prompts as a tally (to continue a checkpoint)."""
        skipped = {s.record for s in self.header.skipped}
        records = [i for a, b in self.header.done for i in range(a, b) if i not in skipped]
        return Tally(dict(self.moments), records, list(self.header.dla_components))


_PARTS = ("count", "mean", "m2")


def new_header(
    model: ModelInfo, model_sha256: str, source: SourceInfo, kinds: tuple[str, ...], skipped: list[SkippedRecord]
) -> CorpusHeader:
    """The header of a run before anything is counted."""
    return CorpusHeader(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        gpt2graph_version=__version__,
        model=model,
        model_sha256=model_sha256,
        source=source,
        kinds=list(kinds),
        complete=False,
        done=[],
        prompts=0,
        tokens=0,
        max_tokens=0,
        skipped=skipped,
        lens_rows=_lens_rows(Topology(model.dims, 1)),
        dla_components=[],
    )


def _weight_name(top: Topology, layer: int) -> str:
    return f"weights/{top.param_id(Key(P.W_O, layer))}"


def corpus_weights(params: Values, dims: Dims) -> dict[str, Tensor]:
    """The parameters a corpus file carries to derive head outputs (W_O of every block, heads stacked), from a
    parameter source such as :class:`~gpt2graph.values.Values` (``params.stacked(kind, layer)``)."""
    top = Topology(dims, 1)
    return {_weight_name(top, L): params.stacked(P.W_O, L).detach().clone() for L in range(dims.n_layer)}


def is_corpus(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a corpus statistics directory (it has corpus.json), as opposed to a saved graph."""
    return (Path(path) / CORPUS_FILE).is_file()


def check_corpus_target(path: str | os.PathLike[str]) -> Path:
    """Refuse early a path a corpus file cannot be written to: something that exists and is not one."""
    path = Path(path)
    reason = not_exactly(path, CORPUS_FILES, CORPUS_FILE, "gpt2graph-corpus") if path.exists() else None
    if reason:
        what = "a saved graph" if (path / HEADER_FILE).exists() else f"not a corpus statistics file ({reason})"
        raise GraphFileError(f"cannot write {path}: it exists and is {what}; refusing to replace it")
    if not path.parent.is_dir():
        raise GraphFileError(f"cannot write {path}: directory {path.parent} does not exist")
    return path


def load_corpus(path: str | os.PathLike[str]) -> CorpusStats:
    """Load corpus statistics saved by ``gpt2graph corpus``; refuse anything missing, corrupted or mismatched."""
    from safetensors import safe_open

    path = Path(path)
    header_path, stats_path = path / CORPUS_FILE, path / STATS_FILE
    if not path.is_dir():
        raise GraphFileError(f"{path}: no such corpus statistics directory")
    if not header_path.is_file():
        hint = " (it is a saved graph: use gpt2graph.load)" if (path / HEADER_FILE).exists() else ""
        raise GraphFileError(f"{path}: not a corpus statistics file: {CORPUS_FILE} is missing{hint}")
    if not stats_path.is_file():
        raise GraphFileError(f"{path}: incomplete corpus statistics: {STATS_FILE} is missing")
    try:
        header = CorpusHeader.model_validate_json(header_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValidationError) as exc:
        problems = schema_problems(exc) if isinstance(exc, ValidationError) else str(exc)
        raise GraphFileError(f"{header_path}: does not match the corpus schema: {problems}") from exc
    if header.format_version != FORMAT_VERSION:
        raise GraphFileError(f"{header_path}: format_version {header.format_version} is not supported")
    check_belongs(path, STATS_FILE, CORPUS_FILE, header.stats_sha256)
    try:
        with safe_open(str(stats_path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise GraphFileError(f"{stats_path}: corrupted: {exc}") from exc
    weights = {n: t for n, t in tensors.items() if n.startswith("weights/")}
    parts: dict[str, dict[str, Tensor]] = {}
    for name, t in tensors.items():
        if not name.startswith("weights/"):
            stat, _, part = name.rpartition("/")
            parts.setdefault(stat, {})[part] = t
    moments = {}
    for stat, p in parts.items():
        if (
            set(p) != set(_PARTS)
            or p["mean"].shape != p["m2"].shape
            or p["mean"].shape[: p["count"].ndim] != (p["count"].shape)
        ):
            raise GraphFileError(f"{stats_path}: statistic {stat} is incomplete or inconsistent: {sorted(p)}")
        moments[stat] = Moments(p["count"], p["mean"], p["m2"])
    return CorpusStats(header, moments, weights)


def describe(stats: CorpusStats) -> dict[str, Any]:
    """What ``gpt2graph info`` prints about a corpus file, as plain data."""
    h = stats.header
    out: dict[str, Any] = {
        "file": "corpus statistics (.ggc)",
        "model": h.model.name,
        "weights": h.model.weights.model_dump(),
        "source": h.source.model_dump(),
        "complete": h.complete,
        "prompts": h.prompts,
        "tokens": h.tokens,
        "max_tokens": h.max_tokens,
        "records_done": sum(b - a for a, b in h.done),
        "skipped": [s.model_dump() for s in h.skipped],
        "kinds": list(h.kinds),
    }
    if h.prompts:
        if "loss/all" in stats.moments:
            out["loss"] = stats.loss
            rows = [f"{r.kind}" + ("" if r.layer is None else f" {r.layer}") for r in h.lens_rows]
            out["lens_accuracy"] = dict(zip(rows, stats.lens_accuracy.tolist()))
        strongest = {}
        for role, scores in stats.role_means().items():
            flat = int(scores.argmax())
            layer, head = divmod(flat, h.model.dims.n_head)
            strongest[role] = {"layer": layer, "head": head, "score": float(scores.flatten()[flat])}
        out["strongest_heads"] = strongest
        out["role_chance"] = stats.role_chance()
    return out


def format_description(d: dict[str, Any]) -> str:
    """The plain-text form of :func:`describe`."""
    w = d["weights"]
    weights = "pretrained" if w["status"] == "pretrained" else f"RANDOM (seed {w['seed']})"
    state = "complete" if d["complete"] else f"PARTIAL: {d['records_done']} of {d['source']['records']} records done"
    lines = [
        f"file         {d['file']}, {state}",
        f"model        {d['model']} ({weights})",
        f"prompts      {d['prompts']} counted from {d['source']['path']} ({d['source']['format']}), "
        f"{d['tokens']} tokens, longest {d['max_tokens']}",
        f"skipped      {len(d['skipped'])}" + "".join(f"\n  {s['message']}" for s in d["skipped"][:10]),
    ]
    if "loss" in d:
        lines.append(f"loss         {d['loss']:.4f} nats per token")
        lines.append("lens top-1   " + ", ".join(f"{k} {v:.1%}" for k, v in d["lens_accuracy"].items()))
    for role, s in d.get("strongest_heads", {}).items():
        chance = d["role_chance"][role]
        lines.append(f"{role:<15}strongest L{s['layer']}H{s['head']} {s['score']:.2f} (uniform head: {chance:.2f})")
    return "\n".join(lines)
