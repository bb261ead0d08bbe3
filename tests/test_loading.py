"""Models load through the real from_pretrained path; bad models and prompts are clear errors."""

import warnings

import pytest
from conftest import make_checkpoint

import gpt2graph
from gpt2graph.errors import ModelLoadError, NotGpt2Error, PromptError


def test_unknown_hub_id_is_an_error():
    with pytest.raises(ModelLoadError, match="could not load model 'no-such-org/no-such-model'"):
        gpt2graph.build("hi", model="no-such-org/no-such-model")


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        gpt2graph.build("hi", model=str(tmp_path / "missing" / "model"))


@pytest.mark.parametrize("random_weights", [False, True])
def test_directory_without_a_model_is_an_error(tmp_path, random_weights):
    with pytest.raises(ModelLoadError, match="no config.json: not a model directory"):
        gpt2graph.build("hi", model=str(tmp_path), random_weights=random_weights)


def test_non_gpt2_directory_says_what_was_found(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(NotGpt2Error, match="model_type 'bert'.*BertModel"):
        gpt2graph.build("hi", model=str(tmp_path / "bert"))


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(activation_function="relu"), "activation_function 'relu'"),
        (dict(scale_attn_by_inverse_layer_idx=True), "attention scaling"),
        (dict(tie_word_embeddings=False), "untied"),
    ],
)
def test_gpt2_variants_we_cannot_draw_exactly_are_refused(tmp_path, override, message):
    path = make_checkpoint(tmp_path / "variant", **override)
    with pytest.raises(NotGpt2Error, match=message):
        gpt2graph.build("hi", model=str(path))


def test_random_weights_of_a_named_architecture(tiny_checkpoint):
    g = gpt2graph.build("hi", model=str(tiny_checkpoint), random_weights=True, seed=3)
    assert g.model.weights.status == "random" and g.model.weights.seed == 3
    again = gpt2graph.build("hi", model=str(tiny_checkpoint), random_weights=True, seed=3)
    assert (g.logits == again.logits).all()


@pytest.mark.parametrize("prompt", ["", None])
def test_empty_prompt(tiny_checkpoint, prompt):
    with pytest.raises(PromptError, match="empty"):
        gpt2graph.build(prompt, model=str(tiny_checkpoint))


def test_prompt_longer_than_the_context(tiny_checkpoint):
    with pytest.raises(PromptError, match=r"is 70 tokens long.*at most n_ctx = 64.*by 6 tokens"):
        gpt2graph.build(" a" * 70, model=str(tiny_checkpoint))


def test_prompt_of_exactly_the_context_length(tiny_checkpoint):
    assert gpt2graph.build(" a" * 64, model=str(tiny_checkpoint)).n_tokens == 64


def test_bpe_files_are_checksummed():
    from gpt2graph.tokenizer import gpt2_bpe_tokenizer

    tok = gpt2_bpe_tokenizer()
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert tok("Transformer tokens")["input_ids"] == [8291, 16354, 16326]


@pytest.mark.slow
def test_unnamed_model_falls_back_with_one_warning(monkeypatch):
    """No pretrained gpt2 in the cache and no network: the embedded default, and one clear warning."""
    import gpt2graph.loading as loading

    monkeypatch.setattr(loading, "DEFAULT_MODEL", "gpt2-not-in-this-cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = loading.load_model(None)
    messages = [str(w.message) for w in caught if "embedded default" in str(w.message)]
    assert len(messages) == 1 and "RANDOM weights" in messages[0]
    assert loaded.info.source == "embedded-default" and loaded.info.weights.status == "random"
    assert loaded.info.total_parameters == 124_439_808


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dims"),
    [("gpt2", (12, 12, 768)), ("gpt2-medium", (24, 16, 1024)), ("gpt2-large", (36, 20, 1280)),
     ("gpt2-xl", (48, 25, 1600)), ("distilgpt2", (6, 12, 768)), ("openai-community/gpt2-medium", (24, 16, 1024))],
)  # fmt: skip
def test_a_family_member_with_random_weights_needs_no_network(monkeypatch, name, dims):
    from transformers import GPT2Config

    from gpt2graph import loading

    def no_network(*args, **kwargs):
        raise AssertionError("the network (or the HF cache) was asked for a config")

    monkeypatch.setattr(GPT2Config, "from_pretrained", no_network)
    config = loading.family_config(name)
    assert (config.n_layer, config.n_head, config.n_embd, config.vocab_size) == (*dims, 50257)
    if dims[0] <= 12:  # building the larger ones is the slow tests' job
        g = gpt2graph.build("Hello world", model=name, random_weights=True, seed=1)
        assert g.model.weights.status == "random" and g.model.weights.seed == 1 and g.model.name == name
        assert (g.dims.n_layer, g.dims.n_head, g.dims.d_model) == dims
        assert g.tokenization.token_ids == [15496, 995]  # GPT-2's own tokenizer, embedded
