"""Choosing how many slots a gap gets when the user does not say.

``null_marginal_lengths`` (one single-row pass): a model trained to pad
spans with trailing null tokens says, at each slot j of an over-allocated
gap, the probability that slot j is null, i.e. that the span is at most j
tokens long.  The chosen length is the median: the first slot whose null
probability reaches one half.

``probe_lengths`` (one batched pass over all candidates): all candidate lengths are probed in one batched pass: row j lays every gap
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


@torch.no_grad()
def null_marginal_lengths(forward, tokenizer, pieces: list[str], context_tokens: int, room: int, null_id: int,
                          threshold: float = 0.5) -> LengthChoice:
    """Pick a length per gap from the null probabilities of ``room`` masked slots (one row, one pass).

    ``scores[g][L]`` is the probability that gap g is exactly L tokens long (differences of the null
    probabilities, which the model need not keep monotone, so clamped at 0); slot 0 is never null.
    """
    n_gaps = len(pieces) - 1
    canvas = build_canvas(tokenizer, pieces, [room] * n_gaps, context_tokens)
    masked = ~canvas.known[None]                                        # (1, T)
    logits = forward(canvas.ids[None], masked)                          # (n_gaps * room, V)
    p_null = logits.float().softmax(-1)[:, null_id].view(n_gaps, room)  # (G, room), gaps in canvas order
    p_null[:, 0] = 0.0
    chosen, scores = [], []
    for row in p_null.tolist():
        at_most = [max(row[:j + 1]) for j in range(room)] + [1.0]       # P(length <= j), made monotone
        chosen.append(next((j for j in range(1, room) if at_most[j] >= threshold), room))
        scores.append({L: max(0.0, at_most[L] - at_most[L - 1]) for L in range(1, room + 1)})
    return LengthChoice(chosen, scores)
