"""The forward (noising) process used for training.

Each sequence gets a time ``t ~ U(eps, 1)`` and one of these corruptions:

* ``random``: every token is masked with probability ``mask_ratio(t)``
  (the RoBERTa-diffusion recipe);
* ``infill``: a span aligned to word or line boundaries is cut out and
  replaced by ``k + extra`` slots, the first ``k`` targets being the span and
  the ``extra`` ones the null token, so the model learns to leave
  over-allocated slots empty; each slot is then masked with probability
  ``mask_ratio(t)`` (at least one), as at an intermediate step of sampling,
  or, a quarter of the time, all of them (as in the first pass).

Either way a ``SubstitutionSchedule`` may then replace tokens the mask left
visible by tokens taken from elsewhere in the same window (the second kind
of forward noise), with probability ``share(t)``.  The loss covers the
replaced tokens and as many kept ones drawn at the same rate (BERT's
unchanged 10 %): being asked about a visible token then says nothing about
whether it is wrong, so the model learns P(token | text as it is) at every
visible position, which is what proofreading reads.  A share of 0 draws no
random numbers at all, so masking-only training is exactly what it was.

Loss targets are -100 where no loss is taken.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffusion_core.infer.schedule import NoiseSchedule, SubstitutionSchedule


@dataclass
class Corrupted:
    input_ids: list[int]
    labels: list[int]    # -100 = no loss
    weight: float        # a masked token's loss weight: the time weight divided by the number of slots at risk
    weights: list[float]  # per token: ``weight`` at masked slots, 1 / len at replaced and kept-but-asked ones, else 0


def _with_substitutions(window: np.ndarray, inputs: np.ndarray, labels: np.ndarray, weight: float,
                        share: float, rng: np.random.Generator) -> Corrupted:
    """Replace visible tokens of ``inputs`` at rate ``share`` (and ask about as many kept ones)."""
    weights = np.where(labels != -100, weight, 0.0)
    if share > 0:
        visible = labels == -100
        draw = rng.random(len(inputs))
        replaced = visible & (draw < share)
        asked = visible & (draw >= share) & (draw < 2 * share)
        pool = window[rng.integers(len(window), size=len(inputs))]  # tokens from elsewhere in the same text
        originals = inputs.copy()
        inputs = np.where(replaced, pool, inputs)
        labels = np.where(replaced | asked, originals, labels)
        weights = np.where(replaced | asked, 1.0 / len(inputs), weights)
    return Corrupted(inputs.tolist(), labels.tolist(), weight, weights.tolist())


class BoundaryTable:
    """Per-vocabulary flags to find word and line boundaries from token ids alone.

    Byte-level BPE spells a leading space 'Ġ', a newline 'Ċ' and a tab 'ĉ'.
    """

    def __init__(self, tokenizer):
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.opens_word = np.array([p[:1] in ("Ġ", "Ċ", "ĉ") for p in pieces], dtype=bool)
        self.has_newline = np.array(["Ċ" in p for p in pieces], dtype=bool)
        self.ends_line = np.array([p.endswith("Ċ") for p in pieces], dtype=bool)

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(word_start, has_newline) for each token of ``ids``."""
        word_start = self.opens_word[ids].copy()
        word_start[1:] |= self.ends_line[ids[:-1]]
        word_start[0] = True
        return word_start, self.has_newline[ids]


def corrupt(window: np.ndarray, starts: np.ndarray, newlines: np.ndarray, rng: np.random.Generator, schedule: NoiseSchedule,
            mask_id: int, null_id: int | None, eps: float = 0.05, infill_prob: float = 0.5,
            max_span_words: int = 24, null_room: int = 16, all_masked_prob: float = 0.25,
            substitute: SubstitutionSchedule = SubstitutionSchedule()) -> Corrupted:
    t = float(rng.uniform(eps, 1.0))
    share = substitute.share(t)
    ratio = schedule.mask_ratio(t)
    weight = schedule.loss_weight(t)
    ids = window.astype(np.int64)
    if null_id is None or rng.random() >= infill_prob:
        masked = rng.random(len(ids)) < ratio
        if not masked.any():
            masked[rng.integers(len(ids))] = True
        labels = np.where(masked, ids, -100)
        inputs = np.where(masked, mask_id, ids)
        return _with_substitutions(ids, inputs, labels, weight / len(ids), share, rng)
    boundary = np.flatnonzero(starts)
    b = int(rng.integers(len(boundary)))
    start = int(boundary[b])
    if rng.random() < 0.3:  # line tail: up to the next newline
        after = np.flatnonzero(newlines[start + 1:])
        end = start + 1 + int(after[0]) if len(after) else len(ids)
    else:
        words = int(rng.integers(1, max_span_words + 1))
        end = int(boundary[b + words]) if b + words < len(boundary) else len(ids)
    span = ids[start:end]
    # Over-allocate by up to the span's own length + 2 or up to null_room slots in all, whichever is
    # more: the engine's unknown-length mode hands the model null_room slots for a short fill.
    extra = int(rng.integers(0, max(len(span) + 2, null_room - len(span)) + 1))
    slots = np.concatenate([span, np.full(extra, null_id)])[: len(ids) - start]
    keep_suffix = max(0, len(ids) - start - len(slots))  # total length stays len(ids)
    suffix = ids[end:end + keep_suffix]
    if rng.random() < all_masked_prob:
        # Every slot hidden, as in the first denoising pass, where the engine reads the gap's length
        # off the null probabilities: without this the model rarely sees a fully masked gap.
        masked = np.ones(len(slots), dtype=bool)
        weight = schedule.loss_weight(1.0)
    else:
        masked = rng.random(len(slots)) < ratio
        if not masked.any():
            masked[rng.integers(len(slots))] = True
    inputs = np.concatenate([ids[:start], np.where(masked, mask_id, slots), suffix])
    labels = np.concatenate([np.full(start, -100), np.where(masked, slots, -100), np.full(len(suffix), -100)])
    return _with_substitutions(ids, inputs, labels, weight / len(slots), share, rng)
