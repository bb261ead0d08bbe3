"""Cost of the interpretability layers on GPT-2 124M, as a ratio to the build time of the same graph.

For 16 and 256 tokens (random weights, fp32, CPU, 2 threads), one process per length:
  build      gpt2graph.build(prompt, random_weights=True) on an already-loaded model
  lens       logit lens of every stream vector and every write into the stream (the costly part: one full
             vocabulary row per vector, (2 n_layer + 1) n + n_layer n_head n + n_layer vectors)
  dla        direct logit attribution at the last position
  roles      head role scores from the prompt's patterns; +probe: with a 50-token repeated random sequence
  circuits   QK/OV singular values, copying scores, boosted tokens for every head
  decoding   temperature, top-k, top-p and a seeded sample
  analyze    all of the above at once (with the probe)
Each time is the best of a few repeats (one for the lens at 256 tokens): on a shared 2-core machine the
minimum is the stable statistic, the median moves with whatever else runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

TOKENS = (16, 256)
PARTS = ("lens", "dla", "roles", "roles+probe", "circuits", "decoding", "analyze")


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def child(n: int) -> dict:
    import torch

    import gpt2graph
    from gpt2graph.analyze import analyze
    from gpt2graph.circuits import head_circuits
    from gpt2graph.decoding import decode_next
    from gpt2graph.dla import direct_logit_attribution
    from gpt2graph.lens import logit_lens
    from gpt2graph.loading import load_model
    from gpt2graph.roles import head_roles

    torch.set_num_threads(2)
    prompt = " a" * n
    loaded = load_model(None, random_weights=True)
    graph = gpt2graph.build(prompt, model=loaded.model, tokenizer=loaded.tokenizer)
    assert graph.n_tokens == n, graph.n_tokens
    repeats = 3 if n <= 16 else 1
    out = {"build": _time(lambda: gpt2graph.build(prompt, model=loaded.model, tokenizer=loaded.tokenizer), 5)}
    out["lens"] = _time(lambda: logit_lens(graph, eager=True), repeats)  # every write too, as analyze did before
    out["dla"] = _time(lambda: direct_logit_attribution(graph), 3)
    out["roles"] = _time(lambda: head_roles(graph), 3)
    out["roles+probe"] = _time(lambda: head_roles(graph, induction_probe=50), 3)
    out["circuits"] = _time(lambda: head_circuits(graph), 3)
    out["decoding"] = _time(lambda: decode_next(graph, temperature=0.8, top_k=50, top_p=0.9, seed=0), 3)
    out["analyze"] = _time(lambda: analyze(graph, induction_probe=50, top_k=50, top_p=0.9, seed=0), repeats)
    return out


def run(n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("GPT-2 124M architecture (random weights), fp32, CPU, 2 threads; seconds (x build time)")
    results = {n: run(n) for n in TOKENS}
    print(f"{'':>12}" + "".join(f"{f'{n} tokens':>24}" for n in TOKENS))
    print(f"{'build':>12}" + "".join(f"{results[n]['build']:>15.3f} s {'':>6}" for n in TOKENS))
    for part in PARTS:
        cells = "".join(f"{results[n][part]:>15.3f} s {results[n][part] / results[n]['build']:>5.1f}x" for n in TOKENS)
        print(f"{part:>12}{cells}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]))))
    else:
        main()
