"""A plain-data summary of a graph: what ``gpt2graph info`` prints."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

import torch

from .results import Analysis, Role
from .schema import VectorKind as V
from .topology import Key

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["summarize_graph", "format_summary", "top_predictions"]


def top_predictions(graph: Graph, k: int = 5, position: int = -1) -> list[dict[str, Any]]:
    """The k most probable next tokens after ``position`` (default: the last), with probabilities (every token
    when k is larger than the vocabulary)."""
    probs = torch.softmax(graph.store.logits(position).double(), dim=-1)
    top = torch.topk(probs, min(k, probs.shape[-1]))
    decode = graph.decode_token
    return [{"id": int(i), "token": decode(int(i)), "probability": float(p)} for p, i in zip(top.values, top.indices)]


def summarize_graph(graph: Graph, k: int = 5) -> dict[str, Any]:
    m, tok = graph.model, graph.tokenization
    total = m.total_parameters
    return {
        "model": m.name,
        "source": m.source,
        "weights": m.weights.model_dump(),
        "dims": m.dims.model_dump(),
        "parameters": {
            "total": total,
            "groups": {g: {"count": c, "share": c / total} for g, c in m.parameters.items()},
        },
        "tokens": {"text": tok.text, "ids": list(tok.token_ids), "strings": list(tok.tokens_visible)},
        "nodes": {
            "vectors": graph.topology.count_vectors(),
            "operations": graph.topology.count_ops(),
            "parameters": graph.topology.count_params(),
        },
        "top_predictions": top_predictions(graph, k),
        "decoding": decoding_summary(graph),
        "created": graph.header.created,
        **({"analysis": analysis_summary(graph.analysis, k)} if graph.analysis is not None else {}),
        **causal_summary(graph),
    }


def causal_summary(graph: Graph) -> dict[str, Any]:
    """What a counterfactual run replaced, and the patching sweeps and circuit stored on the run."""
    h = graph.header
    out: dict[str, Any] = {}
    if h.counterfactual is not None:
        out["counterfactual"] = [
            {"node": r.node, "baseline": r.baseline, "source": r.source} for r in h.counterfactual.interventions
        ]
    if h.patching:
        out["patching"] = [
            {"method": p.method, "kind": p.kind, "direction": p.direction, "corrupted": p.corrupted_text}
            for p in h.patching
        ]
    if h.circuit is not None:
        c = h.circuit
        out["circuit"] = {"edges": len(c.edges), "recovered": c.faithfulness.recovered, "corrupted": c.corrupted_text}
    return out


def decoding_summary(graph: Graph) -> dict[str, Any]:
    """The decoding settings and the token the decoding stage chooses after the last position."""
    last = graph.n_tokens - 1
    chosen_id, probs_id = (graph.topology.vector_id(Key(kind, None, None, last)) for kind in (V.next_token, V.probs))
    chosen = int(graph.values(chosen_id))
    return {
        **graph.decoding.model_dump(),
        "next_token": {
            "id": chosen,
            "token": graph.decode_token(chosen),
            "probability": float(graph.values(probs_id)[chosen]),
        },
    }


def analysis_summary(analysis: Analysis, k: int = 5) -> dict[str, Any]:
    """The top DLA contributors and the labelled heads (strongest first per role), as plain data."""
    dla, roles = analysis.dla, analysis.roles
    labelled: dict[str, list[dict[str, Any]]] = {}
    for role in Role:
        labelled[role.value] = [
            {"layer": h.layer, "head": h.head, "score": getattr(h, role)} for h in roles.ranked(role) if h.label == role
        ][:k]
    return {
        "dla": {
            "position": dla.position,
            "token": dla.token,
            "contrast": dla.contrast,
            "metric": dla.metric,
            "model_value": dla.model_value,
            "residual_error": dla.residual_error,
            "top": [{"component": a.component, "contribution": a.contribution} for a in dla.top(k)],
        },
        "head_roles": {"source": roles.source, "chance": roles.chance, "labelled": labelled},
    }


def format_summary(s: dict[str, Any], width: int = 100) -> str:
    """The summary as text, for a terminal ``width`` columns wide (long token lists wrap)."""
    w = s["weights"]
    seed = "unknown seed" if w["seed"] is None else f"seed {w['seed']}"
    weights = "pretrained" if w["status"] == "pretrained" else f"RANDOM ({seed}): predictions are meaningless"
    d = s["dims"]
    lines = [
        f"model        {s['model']} ({s['source']})",
        f"weights      {weights}",
        "dims         "
        + ", ".join(f"{k}={d[k]}" for k in ("n_layer", "n_head", "d_model", "d_head", "d_mlp", "n_ctx", "n_vocab")),
        f"parameters   {s['parameters']['total']:,}",
    ]
    for g, v in s["parameters"]["groups"].items():
        lines.append(f"  {g:<11}{v['count']:>14,}  {v['share']:6.1%}")
    toks = s["tokens"]
    listed = " | ".join(f"{t} ({i})" for t, i in zip(toks["strings"], toks["ids"]))
    lines += textwrap.wrap(
        f"tokens       {len(toks['ids'])}: {listed}", max(width, 40), subsequent_indent=" " * 13, break_on_hyphens=False
    )
    n = s["nodes"]
    lines.append(
        f"graph        {n['vectors']:,} vectors, {n['operations']:,} operations, {n['parameters']:,} parameters"
    )
    lines.append("next token   " + ", ".join(f"{p['token']!r} {p['probability']:.1%}" for p in s["top_predictions"]))
    dec = s["decoding"]
    rule = ", ".join(
        [
            f"temperature {dec['temperature']:g}",
            f"top-k {dec['top_k'] or 'off'}",
            f"top-p {dec['top_p'] or 'off'}",
            "greedy" if dec["seed"] is None else f"seed {dec['seed']}",
        ]
    )
    chosen = dec["next_token"]
    lines.append(f"decoding     {rule}: {chosen['token']!r} ({chosen['probability']:.1%})")
    if "analysis" in s:
        a = s["analysis"]
        d = a["dla"]
        what = repr(d["token"]) if d["contrast"] is None else f"{d['token']!r} - {d['contrast']!r}"
        lines.append(
            f"DLA          {d['metric'].replace('_', ' ')} {what} at position {d['position']}: "
            f"{d['model_value']:.3f} (sum of contributions off by {abs(d['residual_error']):.1e})"
        )
        for c in d["top"]:
            lines.append(f"  {c['component']:<36}{c['contribution']:>+10.3f}")
        roles = a["head_roles"]
        lines.append(f"head roles   ({roles['source']}; labelled heads, strongest first)")
        for role, heads in roles["labelled"].items():
            found = ", ".join(f"L{h['layer']}H{h['head']} {h['score']:.2f}" for h in heads) or "none"
            chance = roles["chance"][role]
            lines.append(f"  {role:<15}{found}" + ("" if chance is None else f"  (uniform head: {chance:.2f})"))
    if "counterfactual" in s:
        changed = s["counterfactual"]
        lines.append(f"replaced     {len(changed)} vectors: a counterfactual run, its values computed by the executor")
        lines += [f"  {r['node']:<36}{r['baseline']}" + (f" ({r['source']})" if r["source"] else "") for r in changed]
    for p in s.get("patching", []):
        lines.append(f"patching     {p['method']} {p['kind']} ({p['direction']}) against {p['corrupted']!r}")
    if "circuit" in s:
        c = s["circuit"]
        lines.append(f"circuit      {c['edges']} edges against {c['corrupted']!r}: {c['recovered']:.1%} recovered")
    return "\n".join(lines)
