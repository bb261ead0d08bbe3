"""Circuits: the factored summaries equal the dense n_vocab x n_vocab computation on a 64-token vocabulary,
and a hand-built copying head (and its negation) scores as it must."""

import pytest
import torch

import gpt2graph
from gpt2graph.circuits import factored_singular_values, head_circuits

N_LAYER, N_HEAD, D_MODEL, N_VOCAB = 2, 4, 32, 64
D_HEAD = D_MODEL // N_HEAD
CHARS = "abcdefghijklmnopqrstuvwxyz .,"
PROMPT = "the cat sat on the mat"


def char_tokenizer():
    """One token per character (a BPE model with no merges), 64 ids."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(CHARS)} | {f"<{i}>": i for i in range(len(CHARS), N_VOCAB)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<63>")))


def small_vocab_model(seed: int, gains: bool = True):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(
        GPT2Config(
            n_layer=N_LAYER, n_head=N_HEAD, n_embd=D_MODEL, n_positions=32, vocab_size=N_VOCAB, initializer_range=0.2
        )
    ).eval()
    if gains:  # non-trivial LayerNorm gains, so folding them matters
        with torch.no_grad():
            for ln in [model.transformer.ln_f] + [b.ln_1 for b in model.transformer.h]:
                ln.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def graph():
    return gpt2graph.build(PROMPT, model=small_vocab_model(0), tokenizer=char_tokenizer())


def dense_circuits(g, layer: int, head: int, fold_ln: bool):
    """The circuits written out densely, LayerNorm folded as a matrix P diag(gain)."""
    P = torch.eye(D_MODEL, dtype=torch.float64) - 1.0 / D_MODEL

    def fold(gain):
        return P @ torch.diag(gain.double()) if fold_ln else torch.eye(D_MODEL, dtype=torch.float64)

    before, after = fold(g.param("ln1_w", layer)), fold(g.param("ln_final_w"))
    W_Q, W_K, W_V = (before @ g.param(k, layer, head).double() for k in ("W_Q", "W_K", "W_V"))
    W_O = g.param("W_O", layer, head).double()
    full_ov = g.param("W_E").double() @ W_V @ W_O @ after @ g.param("W_U").double()  # (n_vocab, n_vocab)
    return W_Q @ W_K.T, W_V @ W_O, full_ov


@pytest.mark.parametrize("fold_ln", [True, False])
def test_factored_circuits_equal_the_dense_ones(graph, fold_ln):
    token = "c"
    circuits = head_circuits(graph, input_token=token, top_tokens=5, fold_ln=fold_ln)
    assert circuits.input_token == "c" and len(circuits.heads) == N_LAYER * N_HEAD
    t = circuits.input_token_id
    for hc in circuits.heads:
        qk, ov, full = dense_circuits(graph, hc.layer, hc.head, fold_ln)
        assert len(hc.qk_singular_values) == D_HEAD
        torch.testing.assert_close(
            torch.tensor(hc.qk_singular_values, dtype=torch.float64),
            torch.linalg.svdvals(qk)[:D_HEAD],
            rtol=1e-5,
            atol=1e-9,
        )
        torch.testing.assert_close(
            torch.tensor(hc.ov_singular_values, dtype=torch.float64),
            torch.linalg.svdvals(ov)[:D_HEAD],
            rtol=1e-5,
            atol=1e-9,
        )
        eig = torch.linalg.eigvals(full)
        expected = float(eig.abs()[eig.real > 0].sum() / eig.abs().sum())
        assert hc.ov_copying_score == pytest.approx(expected, abs=1e-6)
        top = torch.topk(full[t], 5)
        assert [s.id for s in hc.boosted] == top.indices.tolist()
        torch.testing.assert_close(
            torch.tensor([s.value for s in hc.boosted], dtype=torch.float64), top.values, rtol=1e-4, atol=1e-6
        )


def test_singular_values_of_a_product_from_its_factors():
    torch.manual_seed(1)
    A, B = torch.randn(3, 40, 6, dtype=torch.float64), torch.randn(3, 6, 40, dtype=torch.float64)
    torch.testing.assert_close(factored_singular_values(A, B), torch.linalg.svdvals(A @ B)[:, :6])


@pytest.mark.parametrize("sign, score", [(1.0, 1.0), (-1.0, 0.0)])
def test_a_copying_head_and_its_negation(sign, score):
    """Head 0 of layer 1 writes back c times the first d_head coordinates it reads: W_V W_O = c Pi, so its
    full OV circuit E P Pi P E^T (gains 1) is positive semi-definite: every eigenvalue >= 0 (or <= 0 for -c)."""
    model = small_vocab_model(2, gains=False)
    with torch.no_grad():
        block = model.transformer.h[1]
        select = torch.eye(D_MODEL)[:, :D_HEAD]
        block.attn.c_attn.weight[:, 2 * D_MODEL : 2 * D_MODEL + D_HEAD] = select  # W_V of head 0
        block.attn.c_proj.weight[:D_HEAD] = sign * 2.0 * select.T  # W_O of head 0
    g = gpt2graph.build(PROMPT, model=model, tokenizer=char_tokenizer())
    for fold_ln in (True, False):
        head = head_circuits(g, input_token="a", fold_ln=fold_ln).heads[N_HEAD]
        assert (head.layer, head.head) == (1, 0)
        assert head.ov_copying_score == pytest.approx(score, abs=1e-9)
        if not fold_ln:  # centring changes the projection, and so its singular values
            assert head.ov_singular_values == pytest.approx([2.0] * D_HEAD)
        if sign > 0:  # a copying head boosts the token it reads
            assert head.boosted[0].token == "a"


def test_singular_values_of_a_rank_deficient_product():
    """A head whose W_Q is zero, or of lower rank than d_head, has a singular Gram matrix: no Cholesky factor.
    Its zero singular values come out at the precision of the squared problem, sqrt(eps) times the largest
    (float32 weights are known to 1e-7 of it anyway); the others to full precision."""
    torch.manual_seed(2)
    A = torch.randn(3, 40, 6, dtype=torch.float64)
    A[0] = 0
    A[1, :, 3:] = A[1, :, :3]  # rank 3
    B = torch.randn(3, 6, 40, dtype=torch.float64)
    expected = torch.linalg.svdvals(A @ B)[:, :6]
    torch.testing.assert_close(factored_singular_values(A, B), expected, rtol=1e-7, atol=1e-7 * float(expected.max()))
