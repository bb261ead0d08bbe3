"""A tiny GPT-2 whose weights are set by hand, so that the answer to every patching question is known.

Residual stream (24 dims): the token as a one-hot in dims 0-7, the position as a one-hot in dims 8-15, and dims
16-23 a scratch space. Two layers of two heads, MLPs off (zero weights):

* **the copy head, layer 1 head 0**: its query is a constant (b_Q), its key reads the position-0 dim, so every
  query attends to position 0 (scores differ by about 90); its value reads the token dims and its output writes
  them back, tripled. At the last position the stream then holds the token of position 0, and the tied
  unembedding (W_U = W_E^T reads the token dims) predicts it.
* **every other head** attends uniformly (zero query and key) and copies the position dims into the scratch
  space: its output depends on the positions only, never on the tokens.

So with clean tokens [A, x, y, z] and corrupted [B, x, y, z], logit(A) - logit(B) is large in the clean run and
negative in the corrupted one; the copy head carries the whole difference, every other head none of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

import gpt2graph

if TYPE_CHECKING:
    from gpt2graph import Graph

N_VOCAB, N_CTX, D_MODEL, N_HEAD, N_LAYER = 8, 8, 24, 2, 2
D_HEAD = D_MODEL // N_HEAD
COPY_LAYER, COPY_HEAD = 1, 0
TOKENS, POSITIONS, SCRATCH = range(0, 8), range(8, 16), range(16, 24)
#: clean and corrupted prompts (token ids) and the answer / wrong tokens
CLEAN, CORRUPTED, ANSWER, WRONG = [1, 5, 6, 7], [2, 5, 6, 7], 1, 2


def copy_model():
    """The hand-built ``GPT2LMHeadModel`` described in the module docstring."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=N_LAYER,
        n_head=N_HEAD,
        n_embd=D_MODEL,
        n_positions=N_CTX,
        vocab_size=N_VOCAB,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        t = model.transformer
        for i in range(N_VOCAB):
            t.wte.weight[i, TOKENS[i]] = 1.0
        for p in range(N_CTX):
            t.wpe.weight[p, POSITIONS[p]] = 1.0
        for ln in [t.ln_f, *(b.ln_1 for b in t.h), *(b.ln_2 for b in t.h)]:
            ln.weight.fill_(1.0)
        for L, block in enumerate(t.h):
            attn = block.attn
            W, b, W_O = attn.c_attn.weight, attn.c_attn.bias, attn.c_proj.weight  # (d, 3d) q|k|v, (d, d)
            for h in range(N_HEAD):
                q, k, v = (slice(i * D_MODEL + h * D_HEAD, i * D_MODEL + (h + 1) * D_HEAD) for i in range(3))
                rows = slice(h * D_HEAD, (h + 1) * D_HEAD)
                if (L, h) == (COPY_LAYER, COPY_HEAD):
                    b[q.start] = 10.0  # a constant query ...
                    W[POSITIONS[0], k.start] = 10.0  # ... that finds the key of position 0
                    for i in TOKENS:
                        W[i, v.start + i] = 1.0  # value: the token
                        W_O[rows.start + i, i] = 3.0  # output: the token, into the token dims
                else:  # uniform attention; value: the position, written into the scratch space
                    for i in range(8):
                        W[POSITIONS[i], v.start + i] = 1.0
                        W_O[rows.start + i, SCRATCH[i]] = 0.5
    model.tie_weights()
    return model


def copy_runs(folder: Path) -> tuple[Graph, Graph]:
    """The clean and the corrupted run of the copy model, saved in ``folder`` and loaded back as a user would."""
    path = folder / "copy"
    copy_model().save_pretrained(path)
    return gpt2graph.build(CLEAN, model=str(path)), gpt2graph.build(CORRUPTED, model=str(path))
