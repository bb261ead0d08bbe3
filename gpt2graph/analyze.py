"""``analyze``: every interpretability result of one run, computed from the captured values and the weights.

All arguments are checked before any computation starts, so a bad token or option fails at once with one
clear message instead of after the logit lens has run. :func:`compute` returns the results and the logit
lens's table without touching the graph; :func:`analyze` (what ``graph.analyze()`` calls) stores both on
the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import progress
from .circuits import head_circuits
from .decoding import check_options, decode_next
from .dla import direct_logit_attribution
from .errors import InterpretError
from .lens import LensTable, logit_lens
from .results import Analysis, AnalysisOptions, LensKind
from .roles import head_roles, probe_tokens
from .targets import check_top_tokens, resolve_pair, resolve_position, resolve_token

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["analyze", "compute"]


def _lens_kinds(lens: bool | Iterable[str]) -> list[LensKind]:
    if lens is True:
        return list(LensKind)
    if lens is False:
        return []
    kinds = [str(k) for k in lens]
    unknown = sorted(set(kinds) - {str(k) for k in LensKind})
    if unknown:
        raise InterpretError(f"unknown logit-lens kind(s) {unknown}; known: {', '.join(LensKind)}")
    return [k for k in LensKind if k in kinds]


def analyze(graph: Graph, **options: Any) -> Analysis:
    """Compute every result (see :func:`compute` for the options) and store it on ``graph``'s run, with the
    logit lens's table (``graph.lens``): the same as ``graph.analyze(**options)``."""
    return graph.analyze(**options)


def compute(
    graph: Graph,
    *,
    position: int = -1,
    target: int | str | None = None,
    contrast: int | str | None = None,
    top_tokens: int = 5,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    induction_probe: int | None = None,
    probe_seed: int = 0,
    circuit_token: int | str | None = None,
    fold_ln: bool = True,
    lens: bool | Iterable[str] = True,
    eager_lens: bool = False,
) -> tuple[Analysis, LensTable | None]:
    """Logit lens, direct logit attribution, head roles, circuits and decoding of ``graph``'s run: the results
    and the lens's table, left for the caller to keep (``graph.analyze`` keeps them on the run).

    ``position`` (default: the last) is where DLA and decoding look; ``target`` (id or one-token string) is
    the token DLA attributes (default: the prediction) and the logit lens ranks; ``contrast`` turns DLA into
    a logit difference. ``top_tokens`` rows are kept per lens entry, boosted-token list and decoding table.
    Decoding: ``temperature``, ``top_k``, ``top_p``, and ``seed`` (None: greedy). Head roles use the
    prompt, or the prompt plus a repeated random sequence of ``induction_probe`` tokens. ``circuit_token``
    (default: the token at ``position``) is the input of the circuits' boosted tokens. ``lens``: True (every
    kind), False, or the :class:`LensKind` values to compute (the lens is the costly part: it needs a full
    vocabulary row per vector). The residual stream's lens is computed now; that of the vectors written into
    it when first read, unless ``eager_lens`` asks for everything now (and saved with the graph).

    Example::

        a, lens = compute(graph, target=" Paris", induction_probe=20)
        a.dla.top(5), a.roles.ranked("induction", 3), lens.entry("blocks.5.attn.hook_result[9,1]")
    """
    check_top_tokens(top_tokens)
    check_options(temperature, top_k, top_p, seed)
    p = resolve_position(graph, position)
    target_id = None if target is None else resolve_token(graph, target, "target")
    _, contrast_id = resolve_pair(graph, p, target, contrast)
    input_id = (
        graph.tokenization.token_ids[p]
        if circuit_token is None
        else resolve_token(graph, circuit_token, "circuit token")
    )
    kinds = _lens_kinds(lens)
    if induction_probe is not None:
        probe_tokens(graph, induction_probe, probe_seed)  # checks the length against the context
    options = AnalysisOptions(
        position=position,
        target=target,
        contrast=contrast,
        top_tokens=top_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        induction_probe=induction_probe,
        probe_seed=probe_seed,
        circuit_token=circuit_token,
        fold_ln=fold_ln,
        lens_kinds=kinds,
        eager_lens=eager_lens,
    )
    steps: list[tuple[str, str, Callable[[], object]]] = [
        ("roles", "head roles", lambda: head_roles(graph, induction_probe=induction_probe, probe_seed=probe_seed)),
        (
            "dla",
            "direct logit attribution",
            lambda: direct_logit_attribution(graph, position=p, token=target_id, contrast=contrast_id),
        ),
        (
            "circuits",
            "circuits",
            lambda: head_circuits(graph, input_token=input_id, top_tokens=top_tokens, fold_ln=fold_ln),
        ),
        (
            "decoding",
            "decoding",
            lambda: decode_next(
                graph, position=p, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, candidates=top_tokens
            ),
        ),
        (
            "lens",
            "logit lens",
            lambda: (
                logit_lens(graph, top_tokens=top_tokens, target=target_id, kinds=kinds, eager=eager_lens)
                if kinds
                else None
            ),
        ),
    ]
    results: dict[str, Any] = {}  # each part's result, by its field of Analysis
    with progress.task("analyze", total=len(steps), unit="part") as bar:  # one step per part
        for name, description, run in steps:
            bar.describe(f"analyze: {description}")
            results[name] = run()
            bar.update()
    table: LensTable | None = results.pop("lens")
    return Analysis(options=options, lens=None if table is None else table.header, **results), table
