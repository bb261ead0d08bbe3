"""A plain-data summary of a graph: what ``gpt2graph info`` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["summarize_graph", "format_summary", "top_predictions"]


def top_predictions(graph: Graph, k: int = 5, position: int = -1) -> list[dict]:
    """The k most probable next tokens after ``position`` (default: the last), with probabilities."""
    probs = torch.softmax(graph.logits[position].double(), dim=-1)
    top = torch.topk(probs, k)
    decode = graph.decode_token
    return [{"id": int(i), "token": decode(int(i)), "probability": float(p)} for p, i in zip(top.values, top.indices)]


def summarize_graph(graph: Graph, k: int = 5) -> dict:
    m, tok = graph.model, graph.tokenization
    total = m.total_parameters
    return {
        "model": m.name,
        "source": m.source,
        "weights": m.weights.model_dump(),
        "dims": m.dims.model_dump(),
        "parameters": {"total": total,
                       "groups": {g: {"count": c, "share": c / total} for g, c in m.parameters.items()}},
        "tokens": {"text": tok.text, "ids": list(tok.token_ids), "strings": list(tok.tokens_visible)},
        "nodes": {"vectors": graph.topology.count_vectors(), "operations": graph.topology.count_ops(),
                  "parameters": graph.topology.count_params()},
        "top_predictions": top_predictions(graph, k),
        "created": graph.header.created,
    }


def format_summary(s: dict) -> str:
    w = s["weights"]
    weights = "pretrained" if w["status"] == "pretrained" else f"RANDOM (seed {w['seed']}): predictions are meaningless"
    d = s["dims"]
    lines = [
        f"model        {s['model']} ({s['source']})",
        f"weights      {weights}",
        "dims         " + ", ".join(f"{k}={d[k]}" for k in ("n_layer", "n_head", "d_model", "d_head", "d_mlp",
                                                             "n_ctx", "n_vocab")),
        f"parameters   {s['parameters']['total']:,}",
    ]
    for g, v in s["parameters"]["groups"].items():
        lines.append(f"  {g:<11}{v['count']:>14,}  {v['share']:6.1%}")
    toks = s["tokens"]
    lines.append(f"tokens       {len(toks['ids'])}: " + " | ".join(f"{t} ({i})" for t, i in zip(toks["strings"], toks["ids"])))
    n = s["nodes"]
    lines.append(f"graph        {n['vectors']:,} vectors, {n['operations']:,} operations, {n['parameters']:,} parameters")
    lines.append("next token   " + ", ".join(f"{p['token']!r} {p['probability']:.1%}" for p in s["top_predictions"]))
    return "\n".join(lines)
