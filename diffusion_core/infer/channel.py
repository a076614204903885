"""The noisy channel of proofreading: which words a writer may have meant by a word, and how likely the slip.

A correction c of a written word w is scored as log P_LM(c | context) - cost(w, c); ``cost`` is -log P(w | c),
the channel: how likely a writer who meant c typed w.  It is a weighted edit distance (optimal string
alignment) whose few per-operation costs were fitted on the calibration split (data/eval/calib.jsonl:
``python -m diffusion_core.eval.proofread_eval OUT --split calib --costs JSON``), never on the passages the
evaluation reports (docs/proofreading.md).

Candidates for w are the words one edit away from it (a letter dropped, added, replaced, doubled or
undoubled, two neighbours swapped) that are in the lexicon (an English word list) or in the document (names
and terms the list lacks); the engine adds the model's own guesses within ``GUESS_EDITS`` edits.
"""
from __future__ import annotations

import re
from functools import lru_cache

# -log P(w | c) per operation (nats), fitted on the calibration split (a first guess with a letter replaced
# at 5.0, added or dropped at 4.5, restored more typos but found fewer real-word slips at equal false alarms).
COSTS = {"substitute": 3.5, "insert": 4.0, "delete": 4.0, "transpose": 3.5, "double": 3.0, "undouble": 3.0}
UNIT = dict.fromkeys(COSTS, 1.0)
GUESS_EDITS = 2        # the model's own guesses are candidates up to this many edits from the word
MAX_EXACT = 4          # a word of several tokens: at most this many candidates scored exactly (the likeliest slips)
MIN_COUNT = 100        # the word list's words seen at least this often (the rest is mostly noise)
LETTERS = "abcdefghijklmnopqrstuvwxyz"
CHECKED = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")  # words proofreading judges: letters, one apostrophe


def cost(w: str, c: str, costs: dict[str, float] = COSTS) -> float:
    """-log P(w | c): the cheapest way to type ``w`` meaning ``c`` (case ignored), as a sum of operations."""
    w, c = w.lower(), c.lower()
    op = _one_op(w, c)
    if op is not None:    # most pairs are one operation apart: no table to fill
        return costs[op]
    n, m = len(c), len(w)
    d = [[0.0] * (m + 1) for _ in range(n + 1)]   # d[i][j]: cost of typing w[:j] for c[:i]
    for i in range(1, n + 1):
        d[i][0] = d[i - 1][0] + _delete(c, i, costs)
    for j in range(1, m + 1):
        d[0][j] = d[0][j - 1] + _insert(w, j, costs)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best = min(d[i - 1][j] + _delete(c, i, costs), d[i][j - 1] + _insert(w, j, costs),
                       d[i - 1][j - 1] + (0.0 if c[i - 1] == w[j - 1] else costs["substitute"]))
            if i > 1 and j > 1 and c[i - 1] == w[j - 2] and c[i - 2] == w[j - 1] and c[i - 1] != c[i - 2]:
                best = min(best, d[i - 2][j - 2] + costs["transpose"])
            d[i][j] = best
    return d[n][m]


def _one_op(w: str, c: str) -> str | None:
    """The operation that turns ``c`` into ``w`` when exactly one does (else None)."""
    i = next((i for i, (a, b) in enumerate(zip(w, c)) if a != b), min(len(w), len(c)))
    if len(w) == len(c) + 1 and w[i + 1:] == c[i:]:
        return "double" if w[i] in (w[i - 1:i] + w[i + 1:i + 2]) else "insert"
    if len(c) == len(w) + 1 and c[i + 1:] == w[i:]:
        return "undouble" if c[i] in (c[i - 1:i] + c[i + 1:i + 2]) else "delete"
    if len(w) == len(c) and i < len(w):
        if w[i + 1:] == c[i + 1:]:
            return "substitute"
        if w[i + 2:] == c[i + 2:] and w[i:i + 2] == c[i + 1] + c[i] and w[i] != w[i + 1:i + 2]:
            return "transpose"
    return None


def _delete(c: str, i: int, costs) -> float:
    """Dropping c[i-1]: cheaper when it is one of a doubled letter."""
    doubled = (i > 1 and c[i - 2] == c[i - 1]) or (i < len(c) and c[i] == c[i - 1])
    return costs["undouble"] if doubled else costs["delete"]


def _insert(w: str, j: int, costs) -> float:
    """Typing w[j-1] in excess: cheaper when it repeats the letter before it."""
    return costs["double"] if j > 1 and w[j - 2] == w[j - 1] else costs["insert"]


def one_edit(word: str) -> set[str]:
    """Every string one operation away from ``word`` (lower case), unordered: callers rank what they keep."""
    w = word.lower()
    splits = [(w[:i], w[i:]) for i in range(len(w) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + x + b[1:] for a, b in splits if b for x in LETTERS}
    out |= {a + x + b for a, b in splits for x in LETTERS}
    out.discard(w)
    return out


@lru_cache(maxsize=1)
def lexicon() -> dict[str, int]:
    """The English word list candidates come from: pyspellchecker's, word -> how often it was seen (at least
    MIN_COUNT times)."""
    from spellchecker import SpellChecker
    counts = SpellChecker(distance=1).word_frequency.dictionary
    return {w: n for w, n in counts.items() if n >= MIN_COUNT and CHECKED.fullmatch(w)}


def document_words(text: str) -> dict[str, str]:
    """The checked words of a document, lower case -> as written (its names and terms)."""
    return {m.group().lower(): m.group() for m in CHECKED.finditer(text)}


def checked(word: str) -> bool:
    """Whether proofreading judges ``word``: letters only (not code names, numbers or acronyms), two or more."""
    return bool(CHECKED.fullmatch(word)) and len(word) > 1 and not (word.isupper() and len(word) > 1) \
        and not any(ch.isupper() for ch in word[1:])


def cased(c: str, like: str) -> str:
    """``c`` written with the case of ``like`` (a capital first letter kept; a document's name as written)."""
    return c[:1].upper() + c[1:] if like[:1].isupper() else c


def candidates(word: str, words: dict[str, int], document: dict[str, str]) -> list[str]:
    """The words one edit from ``word`` in the lexicon ``words`` or the ``document``, cased like ``word``: the
    likeliest slips first (the document's words, then the commoner words, first among equal costs)."""
    found = [c for c in one_edit(word) if c in words or c in document]
    found.sort(key=lambda c: (cost(word, c), c not in document, -words.get(c, 0), c))
    return [cased(document.get(c, c), word) for c in found]


def edits(w: str, c: str) -> int:
    """How many operations ``w`` is from ``c``."""
    return round(cost(w, c, UNIT))
