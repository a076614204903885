"""Gaps of unknown length: fill in reading order and stop where the model says the gap ends.

This is the one unknown-length policy, for every model and every job (four others were measured and
retired: docs/experiments.md).

A masked slot right after a finished fill is where the model says what
comes next: the null token, or the text after the gap (its first token:
`.` after `The capital of France is Paris`).  So the probability that the
gap ends after L tokens is P(end) = P(null) + P(the suffix's first token)
at slot L+1, and a fill of length L has the claim

    log P(x_1..x_L, end) = sum_{i<=L} log p(x_i) + log P_{L+1}(end).

Measured on smollm2-diffill (300 dev gaps, the answer written into the
slots and masked slots after it): P(end) after the full answer beats P(end)
after the answer minus its last token for 94 % of gaps, with one masked
slot after it as with three or twelve; P(null) alone carries no signal.

The canvas always holds the fill so far and ``window`` masked slots before
the suffix: a short gap, as the model sees one, whatever the length turns
out to be (a 17-slot row makes it write as if the gap were long: `The quick
brown fox and the lazy dog.`).  Two slots measured best (300 dev gaps:
exact match 18.0, 19.33 and 18.0 % with one, two and three; one slot writes
as if every gap were about to end, three let identifiers run on).  Each pass reads those slots, takes P(end)
at the first one, commits its token (never the null) and also the slots
after it that the model is sure of (parallel decoding, as in Fast-dLLM);
the window then slides on.  Every length is scored on the passes the fill
needs anyway, except a length whose next slot was committed in the same
pass (its P(end) was read before the token it follows).  The fill stops
early: every token costs log-probability, so once the prefix's own total
plus ``LONGER_END`` falls below the best claim so far, no longer fill is
expected to win.  Exact would assume a longer fill's P(end) may reach 1;
assuming at most 0.5 saves passes for nothing measurable (300 dev gaps,
2026-12-07, bf16: 1 / 0.5 / 0.25 give exact match 19.67 % each,
similarity 45.89 / 45.88 / 45.73, passes a gap 5.30 / 4.88 / 4.50; 0.25
costs code line ends a point of similarity).  (A per-token
length bonus on the claims was calibrated and measured, 2026-12-04: on the
dev gaps it gained nothing and cost 46 % more passes, so there is none.  On 2026-12-07 five rules were
scored on the same grow rows, each tuned on the calibration split: length bonuses, an end threshold,
llama.cpp's infill rule, a per-token claim.  Every one that lengthens multi-word prose fills loses 3-5
points of exact match overall, because P(end) does not tell a short gap from a long one; the claim above
stays: docs/experiments.md, "Length decision rules".)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from diffusion_core.infer.sampler import Forward  # here over one row: (1, T) ids and positions

GROW_WINDOW = 2  # masked slots ahead of the fill (the docstring says why a short window; 2 measured best)
LONGER_END = math.log(0.5)  # log P(end) a longer fill is assumed to reach at most (the docstring says why)


@dataclass
class Grown:
    tokens: list[int]        # the tokens written, the best fill being a prefix of them
    logp: list[float]        # log p of each token as it was committed
    claims: dict[int, float]  # length -> log P(those tokens, then the end)
    passes: int

    def best(self, n: int = 1) -> list[int]:
        """The ``n`` best lengths, best first."""
        return sorted(self.claims, key=self.claims.get, reverse=True)[:n]


def grow(forward: Forward, before: torch.Tensor, after: torch.Tensor, mask_id: int, end_ids: list[int],
         never: list[int], max_tokens: int, window: int = 3, threshold: float | None = None,
         ban: Callable[[torch.Tensor, list[int]], torch.Tensor] | None = None,
         on_step: Callable[[int, int, torch.Tensor], None] | None = None, keep: int = 1,
         may_end: Callable[[list[int]], bool] | None = None,
         rows: Callable[[list[tuple[torch.Tensor, torch.Tensor]]], list[torch.Tensor]] | None = None,
         guesses: int = 0) -> Grown:
    """Fill the gap between ``before`` (T0,) and ``after`` (T1,) token ids, up to ``max_tokens`` tokens.

    ``end_ids`` are the tokens whose probability at the slot after a fill is P(end) (the null token,
    the suffix's first token); ``never`` the ones never written (the null token).  ``threshold``: also
    commit the slots right after the first one whose probability reaches it (each as the bans allow it
    after the tokens before it).  ``ban(logits, written)`` may mask logits (S, V) of the window's slots
    given the tokens already written (keeping a fill on its line, no word twice).  ``on_step(pass,
    max_tokens, ids)`` runs after each pass; raising there stops.
    ``keep``: how many lengths are wanted (the early stop waits until a longer fill cannot make the top
    ``keep``).  ``may_end(written)``: whether a fill may end after ``written`` (a job that wants whole
    sentences); lengths where it may not are claimed only if no length where it may is reached.
    ``rows(canvases)`` runs several one-row canvases ``(ids, positions)`` in one pass and returns the logits of
    those it ran, the first at least (``ContextCache.rows``).  With it, a pass also runs the canvas as it will
    be after each of the ``guesses`` likeliest tokens of the last pass's next slot, and after the token that
    follows the fill's last two tokens (or last one) where they occur in the text before or after the gap;
    when the pass commits one of them, the next pass has already run (self-speculative decoding with prompt
    lookup: the same fill in fewer passes).
    """
    tokens: list[int] = []
    logp: list[float] = []
    claims: dict[int, float] = {}
    unfinished: dict[int, float] = {}                                    # claims where may_end said no
    ends = torch.tensor(end_ids, dtype=torch.long)
    passes, ahead = 0, []                                                # ahead: the guesses for the next token
    context = before.tolist() + after.tolist()                            # where a guess may be copied from
    before_tail = context[:len(before)][-2:]                             # all _copied reads of the text so far

    def canvas(written: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        slots = min(window, max_tokens + 1 - len(written))               # the last slot only reads the end
        body = torch.tensor(written, dtype=before.dtype)
        ids = torch.cat([before, body, torch.full((slots,), mask_id, dtype=before.dtype), after])[None]  # (1, T)
        positions = torch.zeros_like(ids, dtype=torch.bool)
        positions[0, len(before) + len(written):len(before) + len(written) + slots] = True
        return ids, positions

    while True:
        ids, positions = canvas(tokens)
        canvases = [(ids, positions)] + [canvas(tokens + [g]) for g in ahead]
        ran = rows(canvases) if len(canvases) > 1 else [forward(ids, positions)]
        passes += 1
        after_token = dict(zip(ahead, ran[1:]))                           # a guessed token -> its canvas's logits
        logits, stop, ahead = ran[0].float(), False, []                   # (slots, V)
        while True:  # one step of the fill for the canvas run, and again for a guessed one that came true
            slots = len(logits)
            lp = logits.log_softmax(-1)                                   # (slots, V): the model's own odds
            if tokens:
                claim = sum(logp) + float(lp[0, ends].logsumexp(0))
                (claims if may_end is None or may_end(tokens) else unfinished)[len(tokens)] = claim
            if len(tokens) == max_tokens:
                stop = True
                break
            allowed = logits if ban is None else ban(logits, tokens)      # bans choose; they do not rescore
            allowed[:, never] = float("-inf")
            guess = allowed.argmax(-1)                                    # (slots,)
            conf = lp.gather(-1, guess[:, None]).squeeze(-1)              # (slots,)
            take = 1
            while threshold is not None and take < min(slots, max_tokens - len(tokens)) \
                    and float(conf[take].exp()) >= threshold and _allowed(ban, logits[take], tokens + guess[:take].tolist(),
                                                                          int(guess[take])):
                take += 1
            tokens += guess[:take].tolist()
            logp += conf[:take].tolist()
            # a longer fill's claim is at most the prefix's total and LONGER_END: once it cannot make the top
            # ``keep``, stop
            if len(claims) >= keep and sum(logp) + LONGER_END < sorted(claims.values())[-keep]:
                stop = True
                break
            if take == 1 and int(guess[0]) in after_token:
                logits = after_token.pop(int(guess[0])).float()
                after_token = {}                                          # the others guessed another token
                continue
            if rows is not None and take < slots and len(tokens) < max_tokens:
                ahead = allowed[take].topk(guesses).indices.tolist() if guesses else []
                # and the token that follows the fill's last tokens where they occur in the text (code repeats)
                copied = next((t for t in _copied(context, before_tail + tokens)
                               if bool(torch.isfinite(allowed[take, t]))), None)
                if copied is not None and copied not in ahead:
                    ahead.append(copied)
            break
        if on_step is not None:
            on_step(passes, max_tokens, ids)
        if stop:
            break
    return Grown(tokens, logp, claims or unfinished, passes)


def _copied(context: list[int], written: list[int], n: int = 2) -> Iterator[int]:
    """The tokens that follow the last ``n`` (else the last one) of ``written`` where they occur in ``context``,
    the last occurrence first (prompt lookup: identifiers and phrases repeat in a text)."""
    for k in range(min(n, len(written)), 0, -1):
        tail = written[-k:]
        found = [context[i + k] for i in range(len(context) - k - 1, -1, -1) if context[i:i + k] == tail]
        if found:
            yield from found
            return


def _allowed(ban, logits: torch.Tensor, written: list[int], token: int) -> bool:
    """Whether ``ban`` lets ``token`` follow ``written`` at a slot with ``logits`` (V,)."""
    return ban is None or bool(torch.isfinite(ban(logits[None].clone(), written)[0, token]))
