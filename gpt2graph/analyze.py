"""``analyze``: every interpretability result of one run, computed from the captured values and the weights.

All arguments are checked before any computation starts, so a bad token or option fails at once with one
clear message instead of after the logit lens has run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .circuits import head_circuits
from .decoding import check_options, decode_next
from .dla import direct_logit_attribution
from .errors import InterpretError
from .lens import logit_lens
from .results import Analysis, AnalysisOptions, LensKind
from .roles import head_roles, probe_tokens
from .targets import check_top_tokens, resolve_pair, resolve_position, resolve_token

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["analyze"]


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


def analyze(
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
) -> Analysis:
    """Logit lens, direct logit attribution, head roles, circuits and decoding of ``graph``'s run.

    ``position`` (default: the last) is where DLA and decoding look; ``target`` (id or one-token string) is
    the token DLA attributes (default: the prediction) and the logit lens ranks; ``contrast`` turns DLA into
    a logit difference. ``top_tokens`` rows are kept per lens entry, boosted-token list and decoding table.
    Decoding: ``temperature``, ``top_k``, ``top_p``, and ``seed`` (None: greedy). Head roles use the
    prompt, or the prompt plus a repeated random sequence of ``induction_probe`` tokens. ``circuit_token``
    (default: the token at ``position``) is the input of the circuits' boosted tokens. ``lens``: True (every
    kind), False, or the :class:`LensKind` values to compute (the lens is the costly part: it needs a full
    vocabulary row per vector).

    Example::

        a = analyze(graph, target=" Paris", induction_probe=20)
        a.dla.top(5), a.roles.ranked("induction", 3)
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
    )
    return Analysis(
        options=options,
        roles=head_roles(graph, induction_probe=induction_probe, probe_seed=probe_seed),
        dla=direct_logit_attribution(graph, position=p, token=target_id, contrast=contrast_id),
        circuits=head_circuits(graph, input_token=input_id, top_tokens=top_tokens, fold_ln=fold_ln),
        decoding=decode_next(
            graph, position=p, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, candidates=top_tokens
        ),
        lens=logit_lens(graph, top_tokens=top_tokens, target=target_id, kinds=kinds) if kinds else None,
    )
