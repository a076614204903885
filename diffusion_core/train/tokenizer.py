"""Train a cased byte-level BPE tokenizer that round-trips any text exactly.

Byte-level BPE keeps every byte (capitals, indentation, newlines, emoji), and
``add_prefix_space=False`` stops it inventing a leading space, so
``decode(encode(text)) == text`` for every string.  The special tokens follow
RoBERTa, plus ``<null>``: the token the model learns to emit in gap slots
that the fill does not need.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<null>"]
NULL_TOKEN = "<null>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path):
    """Train on ``texts`` and save a Hugging Face tokenizer (tokenizer.json) in ``out_dir``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=False)
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
        additional_special_tokens=[NULL_TOKEN],
        clean_up_tokenization_spaces=False,
    )
    tok.save_pretrained(str(out_dir))
    return tok
