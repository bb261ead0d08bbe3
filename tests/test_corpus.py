"""Corpus statistics: exact merging, equality with a plain loop over build + analyze, engines and worker counts
that agree, a killed run that resumes to the same result, bad records reported by line, the .ggc file, and
mean ablation with a corpus mean through the forward executor."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import WITH_CTRL_C

import gpt2graph
from gpt2graph import forward
from gpt2graph.corpus import ACTIVATION_KINDS, CorpusError, load_corpus
from gpt2graph.engine import run_corpus
from gpt2graph.errors import GraphFileError
from gpt2graph.moments import Moments
from gpt2graph.prompts import PromptSourceError
from gpt2graph.results import LensKind, Role

PROMPTS = [
    "The cat sat on the mat",
    "Hello world",
    "A B A B A B C",  # repeated tokens: induction is defined
    "Transformer tokens are vectors",
    "one two three one two three",
    "x",  # one token: no next token, no roles
    "When Mary and John went to the store, John gave a drink to",
]
TOL = 1e-6
# Workers are other processes with another thread count, so their float32 matmuls sum in another order: the
# activations agree to a few float32 ulps, and sums of squares over many of them (M2) to about 2e-6 relative.
ACROSS_PROCESSES = 1e-5


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    return write_lines(tmp_path_factory.mktemp("prompts") / "prompts.txt", PROMPTS)


@pytest.fixture(scope="module")
def stats(corpus_file, tiny_checkpoint, tmp_path_factory):
    """The corpus in this process (one worker)."""
    out = tmp_path_factory.mktemp("stats") / "stats.ggc"
    return run_corpus(corpus_file, out, model=str(tiny_checkpoint), workers=1)


def close(a, b, tol: float = TOL) -> bool:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return a.shape == b.shape and bool(((a - b).abs() <= tol * (1 + b.abs())).all())


def assert_same_stats(a, b, tol: float = TOL) -> None:
    assert a.moments.keys() == b.moments.keys()
    for name, m in a.moments.items():
        other = b.moments[name]
        assert torch.equal(m.count, other.count), name
        assert close(m.mean, other.mean, tol), name
        assert close(m.m2, other.m2, tol), name
    assert a.header.prompts == b.header.prompts and a.header.tokens == b.header.tokens


# ---- moments ------------------------------------------------------------------------------------------------
def test_moments_merge_in_pieces_equals_one_pass():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, 4, generator=g) * 10 + 5
    pieces = [x[:7], x[7:8], x[8:30], x[30:]]
    merged = Moments.of(pieces[2])
    for p in (pieces[3], pieces[0], pieces[1]):  # any order
        merged = merged.merge(Moments.of(p))
    whole = Moments.of(x)
    assert int(merged.count) == 50
    assert close(merged.mean, x.double().mean(0), 1e-12)
    assert close(merged.variance, x.double().var(0, correction=0), 1e-12)
    assert close(merged.m2, whole.m2, 1e-12)


def test_moments_per_position_groups_of_different_lengths():
    rows = [torch.randn(n, 2, generator=torch.Generator().manual_seed(n)) for n in (3, 5, 1, 5)]
    merged = Moments.each(rows[0], 1)
    for r in rows[1:]:
        merged = merged.merge(Moments.each(r, 1))
    assert merged.count.tolist() == [4, 3, 3, 2, 2]
    for p in range(5):
        samples = torch.stack([r[p] for r in rows if r.shape[0] > p]).double()
        assert close(merged.mean[p], samples.mean(0), 1e-12)
        assert close(merged.variance[p], samples.var(0, correction=0), 1e-12)


# ---- equal to a plain loop over build + analyze -------------------------------------------------------------
def test_statistics_equal_a_plain_loop_over_build_and_analyze(stats, tiny_checkpoint):
    graphs = [gpt2graph.build(p, model=str(tiny_checkpoint)) for p in PROMPTS]
    analyses = [g.analyze(lens=[k for k in LensKind if k.startswith(("input", "resid"))]) for g in graphs]
    h = stats.header
    assert h.complete and h.prompts == len(PROMPTS) and h.skipped == []
    assert h.tokens == sum(g.n_tokens for g in graphs) and h.max_tokens == max(g.n_tokens for g in graphs)

    # head roles: mean over the prompts where each role is defined
    for role in Role:
        scores = [
            [[getattr(x, role) for x in a.roles.heads if x.layer == L] for L in range(2)]
            for a in analyses
            if a.roles.heads[0].model_dump()[role] is not None
        ]
        expected = torch.tensor(scores, dtype=torch.float64)
        assert int(stats.moments[f"roles/{role}"].count) == len(scores) > 0
        assert close(stats.role_means()[role], expected.mean(0))
        assert close(stats.moments[f"roles/{role}"].variance, expected.var(0, correction=0))
    assert int(stats.moments["roles/induction"].count) == 3  # only the prompts whose tokens repeat

    # logit lens over the residual streams: top-1 accuracy and mean rank of the next token
    rows = [(r.kind, r.layer) for r in h.lens_rows]
    hits, ranks = [], []
    for g in graphs:  # the lens of each analysis is kept with its graph's run (graph.lens)
        for p in range(g.n_tokens - 1):
            entries = {(e.kind, g.node(e.node).layer): e for e in g.lens.entries if g.node(e.node).position == p}
            nxt = g.tokenization.token_ids[p + 1]
            hits.append([float(entries[r].top[0].id == nxt) for r in rows])
            ranks.append([float(entries[r].next_token_rank) for r in rows])
    assert close(stats.lens_accuracy, torch.tensor(hits).mean(0))
    assert close(stats.lens_rank, torch.tensor(ranks).mean(0))
    assert close(stats.lens_accuracy[-1], torch.tensor(hits)[:, -1].mean())  # the last stream: the model

    # loss per position and overall
    losses = [
        torch.nn.functional.cross_entropy(
            g.logits[:-1].double(), torch.tensor(g.tokenization.token_ids[1:], dtype=torch.long), reduction="none"
        )
        for g in graphs
    ]
    assert close(stats.loss, torch.cat(losses).mean())
    for p in range(h.max_tokens - 1):
        assert close(stats.loss_by_position[p], torch.stack([loss[p] for loss in losses if len(loss) > p]).mean())

    # DLA of the prediction at the last position, by component
    contributions = torch.tensor([[c.contribution for c in a.dla.contributions] for a in analyses])
    assert [(c.kind, c.layer, c.head) for c in h.dla_components] == [
        (c.kind, c.layer, c.head) for c in analyses[0].dla.contributions
    ]
    assert close(stats.dla, contributions.mean(0))

    # mean activations: every kind and layer, overall and per position, per head, head outputs derived
    for kind in ACTIVATION_KINDS:
        for layer in graphs[0].topology.layers_of(kind):
            every = torch.cat([g.hook(kind, layer) for g in graphs]).double()
            assert close(stats.mean(kind, layer), every.mean(0)), (kind, layer)
            assert close(stats.variance(kind, layer), every.var(0, correction=0)), (kind, layer)
            at3 = torch.stack([g.hook(kind, layer)[3] for g in graphs if g.n_tokens > 3]).double()
            assert close(stats.mean(kind, layer, position=3), at3.mean(0)), (kind, layer)
    assert stats.mean("q", 1).shape == (4, 8) and stats.mean("q", 1, head=2).shape == (8,)
    head_out = torch.stack([g.hook("head_out", 1)[2, 3] for g in graphs if g.n_tokens > 2]).double()
    assert close(stats.mean("head_out", 1, head=3, position=2), head_out.mean(0), 1e-5)
    assert stats.mean("head_out", 0).shape == (4, 32)


def test_mean_requests_outside_the_corpus_are_clear_errors(stats):
    with pytest.raises(CorpusError, match="no prompt of this corpus reaches it"):
        stats.mean("resid_pre", 1, position=99)
    with pytest.raises(CorpusError, match="not per head"):
        stats.mean("resid_mid", 0, head=1)
    with pytest.raises(CorpusError, match="has no layer 5"):
        stats.mean("mlp_out", 5)
    with pytest.raises(CorpusError, match="not aggregated"):
        stats.mean("attn_pattern", 0, 0, 2)
    with pytest.raises(CorpusError, match="head 7 out of range"):
        stats.mean("z", 0, 7)


# ---- engines and worker counts ------------------------------------------------------------------------------
def test_two_local_workers_give_the_same_statistics(stats, corpus_file, tiny_checkpoint, tmp_path):
    two = run_corpus(corpus_file, tmp_path / "two.ggc", model=str(tiny_checkpoint), workers=2, chunk_size=1)
    assert_same_stats(two, stats, ACROSS_PROCESSES)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A small Ray head node started for these tests (2 CPUs, no dashboard, a small object store, its own
    temporary directory), always stopped: its address, for --address."""
    import socket
    import tempfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    ray = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--include-dashboard=false", f"--object-store-memory={100 * 1024 * 1024}", f"--temp-dir={temp}",
         "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"},  # loopback only
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(Path(temp).glob("session_latest/sockets/raylet*")):
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head node did not start"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_engine_gives_the_same_statistics(stats, corpus_file, tiny_checkpoint, tmp_path, ray_cluster):
    on_ray = run_corpus(
        corpus_file, tmp_path / "ray.ggc", model=str(tiny_checkpoint), engine="ray", address=ray_cluster, workers=2,
        chunk_size=1,
    )  # fmt: skip
    assert_same_stats(on_ray, stats, ACROSS_PROCESSES)


# ---- resuming -----------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _corpus_command(source, out, checkpoint, workers: int) -> list[str]:
    """``gpt2graph corpus ...`` as a terminal runs it (Ctrl-C raises KeyboardInterrupt)."""
    cli = f"{WITH_CTRL_C}\nfrom gpt2graph.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", cli, "corpus", str(source), "--model", str(checkpoint), "-o", str(out),
            "--workers", str(workers), "--chunk-size", "1", "--checkpoint-every", "0"]  # fmt: skip


def _wait_for_checkpoint(out: Path, proc, at_least: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        try:
            if load_corpus(out).header.prompts >= at_least:
                return
        except GraphFileError:
            pass
        time.sleep(0.05)


#: prompts in the corpus a run is killed in (enough that the kill lands mid-run)
N_LONG = 60


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory, tiny_checkpoint):
    lines = [f"{PROMPTS[i % len(PROMPTS)]} {i}" for i in range(N_LONG)]
    path = write_lines(tmp_path_factory.mktemp("long") / "long.txt", lines)
    whole = run_corpus(path, tmp_path_factory.mktemp("whole") / "whole.ggc", model=str(tiny_checkpoint), workers=1)
    return path, whole


@pytest.mark.parametrize("victim", ["worker", "driver", "ctrl-c"])
def test_a_killed_run_resumes_to_the_same_result(long_corpus, tiny_checkpoint, tmp_path, victim):
    source, whole = long_corpus
    out = tmp_path / "resumed.ggc"
    command = _corpus_command(source, out, tiny_checkpoint, workers=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    _wait_for_checkpoint(out, proc, 3)
    if victim == "worker":
        workers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
        assert workers, "no worker process found"
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert "a worker process died" in err and "run the same command again to continue" in err
    elif victim == "ctrl-c":  # a terminal's Ctrl-C: SIGINT to the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "interrupted: the prompts counted so far are saved" in err and "Traceback" not in err
    else:
        os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: the last checkpoint is all there is
        proc.wait()
    partial = load_corpus(out)
    assert not partial.header.complete and 3 <= partial.header.prompts < N_LONG
    counted = partial.header.prompts
    assert sum(b - a for a, b in partial.header.done) == counted

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    resumed = load_corpus(out)
    assert resumed.header.complete and resumed.header.done == [(0, N_LONG)]
    assert_same_stats(resumed, whole, ACROSS_PROCESSES)  # every prompt counted once: counts exact, moments to rounding


def test_a_ray_worker_that_dies_is_started_again_and_every_prompt_counted_once(
    long_corpus, tiny_checkpoint, tmp_path, ray_cluster
):
    source, whole = long_corpus
    out = tmp_path / "ray.ggc"
    command = [*_corpus_command(source, out, tiny_checkpoint, workers=2), "--engine", "ray", "--address", ray_cluster]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    _wait_for_checkpoint(out, proc, 3)
    actors = [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and "ray::Worker" in _cmdline(int(p.name))
    ]
    assert actors, "no Ray worker actor found"
    os.kill(actors[0], signal.SIGKILL)  # mid-run: the run goes on without losing or repeating a chunk
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    finished = load_corpus(out)
    assert finished.header.complete and finished.header.done == [(0, N_LONG)]
    assert_same_stats(finished, whole, ACROSS_PROCESSES)


def test_a_finished_corpus_is_not_counted_again_and_another_run_is_refused(
    stats, corpus_file, tiny_checkpoint, tmp_path
):
    out = tmp_path / "s.ggc"
    first = run_corpus(corpus_file, out, model=str(tiny_checkpoint), workers=1)
    second = run_corpus(corpus_file, out, model=str(tiny_checkpoint), workers=1)
    assert second.header.prompts == first.header.prompts and second.header.stats_sha256 == first.header.stats_sha256
    other = write_lines(tmp_path / "other.txt", ["something else"])
    with pytest.raises(CorpusError, match="another run .*different prompts"):
        run_corpus(other, out, model=str(tiny_checkpoint), workers=1)


# ---- bad records --------------------------------------------------------------------------------------------
def test_bad_lines_are_reported_with_line_numbers_skipped_and_counted(tiny_checkpoint, tmp_path):
    lines = [
        json.dumps({"text": "Hello world"}),
        "",
        "{not json",
        json.dumps({"prompt": "no text field"}),
        json.dumps({"text": ("word " * 80).strip()}),  # 80 tokens: more than the tiny model's 64
        json.dumps({"text": "The cat sat"}),
        json.dumps({"text": "  "}),
    ]
    source = write_lines(tmp_path / "p.jsonl", lines)
    warnings: list[str] = []
    stats = run_corpus(source, tmp_path / "s.ggc", model=str(tiny_checkpoint), workers=1, warn=warnings.append)
    assert [(s.record, s.reason) for s in stats.header.skipped] == [
        (1, "empty"), (2, "invalid_json"), (3, "no_text"), (4, "too_long"), (6, "empty"),
    ]  # fmt: skip
    assert warnings == [f"skipped {s.message}" for s in stats.header.skipped]
    assert warnings[0] == f"skipped {source}:2: empty line"
    assert warnings[1].startswith(f"skipped {source}:3: not valid JSON")
    assert warnings[3] == f"skipped {source}:5: 80 tokens, more than the model's context of 64"
    assert stats.header.prompts == 2 and stats.header.done == [(0, 7)] and stats.header.complete
    with pytest.raises(PromptSourceError, match=r"p\.jsonl:2: empty line \(--strict"):
        run_corpus(source, tmp_path / "strict.ggc", model=str(tiny_checkpoint), workers=1, strict=True)
    assert not (tmp_path / "strict.ggc").exists()


def test_directory_of_text_files_and_cli(tiny_checkpoint, tmp_path, capsys, saved_graph):
    from gpt2graph.cli import main

    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "a.txt").write_text("Hello world\n")
    (folder / "b.txt").write_text("")
    (folder / "c.txt").write_text("A B A B\n")
    (folder / "ignored.md").write_text("not a prompt")
    out = tmp_path / "d.ggc"
    assert main(["corpus", str(folder), "--model", str(tiny_checkpoint), "-o", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped {folder / 'b.txt'}: empty file" in captured.err
    assert "corpus statistics (.ggc), complete" in captured.out and "prompts      2 counted" in captured.out
    assert main(["info", str(out)]) == 0
    assert "corpus statistics (.ggc)" in capsys.readouterr().out
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["prompts"] == 2 and info["source"]["format"] == "directory" and len(info["skipped"]) == 1
    assert main(["info", str(saved_graph)]) == 0
    assert "corpus" not in capsys.readouterr().out  # a .gg is still a graph
    assert main(["corpus", str(folder), "--model", str(tiny_checkpoint), "-o", str(saved_graph)]) == 2
    assert "is a saved graph" in capsys.readouterr().err
    assert main(["corpus", str(folder), "--model", str(tiny_checkpoint), "-o", str(out), "--strict"]) == 2
    assert f"{folder / 'b.txt'}: empty file (--strict" in capsys.readouterr().err


# ---- the file -----------------------------------------------------------------------------------------------
def test_saved_file_round_trips_validates_and_refuses_corruption(stats, saved_graph, tmp_path):
    import jsonschema

    from gpt2graph.schemagen import SCHEMA_DIR

    loaded = load_corpus(stats.header and Path(stats.save(tmp_path / "copy.ggc")))
    assert_same_stats(loaded, stats, 0.0)
    assert torch.equal(loaded.mean("head_out", 1, 2), stats.mean("head_out", 1, 2))
    header = json.loads((tmp_path / "copy.ggc" / "corpus.json").read_text())
    schema = json.loads((SCHEMA_DIR / "corpus.schema.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(header)) == []
    with pytest.raises(GraphFileError, match="it is a saved graph: use gpt2graph.load"):
        load_corpus(saved_graph)
    data = (tmp_path / "copy.ggc" / "stats.safetensors").read_bytes()
    (tmp_path / "copy.ggc" / "stats.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphFileError, match="does not belong to corpus.json"):
        load_corpus(tmp_path / "copy.ggc")


# ---- mean ablation with a corpus mean, end to end -----------------------------------------------------------
def test_mean_ablation_with_a_corpus_mean_through_the_forward_executor(stats, tiny_checkpoint):
    """Replace one head's z at one position by its corpus mean: the executor's logits equal the HF model's own
    with the same replacement made by a plain forward hook, and replacing the head's output by its (derived)
    corpus mean is the same intervention."""
    from transformers import GPT2LMHeadModel

    graph = gpt2graph.build("The cat sat on the mat", model=str(tiny_checkpoint))
    tokens = torch.tensor(graph.tokenization.token_ids)
    L, h, p = 1, 2, 3
    mean_z = stats.mean("z", L, h, position=p)
    run = forward.run(
        graph.store.stacked, graph.dims, tokens, observe=[("z", L)],
        interventions=[forward.Intervention("z", L, h, p, value=mean_z)],
    )  # fmt: skip
    assert torch.equal(run[("z", L)][0, p, h], mean_z)
    assert not torch.allclose(run.logits[0], graph.logits, atol=1e-4)  # the ablation matters

    model = GPT2LMHeadModel.from_pretrained(tiny_checkpoint).eval()
    d_head = graph.dims.d_head

    def replace(_module, args):
        z = args[0].clone()
        z[0, p, h * d_head : (h + 1) * d_head] = mean_z
        return (z,)

    handle = model.transformer.h[L].attn.c_proj.register_forward_pre_hook(replace)
    with torch.no_grad():
        expected = model(tokens[None]).logits[0]
    handle.remove()
    assert torch.allclose(run.logits[0], expected, atol=1e-4, rtol=1e-4)

    by_output = forward.run(
        graph.store.stacked, graph.dims, tokens,
        interventions=[forward.Intervention("head_out", L, h, p, value=stats.mean("head_out", L, h, p))],
    )  # fmt: skip
    assert torch.allclose(by_output.logits, run.logits, atol=1e-5)
