"""The rest of the GPT-2 family, with random weights of their configs (embedded, so no network): each builds,
verifies, analyses and renders. The architectures are the published ones (``loading.FAMILY``); a few tokens
keep the heavier ones within the test budget (gpt2-xl is 1.5 billion parameters, 6 GB in float32)."""

import gc

import pytest

import gpt2graph
from gpt2graph.loading import FAMILY, parameter_groups

#: published parameter counts (W_U tied, counted once)
PARAMETERS = {"distilgpt2": 81_912_576, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}


def _check(name: str, prompt: str, tmp_path, renderers: tuple[str, ...], save: bool = True) -> None:
    graph = gpt2graph.build(prompt, model=name, random_weights=True)
    n_layer, n_head, d_model = FAMILY[name]
    d = graph.dims
    assert (d.n_layer, d.n_head, d.d_model, d.d_head, d.d_mlp) == (
        n_layer,
        n_head,
        d_model,
        d_model // n_head,
        4 * d_model,
    )
    assert graph.model.total_parameters == PARAMETERS[name] == sum(parameter_groups(d).values())
    report = graph.verify()
    assert report.ok, report.format()
    analysis = graph.analyze(induction_probe=2)
    assert len(analysis.circuits.heads) == n_layer * n_head == len(analysis.roles.heads)
    assert abs(analysis.dla.residual_error) <= analysis.dla.tolerance
    last = f"blocks.{n_layer - 1}.hook_resid_post[{graph.n_tokens - 1}]"
    assert graph.lens.entry(last).top[0].id == int(graph.logits[-1].argmax())  # the model's own prediction
    assert graph.lens.entry(f"blocks.{n_layer - 1}.attn.hook_result[0,{n_head - 1}]") is not None  # read lazily
    if save:  # the weights go to the store: gigabytes for the largest, whose saving other tests cover
        graph.save(tmp_path / "run.gg")
        graph = gpt2graph.load(tmp_path / "run.gg")
        assert graph.verify().ok
    for renderer in renderers:
        path = graph.render(renderer, tmp_path / f"run.{'svg' if renderer == 'svg' else 'html'}")
        assert path.stat().st_size > 0


@pytest.mark.slow
def test_distilgpt2_builds_verifies_analyses_and_renders(tmp_path):
    _check("distilgpt2", "Transformer tokens are vectors", tmp_path, renderers=("svg", "bokeh"))


@pytest.mark.slow
def test_gpt2_medium_builds_verifies_analyses_and_renders(tmp_path):
    _check("gpt2-medium", "Transformer tokens", tmp_path, renderers=("svg", "bokeh"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2-large", "gpt2-xl"])
def test_the_largest_build_verify_analyse_and_render(name, tmp_path):
    gc.collect()  # one multi-GB model at a time
    _check(name, "Hi there", tmp_path, renderers=("svg",), save=False)
    gc.collect()
