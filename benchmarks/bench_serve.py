"""`gpt2graph serve` on GPT-2 124M (the default: pretrained gpt2 when it is cached, else the embedded
architecture with random weights), a 16-token prompt, a real server and headless Chromium, all in one run.

  build (cold)   gpt2graph.build(prompt): what the command line costs, loading the model included
  build (warm)   gpt2graph.build(prompt, model=loaded): one captured forward pass, the model loaded
  build + page   the same, then its Bokeh page written (graph.render("bokeh", path)): the static job the live
                 page does, without a server or a browser
  prediction     from the click on Run until the page shows the new prompt's predicted token (browser clock)
  whole view     from the click until the explorer, heads, walkthrough and panels of the new step are drawn
                 (browser clock: the server drew them and the browser rendered them)
  server         the same job on the server's clock (forward pass, drawing the explorer, attaching it)
  decoding       server time of one decoding-control change (the predicted position and the table at once;
                 the other positions follow in a worker), median and max over temperatures, without and with
                 top-p (its sort is the costly step)

Targets: whole view <= 2x build (cold); decoding < 100 ms of server time. The whole view is also given against
the build with the model loaded, and against that build with its Bokeh page written.

    .venv/bin/python benchmarks/bench_serve.py [--tokens 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

from browser import IDLE, chromium, wait


def model(name: str) -> str:
    return f"([...Bokeh.documents[0].roots()].flatMap(r => [...r.references()]).find(m => m.name === {name!r}) ?? null)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()
    from gpt2graph_bokeh.app import ServeConfig, ServerThread

    import gpt2graph
    from gpt2graph.loading import load_model

    warnings.simplefilter("ignore")
    prompt = " a" * args.tokens  # " a" is one GPT-2 token
    cold = []
    for _ in range(2):
        start = time.perf_counter()
        graph = gpt2graph.build(prompt)
        cold.append(time.perf_counter() - start)
    assert graph.n_tokens == args.tokens, graph.n_tokens
    loaded = load_model(None)
    warm = []
    for _ in range(3):
        start = time.perf_counter()
        gpt2graph.build(prompt, model=loaded)
        warm.append(time.perf_counter() - start)
    paged = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(3):
            start = time.perf_counter()
            gpt2graph.build(prompt, model=loaded).render("bokeh", f"{folder}/page{i}.html")
            paged.append(time.perf_counter() - start)
    del loaded, graph

    runs = []
    with chromium() as driver, ServerThread(ServeConfig(port=0, open_browser=False)) as server:
        driver.get(server.url)
        wait(driver, IDLE)
        wait(driver, f"{model('tokens')}.text.includes('g2g-tok')")  # the model is loaded
        (page,) = list(server.shared.pages)
        for i, text in enumerate([prompt, " b" * args.tokens, prompt]):  # the first warms the page up
            driver.execute_script(f"{model('prompt')}.value = arguments[0]", text)
            wait(driver, f"{model('tokens')}.text.includes('{args.tokens} tokens')")
            drawings = page.explorer_slot.tags[1]
            button = driver.execute_script(
                "function* all(r) { for (const e of r.querySelectorAll('*')) { yield e;"
                " if (e.shadowRoot) yield* all(e.shadowRoot) } }"
                "return [...all(document)].find(e => e.tagName == 'BUTTON' && e.textContent == 'Run')"
            )
            start = time.perf_counter()
            button.click()
            wait(driver, f"{model('steps')}.value == '{i + 1}' && {model('decoding')}.text.includes('next')")
            prediction = time.perf_counter() - start
            wait(driver, f"{model('explorer-slot')}.tags[1] == {drawings + 1}")
            wait(driver, IDLE)
            runs.append((prediction, time.perf_counter() - start, page.timings["building the graph"]))
        decoding = {}
        for top_p in (1.0, 0.9):
            driver.execute_script(f"{model('top-p')}.value = {top_p}")
            times = []
            for t in (0.5, 0.7, 0.9, 1.1, 1.3, 1.5):
                before = page.timings.get("decoding")
                driver.execute_script(f"{model('temperature')}.value = {t}")
                wait(driver, f"{model('decoding')}.text.includes('temperature {t:g},')")
                while page.timings.get("decoding") is before:
                    time.sleep(0.01)
                times.append(page.timings["decoding"])
            decoding[top_p] = times

    build_cold, build_warm, build_page = statistics.median(cold), statistics.median(warm), statistics.median(paged)
    prediction, whole, server = (statistics.median(r[k] for r in runs[1:]) for k in range(3))
    print(f"GPT-2 124M architecture, {args.tokens}-token prompt, CPU; one server, one headless Chromium")
    print(f"{'':<36}{'seconds':>9}{'x cold build':>14}{'x warm build':>14}{'x build+page':>14}")
    for label, value in [
        ("build (cold: model loaded too)", build_cold),
        ("build (warm: the model loaded)", build_warm),
        ("build + Bokeh page written (warm)", build_page),
        ("Run -> prediction shown", prediction),
        ("Run -> whole view drawn", whole),
        ("  of which on the server", server),
    ]:
        print(
            f"{label:<36}{value:>9.3f}{value / build_cold:>14.2f}{value / build_warm:>14.2f}{value / build_page:>14.2f}"
        )
    for top_p, times in decoding.items():
        what = "off" if top_p >= 1 else f"{top_p}"
        print(
            f"decoding change, top-p {what:<4}: server {1000 * statistics.median(times):6.1f} ms median, "
            f"{1000 * max(times):6.1f} ms max"
        )
    print("targets: whole view <= 2x build (cold); a decoding change < 100 ms of server time")


if __name__ == "__main__":
    main()
