"""Bokeh explorer on GPT-2 124M (random weights): HTML size, write time and time to first render in headless
Chromium, for 16 tokens (every vector drawn) and 128 tokens (level of detail), side by side, each without and
with a stored analysis (``graph.analyze()``: the page adds the analysis colour columns, a lens line for every
vector the lens read, each head's summary and the analysis panel; the analysis itself is not timed here).

Targets at 16 tokens: under 25 MB, interactive in under 5 s. At 128 tokens the page must open, zoom to the
vectors and pan. Times in the browser:
  first render  from navigation until Bokeh reports the document idle and every view finished
  click         from a click on a vector until its ancestors are highlighted and the panel is filled
  pan           from moving the view by half a screen until rendering is finished again
  zoom in       (128 tokens) from zooming to max_positions lanes until the vectors are drawn

    .venv/bin/python benchmarks/bench_bokeh.py [--tokens 16 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gpt2graph_bokeh
from browser import IDLE, NO_NETWORK, chromium, wait

import gpt2graph


def _repaint(driver) -> float:
    """Seconds until two animation frames have passed (Bokeh paints in the next one), then until idle."""
    frames = driver.execute_async_script("""
        const done = arguments[arguments.length - 1], start = performance.now()
        requestAnimationFrame(() => requestAnimationFrame(() => done((performance.now() - start) / 1000)))""")
    return frames + wait(driver, IDLE)


def browser_times(path: Path, lod: bool) -> dict[str, float]:
    """Seconds to first render, to a click's highlight, to a pan and (with level of detail) to zoom in."""
    model = "Bokeh.documents[0].get_model_by_name"
    with chromium(NO_NETWORK) as driver:
        start = time.perf_counter()
        driver.get(path.resolve().as_uri())
        wait(driver, IDLE)
        out = {"first render": time.perf_counter() - start}
        if lod:
            start = time.perf_counter()
            driver.execute_script(f"""
                const fig = {model}('canvas'), lanes = [...new Set({model}('overview').data.y)]
                const pitch = lanes[0] - lanes[1]  // show 20 lanes, fewer than max_positions
                fig.y_range.setv({{start: lanes[19] - pitch / 2, end: lanes[0] + pitch / 2}})""")
            wait(driver, f"{model}('node-glyphs').visible")
            out["zoom in"] = time.perf_counter() - start + _repaint(driver)
        start = time.perf_counter()
        driver.execute_script(f"{model}('nodes').selected.indices = [Math.floor({model}('nodes').data.x.length / 3)]")
        wait(driver, f"{model}('panel').text.includes('g2g-id')")
        out["click"] = time.perf_counter() - start + _repaint(driver)
        start = time.perf_counter()
        driver.execute_script(f"""
            const r = {model}('canvas').x_range, half = (r.end - r.start) / 2
            r.setv({{start: r.start + half, end: r.end + half}})""")
        out["pan"] = time.perf_counter() - start + _repaint(driver)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[16, 128])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.tokens:
            graph = gpt2graph.build(" a" * n, random_weights=True)  # " a" is one GPT-2 token
            assert graph.n_tokens == n, graph.n_tokens
            lod = n > gpt2graph_bokeh.BokehRenderer.options["max_positions"].default
            for analysed in (False, True):
                if analysed:
                    graph.analyze()
                path = Path(tmp) / f"explorer-{n}{'-analysed' if analysed else ''}.html"
                start = time.perf_counter()
                gpt2graph_bokeh.write_html(graph, path)
                write = time.perf_counter() - start
                rows.append(
                    (
                        n,
                        analysed,
                        graph.topology.count_vectors(),
                        path.stat().st_size / 2**20,
                        write,
                        browser_times(path, lod),
                    )
                )
    keys = ["first render", "click", "pan", "zoom in"]
    print(
        f"{'tokens':>6} {'analysis':>8} {'vectors':>8} {'HTML MB':>8} {'write s':>8} "
        + " ".join(f"{k + ' s':>14}" for k in keys)
    )
    for n, analysed, vectors, size, write, times in rows:
        cells = " ".join(f"{times[k]:14.2f}" if k in times else f"{'-':>14}" for k in keys)
        print(f"{n:>6} {'yes' if analysed else 'no':>8} {vectors:>8,} {size:8.1f} {write:8.2f} {cells}")
    print("targets at 16 tokens: HTML < 25 MB, first render < 5 s")


if __name__ == "__main__":
    main()
