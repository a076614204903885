"""The reverse process with the length given: turn mask slots into tokens over several denoising steps.

``denoise`` is one pure function over a batch of canvases (LLaDA's
``generate`` in spirit): every step it predicts all still-masked slots,
ranks the predictions by an unmasking order, and commits the best of them;
the noise schedule says how many must be committed by each step, and a
confidence threshold lets it commit more at once (parallel decoding, as in
Fast-dLLM: measured at 0.56 passes per filled token on smollm2-diffill).
Greedy only: sampling with a temperature, other unmasking orders, Mask-Predict
refinement and re-masking committed tokens were measured and did not pay
(docs/experiments.md).  Nothing here knows a token id except through its
arguments.  Gaps of unknown length are grow's (grow.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_core.infer.schedule import NoiseSchedule

ORDERS = ("confidence", "left-to-right")

# forward(ids (B,T), positions (B,T) bool) -> logits (N,V) at the N True positions, row-major.
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Cancelled(Exception):
    """Raised by an ``on_step`` callback to stop denoising between two steps."""


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 8                    # at most this many passes
    order: str = "confidence"         # which slots to commit first: the surest, or the leftmost
    threshold: float | None = None    # also commit every slot whose confidence reaches this
    min_commit: int = 0               # commit at least this many slots per pass in every row, so a short row
                                      # beside a long one finishes at its own pace, not the long row's schedule
    schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"unknown unmasking order {self.order!r}; choose one of {', '.join(ORDERS)}")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        NoiseSchedule(self.schedule)


@dataclass
class Denoised:
    ids: torch.Tensor         # (B, T) with every slot committed
    confidence: torch.Tensor  # (B, T) probability of each committed token when it was committed (1 where known)
    passes: int               # forward passes spent


def _commit_count(initial: torch.Tensor, remaining: torch.Tensor, step: int, cfg: SamplerConfig,
                  schedule: NoiseSchedule) -> torch.Tensor:
    """Per row: how many slots must be committed at this step.

    The schedule's count, and at least an even share of what is left over the
    steps left: when the threshold ran ahead of the schedule, the remaining
    slots still finish in proportion rather than idling until the schedule
    catches up; and at least ``cfg.min_commit``.
    """
    target = torch.tensor([schedule.masked_after_step(int(n), step, cfg.steps) for n in initial])
    steps_left = max(1, cfg.steps - step + 1)
    even = (remaining + steps_left - 1) // steps_left                   # ceil(remaining / steps_left)
    return torch.maximum(torch.maximum((remaining - target).clamp_min(0), even),
                         torch.full_like(remaining, cfg.min_commit))


def denoise(forward: Forward, ids: torch.Tensor, known: torch.Tensor, mask_id: int, cfg: SamplerConfig,
            on_step: Callable[[int, int, torch.Tensor], None] | None = None) -> Denoised:
    """Fill every slot of ``ids`` (B, T) that is not ``known`` (B, T) and holds ``mask_id``.

    Each step runs ``forward`` once on all rows, predicts the still-masked
    slots greedily, and commits per row the k best by ``cfg.order`` (k from
    the noise schedule, so all are committed by step ``cfg.steps``), plus any
    slot whose confidence reaches ``cfg.threshold``.  ``on_step(step, total,
    ids)`` is called after each pass; raising ``Cancelled`` there stops the
    run.  Known positions are never written.  Returns the filled ids, each
    token's confidence at commit time and the number of passes.
    """
    schedule = NoiseSchedule(cfg.schedule)
    ids = ids.clone()
    confidence = torch.ones(ids.shape, dtype=torch.float32)
    masked = (ids == mask_id) & ~known                                  # (B, T)
    initial = masked.sum(1)                                             # (B,)
    positions = torch.arange(ids.shape[1]).expand_as(ids)               # (B, T)
    passes = 0
    while masked.any():
        passes += 1
        probs = forward(ids, masked).float().softmax(-1)                # (N, V) at the masked slots
        conf, token = probs.max(-1)                                     # (N,), (N,)
        score = -positions[masked].float() if cfg.order == "left-to-right" else conf
        # scatter the N predictions back onto the (B, T) grid
        grid_score = torch.full(ids.shape, float("-inf"))
        grid_score[masked] = score
        grid_token = ids.clone()
        grid_token[masked] = token
        grid_conf = torch.zeros(ids.shape)
        grid_conf[masked] = conf
        need = _commit_count(initial, masked.sum(1), min(passes, cfg.steps), cfg, schedule)  # (B,)
        ranks = grid_score.argsort(dim=1, descending=True).argsort(dim=1)  # (B, T): 0 = best
        commit = masked & (ranks < need[:, None])
        if cfg.threshold is not None and cfg.order != "left-to-right":
            commit |= masked & (grid_conf >= cfg.threshold)
        ids[commit] = grid_token[commit]
        confidence[commit] = grid_conf[commit]
        masked &= ~commit
        if on_step is not None:
            on_step(passes, cfg.steps, ids)
    return Denoised(ids, confidence, passes)
