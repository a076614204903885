"""Reuse the keys and values of the text around a gap across denoising passes (Llama denoiser, full attention).

Between two passes of a fill only the gap changes: a token committed, the slots moved on.  The prefix
and suffix are the same tokens; under full attention their keys and values still change a little,
because they read the gap, but the change is small (Fast-dLLM's "dual cache" rests on that).  So a
pass need only run the part that changed (the gap, and the token before its first slot, whose state
predicts that slot) and read the prefix's and suffix's keys/values as the last full pass left them;
every ``refresh`` passes a full pass renews them.

The suffix moves right as a fill grows.  Rotary position encoding turns a key by an angle proportional
to its position, and turns compose, so turning a cached key by the shift is exactly the key at its
new position; only the staleness above is approximate.  ``refresh=1`` is exact: every pass is full.

Shapes are bucketed: oneDNN prepares (and keeps, about 1 MB each) kernels per tensor shape, and every
keystroke changes the canvas length, so a full pass runs the canvas padded to a multiple of ``ROWS``
tokens, a partial pass its rows padded to a multiple of ``GAP_ROWS`` and the context it reads to a
multiple of ``KEYS``; no row reads a padded key.  The engine's own passes (``padded``) pad the canvas
likewise.  A projection gives the same bits for a row whatever the rows
beside it; attention over padded (masked) keys differs from unpadded in the last bits.
"""
from __future__ import annotations

import torch

from diffusion_core.model.llama import NativeLlamaDenoiser, _rotate, rotary

ROWS = 16       # a full pass's rows (the canvas) are padded to a multiple of this (docs/experiments.md)
GAP_ROWS = 4    # a partial pass's rows (the gap, a few tokens) to a multiple of this
KEYS = 32       # and the context it reads to a multiple of this


def padded(n: int, step: int = ROWS) -> int:
    """``n`` rounded up to a multiple of ``step``: a pass's length bucket."""
    return -(-n // step) * step


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


class ContextCache:
    """A ``sampler.Forward`` over one row (1, T) that runs only the changed part of the canvas.

    ``ban``: token ids never predicted (their logits are -inf), as the engine's own forward does.
    """

    def __init__(self, model: NativeLlamaDenoiser, refresh: int, ban: torch.Tensor | None = None):
        if refresh < 1:
            raise ValueError("refresh must be at least 1 (1: every pass is full)")
        self.decoder, self.head, self.refresh, self.ban = model.denoiser, model.lm_head, refresh, ban
        self.ids: torch.Tensor | None = None    # (C,) the canvas of the last full pass
        self.keys = self.values = torch.empty(0)  # (L, kv, C, d): every layer's keys (rotated) / values of that pass
        self.since_full = 0
        self.full_passes = self.partial_passes = 0

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if ids.shape[0] != 1:
            raise ValueError("ContextCache runs one row at a time")
        row, wanted = ids[0], positions[0].nonzero()[:, 0]                     # (T,), (N,)
        T = len(row)
        span = self._span(row, wanted)
        if span is None:
            hidden = self._full(row)                                           # (T, H)
            rows = wanted - 1                                                  # the shift: i-1 predicts i
        else:
            start, end = span
            hidden = self._partial(row, start, end)                            # (end - start, H)
            rows = wanted - 1 - start
        logits = self.head(hidden[rows])                                       # (N, V)
        if self.ban is not None:
            logits = logits.index_fill(-1, self.ban[self.ban < logits.shape[-1]], float("-inf"))
        return logits

    def _span(self, row: torch.Tensor, wanted: torch.Tensor) -> tuple[int, int] | None:
        """The part [start, end) to run, or None for a full pass."""
        if self.ids is None or self.since_full >= self.refresh or not len(wanted) or int(wanted.min()) < 1:
            return None
        T, C = len(row), len(self.ids)
        same_front = _common_prefix(row, self.ids)
        same_back = _common_prefix(row.flip(0), self.ids.flip(0))
        start = min(same_front, int(wanted.min()) - 1)
        end = max(T - min(same_back, T - start, C - start), int(wanted.max()) + 1)
        if 2 * (end - start) > T:  # most of the canvas changed: a full pass costs little more
            return None
        return start, end

    def _run(self, ids: torch.Tensor, start: int, kv: list[dict], step: int, context: int = 0) -> torch.Tensor:
        """Hidden states (A, H) of ``ids`` (A,) at positions ``start``..., reading the first ``context`` keys of
        each layer's padded ``kv[i]["context_k"/"context_v"]``; the rows padded to a multiple of ``step``, the padding
        never read, each ``kv[i]["k"/"v"]`` left holding the rows' own keys/values, unpadded."""
        A, rows = len(ids), padded(len(ids), step)
        keys = kv[0]["context_k"].shape[2] if "context_k" in kv[0] else 0
        reads = torch.cat([torch.arange(keys) < context, torch.arange(rows) < A])   # (keys + rows,)
        row_ids = torch.cat([ids, ids.new_zeros(rows - A)])[None]                    # (1, rows)
        hidden = self.decoder.hidden_beside(row_ids, torch.arange(start, start + rows), kv, reads)[0]
        for layer in kv:
            layer["k"], layer["v"] = layer["k"][:, :, :A], layer["v"][:, :, :A]
        return hidden[:A]                                                            # (A, H)

    def _full(self, row: torch.Tensor) -> torch.Tensor:
        kv = [{} for _ in self.decoder.layers]
        hidden = self._run(row, 0, kv, ROWS)                                         # (T, H)
        # all layers in one tensor: a partial pass then builds every layer's context in a few ops, not 600
        self.keys = torch.cat([layer["k"] for layer in kv])                          # (L, kv, C, d)
        self.values = torch.cat([layer["v"] for layer in kv])
        self.ids, self.since_full = row.clone(), 1
        self.full_passes += 1
        return hidden

    def _partial(self, row: torch.Tensor, start: int, end: int) -> torch.Tensor:
        T, C = len(row), len(self.ids)
        back = T - end                                      # suffix tokens read from the cache
        shift = T - C                                       # how far the suffix moved
        keys, values = self.keys, self.values                                    # (L, kv, C, d)
        suffix_k = keys[:, :, C - back:]
        if shift:
            cos, sin = rotary(torch.tensor([shift]), self.decoder.shape.head_dim, self.decoder.shape.rope_theta)
            suffix_k = _rotate(suffix_k, cos.to(keys.dtype), sin.to(keys.dtype))
        L, heads, _, d = keys.shape
        pad = keys.new_zeros(L, heads, padded(start + back, KEYS) - start - back, d)
        context_k = torch.cat([keys[:, :, :start], suffix_k, pad], dim=2)           # (L, kv, keys, d)
        context_v = torch.cat([values[:, :, :start], values[:, :, C - back:], pad], dim=2)
        kv = [{"context_k": context_k[i:i + 1], "context_v": context_v[i:i + 1]} for i in range(L)]
        hidden = self._run(row[start:end], start, kv, GAP_ROWS, start + back)       # (A, H)
        self.since_full += 1
        self.partial_passes += 1
        return hidden
