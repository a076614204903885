"""The canvas: known text and gaps of mask slots laid out as one row of token ids.

Each piece of known text is tokenized on its own, so the text around a gap is
never re-tokenized together with the fill and never changes; the engine
returns only the inserted text.  The outer pieces are cut to a bounded window
(the tail of the first piece, the head of the last) so a huge document costs
no more than a small one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

CHARS_PER_TOKEN_BOUND = 16  # cut text to this many chars per wanted token before tokenizing (never too few)


@dataclass
class Canvas:
    ids: torch.Tensor            # (T,) token ids, gaps filled with the mask id
    known: torch.Tensor          # (T,) bool: True where the id is given text and must never change
    gaps: list[tuple[int, int]]  # [start, end) slot ranges, one per gap, left to right
    anchors: list[list[int]]     # per gap: the few known ids just before it (for exact-spacing decode)

    def gap_positions(self) -> torch.Tensor:
        pos = torch.zeros_like(self.known)
        for s, e in self.gaps:
            pos[s:e] = True
        return pos


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids if text else []


def window_ids(tokenizer, text: str, max_tokens: int, keep: str) -> list[int]:
    """Token ids of ``text``'s tail (keep="tail") or head (keep="head"), at most ``max_tokens``."""
    if max_tokens <= 0 or not text:
        return []
    cut = max_tokens * CHARS_PER_TOKEN_BOUND
    if keep == "tail":
        ids = _encode(tokenizer, text[-cut:])
        # A char cut can split a word; drop the first token when we cut, it may be a fragment.
        ids = ids[1:] if len(text) > cut else ids
        return ids[-max_tokens:]
    ids = _encode(tokenizer, text[:cut])
    ids = ids[:-1] if len(text) > cut else ids
    return ids[:max_tokens]


def before_gap(text: str) -> str:
    """The text before a gap as the model reads it: spaces before a gap belong to the gap.

    Byte-level BPE spells a word with its leading space (" Paris"), and training cuts gaps at word
    starts, so text ending in a bare " " token is text the model never saw (it answers digits). The fill
    brings its own space; joining.fit keeps one where the document already has one."""
    return text.rstrip(" \t")


def frame_ids(tokenizer) -> tuple[int | None, int | None]:
    """The ids that open and close a canvas: [CLS]/[SEP] for BERT-style tokenizers, BOS/EOS otherwise."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return start, end


def build_canvas(tokenizer, pieces: list[str], lengths: list[int], context_tokens: int,
                 inner_tokens: int | None = None) -> Canvas:
    """Lay out ``pieces[0] gap0 pieces[1] gap1 ... pieces[-1]``; gap i has ``lengths[i]`` mask slots.

    ``len(pieces) == len(lengths) + 1``.  The first piece keeps its last
    ``context_tokens`` tokens, the last piece its first ``context_tokens``;
    pieces between gaps keep up to ``inner_tokens`` (default: all).
    """
    if len(pieces) != len(lengths) + 1:
        raise ValueError("need exactly one more text piece than gaps")
    if any(n < 1 for n in lengths):
        raise ValueError("every gap needs at least one slot")
    cls, sep = frame_ids(tokenizer)
    ids: list[int] = [cls] if cls is not None else []
    known: list[bool] = [True] * len(ids)
    gaps, anchors = [], []
    for i, piece in enumerate(pieces):
        if i < len(lengths):
            piece = before_gap(piece)
        if i == 0:
            piece_ids = window_ids(tokenizer, piece, context_tokens, "tail")
        elif i == len(pieces) - 1:
            piece_ids = window_ids(tokenizer, piece, context_tokens, "head")
        else:
            piece_ids = _encode(tokenizer, piece) if inner_tokens is None else \
                window_ids(tokenizer, piece, inner_tokens, "head")
        ids += piece_ids
        known += [True] * len(piece_ids)
        if i < len(lengths):
            anchors.append(piece_ids[-4:])
            gaps.append((len(ids), len(ids) + lengths[i]))
            ids += [tokenizer.mask_token_id] * lengths[i]
            known += [False] * lengths[i]
    if sep is not None:
        ids.append(sep)
        known.append(True)
    return Canvas(torch.tensor(ids), torch.tensor(known), gaps, anchors)


def special_ids(tokenizer) -> list[int]:
    """Ids of the tokenizer's control tokens (``<|im_end|>``, ``[CLS]``, the mask, ...): never text, so never
    written into a fill (the engine and the autoregressive baseline ban them; the null token is grow's end signal)."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    for role in ("mask", "pad", "cls", "sep", "bos", "eos", "unk"):
        found = getattr(tokenizer, f"{role}_token_id", None)
        if found is not None:
            ids.add(int(found))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        ids |= {int(i) for i, token in backend.get_added_tokens_decoder().items() if token.special}
    return sorted(ids)


def decode_fill(tokenizer, anchor: list[int], fill: list[int]) -> str:
    """Text of ``fill`` as it reads after ``anchor``: exact for byte-level BPE, and for
    WordPiece/SentencePiece it keeps the space the tokenizer would put between them."""
    if not fill:
        return ""
    if anchor:
        kw = dict(clean_up_tokenization_spaces=False, skip_special_tokens=False)
        before = tokenizer.decode(anchor, **kw)
        both = tokenizer.decode(anchor + fill, **kw)
        if both.startswith(before):
            return _complete_chars(both[len(before):])
    return _complete_chars(tokenizer.decode(fill, clean_up_tokenization_spaces=False))


def _complete_chars(text: str) -> str:
    # Byte-level tokens can end inside a UTF-8 sequence; never insert the replacement character.
    return text.replace("\ufffd", "")
