"""Every target of issue 9 (long prompts and big models) beside what this machine measures, side by side in one
run: GPT-2 124M architecture with random weights (gpt2-xl for memory), fp32, CPU, 2 threads. Each measurement
runs in a fresh process, so that peak memory is its own and no cache carries over.

  storage     a saved 16-token graph without its weights; saved activations per token (1024 tokens)
  build       a 16-token build on a model already loaded from a checkpoint directory that carries its
              tokenizer, against a plain Hugging Face forward pass of the same tokens (medians, interleaved)
  analysis    everything analyze computes but the logit lens, against the build of the same 1024-token run;
              the residual-stream lens against a plain product with W_U of the same shapes (best of runs)
  rendering   the Bokeh explorer of an analysed 1024-token run (file size, first render in headless
              Chromium); later notebook cells at 16 tokens; the SVG of a 1024-token run
  models      peak memory of a gpt2-xl build at 256 tokens against its model and captured activations

    .venv/bin/python benchmarks/bench_targets.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from browser import IDLE, NO_NETWORK, chromium, wait

MB = 1e6


def _setup() -> None:
    import torch

    torch.set_num_threads(2)
    os.environ.setdefault("GPT2GRAPH_CACHE", tempfile.mkdtemp(prefix="g2g-bench-cache-"))


def _graph(n: int, **kw):
    import gpt2graph

    graph = gpt2graph.build(" a" * n, random_weights=True, **kw)  # " a" is one GPT-2 token
    assert graph.n_tokens == n, graph.n_tokens
    return graph


# ---- measurements (each runs in a child process) ---------------------------------------------------------
def storage() -> list[dict]:
    graph = _graph(16)
    out = Path(tempfile.mkdtemp()) / "run.gg"
    graph.save(out)
    size = sum(f.stat().st_size for f in out.iterdir())
    long = _graph(1024)
    long.save(out.with_name("long.gg"))
    from gpt2graph.values import activation_shapes

    stored = activation_shapes(long.dims, long.n_tokens)
    per_token = sum(long.store.activations[k].numel() * 4 for k in stored) / long.n_tokens
    return [
        dict(target="saved 16-token graph, weights in the store", limit=5 * MB, measured=size, unit="MB"),
        dict(target="saved activations per token (1024 tokens)", limit=0.7 * MB, measured=per_token, unit="MB"),
    ]


def build() -> list[dict]:
    import torch
    from transformers import GPT2LMHeadModel

    import gpt2graph
    from gpt2graph.loading import family_config
    from gpt2graph.tokenizer import gpt2_bpe_tokenizer

    directory = tempfile.mkdtemp()
    GPT2LMHeadModel(family_config("gpt2")).save_pretrained(directory)
    gpt2_bpe_tokenizer().save_pretrained(directory)  # a checkpoint that carries its tokenizer, as real ones do
    model = GPT2LMHeadModel.from_pretrained(directory).eval()
    prompt, ids = " a" * 16, torch.tensor([[257] * 16])
    gpt2graph.build(prompt, model=model)  # warm: the tokenizer is loaded once per model, here
    forward, built = [], []
    for _ in range(15):
        start = time.perf_counter()
        with torch.no_grad():
            model(ids, use_cache=False)
        forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        gpt2graph.build(prompt, model=model)
        built.append(time.perf_counter() - start)
    f, b = statistics.median(forward), statistics.median(built)
    detail = f"{b:.3f} s / {f:.3f} s"
    return [dict(target="16-token build / HF forward", limit=1.3, measured=b / f, unit="x", detail=detail)]


def analysis() -> list[dict]:
    import torch

    import gpt2graph
    from gpt2graph.analyze import compute
    from gpt2graph.lens import EAGER_KINDS, logit_lens
    from gpt2graph.loading import load_model
    from gpt2graph.topology import Key

    loaded = load_model("gpt2", random_weights=True)
    prompt = " a" * 1024

    def fresh():
        return gpt2graph.build(prompt, model=loaded.model, tokenizer=loaded.tokenizer)

    builds, analyses = [], []
    for _ in range(3):
        start = time.perf_counter()
        graph = fresh()
        builds.append(time.perf_counter() - start)
        start = time.perf_counter()
        compute(graph, lens=False)  # a fresh run: its logits are derived here too
        analyses.append(time.perf_counter() - start)
    b, a = min(builds), min(analyses)
    rows = [
        dict(target="analyze without the lens / build (1024 tokens)", limit=2.0, measured=a / b, unit="x",
             detail=f"{a:.2f} s / {b:.2f} s"),
    ]  # fmt: skip
    # the residual-stream lens (what is read eagerly) against the bare product of the same shapes
    lens_times, floor_times = [], []
    W_U = graph.store.param(Key("W_U"))
    for _ in range(2):
        start = time.perf_counter()
        table = logit_lens(graph, kinds=list(EAGER_KINDS))
        lens_times.append(time.perf_counter() - start)
        rows_read = sum(len(b.node_ids) for b in table.blocks)
        x = torch.randn(table.rows, graph.dims.d_model)
        start = time.perf_counter()
        with torch.no_grad():
            for done in range(0, rows_read, table.rows):
                x[: min(table.rows, rows_read - done)] @ W_U
        floor_times.append(time.perf_counter() - start)
    lens, floor = min(lens_times), min(floor_times)
    rows.append(
        dict(target="stream lens throughput / plain matmul", limit=0.7, measured=floor / lens, unit="x", at_least=True,
             detail=f"{rows_read} rows: {lens:.1f} s / {floor:.1f} s")
    )  # fmt: skip
    return rows


def rendering() -> list[dict]:
    import gpt2graph_bokeh

    rows = []
    graph = _graph(1024)
    graph.analyze()
    tmp = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    graph.render("svg", tmp / "run.svg")
    rows.append(dict(target="SVG of a 1024-token run (analysed)", limit=5.0, measured=time.perf_counter() - start,
                     unit="s"))  # fmt: skip
    start = time.perf_counter()
    page = gpt2graph_bokeh.write_html(graph, tmp / "explorer.html")
    write = time.perf_counter() - start
    rows.append(dict(target="Bokeh page, analysed 1024 tokens", limit=30 * MB, measured=page.stat().st_size, unit="MB",
                     detail=f"written in {write:.1f} s"))  # fmt: skip
    rows.append(dict(target="Bokeh first render, headless Chromium", limit=5.0, measured=_first_render(page), unit="s"))
    rows.append(dict(target="later notebook show() cell, 16 tokens analysed", limit=2 * MB,
                     measured=_notebook_cell(), unit="MB"))  # fmt: skip
    return rows


def _notebook_cell() -> float:
    """Bytes a second ``show()`` in a notebook session sends (the first one also loads BokehJS)."""
    import types

    import bokeh.io
    import bokeh.io.notebook

    graph = _graph(16)
    graph.analyze()
    cells: list[int] = []
    bokeh.io.notebook.publish_display_data = lambda data, *a, **k: cells.append(sum(len(str(v)) for v in data.values()))
    ipython = types.ModuleType("IPython")  # this process as a Jupyter kernel (an IPython shell with a kernel)
    ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    ipython.display = types.ModuleType("IPython.display")  # what bokeh.io.show reaches for in a notebook
    ipython.display.display = lambda *a, **k: None
    sys.modules.update({"IPython": ipython, "IPython.display": ipython.display})
    graph.show()
    first = len(cells)
    assert first, "show() did not display in the notebook"
    graph.show()
    return sum(cells[first:])


def _first_render(path: Path) -> float:
    """Seconds from navigation until Bokeh reports the document idle and every view finished."""
    with chromium(NO_NETWORK) as driver:
        start = time.perf_counter()
        driver.get(path.resolve().as_uri())
        wait(driver, IDLE)
        return time.perf_counter() - start


def models() -> list[dict]:
    def mb(field: str) -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

    base = mb("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:  # the high-water mark from now on
        f.write("5")
    graph = _graph(256, model="gpt2-xl")
    peak = mb("VmHWM:") - base
    model = sum(t.numel() * t.element_size() for t in graph.store.params.values())
    activations = sum(t.numel() * t.element_size() for t in graph.store.activations.values())
    detail = (
        f"peak {peak / 2**30:.1f} GiB of 24; model {model / 2**30:.1f} GiB, activations {activations / 2**30:.2f} GiB"
    )
    ratio = peak / (model + activations)
    return [dict(target="gpt2-xl 256 tokens: peak / (model + activations)", limit=1.5, measured=ratio, unit="x",
                 detail=detail)]  # fmt: skip


GROUPS = {"storage": storage, "build": build, "analysis": analysis, "rendering": rendering, "models": models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    args = ap.parse_args()
    print("Issue 9 targets: GPT-2 124M architecture (gpt2-xl for memory), random weights, fp32, CPU, 2 threads")
    print(f"{'target':<52}{'limit':>10}{'measured':>12}{'ratio':>8}  ok  detail")
    failed = False
    for name in args.only:
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", flush=True)
            failed = True
            continue
        for row in json.loads(out.stdout.strip().splitlines()[-1]):
            scale = MB if row["unit"] == "MB" else 1
            at_least = row.get("at_least", False)
            ratio = row["measured"] / row["limit"]
            ok = ratio >= 1 if at_least else ratio <= 1
            limit = f"{'>=' if at_least else '<='}{row['limit'] / scale:g}{row['unit'] if row['unit'] != 'x' else 'x'}"
            measured = f"{row['measured'] / scale:.3g}{row['unit'] if row['unit'] != 'x' else 'x'}"
            print(
                f"{row['target']:<52}{limit:>10}{measured:>12}{ratio:>8.2f}  {'yes' if ok else 'NO ':<3} "
                f"{row.get('detail', '')}",
                flush=True,
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _setup()
        print(json.dumps(GROUPS[sys.argv[2]]()))
    else:
        main()
