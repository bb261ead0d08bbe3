"""Corpus throughput: prompts per second for one process, the local engine with 2 worker processes, and Ray
with 2 actors (a local Ray instance started and shut down by the run), side by side in one run.

64 prompts of exactly 32 GPT-2 tokens, seeded; the model is GPT-2 124M with seeded random weights (the
embedded architecture: ``--model gpt2 --random-weights``), fp32, CPU. Each configuration is a fresh
``gpt2graph corpus`` command, so the times include starting workers and loading the model in each, as a
user sees them; the statistics of the three runs are checked to agree (<= 1e-6).

    python benchmarks/bench_corpus.py [--prompts 64] [--tokens 32] [--model gpt2 | --tiny]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = (
    "the model reads every token and writes a vector into the residual stream where heads attend to earlier "
    "positions while layers add what they compute and the logits rank each word of the vocabulary"
)
RUNS = (("one process", ["--workers", "1"]), ("local, 2 workers", ["--workers", "2"]),
        ("ray, 2 workers", ["--engine", "ray", "--workers", "2"]))  # fmt: skip


def prompts(n: int, tokens: int) -> list[str]:
    """``n`` seeded prompts of exactly ``tokens`` GPT-2 tokens."""
    from gpt2graph.tokenizer import gpt2_bpe_tokenizer

    tok = gpt2_bpe_tokenizer()
    rng = random.Random(0)
    words = TEXT.split()
    out = []
    while len(out) < n:
        ids = tok(" ".join(rng.choice(words) for _ in range(2 * tokens)), add_special_tokens=False)["input_ids"]
        text = tok.decode(ids[:tokens])
        if len(tok(text, add_special_tokens=False)["input_ids"]) == tokens:
            out.append(text)
    return out


def tiny_checkpoint(path: Path) -> Path:
    """A small random GPT-2 saved like a user's checkpoint (GPT-2's vocabulary, so the lens costs what it does)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=64)).save_pretrained(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--model", default="gpt2", help="a GPT-2 family name, run with seeded random weights")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer, d_model 64 random GPT-2 instead (engine overhead)")
    args = ap.parse_args()
    cli = Path(sys.executable).with_name("gpt2graph")
    with tempfile.TemporaryDirectory() as tmp:
        model = ["--model", args.model, "--random-weights"]
        if args.tiny:
            model = ["--model", str(tiny_checkpoint(Path(tmp) / "tiny"))]
            args.model = "tiny GPT-2 (2 layers, 4 heads, d_model 64)"
        source = Path(tmp) / "prompts.txt"
        source.write_text("\n".join(prompts(args.prompts, args.tokens)) + "\n", encoding="utf-8")
        rows = []
        for name, flags in RUNS:
            out = Path(tmp) / f"{len(rows)}.ggc"
            command = [str(cli), "corpus", str(source), *model, "-o", str(out), "--checkpoint-every", "600", *flags]
            t0 = time.perf_counter()
            subprocess.run(
                command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "GPT2GRAPH_PROGRESS": "0"}
            )
            rows.append((name, time.perf_counter() - t0, out))
        from gpt2graph import load_corpus

        first = load_corpus(rows[0][2])
        worst = 0.0
        for _, _, out in rows[1:]:
            other = load_corpus(out)
            for key, m in first.moments.items():
                o = other.moments[key]
                worst = max(worst, float(((m.mean - o.mean).abs() / (1 + m.mean.abs())).max()))
        print(f"{args.prompts} prompts x {args.tokens} tokens, {args.model}, random weights, fp32, CPU")
        print(f"{'configuration':<18}{'seconds':>9}{'prompts/s':>11}{'vs one process':>16}")
        for name, seconds, _ in rows:
            print(f"{name:<18}{seconds:>9.1f}{args.prompts / seconds:>11.2f}{rows[0][1] / seconds:>15.2f}x")
        print(f"largest relative difference between the engines' means: {worst:.1e}")


if __name__ == "__main__":
    main()
