"""The hybrid unknown-length mode: short fixed-length rows race a null-padded row.

One batch holds a row per short length (1, 2 and 3 slots, null banned) and
one marginal row (null-padded, its length read off the first pass).  The
short fill with the highest total log-probability wins if its mean token
probability reaches the model's calibrated bar (a short answer the model is
sure of: the case where a length can be right at all); otherwise the
marginal row's fill does.

``ShortRace`` is the sampler's ``retire`` hook.  A token still to be
committed has log-probability <= 0, so the log-probabilities a row has
committed so far bound its final total from above: a short row whose bound
falls below a finished short row's total can no longer win and stops, and
once the winner is certain and clears the bar the marginal row stops too.
The top fill is the one the full run would give, for fewer passes.
"""
from __future__ import annotations

import math

import torch


def _log_conf(confidence: torch.Tensor) -> torch.Tensor:
    return confidence.clamp_min(1e-9).log()  # the same floor as a Fill's score


def _log_bar(bar: float) -> float:
    return math.log(max(bar, 1e-9))


class ShortRace:
    """Retire hook for a hybrid batch: rows 0..k-1 are the short rows, row k the marginal one."""

    def __init__(self, spans: list[tuple[int, int]], bar: float):
        self.spans = spans            # (start, end) of each row's single gap
        self.log_bar = _log_bar(bar)

    def __call__(self, ids: torch.Tensor, masked: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        stop = torch.zeros(ids.shape[0], dtype=torch.bool)              # (B,)
        log_conf = _log_conf(confidence)                                # (B, T)
        shorts = range(len(self.spans) - 1)
        bound, done = {}, {}
        for r in shorts:
            a, b = self.spans[r]
            open_ = masked[r, a:b]
            bound[r] = float(log_conf[r, a:b][~open_].sum())            # committed log-probability so far
            done[r] = not bool(open_.any())
        finished = [r for r in shorts if done[r]]
        if not finished:
            return stop
        lead = max(finished, key=bound.get)                             # first of equals, as the ranking sorts
        contenders = []
        for r in shorts:
            if done[r]:
                continue
            if bound[r] < bound[lead]:
                stop[r] = True
            else:
                contenders.append(r)
        a, b = self.spans[lead]
        if not contenders and bound[lead] / (b - a) >= self.log_bar:
            stop[len(self.spans) - 1] = True                            # the short fill has won
        return stop


def rank(shorts: list, marginal, bar: float) -> list:
    """Fills best first: the most probable short fill if it clears ``bar``, else the marginal one; the
    others follow by total log-probability.

    ``shorts`` are Fills of the short rows, ``marginal`` the marginal row's (None when it was
    retired). Fills compete on total log-probability (``Fill.total``: the model's P(tokens) for that
    length, so a longer fill must earn every extra token).
    """
    shorts = sorted(shorts, key=lambda f: f.total, reverse=True)
    rest = [marginal] if marginal is not None else []
    if shorts and shorts[0].score >= _log_bar(bar):
        pick, rest = shorts[0], rest + shorts[1:]
    elif rest:
        pick, rest = rest[0], shorts
    else:
        return shorts
    return [pick, *sorted(rest, key=lambda f: f.total, reverse=True)]
