"""Proofreading: which words of a passage a writer more likely meant otherwise, and what they meant.

A passage is cut into chunks: words with the whitespace before them (byte-level BPE spells a word with its
leading space, so a word chunk is what the model reads as one unit), and the runs of punctuation or space
between them.  Only word chunks are ever questioned, and a change replaces a word's characters and nothing
else: every other byte of the passage stays as it was.

The rule is a noisy channel (issue 34): a word w becomes the candidate c that maximises
log P_LM(c | context) - channel.cost(w, c), when that beats w's own log P_LM(w | context) by more than the
``proofreadMargin`` setting (nats).  Candidates are the lexicon's and the document's words one edit from w
and the model's own guesses at w hidden (channel.py).  A word is judged hidden: a window of the passage is
read in four rows, every fourth word masked in each, so one batched pass scores every single-token word and
every single-token candidate at once; a word or candidate of several tokens is scored exactly (chain rule,
one row per token, a short context) in one more batched pass.  After a change, of the two words after it
those that would change are judged again beside the correction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

WINDOW_TOKENS = 160    # a long passage is read in windows of about this many tokens, each with its context
_CHUNK = re.compile(r"\s*\w+(?:['’]\w+)*|\s*[^\w\s]+|\s+")


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
    gain: float      # nats by which the new word's score beat the old one's (the margin is the bar)


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
