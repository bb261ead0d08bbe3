"""Build cost vs a plain forward pass, and peak memory vs the bytes that must exist, on GPT-2 124M.

For 16, 128 and 1024 tokens, each in a fresh process (so peak memory is that run's own):
  forward  plain HF forward (default attention implementation), median of repeats
  build    gpt2graph.build on the same, already-loaded model, median of repeats
  peak     peak RSS growth of a process that loads the model and builds once, vs model bytes + captured
           activation bytes (what any capture has to hold)
Targets: build <= 1.5x forward at 1024 tokens; peak <= 1.5x (model + activations).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

TOKENS = (16, 128, 1024)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def child(mode: str, n: int, repeats: int) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    import gpt2graph

    torch.set_num_threads(2)
    prompt = " a" * n
    base = _rss_mb()
    model = GPT2LMHeadModel(GPT2Config()).eval()
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    if mode == "memory":
        with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark to "now"
            f.write("5")
        graph = gpt2graph.build(prompt, model=model)
        act_mb = sum(t.numel() * t.element_size() for t in graph.store.activations.values()) / 2**20
        return {"peak_mb": _peak_mb() - base, "model_mb": model_mb, "activations_mb": act_mb}
    ids = torch.tensor([[257] * n])
    times = {"forward": [], "build": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            model(ids, use_cache=False)
        times["forward"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gpt2graph.build(prompt, model=model)
        times["build"].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def run(n: int, mode: str, repeats: int = 3) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(n), str(repeats)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("GPT-2 124M architecture (random weights), fp32, CPU, 2 threads; each row in fresh processes")
    print(
        f"{'tokens':>7} {'forward s':>10} {'build s':>9} {'build/fwd':>10} {'peak MB':>9} {'model+act MB':>13} "
        f"{'peak/(model+act)':>17}"
    )
    for n in TOKENS:
        t = run(n, "time", repeats=5 if n < 1024 else 3)
        m = run(n, "memory")
        need = m["model_mb"] + m["activations_mb"]
        print(
            f"{n:>7} {t['forward']:>10.3f} {t['build']:>9.3f} {t['build'] / t['forward']:>10.2f} "
            f"{m['peak_mb']:>9.0f} {need:>13.0f} {m['peak_mb'] / need:>17.2f}",
            flush=True,
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
