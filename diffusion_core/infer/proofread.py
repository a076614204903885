"""Proofreading: which words of a passage the model thinks are wrong, and what it would write instead.

A passage is cut into chunks: words with the whitespace before them (byte-level BPE spells a word with its
leading space, so a word chunk is what the model reads as one unit), and the runs of punctuation or space
between them.  Only word chunks are ever questioned, and a change replaces a word's characters and nothing
else: every other byte of the passage stays as it was.

The model reads each word in one of two ways (``reading``):

* ``visible``: one pass over the passage as it is; a word's probability is that of its own tokens where they
  stand.  Only a model trained with replaced-token noise (``diffill train --substitute``) has learned what
  a visible token's probability means, and it costs one pass.  Measured (docs/proofreading.md) on a model
  trained with it at equal tokens, it traded precision for recall worse than the masked reading at every
  bar, so it is not the default.
* ``masked``: each word is hidden and predicted from its context (four rows, every fourth word hidden in
  each, so one batched pass scores them all), the pseudo-likelihood a masked LM trained on masking alone
  gives.

A word is suspect when its probability falls below ``below`` and the model's own guess for it is another
word; the engine then fills each suspect again on its own (every other word as it stands, with the changes
made so far), with at most one token more than it had, and a replacement that is another single word
becomes a ``Change``.  (Filling all suspects jointly in one canvas was tried: with most of a sentence
hidden the fills were phrases, not words.)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

READINGS = ("visible", "masked")
DEFAULT_READING = "masked"
DEFAULT_BELOW = 0.0003  # a word this unlikely, with another guess preferred, is questioned: the best precision
                        # of the bars measured (0.0003-0.03) on both models shipped then (docs/proofreading.md)
WINDOW_TOKENS = 160    # a long passage is read in windows of about this many tokens, each with its context
_CHUNK = re.compile(r"\s*\w+(?:['’]\w+)*|\s*[^\w\s]+|\s+")
_WORD = re.compile(r"\w+(?:['’-]\w+)*")


@dataclass(frozen=True)
class Chunk:
    start: int   # offsets in the passage, [start, end)
    end: int
    word: bool   # a word (with the whitespace before it), not punctuation or space

    def word_start(self, text: str) -> int:
        """Where the word itself begins (after its leading whitespace)."""
        return self.start + len(text[self.start:self.end]) - len(text[self.start:self.end].lstrip())


def chunks(text: str) -> list[Chunk]:
    """The passage cut into chunks that cover it exactly, in order."""
    out = []
    for m in _CHUNK.finditer(text):
        body = m.group().lstrip()
        out.append(Chunk(m.start(), m.end(), bool(body) and (body[0].isalnum() or body[0] == "_")))
    return out


@dataclass(frozen=True)
class Change:
    start: int       # offsets of the replaced word in the passage
    end: int
    old: str
    new: str
    probability: float  # how likely the model found the old word


@dataclass
class Proofread:
    text: str                                    # the passage with every change applied
    changes: list[Change] = field(default_factory=list)
    passes: int = 0


def apply(text: str, changes: list[Change]) -> str:
    """``text`` with ``changes`` (non-overlapping, any order) spliced in."""
    out, at = [], 0
    for c in sorted(changes, key=lambda c: c.start):
        out += [text[at:c.start], c.new]
        at = c.end
    return "".join(out + [text[at:]])


def windows(sizes: list[int], budget: int = WINDOW_TOKENS) -> list[list[int]]:
    """Indices of chunks of ``sizes`` tokens grouped into consecutive windows of at most ``budget`` tokens
    (a longer chunk alone)."""
    groups: list[list[int]] = [[]]
    used = 0
    for i, n in enumerate(sizes):
        if groups[-1] and used + n > budget:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += n
    return [g for g in groups if g]


def differs(old_chunk: str, guess: str) -> bool:
    """Whether the model's guess is another word (a change of case alone is not: proofreading fixes words)."""
    return guess.strip().lower() != old_chunk.strip().lower()


def replacement(old_chunk: str, fill: str) -> str | None:
    """The new word for a questioned chunk, or None when the fill proposes no other word."""
    new, old = fill.strip(), old_chunk.strip()
    if not _WORD.fullmatch(new) or not differs(old, new):  # one word for one: no splits, joins or punctuation
        return None
    return new
