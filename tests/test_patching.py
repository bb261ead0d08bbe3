"""Activation and attribution patching: known answers on a hand-built model, equality with an independent
implementation (plain hooks on the Hugging Face model), results stored and saved with the graph, the CLI, and
every bad input refused."""

from __future__ import annotations

import json

import handbuilt as hb
import pytest
import torch
from conftest import PROMPT, make_checkpoint

import gpt2graph
from gpt2graph.cli import main
from gpt2graph.errors import InterpretError, ModelLoadError, RunMismatchError
from gpt2graph.patching import metric_of

KINDS = ("resid_pre", "attn_out", "mlp_out", "head_out", "z", "attn_pattern")
OTHER_PROMPT = "Transformer tokens are numbers"
ANSWER, WRONG = " the", " a"


@pytest.fixture(scope="module")
def corrupted(tiny_checkpoint):
    return gpt2graph.build(OTHER_PROMPT, model=str(tiny_checkpoint))


@pytest.fixture(scope="module")
def clean(tiny_checkpoint):
    """A run of its own (the sweeps stored on it do not leak into the shared tiny_graph)."""
    return gpt2graph.build(PROMPT, model=str(tiny_checkpoint))


@pytest.fixture(scope="module")
def copy_runs(tmp_path_factory):
    return hb.copy_runs(tmp_path_factory.mktemp("handbuilt"))


# ---- the hand-built model: the answer is known ---------------------------------------------------------------
def test_the_hand_built_model_does_what_it_was_built_for(copy_runs):
    clean, corrupted = copy_runs
    assert clean.verify().ok
    assert int(clean.logits[-1].argmax()) == hb.ANSWER and int(corrupted.logits[-1].argmax()) == hb.WRONG
    assert float(clean.pattern(hb.COPY_LAYER, hb.COPY_HEAD)[-1, 0]) > 1 - 1e-9  # the copy head reads position 0


def _head_table(sweep) -> torch.Tensor:
    return torch.tensor(sweep.normalized, dtype=torch.float64)


def test_patching_the_copy_head_restores_the_clean_metric_and_no_other_head_does_anything(copy_runs):
    clean, corrupted = copy_runs
    restore = clean.patch_sweep(corrupted, kind="head_out", answer=hb.ANSWER, wrong=hb.WRONG, direction="denoising")
    expected = torch.zeros(hb.N_LAYER, hb.N_HEAD, dtype=torch.float64)
    expected[hb.COPY_LAYER, hb.COPY_HEAD] = 1.0
    torch.testing.assert_close(_head_table(restore), expected, rtol=0, atol=1e-5)
    assert restore.clean_value > 4 and restore.corrupted_value < -4
    destroy = clean.patch_sweep(corrupted, kind="head_out", answer=hb.ANSWER, wrong=hb.WRONG, direction="noising")
    torch.testing.assert_close(_head_table(destroy), 1 - expected, rtol=0, atol=1e-5)
    per_position = clean.patch_sweep(
        corrupted, kind="z", answer=hb.ANSWER, wrong=hb.WRONG, direction="denoising", per_position=True
    )
    table = _head_table(per_position)  # rows L0H0, L0H1, L1H0, L1H1; the copy head matters at the last position
    expected = torch.zeros_like(table)
    expected[hb.COPY_LAYER * hb.N_HEAD + hb.COPY_HEAD, -1] = 1.0
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-5)
    assert per_position.rows.labels[2] == "L1H0" and per_position.cols.positions == [0, 1, 2, 3]


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_attribution_agrees_in_sign_with_activation_patching(copy_runs, direction):
    clean, corrupted = copy_runs
    estimates = clean.attribution_patch(corrupted, answer=hb.ANSWER, wrong=hb.WRONG, direction=direction)
    assert [e.kind for e in estimates] == list(KINDS)
    receiving = 0.0 if direction == "denoising" else 1.0  # the receiving run's normalised metric
    compared = 0
    for estimate in estimates:
        measured = clean.patch_sweep(
            corrupted, kind=estimate.kind, answer=hb.ANSWER, wrong=hb.WRONG, direction=direction
        )
        act = torch.tensor(measured.normalized) - receiving
        att = torch.tensor(estimate.normalized) - receiving
        assert estimate.method == "attribution" and estimate.runs == 0
        matters = act.abs() > 1e-3
        assert torch.equal(torch.sign(act[matters]), torch.sign(att[matters])), estimate.kind
        assert (att[~matters].abs() < 1e-3).all(), estimate.kind  # what does nothing is estimated to do nothing
        compared += int(matters.sum())
    assert compared == 5  # the stream at position 0 (two layers); the copy head's z and output; attn_out


# ---- an independent implementation: plain hooks on the HF model -------------------------------------------------
class HFPatcher:
    """Patching done on Hugging Face's own GPT-2, replacing the same activation with forward hooks (an attention
    function of our own for the pattern, which no module exposes), one run per cell."""

    def __init__(self, checkpoint):
        from transformers import AttentionInterface, GPT2LMHeadModel

        self.model = GPT2LMHeadModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
        self.patterned = GPT2LMHeadModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
        AttentionInterface.register("gpt2graph_test_pattern", self._attention)
        self.patterned.set_attn_implementation("gpt2graph_test_pattern")
        self.pattern_patch = None

    def _attention(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        n = query.shape[-2]
        scores = (query @ key.transpose(-1, -2)) * scaling
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        layer, head, positions, rows = self.pattern_patch
        if module.layer_idx == layer:
            weights = weights.clone()
            weights[0, head, positions] = rows
        return (weights @ value).transpose(1, 2), weights

    def metric(self, receiving, donor, kind, layer, head, positions, sweep) -> float:
        d = receiving.dims
        H, dh, pos = d.n_head, d.d_head, list(positions)
        model = self.patterned if kind == "attn_pattern" else self.model
        block = model.transformer.h[layer]
        handles = []
        if kind == "resid_pre":
            stream = donor.hook("input_embedding") if layer == 0 else donor.hook("resid_pre", layer)

            def pre(_m, args):
                hidden = args[0].clone()
                hidden[0, pos] = stream[pos]
                return (hidden, *args[1:])

            handles.append(block.register_forward_pre_hook(pre))
        elif kind in ("attn_out", "mlp_out"):
            module, value = block.attn if kind == "attn_out" else block.mlp, donor.hook(kind, layer)

            def post(_m, _args, out):
                first = (out[0] if isinstance(out, tuple) else out).clone()
                first[0, pos] = value[pos]
                return (first, *out[1:]) if isinstance(out, tuple) else first

            handles.append(module.register_forward_hook(post))
        elif kind == "z":
            z = donor.hook("z", layer)

            def pre_z(_m, args):
                flat = args[0].clone()
                flat.view(1, -1, H, dh)[0, pos, head] = z[pos, head]
                return (flat,)

            handles.append(block.attn.c_proj.register_forward_pre_hook(pre_z))
        elif kind == "head_out":
            donor_out = donor.hook("head_out", layer)

            def post_head(module, args, out):
                own = args[0].view(1, -1, H, dh)[0, pos, head] @ module.weight[head * dh : (head + 1) * dh]
                out = out.clone()
                out[0, pos] += donor_out[pos, head] - own
                return out

            handles.append(block.attn.c_proj.register_forward_hook(post_head))
        else:
            self.pattern_patch = (layer, head, pos, donor.hook("attn_pattern", layer)[head, pos])
        try:
            with torch.no_grad():
                ids = torch.tensor([receiving.tokenization.token_ids])
                logits = model(input_ids=ids, use_cache=False).logits[0, -1]
        finally:
            for h in handles:
                h.remove()
        return float(metric_of(sweep.metric, logits, sweep.answer_id, sweep.wrong_id))


@pytest.fixture(scope="module")
def hf_patcher(tiny_checkpoint):
    return HFPatcher(tiny_checkpoint)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("direction", "metric"), [("noising", "logit_diff"), ("denoising", "prob")])
def test_the_sweep_equals_patching_the_hf_model_with_plain_hooks(clean, corrupted, hf_patcher, kind, direction, metric):
    """On random weights where every parameter matters; every cell, to 1e-4."""
    wrong = WRONG if metric == "logit_diff" else None
    per_position = kind in ("z", "attn_pattern")  # per-head kinds both ways: all positions at once, or one by one
    sweep = clean.patch_sweep(
        corrupted,
        kind=kind,
        answer=ANSWER,
        wrong=wrong,
        direction=direction,
        metric=metric,
        per_position=per_position,
        positions=[1, 3, 4] if kind == "resid_pre" else None,
    )
    receiving, donor = (clean, corrupted) if direction == "noising" else (corrupted, clean)
    rows, cols = sweep.rows, sweep.cols
    for r in range(len(rows.labels)):
        for c in range(len(cols.labels)):
            layer = rows.layers[r]
            head = rows.heads[r] if rows.heads else cols.heads[c] if cols.heads else None
            positions = [cols.positions[c]] if cols.positions else sweep_positions(sweep)
            expected = hf_patcher.metric(receiving, donor, kind, layer, head, positions, sweep)
            assert sweep.raw[r][c] == pytest.approx(expected, abs=1e-4), (rows.labels[r], cols.labels[c])
    assert sweep.runs == len(rows.labels) * len(cols.labels)
    assert sweep.clean_value == pytest.approx(
        float(metric_of(metric, clean.logits[-1], sweep.answer_id, sweep.wrong_id))
    )


def sweep_positions(sweep) -> list[int]:
    return list(range(len(sweep.corrupted_tokens)))


def test_batches_are_cut_without_changing_a_number(clean, corrupted, monkeypatch):
    from gpt2graph import patching

    whole = clean.patch_sweep(corrupted, kind="z", answer=ANSWER, wrong=WRONG, per_position=True)
    monkeypatch.setattr(patching, "ROWS_PER_BATCH", 7)  # one run of 5 tokens per batch
    cut = clean.patch_sweep(corrupted, kind="z", answer=ANSWER, wrong=WRONG, per_position=True)
    torch.testing.assert_close(torch.tensor(cut.raw), torch.tensor(whole.raw), rtol=0, atol=1e-5)


def test_attribution_is_the_linear_limit_of_patching(clean, tiny_checkpoint):
    """Against a corrupted run that differs from the clean one by a small step (a counterfactual), the estimate
    and the measured scores agree to second order."""
    step = 1e-3 * torch.randn(clean.dims.d_model, generator=torch.Generator().manual_seed(0))
    node = "blocks.0.hook_resid_mid[3]"
    near = clean.intervene({node: clean.values(node) + step})
    measured = clean.patch_sweep(near, kind="mlp_out", answer=ANSWER, wrong=WRONG)
    (estimate,) = clean.attribution_patch(near, kinds=["mlp_out"], answer=ANSWER, wrong=WRONG)
    effect = torch.tensor(measured.raw) - measured.clean_value
    estimated = torch.tensor(estimate.raw) - estimate.clean_value
    assert effect.abs().max() > 1e-5  # the step moves the metric measurably
    torch.testing.assert_close(estimated, effect, rtol=0.05, atol=1e-6)


# ---- a prompt for the corrupted run, storage -----------------------------------------------------------------
def test_a_prompt_in_place_of_the_corrupted_graph(clean, corrupted):
    from_prompt = clean.patch_sweep(OTHER_PROMPT, kind="attn_out", answer=ANSWER, wrong=WRONG)
    from_graph = clean.patch_sweep(corrupted, kind="attn_out", answer=ANSWER, wrong=WRONG)
    torch.testing.assert_close(torch.tensor(from_prompt.raw), torch.tensor(from_graph.raw), rtol=0, atol=1e-6)


def test_a_graph_whose_tokenizer_cannot_be_found_says_so(clean):
    odd = clean.subgraph()  # a view of the run, given a vocabulary no tokenizer available here has
    odd._run = type(clean._run)(clean.header, clean.store, ["x"] * clean.dims.n_vocab)
    with pytest.raises(ModelLoadError, match="cannot tokenize another prompt .* give the other run as a saved graph"):
        odd.patch_sweep(OTHER_PROMPT, kind="attn_out", answer=0, wrong=1)


def test_sweeps_are_stored_on_the_run_and_saved(tiny_checkpoint, corrupted, tmp_path):
    import jsonschema

    from gpt2graph.schemagen import graph_schema

    graph = gpt2graph.build(PROMPT, model=str(tiny_checkpoint))
    first = graph.patch_sweep(corrupted, kind="resid_pre", answer=ANSWER, wrong=WRONG)
    graph.patch_sweep(corrupted, kind="resid_pre", answer=ANSWER, wrong=WRONG)  # same settings: replaces
    graph.attribution_patch(corrupted, kinds=["head_out", "z"], answer=ANSWER, wrong=WRONG)
    assert [(s.method, s.kind) for s in graph.header.patching] == [
        ("activation", "resid_pre"), ("attribution", "head_out"), ("attribution", "z")
    ]  # fmt: skip
    graph.save(tmp_path / "run.gg")
    header = json.loads((tmp_path / "run.gg" / "graph.json").read_text())
    jsonschema.validate(header, graph_schema())
    loaded = gpt2graph.load(tmp_path / "run.gg")
    assert loaded.header.patching[0] == first


# ---- bad input --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"kind": "ln1"}, InterpretError, "unknown patching kind 'ln1'; expected one of resid_pre"),
        ({"answer": " Transformer tokens"}, InterpretError, "answer ' Transformer tokens' is not a single token"),
        ({"wrong": "tokens"}, InterpretError, "wrong token 'tokens' is not a single token.*did you mean ' tokens'"),
        ({"wrong": None}, InterpretError, "needs a wrong token"),
        ({"wrong": ANSWER}, InterpretError, "the same token"),
        ({"metric": "prob"}, InterpretError, "used only by the logit difference"),
        ({"metric": "kl"}, InterpretError, "unknown metric 'kl'"),
        ({"direction": "sideways"}, InterpretError, "unknown direction 'sideways'; expected one of noising, denoising"),
        ({"positions": [7]}, InterpretError, "position 7 is out of range for a 5-token prompt"),
        ({"positions": []}, InterpretError, "positions is empty"),
    ],
)
def test_bad_sweep_arguments_are_clear_errors(clean, corrupted, options, error, message):
    args = {"kind": "resid_pre", "answer": ANSWER, "wrong": WRONG, **options}
    with pytest.raises(error, match=message):
        clean.patch_sweep(corrupted, **args)


def test_runs_that_cannot_be_compared_are_refused(clean, tiny_checkpoint, tmp_path):
    with pytest.raises(RunMismatchError, match=r"has 3 tokens, 2 fewer than the 5 of this run"):
        clean.patch_sweep("Transformer tokens", kind="resid_pre", answer=ANSWER, wrong=WRONG)
    other_model = gpt2graph.build(OTHER_PROMPT, model=str(make_checkpoint(tmp_path / "m1", seed=1)))
    with pytest.raises(RunMismatchError, match="the corrupted run is a run of another model"):
        clean.patch_sweep(other_model, kind="resid_pre", answer=ANSWER, wrong=WRONG)
    with pytest.raises(InterpretError, match="score the same"):
        clean.patch_sweep(clean, kind="resid_pre", answer=ANSWER, wrong=WRONG)


# ---- the command line ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_pair(clean, corrupted, tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    clean.save(root / "clean.gg")
    corrupted.save(root / "corrupted.gg")
    return root / "clean.gg", root / "corrupted.gg"


def test_cli_patch_json_has_exactly_the_promised_keys(saved_pair, clean, corrupted, capsys):
    clean_path, corrupted_path = saved_pair
    argv = ["patch", str(clean_path), str(corrupted_path), "--kind", "head_out", "--answer", ANSWER, "--wrong", WRONG]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"kind", "metric", "rows", "cols", "clean_value", "corrupted_value", "raw", "normalized"}
    assert data["kind"] == "head_out" and data["metric"] == "logit_diff"
    assert data["rows"]["name"] == "layer" and data["cols"]["name"] == "head" and data["cols"]["heads"] == [0, 1, 2, 3]
    expected = clean.patch_sweep(corrupted, kind="head_out", answer=ANSWER, wrong=WRONG)
    for key in ("raw", "normalized"):
        torch.testing.assert_close(torch.tensor(data[key]), torch.tensor(getattr(expected, key)), rtol=0, atol=1e-6)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "normalised (0 = corrupted, 1 = clean), layer x head" in text and "H3" in text


def test_cli_patch_takes_a_prompt_and_saves_the_result(saved_pair, tmp_path, capsys):
    clean_path, _ = saved_pair
    out = tmp_path / "patched.gg"
    argv = ["patch", str(clean_path), OTHER_PROMPT, "--kind", "resid_pre", "--answer", ANSWER, "--wrong", WRONG]
    assert main([*argv, "--attribution", "--direction", "denoising", "-o", str(out)]) == 0
    assert "estimated by attribution patching" in capsys.readouterr().out
    stored = gpt2graph.load(out).header.patching[-1]
    assert (stored.method, stored.kind, stored.direction) == ("attribution", "resid_pre", "denoising")


def test_cli_patch_errors_are_one_line(saved_pair, capsys):
    clean_path, _ = saved_pair
    assert main(["patch", str(clean_path), "Transformer", "--kind", "z", "--answer", ANSWER, "--wrong", WRONG]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the corrupted run has 2 tokens, 3 fewer than the 5") and err.count("\n") == 1
