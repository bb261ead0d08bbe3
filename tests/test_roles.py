"""Head roles: a hand-built previous-token head is found, a uniform head is not flagged, and the scores
of every role follow their definitions on hand-made patterns."""

import pytest
import torch

import gpt2graph
from gpt2graph import forward
from gpt2graph.errors import InterpretError
from gpt2graph.results import Role
from gpt2graph.roles import LABEL_THRESHOLD, head_roles, role_scores

D_MODEL, N_HEAD = 64, 2
D_HEAD = D_MODEL // N_HEAD
PROMPT = " one two three four five six seven eight nine ten eleven twelve"  # 12 tokens


@pytest.fixture(scope="module")
def previous_token_graph(tmp_path_factory):
    """One layer, two heads. Token embeddings are zero, so the stream is the positional embedding
    e_p - e_{p+32} (zero mean, so LayerNorm only rescales it to sqrt(32) (e_p - e_{p+32})). Head 0 reads
    q_p = a sqrt(32) e_p and k_j = a sqrt(32) e_{j+1}: q_p . k_j is large exactly when j = p - 1. Head 1
    has W_Q = W_K = 0, so its scores are all equal: uniform causal attention."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_head=N_HEAD, n_embd=D_MODEL, n_positions=D_HEAD, vocab_size=50257)
    ).eval()
    a = 3.0
    with torch.no_grad():
        t = model.transformer
        t.wte.weight.zero_()
        eye = torch.eye(D_MODEL)
        t.wpe.weight.copy_(eye[:D_HEAD] - eye[D_HEAD:])
        attn = t.h[0].attn.c_attn  # Conv1D: x @ weight, columns [Q | K | V], head-major inside each
        attn.weight[:, : 2 * D_MODEL].zero_()
        attn.bias[: 2 * D_MODEL].zero_()
        for p in range(D_HEAD):
            attn.weight[p, p] = a  # W_Q of head 0
        for j in range(D_HEAD - 1):
            attn.weight[j, D_MODEL + j + 1] = a  # W_K of head 0
    path = tmp_path_factory.mktemp("roles") / "prev-token"
    model.save_pretrained(path)
    graph = gpt2graph.build(PROMPT, model=str(path))
    assert graph.n_tokens == 12
    return graph


def test_the_previous_token_head_is_found(previous_token_graph):
    g = previous_token_graph
    pattern = g.pattern(0, 0)
    assert float(pattern.diagonal(-1).min()) > 0.99  # the construction works
    roles = head_roles(g)
    prev = roles.heads[0]
    assert roles.ranked(Role.previous_token)[0] == prev
    assert prev.previous_token > 0.99 and prev.label == "previous_token"
    assert prev.current_token < 0.01
    assert prev.first_token == pytest.approx(1 / 11)  # only from position 1, whose previous token is the first


def test_a_uniform_head_is_not_flagged(previous_token_graph):
    roles = head_roles(previous_token_graph)
    uniform = roles.heads[1]
    torch.testing.assert_close(
        previous_token_graph.pattern(0, 1), torch.ones(12, 12).tril() / torch.arange(1, 13)[:, None]
    )
    assert uniform.label is None
    for role in (Role.previous_token, Role.first_token, Role.current_token):
        assert getattr(uniform, role) == pytest.approx(roles.chance[role], abs=1e-6)
        assert getattr(uniform, role) < 0.25


def test_the_induction_probe_reruns_the_forward_pass(previous_token_graph):
    g = previous_token_graph
    probe = head_roles(g, induction_probe=8, probe_seed=1)
    assert probe.source == "probe" and len(probe.token_ids) == 12 + 16
    assert probe.token_ids[:12] == g.tokenization.token_ids and probe.token_ids[12:20] == probe.token_ids[20:]
    assert probe.heads[0].label == "previous_token" and probe.heads[0].induction is not None
    assert head_roles(g, induction_probe=8, probe_seed=1) == probe
    with pytest.raises(InterpretError, match="more than n_ctx"):
        head_roles(g, induction_probe=20)
    with pytest.raises(InterpretError, match="positive"):
        head_roles(g, induction_probe=0)


def test_the_probe_executor_reproduces_the_captured_run(tiny_graph):
    tokens = torch.tensor(tiny_graph.tokenization.token_ids)
    run = forward.run(tiny_graph.store.stacked, tiny_graph.dims, tokens, observe=["attn_pattern"])
    torch.testing.assert_close(run.logits[0], tiny_graph.logits, rtol=1e-5, atol=1e-5)
    for L in range(tiny_graph.dims.n_layer):
        torch.testing.assert_close(
            run[("attn_pattern", L)][0], tiny_graph.hook("attn_pattern", L), rtol=1e-5, atol=1e-6
        )


def test_role_scores_follow_their_definitions():
    tokens = torch.tensor([5, 1, 2, 3, 1, 2, 3])  # 1 2 3 repeats: queries 4, 5, 6 have earlier occurrences
    n = len(tokens)
    induction = torch.zeros(n, n)
    induction[0, 0] = 1
    for p in range(1, n):
        induction[p, p] = 1  # self by default
    for p, target in ((4, 2), (5, 3), (6, 4)):  # the token after the earlier occurrence
        induction[p] = 0
        induction[p, target] = 1
    scores = role_scores(induction.double(), tokens)
    assert float(scores[Role.induction]) == 1.0
    assert float(scores[Role.current_token]) == pytest.approx(3 / 6)
    assert float(scores[Role.previous_token]) == 0.0 and float(scores[Role.first_token]) == 0.0
    sink = torch.zeros(n, n)
    sink[:, 0] = 1
    s = role_scores(torch.stack([sink, induction]).double(), tokens)
    assert s[Role.first_token].tolist() == [1.0, 0.0] and s[Role.induction].tolist() == [0.0, 1.0]
    assert role_scores(torch.ones(1, 1), torch.tensor([7])) == dict.fromkeys(Role)
    assert role_scores(sink.double(), torch.arange(n))[Role.induction] is None  # no token repeats


def test_labels_need_a_lift_over_chance(tiny_graph):
    roles = head_roles(tiny_graph)
    for head in roles.heads:
        if head.label is not None:
            chance = roles.chance[head.label]
            assert (getattr(head, head.label) - chance) / (1 - chance) >= LABEL_THRESHOLD
