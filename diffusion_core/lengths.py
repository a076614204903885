"""Choosing how many slots a gap gets when the user does not say.

``median_length``: a model trained to pad spans with trailing null tokens
says, at each slot j of an over-allocated gap, the probability that slot j
is null, i.e. that the span is at most j tokens long; the median length is
the first slot whose null probability reaches one half (used by the
engine's ``marginal`` mode during its first denoising pass, see null_rules.py).

``probe_lengths``: all candidate lengths are probed in one batched pass: row j lays every gap
out with ``candidates[j]`` fully masked slots, and each gap's score for that
length is the mean top-1 log-probability over its slots plus ``beta *
log(length)``.  The raw mean falls with length even when the longer span is
right (more slots are far from any context), so ``beta`` corrects that bias;
it is calibrated per model on held-out gaps (``diffill_length_beta`` in the
model's config.json).  A model trained with a null token fills unneeded
slots with it, so the chosen length is rounded up and the nulls trim the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .canvas import build_canvas

DEFAULT_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
DEFAULT_BETA = 0.3


@dataclass
class LengthChoice:
    lengths: list[int]                  # chosen length per gap
    scores: list[dict[int, float]]      # per gap: candidate length -> calibrated score


def pad_rows(rows: list[torch.Tensor], known: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack canvases of different widths; padding counts as known so it is never filled."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    kn = torch.ones((len(rows), width), dtype=torch.bool)
    for i, (r, k) in enumerate(zip(rows, known)):
        ids[i, :len(r)] = r
        kn[i, :len(k)] = k
    return ids, kn


@torch.no_grad()
def probe_lengths(forward, tokenizer, pieces: list[str], context_tokens: int, candidates: list[int],
                  beta: float = DEFAULT_BETA, round_up: bool = False) -> LengthChoice:
    """Pick a length per gap from ``candidates`` with one batched forward pass."""
    candidates = sorted(set(candidates))
    n_gaps = len(pieces) - 1
    canvases = [build_canvas(tokenizer, pieces, [L] * n_gaps, context_tokens) for L in candidates]
    ids, known = pad_rows([c.ids for c in canvases], [c.known for c in canvases], tokenizer.pad_token_id)
    masked = ~known                                                     # (B, T)
    logits = forward(ids, masked)                                       # (N, V)
    top1 = logits.float().log_softmax(-1).max(-1).values                # (N,)
    grid = torch.zeros(ids.shape)
    grid[masked] = top1
    scores: list[dict[int, float]] = [{} for _ in range(n_gaps)]
    for row, (L, canvas) in enumerate(zip(candidates, canvases)):
        for g, (s, e) in enumerate(canvas.gaps):
            scores[g][L] = float(grid[row, s:e].mean()) + beta * math.log(L)
    chosen = []
    for per_gap in scores:
        best = max(per_gap, key=per_gap.get)
        if round_up:  # with a null token, over-allocating one bucket is cheap and safer than cutting short
            bigger = [L for L in candidates if L > best]
            best = bigger[0] if bigger else best
        chosen.append(best)
    return LengthChoice(chosen, scores)


def median_length(p_null: list[float], threshold: float = 0.5) -> int:
    """The median span length from the null probabilities of a gap's slots (slot 0 is never null).

    ``p_null[j]`` estimates P(length <= j); the model need not keep it monotone, so a running
    maximum is used.  The length is the first j >= 1 where it reaches ``threshold``, else all slots.
    """
    at_most = 0.0
    for j in range(1, len(p_null)):
        at_most = max(at_most, p_null[j])
        if at_most >= threshold:
            return j
    return max(1, len(p_null))
