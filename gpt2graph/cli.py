"""The ``gpt2graph`` command line: build, analyze, info, verify, patch, circuit, render, corpus, renderers,
serve, weights, glossary, validate, schema.

Every failure is one line on stderr, never a traceback: errors in the user's input (a
:class:`~gpt2graph.errors.Gpt2GraphError`, or arguments the parser refuses) exit with status 2, a failed
check (verification, validation, stale schema) with 1, Ctrl-C with 130. An error that advises an argument
names it by its flag here (``--random-weights``) and by its keyword in Python (``random_weights=True``).
Long steps draw progress bars on a terminal (:mod:`gpt2graph.progress`), never in a pipe, and never
with ``--quiet``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import shutil
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .errors import DataValidationError, Gpt2GraphError
from .loading import DEVICES

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .causal import PatchSweep, PredictionCircuit
    from .glossary import GlossaryEntry
    from .graph import Graph
    from .presentation import Span

__all__ = ["main", "parser", "FLAGS"]

#: Python keyword -> the flag that sets it, for errors and reports that name an argument
FLAGS = {
    "model": "--model",
    "random_weights": "--random-weights",
    "position": "--position",
    "target": "--target",
    "contrast": "--contrast",
    "top_tokens": "--top-tokens",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "seed": "--sample-seed",
    "induction_probe": "--induction-probe",
    "lens": "--no-lens",
}
#: set by --debug (or GPT2GRAPH_DEBUG=1): an unexpected error shows its traceback
DEBUG_ENV = "GPT2GRAPH_DEBUG"


def cli_spelling(keyword: str, value: Any) -> str:
    """How the command line passes an argument: its flag, followed by the value unless it is a switch."""
    flag = FLAGS.get(keyword, keyword)
    if value is None or value is True:
        return flag
    return f"{flag} {value!r}" if isinstance(value, str) else f"{flag} {value}"


def _load(path: str) -> Graph:
    from .storage import load

    return load(path)


# ---- build and analyze --------------------------------------------------------------------------------------
def cmd_build(args: argparse.Namespace) -> int:
    from .builder import build
    from .storage import check_target
    from .summary import format_summary

    if args.output:
        check_target(args.output)  # fail before the model runs, not after
    renders = [_render_target(spec, args.output) for spec in args.render or []]  # unknown renderers fail now too

    with _fallback_said():
        graph = build(
            args.prompt,
            model=args.model,
            **_loading(args),
            device=args.device,
            annotations=args.annotations,
            analyze=_build_analysis(args),
        )
    print(format_summary(graph.summary(), width=_columns()))
    if args.verify:
        report = graph.verify()
        print(report.format())
        if not report.ok:
            return 1
    if args.output:
        graph.save(args.output, embed_weights=args.embed_weights)
        print(f"saved {args.output}")
    for name, path in renders:
        graph.render(name, path)
        print(f"rendered {name}: {path}")
    return 0


@contextmanager
def _fallback_said() -> Iterator[None]:
    """Loads a model: when the pretrained default could not be loaded and the embedded one stands in, say so in
    one line once the block is done (instead of Python's warning with its source line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if "could not be loaded" in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)


def _render_target(spec: str, output: str | None) -> tuple[str, Path]:
    """``NAME[=PATH]`` of --render: the renderer (checked to be installed) and the file it writes."""
    from .registry import registry

    name, _, out = spec.partition("=")
    suffix = registry.resolve(name).suffixes[0]
    return name, Path(out) if out else Path(output or "run").with_suffix(suffix)


def _token(text: str | None, token_id: int | None) -> int | str | None:
    return token_id if token_id is not None else text


def _analysis_options(args: argparse.Namespace) -> dict[str, Any]:
    """The analysis options given on the command line; the rest keep :func:`gpt2graph.analyze.analyze`'s defaults."""
    given = dict(
        position=args.position,
        target=_token(args.target, args.target_id),
        contrast=_token(args.contrast, args.contrast_id),
        top_tokens=args.top_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.sample_seed,
        induction_probe=args.induction_probe,
        lens=False if args.no_lens else None,
    )
    return {k: v for k, v in given.items() if v is not None}


def _build_analysis(args: argparse.Namespace) -> dict[str, Any] | bool:
    """``build`` analyses when asked to with --analyze or implicitly by any analysis option."""
    options = _analysis_options(args)
    return (options or True) if args.analyze or options else False  # --analyze alone: every default


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import compute
    from .summary import format_summary

    graph = _load(args.graph)
    target = args.output or args.graph
    if args.output:
        from .storage import check_target

        check_target(args.output)
    given = _analysis_options(args)
    earlier = {} if args.fresh or graph.analysis is None else graph.analysis.options.as_arguments()
    defaults = {k: p.default for k, p in inspect.signature(compute).parameters.items() if k != "graph"}
    kept = {k: v for k, v in earlier.items() if k not in given and v != defaults.get(k)}
    graph.analyze(**{**earlier, **given})
    if kept:
        listed = ", ".join(_spell_kept(k, v) for k, v in kept.items())
        print(f"kept from the earlier analysis: {listed} (--fresh starts from the defaults)")
    print(format_summary(graph.summary(), width=_columns()))
    _save_again(graph, target, args.embed_weights)
    print(f"saved {target}")
    return 0


def _save_again(graph: Graph, path: str, embed_weights: bool) -> None:
    """Save a loaded graph, its weights still embedded if they were (or now, with ``embed_weights``)."""
    embedded = graph.header.stored_weights is not None and graph.header.stored_weights.embedded
    graph.save(path, embed_weights=embed_weights or embedded)


def _spell_kept(keyword: str, value: Any) -> str:
    if keyword == "lens":
        return "--no-lens" if value is False else f"lens of {', '.join(value)}"
    return cli_spelling(keyword, value)


# ---- argument types: refused at parse time, under the flag's own name ----------------------------------------
def _int_in(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (None: unbounded)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {value}")
        return value

    return parse


_integer, _positive_int, _seed = _int_in(), _int_in(1), _int_in(0, 2**64 - 1)


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _positive_real(text: str) -> float:
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _non_negative_real(text: str) -> float:
    value = _real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _probability(text: str) -> float:
    value = _real(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument_group("interpretability (logit lens, DLA, head roles, circuits, decoding)")
    a.add_argument(
        "--position", type=_integer, help="position for DLA and decoding; negative counts from the end (default: last)"
    )
    target, contrast = a.add_mutually_exclusive_group(), a.add_mutually_exclusive_group()
    target.add_argument(
        "--target",
        help="token to attribute and rank, as text that is exactly one token, e.g. ' Paris' (default: the prediction)",
    )
    target.add_argument("--target-id", type=_integer, help="the same, as a token id")
    contrast.add_argument("--contrast", help="second token: DLA of the logit difference target - contrast")
    contrast.add_argument("--contrast-id", type=_integer, help="the same, as a token id")
    a.add_argument("--top-tokens", type=_positive_int, help="tokens per lens entry / table (default 5)")
    a.add_argument("--temperature", type=_positive_real, help="decoding temperature (> 0, default 1)")
    a.add_argument("--top-k", type=_positive_int, help="decoding top-k (default: off)")
    a.add_argument("--top-p", type=_probability, help="decoding top-p in (0, 1] (default: off)")
    a.add_argument("--sample-seed", type=_seed, help="sample with this seed (default: greedy)")
    a.add_argument(
        "--induction-probe",
        type=_positive_int,
        metavar="N",
        help="score head roles on the prompt plus N random tokens repeated twice",
    )
    a.add_argument(
        "--no-lens", action="store_true", help="skip the logit lens (its cost grows with tokens x heads x vocabulary)"
    )


# ---- reading saved graphs -------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from .corpus import describe, format_description, is_corpus, load_corpus
    from .summary import format_summary, summarize_graph

    if is_corpus(args.graph):  # a .ggc (corpus.json) rather than a .gg (graph.json)
        d = describe(load_corpus(args.graph))
        print(json.dumps(d, indent=2, ensure_ascii=False) if args.json else format_description(d))
        return 0
    graph = _load(args.graph)
    summary = summarize_graph(graph, k=args.top)
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else format_summary(summary, _columns()))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    report = _load(args.graph).verify(mode=args.mode)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1


def _corrupted(text: str) -> Graph | str:
    """A saved graph when ``text`` names one (a directory, or a path ending in .gg), else a prompt."""
    path = Path(text)
    return _load(text) if path.is_dir() or path.suffix == ".gg" else text


def _experiment(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        answer=_token(args.answer, args.answer_id),
        wrong=_token(args.wrong, args.wrong_id),
        metric=args.metric,
    )


def _table(labels_rows: list[str], labels_cols: list[str], values: list[list[float]]) -> str:
    width = max(8, *(len(c) + 1 for c in labels_cols))
    first = max(len(r) for r in labels_rows) + 1
    lines = [" " * first + "".join(f"{c:>{width}}" for c in labels_cols)]
    for label, row in zip(labels_rows, values):
        lines.append(f"{label:<{first}}" + "".join(f"{v:>{width}.3f}" for v in row))
    return "\n".join(lines)


def format_sweep(sweep: PatchSweep) -> str:
    """A patching sweep as readable tables (normalised, then raw)."""
    into = (
        "the corrupted run into the clean one"
        if sweep.direction == "noising"
        else "the clean run into the corrupted one"
    )
    how = "estimated by attribution patching" if sweep.method == "attribution" else f"{sweep.runs} patched runs"
    rows, cols = sweep.rows, sweep.cols
    return "\n".join(
        [
            f"{sweep.kind} patched from {into} ({how}); metric {sweep.metric_text} at position {sweep.position}",
            f"clean {sweep.clean_value:.4f}, corrupted {sweep.corrupted_value:.4f} ({sweep.corrupted_text!r})",
            f"normalised (0 = corrupted, 1 = clean), {rows.name} x {cols.name}:",
            _table(rows.labels, cols.labels, sweep.normalized),
            f"raw metric, {rows.name} x {cols.name}:",
            _table(rows.labels, cols.labels, sweep.raw),
        ]
    )


def cmd_patch(args: argparse.Namespace) -> int:
    graph = _load(args.clean)
    if args.output:
        from .storage import check_target

        check_target(args.output)
    options = dict(
        **_experiment(args),
        positions=args.positions,
        direction=args.direction,
        per_position=args.per_position,
    )
    corrupted = _corrupted(args.corrupted)
    if args.attribution:
        (sweep,) = graph.attribution_patch(corrupted, kinds=[args.kind], **options)
    else:
        sweep = graph.patch_sweep(corrupted, kind=args.kind, **options)
    print(json.dumps(sweep.as_json(), ensure_ascii=False) if args.json else format_sweep(sweep))
    if args.output:
        _save_again(graph, args.output, args.embed_weights)
        if not args.json:
            print(f"saved {args.output}")
    return 0


def format_circuit(circuit: PredictionCircuit) -> str:
    f = circuit.faithfulness
    selection = f"top {circuit.top}" if circuit.top is not None else f"|score| >= {circuit.threshold:g}"
    lines = [
        f"circuit: {len(circuit.edges)} edges ({selection} of {circuit.n_scored} scored, {circuit.n_selected} "
        f"selected before pruning), {len(circuit.components)} components",
        f"faithfulness ({f.ablation} ablation of every other edge): clean {f.clean_value:.4f}, all ablated "
        f"{f.ablated_value:.4f}, circuit {f.circuit_value:.4f}: {f.recovered:.1%} recovered",
        f"{'edge':<28}{'score':>10}",
    ]
    for e in circuit.edges:
        target = e.target + (f".{e.input}" if e.input else "")
        lines.append(f"{e.source + ' -> ' + target:<28}{e.score:>10.4f}")
    return "\n".join(lines)


def cmd_circuit(args: argparse.Namespace) -> int:
    graph = _load(args.clean)
    if args.output:
        from .storage import check_target

        check_target(args.output)
    top = args.top if args.top is not None or args.threshold is not None else 20
    circuit = graph.circuit(
        _corrupted(args.corrupted), top=top, threshold=args.threshold, ablation=args.ablation, **_experiment(args)
    )
    print(json.dumps(circuit.model_dump(mode="json"), ensure_ascii=False) if args.json else format_circuit(circuit))
    if args.output:
        _save_again(graph, args.output, args.embed_weights)
        if not args.json:
            print(f"saved {args.output}")
    return 0


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("clean", help="the clean run: a saved graph (.gg)")
    p.add_argument(
        "corrupted", help="the corrupted run: a saved graph (.gg), or a prompt run through the clean graph's model"
    )
    answer, wrong = p.add_mutually_exclusive_group(required=True), p.add_mutually_exclusive_group()
    answer.add_argument("--answer", help="the token the clean run should predict, as text of exactly one token")
    answer.add_argument("--answer-id", type=int, help="the same, as a token id")
    wrong.add_argument("--wrong", help="the token subtracted in the logit difference (the corrupted answer)")
    wrong.add_argument("--wrong-id", type=int, help="the same, as a token id")
    p.add_argument(
        "--metric",
        choices=("logit_diff", "prob"),
        default="logit_diff",
        help="logit(answer) - logit(wrong) (default) or the answer's probability, at the last position",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-o", "--output", help="save the clean graph, with the result stored on it, to this .gg directory")
    p.add_argument("--embed-weights", action="store_true", help="write the weights into the saved graph")


def _positions(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"positions are integers separated by commas, got {text!r}") from None


def cmd_render(args: argparse.Namespace) -> int:
    from .corpus import is_corpus, load_corpus
    from .registry import parse_cli_options, registry, render

    registry.check_options(args.renderer, parse_cli_options(args.option or []))  # before loading the graph
    graph = load_corpus(args.graph) if is_corpus(args.graph) else _load(args.graph)
    path = render(graph, args.renderer, args.output, **parse_cli_options(args.option or []))
    print(f"rendered {args.renderer}: {path}")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus import ACTIVATION_KINDS, describe, format_description
    from .engine import run_corpus

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    with _fallback_said():
        try:
            stats = run_corpus(
                args.prompts,
                args.output,
                model=args.model,
                **_loading(args),
                engine=args.engine,
                workers=args.workers,
                address=args.address,
                strict=args.strict,
                kinds=tuple(args.kinds.split(",")) if args.kinds else ACTIVATION_KINDS,
                chunk_size=args.chunk_size,
                checkpoint_every=args.checkpoint_every,
                warn=warn,
            )
        except KeyboardInterrupt:
            print(
                f"interrupted: the prompts counted so far are saved in {args.output}; run the same command again "
                "to continue",
                file=sys.stderr,
            )
            return 130
    print(format_description(describe(stats)))
    print(f"saved {args.output}")
    return 0


def cmd_renderers(args: argparse.Namespace) -> int:
    from .registry import draws_corpus, registry

    rows: list[dict[str, Any]] = []
    for name in registry.names():
        info = registry.info(name)
        r = info.load()
        rows.append(
            {
                "name": name,
                "version": info.version,
                "distribution": info.distribution,
                "description": r.description,
                "suffixes": list(r.suffixes),
                "draws_corpus": draws_corpus(r),
                "options": {k: o.describe() for k, o in r.options.items()},
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no renderers installed (pip install -e renderers/svg renderers/bokeh)")
    for row in rows:
        print(
            f"{row['name']} {row['version']} ({row['distribution']}): {row['description']}  "
            f"[{', '.join(row['suffixes'])}]" + ("  (also draws corpus statistics)" if row["draws_corpus"] else "")
        )
        for k, o in row["options"].items():
            print(f"    --option {k}=<{o['type']}>  {o['help']} (default: {o['default_text']})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .glossary import read_user_file
    from .registry import serve

    for path in args.annotations or []:
        read_user_file(path)  # every problem of a user's file before the server starts, not in the page
    return serve(
        args.app,
        models=list(dict.fromkeys(args.model or [None])),
        **_loading(args),
        annotations=list(args.annotations or []),
        host=args.host,
        port=args.port,
        open_browser=not args.no_browser,
        max_graphs=args.max_graphs,
        max_graphs_per_session=min(args.max_graphs_per_session, args.max_graphs),
        max_tokens=args.max_tokens,
    )


def cmd_weights(args: argparse.Namespace) -> int:
    """``gpt2graph weights add|list``: store a model's weights, or list the store."""
    from . import weightstore

    if args.action == "add":
        if args.model is None:
            raise Gpt2GraphError("weights add: name the model whose weights to store (hub id or directory)")
        sha = weightstore.add(args.model, **_loading(args))
        print(f"stored {args.model}: sha256 {sha} in {weightstore.path_of(sha)}")
        return 0
    entries = weightstore.entries()
    if args.json:
        rows = [
            {
                "sha256": e.sha256,
                "path": str(e.path),
                "bytes": e.size,
                "checkpoint": None if e.checkpoint is None else e.checkpoint.model_dump(exclude_none=True),
            }
            for e in entries
        ]
        print(json.dumps({"store": str(weightstore.store_dir()), "entries": rows}, indent=2))
        return 0
    print(f"weight store: {weightstore.store_dir()} (set {weightstore.ENV} to move it)")
    for e in entries:
        c = e.checkpoint
        origin = "unknown origin" if c is None else c.path or " ".join(filter(None, [c.hub_id, c.revision]))
        print(f"  {e.sha256[:16]}  {e.size / 2**20:>9.1f} MB  {origin}")
    if not entries:
        print("  (empty)")
    return 0


def cmd_glossary(args: argparse.Namespace) -> int:
    """``gpt2graph glossary [TERM]``: list every term, or print one entry (exit 1 for an unknown term)."""
    from .glossary import builtin_glossary

    glossary = builtin_glossary()
    if args.term is None:
        id_w = max(map(len, glossary))
        term_w = min(24, max(len(e.term) for e in glossary.values()))
        room = max(20, _columns() - id_w - term_w - 4)
        for e in glossary.values():
            print(f"{e.id:<{id_w}}  {_clip(e.term, term_w):<{term_w}}  {_clip(' '.join(e.summary.split()), room)}")
        print(f"\n{len(glossary)} entries; `gpt2graph glossary TERM` prints one (by id, term or alias)")
        return 0
    entry = glossary.lookup(args.term)
    if entry is None:
        close = glossary.suggest(args.term)
        print(
            f"no glossary entry {args.term!r}"
            + (f"; did you mean: {', '.join(close)}?" if close else "; `gpt2graph glossary` lists every term")
        )
        return 1
    print(format_entry(entry, min(_columns(), 100)))
    return 0


def format_entry(entry: GlossaryEntry, width: int = 88) -> str:
    """A glossary entry as plain text for a terminal."""
    lines = [entry.term, "=" * len(entry.term), f"id: {entry.id}"]
    if entry.aliases:
        lines += textwrap.wrap("also: " + ", ".join(entry.aliases), width, subsequent_indent="      ")
    lines += ["", *textwrap.wrap(" ".join(entry.summary.split()), width), "", *_markdown_lines(entry.body, width)]
    if entry.see_also:
        lines += ["", *textwrap.wrap("See also: " + ", ".join(entry.see_also), width, subsequent_indent="  ")]
    if entry.sources:
        lines += ["", "Sources:"]
        for src in entry.sources:
            lines += [
                *textwrap.wrap(src.title, width, initial_indent="  - ", subsequent_indent="    "),
                f"    {src.url}",
            ]
    if entry.applies_to:
        lines += ["", "Applies to:", *(f"  - {sel.describe()}" for sel in entry.applies_to)]
    return "\n".join(lines)


def _markdown_lines(text: str, width: int) -> list[str]:
    """Markdown (as every renderer reads it, :func:`gpt2graph.presentation.parse_markdown`) wrapped for a
    terminal: paragraphs re-wrapped, each list item on lines of its own, the marks kept as written."""
    from .presentation import parse_markdown

    def marked(s: Span) -> str:
        if s.code:
            return f"`{s.text}`"
        text = s.text if s.url is None else f"[{s.text}]({s.url})"
        text = f"*{text}*" if s.em else text
        return f"**{text}**" if s.strong else text

    def plain(spans: Iterable[Span]) -> str:
        return "".join(marked(s) for s in spans)

    out: list[str] = []
    for block in parse_markdown(text):
        if block.is_list:
            for i, item in enumerate(block.items, 1):
                mark = f"{i}. " if block.ordered else "- "
                out += textwrap.wrap(mark + plain(item), width, subsequent_indent="  ")
        else:
            out += textwrap.wrap(plain(block.items[0]), width)
        out.append("")
    return out[:-1]


def _columns() -> int:
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def cmd_validate(args: argparse.Namespace) -> int:
    """``gpt2graph validate FILE... [--graph RUN]``: print every problem, one per line; exit 1 if any."""
    from .glossary import validate_files

    graph = _load(args.graph) if args.graph else None
    problems = validate_files(args.files, graph)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    n = len(args.files)
    print(f"ok: {n} file{'s' if n != 1 else ''} valid" + (" against the graph" if graph else ""))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .schemagen import cli_schema

    return cli_schema(check=args.check, directory=args.directory)


# ---- the parser -----------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Refuses bad arguments in one line (what is wrong, and where to read the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _quiet_option(p: argparse.ArgumentParser, default: object) -> None:
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bars")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="initialise the architecture with seeded random weights instead of loading trained ones "
        "(a GPT-2 family hub id needs no network then)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed for --random-weights (default 0)")
    p.add_argument("--revision", help="hub revision of the model: a branch, tag or commit (default: main)")


def _loading(args: argparse.Namespace) -> dict[str, Any]:
    """What the options of :func:`_model_options` say about loading the model, as ``load_model``'s keywords."""
    return {"random_weights": args.random_weights, "seed": args.seed, "revision": args.revision}


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gpt2graph", description="A typed, exact, vector-level graph of a live GPT-2 forward pass.")
    p.add_argument("--version", action="version", version=f"gpt2graph {__version__}", help="print the version")
    p.add_argument(
        "--debug", action="store_true", help=f"show the traceback of an unexpected error (also: {DEBUG_ENV}=1)"
    )
    _quiet_option(p, False)
    common = _Parser(add_help=False)  # --quiet after the command too (it must not reset it)
    _quiet_option(common, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    b = command("build", help="run a model on a prompt and build its graph")
    b.add_argument("prompt", help="the input text")
    b.add_argument(
        "--model",
        default=None,
        help="hub id (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2; from the HF cache when offline) or "
        "local directory (default: pretrained gpt2, falling back to the embedded GPT-2 124M architecture with "
        "random weights)",
    )
    _model_options(b)
    b.add_argument(
        "--device", choices=DEVICES, help="where the model runs (default: cpu); values are stored on the CPU"
    )
    b.add_argument("-o", "--output", metavar="RUN.gg", help="save the graph to this .gg directory")
    b.add_argument(
        "--embed-weights",
        action="store_true",
        help="write the model's weights into the saved graph (self-contained, for sharing) instead of the weight store",
    )
    b.add_argument("--annotations", action="append", metavar="FILE", help="add a glossary/annotation YAML file")
    b.add_argument("--verify", action="store_true", help="re-execute the graph and compare with the model")
    b.add_argument(
        "--render",
        action="append",
        metavar="NAME[=PATH]",
        help="also render with this renderer (default path: the output's name with the renderer's suffix)",
    )
    b.add_argument(
        "--analyze",
        action="store_true",
        help="compute the interpretability layers and store them (implied by any option below)",
    )
    _add_analysis_options(b)
    b.set_defaults(func=cmd_build)

    an = command("analyze", help="compute the interpretability layers of a saved graph and store them")
    an.add_argument("graph", metavar="RUN.gg", help="the saved graph")
    an.add_argument(
        "-o", "--output", metavar="RUN.gg", help="save to this .gg directory instead of updating the graph in place"
    )
    an.add_argument(
        "--fresh",
        action="store_true",
        help="start from the defaults; without it, options not given keep the earlier analysis's values",
    )
    an.add_argument("--embed-weights", action="store_true", help="write the weights into the saved graph")
    _add_analysis_options(an)
    an.set_defaults(func=cmd_analyze)

    i = command("info", help="summarise a saved graph (.gg) or corpus statistics (.ggc)")
    i.add_argument("graph", metavar="RUN.gg", help="the saved graph, or corpus statistics")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.add_argument("--top", type=_positive_int, default=5, help="number of next-token predictions (default 5)")
    i.set_defaults(func=cmd_info)

    v = command("verify", help="re-execute a saved graph vector by vector and compare")
    v.add_argument("graph", metavar="RUN.gg", help="the saved graph")
    v.add_argument(
        "--mode",
        choices=("batched", "vector"),
        default="batched",
        help="batched: the forward executor, every head and position of a layer at once (default); vector: "
        "operation node by operation node, as the graph draws it (slow, for small graphs)",
    )
    v.add_argument("--json", action="store_true", help="print the report as one JSON object")
    v.set_defaults(func=cmd_verify)

    pa = command("patch", help="activation patching sweep between a clean and a corrupted run")
    _add_experiment_options(pa)
    pa.add_argument(
        "--kind",
        required=True,
        choices=("resid_pre", "attn_out", "mlp_out", "head_out", "z", "attn_pattern"),
        help="the vectors patched, one at a time (head_out, z, attn_pattern: one head at a time)",
    )
    pa.add_argument(
        "--direction",
        choices=("noising", "denoising"),
        default="noising",
        help="noising: corrupted vectors into the clean run (default); denoising: clean ones into the corrupted run",
    )
    pa.add_argument("--positions", type=_positions, help="positions patched, e.g. 2,5 (default: all)")
    pa.add_argument("--per-position", action="store_true", help="per-head kinds: one score per head and position")
    pa.add_argument(
        "--attribution", action="store_true", help="estimate the scores by attribution patching (one backward pass)"
    )
    pa.set_defaults(func=cmd_patch)

    ci = command("circuit", help="find the circuit behind a prediction (edge attribution patching)")
    _add_experiment_options(ci)
    size = ci.add_mutually_exclusive_group()
    size.add_argument("--top", type=int, help="keep the N edges of largest |score| (default 20)")
    size.add_argument("--threshold", type=float, help="keep the edges with |score| >= this")
    ci.add_argument(
        "--ablation",
        default="corrupted",
        help="what edges outside the circuit carry: corrupted (default), mean, or a corpus statistics file (*.ggc)",
    )
    ci.set_defaults(func=cmd_circuit)

    r = command("render", help="render a saved graph or corpus statistics with a renderer plugin")
    r.add_argument("graph", metavar="RUN.gg", help="the saved graph, or corpus statistics (.ggc)")
    r.add_argument("-r", "--renderer", required=True, help="renderer name (`gpt2graph renderers` lists them)")
    r.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    r.add_argument("--option", action="append", metavar="KEY=VALUE", help="renderer option (repeatable)")
    r.set_defaults(func=cmd_render)

    c = command("corpus", help="statistics of a model over many prompts, on this machine or a Ray cluster")
    c.add_argument("prompts", help="a text file (one prompt per line), JSON Lines (.jsonl: a 'text' field per line) "
                   "or a directory of .txt files")  # fmt: skip
    c.add_argument("--model", default=None, help="hub id or local directory (as for build)")
    _model_options(c)
    c.add_argument("-o", "--output", required=True, help="the .ggc directory to write (and to resume from)")
    c.add_argument("--engine", choices=("local", "ray"), default="local", help="where the workers run (default local)")
    c.add_argument("--address", help="with --engine ray: join this Ray cluster (default: start a small local one)")
    c.add_argument(
        "--workers", type=_positive_int, help="worker processes or Ray actors (default: cores locally, 2 on Ray)"
    )
    c.add_argument("--strict", action="store_true", help="stop at the first bad record instead of skipping it")
    c.add_argument("--kinds", help="comma-separated vector kinds whose mean activations to aggregate (default: all)")
    c.add_argument("--chunk-size", type=_positive_int, default=4, help="prompts per task sent to a worker (default 4)")
    c.add_argument(
        "--checkpoint-every",
        type=_non_negative_real,
        default=60.0,
        metavar="SECONDS",
        help="checkpoint interval; 0: after every task (default 60)",
    )
    c.set_defaults(func=cmd_corpus)

    rs = command("renderers", help="list installed renderer plugins and their options")
    rs.add_argument("--json", action="store_true", help="print the list as JSON")
    rs.set_defaults(func=cmd_renderers)

    se = command(
        "serve",
        help="a live instrument in the browser: type a prompt, drag the decoding controls, step through the run",
    )
    se.add_argument(
        "--model",
        action="append",
        metavar="ID|DIR",
        help="hub id or local directory, as for build (repeat it to offer several models in the page; default: "
        "pretrained gpt2, falling back to the embedded GPT-2 124M architecture with random weights)",
    )
    _model_options(se)
    se.add_argument(
        "--annotations",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="glossary/annotation YAML files: applied to everything shown, and their callouts join the walkthrough",
    )
    se.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; any other address is reachable from "
        "the network and prints a warning)",
    )
    se.add_argument(
        "--port", type=_int_in(0, 65535), default=5006, help="port to listen on (default 5006; 0: any free port)"
    )
    se.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    se.add_argument(
        "--max-graphs",
        type=_int_in(1),
        default=16,
        metavar="N",
        help="graphs kept in memory in all sessions together, oldest dropped first (default 16; a dropped step "
        "is rebuilt when it is shown again)",
    )
    se.add_argument(
        "--max-graphs-per-session",
        type=_int_in(1),
        default=4,
        metavar="N",
        help="graphs kept per browser session, oldest dropped first (default 4)",
    )
    se.add_argument(
        "--max-tokens",
        type=_int_in(1),
        default=128,
        metavar="N",
        help="longest prompt accepted, in tokens (default 128; the explorer draws every vector of the run)",
    )
    se.add_argument("--app", help="which installed app serves, when several are (see gpt2graph.registry)")
    se.set_defaults(func=cmd_serve)

    w = command(
        "weights",
        help="the weight store: list it, or add a model's weights (what loading a graph without them asks for)",
    )
    w.add_argument(
        "action", choices=("list", "add"), help="list: the store and its entries; add: put a model's weights in it"
    )
    w.add_argument("model", nargs="?", help="add: hub id or local directory")
    _model_options(w)
    w.add_argument("--json", action="store_true", help="list: print one JSON object")
    w.set_defaults(func=cmd_weights)

    g = command("glossary", help="list glossary terms, or print one entry")
    g.add_argument("term", nargs="?", help="an entry's id, term or alias (case is ignored); none: list every term")
    g.set_defaults(func=cmd_glossary)

    va = command("validate", help="validate glossary/annotation YAML files, reporting every problem")
    va.add_argument("files", nargs="+", metavar="FILE", help="YAML files to check together")
    va.add_argument(
        "--graph", metavar="RUN.gg", help="also check selectors and template fields against this saved graph"
    )
    va.set_defaults(func=cmd_validate)

    s = command(
        "schema", help="write the JSON Schemas (into a checkout's schema/, or DIR), or --check they are current"
    )
    s.add_argument(
        "directory",
        nargs="?",
        metavar="DIR",
        help="directory to write (or check) the schemas in (default: the schemas this gpt2graph carries; an "
        "installed package is only checked, never written)",
    )
    s.add_argument("--check", action="store_true", help="write nothing; exit 1 when a schema is missing or stale")
    s.set_defaults(func=cmd_schema)
    return p


# ---- running ------------------------------------------------------------------------------------------------------
def _one_line(exc: Gpt2GraphError) -> str:
    """The error in one line, with arguments spelt as flags; a list of problems is shortened to its first."""
    if isinstance(exc, DataValidationError) and len(exc.problems) > 1:
        return f"{exc.problems[0]} (and {len(exc.problems) - 1} more problems: `gpt2graph validate FILE` lists them)"
    return " ".join(exc.spelt(cli_spelling).split("\n"))


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or arguments refused (already said, in one line)
        return exc.code if isinstance(exc.code, int) else 2
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        from transformers.utils import logging as hf_logging

        from . import progress

        hf_logging.disable_progress_bar()  # our own bars (gpt2graph.progress), one per step
        if args.quiet:
            progress.configure(False)
        code: int = args.func(args)
        return code
    except Gpt2GraphError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away: nothing more to say (and nothing to flush at exit)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory (try a shorter prompt or a smaller model)", file=sys.stderr)
        return 2
    except Exception as exc:
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"error: internal error: {type(exc).__name__}: {first} (a bug in gpt2graph: please report it, with the "
            f"traceback that `gpt2graph --debug {args.command} ...` prints)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
