"""SVG renderer on GPT-2 124M (random weights): time and file size of the default view (block 0 expanded)
against every block expanded, side by side, then both again with the analysis panels (logit lens, DLA, head
map), which only read what ``graph.analyze()`` stored.

    .venv/bin/python benchmarks/bench_svg.py [--prompt TEXT] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import gpt2graph

VIEWS = {"default view (layers=[0])": {}, "all 12 layers expanded": {"layers": None}}


def bench(graph: gpt2graph.Graph, repeat: int, suffix: str = "") -> list[tuple[str, float, int]]:
    """(view, median seconds, bytes) for each view; the first render also pays for loading the glossary."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graph.render("svg", Path(tmp) / "warmup.svg")
        for view, options in VIEWS.items():
            label = view + suffix
            path = Path(tmp) / "out.svg"
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                graph.render("svg", path, **options)
                times.append(time.perf_counter() - start)
            rows.append((label, statistics.median(times), path.stat().st_size))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="Transformer tokens")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    start = time.perf_counter()
    graph = gpt2graph.build(args.prompt, random_weights=True)
    print(f"built {graph} in {time.perf_counter() - start:.2f} s")
    rows = bench(graph, args.repeat)
    start = time.perf_counter()
    graph.analyze(induction_probe=20)
    print(f"analysed in {time.perf_counter() - start:.2f} s")
    rows += bench(graph, args.repeat, ", with analysis")
    print(f"{'view':<44}{'time (median)':>16}{'file size':>14}")
    for label, seconds, size in rows:
        print(f"{label:<44}{seconds:>14.2f} s{size / 1e6:>11.2f} MB")


if __name__ == "__main__":
    main()
