"""The reverse process: turn mask slots into tokens over several denoising steps.

``denoise`` is one pure function over a batch of canvases (LLaDA's
``generate`` in spirit): every step it predicts all still-masked slots,
ranks the predictions by an unmasking order, and commits the best of them;
the noise schedule says how many must be committed by each step, and a
confidence threshold lets it commit more at once (parallel decoding, as in
Fast-dLLM).  Optionally each pass also re-reads the tokens committed so far
and re-masks one the model now finds unlikely (``revise_below``: a model
trained with replaced-token noise can tell), each slot at most once, so
sampling still ends.  Optional Mask-Predict refinement then re-masks the
least confident committed tokens and predicts them again.  Nothing here
knows a token id except through its arguments.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .schedule import NoiseSchedule

ORDERS = ("confidence", "margin", "entropy", "random", "left-to-right")

# forward(ids (B,T), positions (B,T) bool) -> logits (N,V) at the N True positions, row-major.
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Cancelled(Exception):
    """Raised by an ``on_step`` callback to stop denoising between two steps."""


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 8                    # at most this many passes (before refinement)
    order: str = "confidence"         # which slots to commit first
    temperature: float = 0.0          # 0 = greedy
    top_k: int = 0                    # 0 = off
    top_p: float = 1.0                # 1 = off
    threshold: float | None = None    # also commit every slot whose confidence reaches this
    refine_rounds: int = 0            # Mask-Predict rounds after the first fill
    min_commit: int = 0               # commit at least this many slots per pass in every row, so a short row
                                      # beside a long one finishes at its own pace, not the long row's schedule
    schedule: str = "linear"
    revise_below: float | None = None  # re-mask a committed token whose probability on a later pass falls
                                       # below this (once per slot); None = a committed token is final

    def __post_init__(self) -> None:
        if self.revise_below is not None and not 0.0 < self.revise_below < 1.0:
            raise ValueError("revise_below must be a probability in (0, 1)")
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
    retired: torch.Tensor     # (B,) rows ``retire`` stopped early (their unfilled slots keep the mask)


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest prefix reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def _predict(logits: torch.Tensor, cfg: SamplerConfig, generator: torch.Generator | None):
    """(token (N,), confidence (N,), rank score (N,)) for N masked slots' logits (N, V)."""
    probs = logits.float().softmax(-1)                                  # (N, V)
    if cfg.temperature > 0:
        filtered = _filter_logits(logits.float() / cfg.temperature, cfg.top_k, cfg.top_p)
        token = torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(-1)
    else:
        token = probs.argmax(-1)
    conf = probs.gather(-1, token[:, None]).squeeze(-1)                  # (N,)
    if cfg.order == "margin":
        top2 = probs.topk(2, dim=-1).values
        score = top2[:, 0] - top2[:, 1]
    elif cfg.order == "entropy":
        score = (probs * probs.clamp_min(1e-12).log()).sum(-1)          # -H: higher = surer
    elif cfg.order == "random":
        score = torch.rand(conf.shape, generator=generator)
    else:  # confidence; left-to-right is decided by position in _commit
        score = conf
    return token, conf, score


def _commit_count(initial: torch.Tensor, remaining: torch.Tensor, step: int, cfg: SamplerConfig,
                  schedule: NoiseSchedule) -> torch.Tensor:
    """Per row: how many slots must be committed at this step.

    The schedule's count, and at least an even share of what is left over the
    steps left: when a threshold (or ``settle``) ran ahead of the schedule, the
    remaining slots still finish in proportion rather than idling until the
    schedule catches up; and at least ``cfg.min_commit``.
    """
    target = torch.tensor([schedule.masked_after_step(int(n), step, cfg.steps) for n in initial])
    steps_left = max(1, cfg.steps - step + 1)
    even = (remaining + steps_left - 1) // steps_left                   # ceil(remaining / steps_left)
    return torch.maximum(torch.maximum((remaining - target).clamp_min(0), even),
                         torch.full_like(remaining, cfg.min_commit))


def denoise(forward: Forward, ids: torch.Tensor, known: torch.Tensor, mask_id: int, cfg: SamplerConfig,
            on_step: Callable[[int, int, torch.Tensor], None] | None = None,
            generator: torch.Generator | None = None,
            settle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
            retire: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> Denoised:
    """Fill every slot of ``ids`` (B, T) that is not ``known`` (B, T) and holds ``mask_id``.

    Each step runs ``forward`` once on all rows, predicts the still-masked
    slots, and commits per row the k best by ``cfg.order`` (k from the noise
    schedule, so all are committed by step ``cfg.steps``), plus any slot whose
    confidence reaches ``cfg.threshold``.  ``on_step(step, total, ids)`` is
    called after each pass; raising ``Cancelled`` there stops the run.
    ``settle(ids, masked)`` may fill masked slots whose value the commits so
    far decide (in place, e.g. the slots after a trailing null); it returns
    the (B, T) mask of slots it filled, which count as committed with
    confidence 1 and cost no pass.  ``retire(ids, masked, confidence)`` may
    stop whole rows whose outcome no longer matters (it returns a (B,) mask;
    e.g. a candidate that can no longer win): they cost no further pass and
    keep their unfilled slots masked.  Known positions are never written.
    With ``cfg.revise_below`` each pass also reads the slots committed on
    earlier passes (not yet revised, not known): one whose token's
    probability now falls below it is masked again and predicted anew; a
    slot is revised at most once, so at most twice as many commits as slots
    are ever needed.  Returns the filled ids, each token's confidence at
    commit time, the number of passes and the retired rows.
    """
    schedule = NoiseSchedule(cfg.schedule)
    ids = ids.clone()
    confidence = torch.ones(ids.shape, dtype=torch.float32)
    masked = (ids == mask_id) & ~known                                  # (B, T)
    initial = masked.sum(1)                                             # (B,)
    positions = torch.arange(ids.shape[1]).expand_as(ids)               # (B, T)
    retired = torch.zeros(ids.shape[0], dtype=torch.bool)              # (B,) rows retire has stopped
    revisable = masked.clone() if cfg.revise_below is not None else torch.zeros_like(masked)  # (B, T)
    passes, step = 0, 0
    total = cfg.steps + cfg.refine_rounds
    while masked.any():
        step += 1
        check = revisable & ~masked & ~retired[:, None]                 # (B, T) committed, still revisable
        read = masked | check
        logits = forward(ids, read)                                     # (N, V) at the read positions
        passes += 1
        doubt = torch.zeros_like(masked)
        if check.any():
            in_check = check[read]                                      # (N,) which rows of logits are checks
            own = logits[in_check].float().softmax(-1).gather(-1, ids[check][:, None]).squeeze(-1)
            doubt[check] = own < cfg.revise_below
            revisable &= ~doubt                                         # a slot is revised once, then final
            logits = logits[~in_check]
        token, conf, score = _predict(logits, cfg, generator)
        if cfg.order == "left-to-right":
            score = -positions[masked].float()
        # scatter the N predictions back onto the (B, T) grid
        grid_score = torch.full(ids.shape, float("-inf"))
        grid_score[masked] = score.float()
        grid_token = ids.clone()
        grid_token[masked] = token
        grid_conf = torch.zeros(ids.shape)
        grid_conf[masked] = conf
        need = _commit_count(initial, masked.sum(1), min(step, cfg.steps), cfg, schedule)  # (B,)
        ranks = grid_score.argsort(dim=1, descending=True).argsort(dim=1)  # (B, T): 0 = best
        commit = masked & (ranks < need[:, None])
        if cfg.threshold is not None and cfg.order != "left-to-right":
            commit |= masked & (grid_conf >= cfg.threshold)
        ids[commit] = grid_token[commit]
        confidence[commit] = grid_conf[commit]
        masked &= ~commit
        if doubt.any():  # predicted again on the next pass, from the canvas as it now stands
            ids[doubt] = mask_id
            masked |= doubt
        if settle is not None:
            masked &= ~settle(ids, masked)
        if retire is not None:
            stop = retire(ids, masked, confidence) & masked.any(1)     # (B,)
            retired |= stop
            masked &= ~stop[:, None]
        if on_step is not None:
            on_step(step, total, ids)
    frozen = known | retired[:, None]                                  # refinement leaves retired rows alone
    for round_ in range(1, cfg.refine_rounds + 1):
        ids, confidence = _refine_round(forward, ids, frozen, confidence, initial, mask_id, round_, cfg, generator)
        passes += 1
        if on_step is not None:
            on_step(step + round_, total, ids)
    return Denoised(ids, confidence, passes, retired)


def _refine_round(forward, ids, known, confidence, initial, mask_id, round_, cfg, generator):
    """Mask-Predict: re-mask the n least confident generated tokens (n shrinking each round) and
    predict them again in one pass."""
    n_remask = (initial.float() * (cfg.refine_rounds - round_ + 1) / (cfg.refine_rounds + 1)).long()  # (B,)
    generated = ~known
    score = torch.where(generated, confidence, torch.full_like(confidence, float("inf")))
    ranks = score.argsort(dim=1).argsort(dim=1)
    remask = generated & (ranks < n_remask[:, None])
    if not remask.any():
        return ids, confidence
    ids = ids.clone()
    ids[remask] = mask_id
    token, conf, _ = _predict(forward(ids, remask), SamplerConfig(temperature=cfg.temperature, top_k=cfg.top_k,
                                                                  top_p=cfg.top_p), generator)
    ids[remask] = token
    confidence = confidence.clone()
    confidence[remask] = conf
    return ids, confidence
