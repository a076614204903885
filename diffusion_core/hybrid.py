"""The hybrid unknown-length mode: short fixed-length rows race a null-padded row.

One batch holds a row per short length (1, 2 and 3 slots, null banned) and
one marginal row (null-padded, its length read off the first pass).  A short
fill's claim is P(its tokens) x P(the span ends right after it): the second
factor comes from one extra pass, ``end_logp``, in which a masked slot
follows each finished short fill and the model says what comes there.  The
gap ends if that slot is null or holds the text after the gap (its first
token), so P(end) is the sum of those two probabilities.  Without it the
bare total always favours the shortest row: `col` beats `col in
enumerate(row):` because every extra token costs probability, while the
slot after `col` says plainly that the line goes on.  The best claim wins
if its mean token probability reaches the model's calibrated bar (a short
answer the model is sure of: the case where a length can be right at all);
otherwise the marginal row's fill does.

The end check is the model's to choose (``diffill_end_check`` in its
config.json, set where it was measured to pay: for smollm2-diffill it raised
similarity by 6 points; for bert-41m it cost 1 point of exact match).
Without it a claim is the bare total.

``ShortRace`` is the sampler's ``retire`` hook.  With the end check it waits
until every short row is filled, runs the check and, when the winner clears
the bar, stops the marginal row (its remaining passes could not change the
answer).  Without it claims only fall as tokens are committed (a token's
log-probability is <= 0), so a short row whose committed total already
trails a finished row's stops at once, and the marginal row stops once the
leader is certain and clears the bar.  Either way the top fill is the one
the full run would give, for fewer passes.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

# end_logp(ids (B, T), rows) -> log P(the gap ends after the fill) for each of ``rows``; one forward pass.
EndCheck = Callable[[torch.Tensor, list[int]], list[float]]


def _log_bar(bar: float) -> float:
    return math.log(max(bar, 1e-9))


def end_check(forward, spans: list[tuple[int, int]], null_id: int, mask_id: int, pad_id: int) -> EndCheck:
    """The end check for rows whose single gap is ``spans[row]``, on ``forward`` (ids, positions) -> logits.

    Each row is laid out again with one masked slot inserted right after its gap; the slot's
    probability of being null plus that of the token the text after the gap starts with is P(end).
    """
    def check(ids: torch.Tensor, rows: list[int]) -> list[float]:
        probe = torch.full((len(rows), ids.shape[1] + 1), pad_id, dtype=ids.dtype)   # (R, T+1)
        slot = torch.zeros(probe.shape, dtype=torch.bool)
        after = []
        for i, r in enumerate(rows):
            b = spans[r][1]
            probe[i, :b], probe[i, b], probe[i, b + 1:] = ids[r, :b], mask_id, ids[r, b:]
            slot[i, b] = True
            after.append(int(ids[r, b]) if b < ids.shape[1] else pad_id)
        probs = forward(probe, slot).float().softmax(-1)                              # (R, V)
        nxt = torch.tensor(after)
        p_end = probs[:, null_id] + probs.gather(-1, nxt[:, None]).squeeze(-1) * (nxt != pad_id)
        return p_end.clamp_min(1e-9).log().tolist()
    return check


class ShortRace:
    """Retire hook for a hybrid batch: rows 0..k-1 are the short rows, row k the marginal one."""

    def __init__(self, spans: list[tuple[int, int]], bar: float, end_logp: EndCheck | None = None):
        self.spans = spans            # (start, end) of each row's single gap
        self.log_bar = _log_bar(bar)
        self.end_logp = end_logp
        self.ends: list[float] | None = None  # per short row, once every short row is filled
        self.passes = 0               # forward passes the end check cost

    def __call__(self, ids: torch.Tensor, masked: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        stop = torch.zeros(ids.shape[0], dtype=torch.bool)              # (B,)
        log_conf = confidence.clamp_min(1e-9).log()                     # the same floor as a Fill's score
        shorts = list(range(len(self.spans) - 1))
        total = {r: float(log_conf[r, a:b][~masked[r, a:b]].sum()) for r, (a, b) in zip(shorts, self.spans)}
        done = [r for r, (a, b) in zip(shorts, self.spans) if not bool(masked[r, a:b].any())]
        if self.end_logp is None:
            if not done:
                return stop
            lead = max(done, key=total.get)                             # first of equals, as rank sorts
            open_ = [r for r in shorts if r not in done]
            contenders = [r for r in open_ if total[r] >= total[lead]]
            for r in open_:
                stop[r] = total[r] < total[lead]                        # it can no longer win
        else:
            if self.ends is not None or len(done) < len(shorts):
                return stop
            self.ends = self.end_logp(ids, shorts)
            self.passes += 1
            lead, contenders = max(shorts, key=lambda r: total[r] + self.ends[r]), []
        a, b = self.spans[lead]
        if not contenders and total[lead] / (b - a) >= self.log_bar:
            stop[len(self.spans) - 1] = True                            # the short fill has won
        return stop


def rank(shorts: list, ends: list[float] | None, marginal, bar: float) -> list:
    """Fills best first: the short fill with the best claim if it clears ``bar``, else the marginal one;
    the others follow by total log-probability.

    ``shorts`` are Fills of the short rows (None for rows the race stopped), ``ends`` their log P(end)
    from the end check (None without it), ``marginal`` the marginal row's Fill (None when it was retired).
    A claim is ``Fill.total`` (the model's P(tokens) for that length) plus log P(end).
    """
    ends = ends or [0.0] * len(shorts)
    order = sorted((i for i, f in enumerate(shorts) if f is not None), key=lambda i: shorts[i].total + ends[i],
                   reverse=True)
    shorts = [shorts[i] for i in order]
    rest = [marginal] if marginal is not None else []
    if shorts and shorts[0].score >= _log_bar(bar):
        pick, rest = shorts[0], rest + shorts[1:]
    elif rest:
        pick, rest = rest[0], shorts
    else:
        return shorts
    return [pick, *sorted(rest, key=lambda f: f.total, reverse=True)]
