"""Cost of patching on GPT-2 124M (random weights, fp32, CPU, 2 threads), 16 tokens, measured side by side in one
process against one plain Hugging Face forward pass of the same model on the same tokens:

  sweep        the full per-head head_out activation patching sweep (every head of every layer patched at every
               position at once: 144 patched runs), against 144 HF forward passes; target <= 0.5
  sweep/pos    the same per head and position (2304 patched runs), against 2304 HF forward passes
  attribution  attribution patching of every node of the six patchable kinds at once (one forward and one backward
               pass of the clean run; the corrupted run's vectors are read from its graph), against one HF forward
               pass; target <= 4. "+ corrupted build" adds building the corrupted graph (an HF forward and capture),
               for the reading "one clean forward with its backward, one corrupted forward"
  edges        edge attribution patching of every edge (q, k, v inputs apart), against one HF forward pass

and how well attribution patching tracks activation patching on this random model: the Spearman rank correlation
of the two, per kind, over every cell of the layer x position (or layer x head) table. Times are the best of a few
repeats, and each is set against the best HF forward pass timed in the same window, between its repeats: on a
shared machine the minimum is the stable statistic, and the load changes from one minute to the next. The ratio
of CPU times (process time, both threads) is printed too: it moves less with the machine's load.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

N_TOKENS = 16
KINDS = ("resid_pre", "attn_out", "mlp_out", "head_out", "z", "attn_pattern")


def _seconds(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _side_by_side(fn, reference, repeats: int) -> list[float]:
    """Best wall and CPU times of ``fn``, and of ``reference`` timed around each of its repeats."""
    times, references = [], [_seconds(reference) for _ in range(3)]
    for _ in range(repeats):
        times.append(_seconds(fn))
        references += [_seconds(reference) for _ in range(3)]
    return [min(t[i] for t in times) for i in (0, 1)] + [min(t[i] for t in references) for i in (0, 1)]


def _spearman(a, b) -> float:
    import torch

    def ranks(x):
        return torch.argsort(torch.argsort(x)).double()

    ra, rb = ranks(a.flatten()), ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()))


def child() -> dict:
    import torch

    import gpt2graph
    from gpt2graph import progress
    from gpt2graph.circuit import edge_attribution
    from gpt2graph.loading import load_model

    torch.set_num_threads(2)
    progress.configure(False)
    loaded = load_model("gpt2", random_weights=True)
    ids = torch.randint(0, 50257, (N_TOKENS,), generator=torch.Generator().manual_seed(0)).tolist()
    other = [*ids[:3], 1000, *ids[4:]]  # the corrupted prompt: one token changed
    clean = gpt2graph.build(ids, model=loaded.model, tokenizer=loaded.tokenizer)
    corrupted = gpt2graph.build(other, model=loaded.model, tokenizer=loaded.tokenizer)
    answer, wrong = int(clean.logits[-1].argmax()), int(corrupted.logits[-1].argmax())
    if answer == wrong:
        wrong = int(clean.logits[-1].argsort()[-2])
    tokens = torch.tensor([ids])

    def hf_forward():
        with torch.no_grad():
            loaded.model(input_ids=tokens, use_cache=False)

    options = dict(answer=answer, wrong=wrong)
    out = {"sweep_runs": 12 * 12, "sweep_pos_runs": 12 * 12 * N_TOKENS}
    measured = {
        "sweep": (lambda: clean.patch_sweep(corrupted, kind="head_out", **options), 3),
        "sweep_pos": (lambda: clean.patch_sweep(corrupted, kind="head_out", per_position=True, **options), 1),
        "attribution": (lambda: clean.attribution_patch(corrupted, per_position=True, **options), 3),
        "corrupted_build": (lambda: gpt2graph.build(other, model=loaded.model, tokenizer=loaded.tokenizer), 3),
        "edges": (lambda: edge_attribution(clean, corrupted, **options), 3),
    }
    for name, (fn, repeats) in measured.items():
        out[name], out[name + "_cpu"], out[name + "_hf"], out[name + "_hf_cpu"] = _side_by_side(fn, hf_forward, repeats)
    estimates = {e.kind: e for e in clean.attribution_patch(corrupted, **options)}
    out["rank"] = {}
    for kind in KINDS:
        measured = clean.patch_sweep(corrupted, kind=kind, **options)
        out["rank"][kind] = _spearman(torch.tensor(measured.raw), torch.tensor(estimates[kind].raw))
    return out


def main() -> None:
    run = subprocess.run([sys.executable, __file__, "--child"], check=True, capture_output=True, text=True)
    r = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"GPT-2 124M architecture (random weights), fp32, CPU, 2 threads, {N_TOKENS} tokens")
    print(f"{'':<34}{'seconds':>9}{'HF fwd':>9}{'ratio':>8}{'CPU ratio':>11}  target")

    def row(name: str, parts: list[str], runs: int, target: str) -> None:
        wall, cpu = (sum(r[p + suffix] for p in parts) for suffix in ("", "_cpu"))
        hf, hf_cpu = (min(r[p + "_hf" + suffix] for p in parts) for suffix in ("", "_cpu"))
        ratio, cpu_ratio = wall / (runs * hf), cpu / (runs * hf_cpu)
        print(f"{name:<34}{wall:>9.3f}{hf * 1000:>7.1f}ms{ratio:>8.3f}{cpu_ratio:>11.3f}  {target}")

    row(f"head_out sweep ({r['sweep_runs']} runs)", ["sweep"], r["sweep_runs"], "<= 0.5 (x runs)")
    row(f"head_out per position ({r['sweep_pos_runs']} runs)", ["sweep_pos"], r["sweep_pos_runs"], "(x runs)")
    row("attribution, every node", ["attribution"], 1, "<= 4")
    row("  + corrupted build", ["attribution", "corrupted_build"], 1, "")
    row("edge attribution, every edge", ["edges"], 1, "")
    print("rank correlation (Spearman) of attribution vs activation patching, noising, per kind:")
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in r["rank"].items()), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child()))
    else:
        main()
