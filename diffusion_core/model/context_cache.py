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

import itertools

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
    """A ``sampler.Forward`` over one row (1, T) that runs only the changed part of the canvas; ``rows`` runs
    several such canvases (a fill and the canvases of its guessed next tokens: grow.py) in one partial pass.

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
        return self.rows([(ids, positions)])[0]

    def rows(self, canvases: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Logits (N_b, V) at the ``positions`` of each one-row canvas ``(ids (1, T_b), positions (1, T_b))``, all
        in one pass.  A pass that must be full (the first, a refresh, or most of the canvas changed) runs the
        first canvas alone and returns its logits only: the caller learns from the length what was run."""
        wanted = [positions[0].nonzero()[:, 0] for _, positions in canvases]   # (N_b,) each
        spans = [self._span(ids[0], w) for (ids, _), w in zip(canvases, wanted)]
        if None in spans:
            hidden = self._full(canvases[0][0][0])                             # (T, H)
            return [self._logits(hidden[wanted[0] - 1])]                       # the shift: i-1 predicts i
        hidden, at = self._partial([ids[0] for ids, _ in canvases], spans)    # (rows, H), each canvas's first row
        picked = [hidden[a + w - 1 - start] for a, w, (start, _) in zip(at, wanted, spans)]
        return list(self._logits(torch.cat(picked)).split([len(w) for w in wanted]))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden)                                             # (N, V)
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

    def _full(self, row: torch.Tensor) -> torch.Tensor:
        """Hidden states (T, H) of the whole canvas ``row`` (T,), its rows padded to a multiple of ``ROWS``; every
        layer's keys and values are kept for the partial passes after it."""
        T, rows = len(row), padded(len(row))
        kv = [{} for _ in self.decoder.layers]
        reads = (torch.arange(rows) < T)[None]                                       # (1, rows): padding unread
        ids = torch.cat([row, row.new_zeros(rows - T)])[None]                        # (1, rows)
        hidden = self.decoder.hidden_beside(ids, torch.arange(rows)[None], kv, reads)[0, :T]  # (T, H)
        # all layers in one tensor: a partial pass then builds every layer's context in a few ops, not 600
        self.keys = torch.cat([layer["k"][:, :, :T] for layer in kv])               # (L, kv, T, d)
        self.values = torch.cat([layer["v"][:, :, :T] for layer in kv])
        self.ids, self.since_full = row.clone(), 1
        self.full_passes += 1
        return hidden

    def _partial(self, canvases: list[torch.Tensor], spans: list[tuple[int, int]]) -> tuple[torch.Tensor, list[int]]:
        """Hidden states (rows, H) of each canvas's changed part ``[start, end)`` beside the cached context (the
        prefix before it, and the suffix after it turned to where it now stands), and the row each canvas's part
        starts at.  The parts run as one row of tokens, each reading only its own part and its own context (tree
        attention, as speculative decoders verify several drafts): a few more rows, but one pass."""
        keys, values = self.keys, self.values                                  # (L, kv, C, d)
        L, heads, C, d = keys.shape
        prefix = max(start for start, _ in spans)
        parts_k, parts_v, suffix_at, width = [keys[:, :, :prefix]], [values[:, :, :prefix]], {}, prefix
        suffixes = []                                                          # per canvas: (its copy's offset, keys)
        for row, (start, end) in zip(canvases, spans):
            back, shift = len(row) - end, len(row) - C                         # suffix keys kept; how far it moved
            if (back, shift) not in suffix_at:                                 # one turned copy per place it stands
                suffix_at[back, shift] = width
                suffix_k = keys[:, :, C - back:]
                if shift:
                    cos, sin = rotary(torch.tensor([shift]), d, self.decoder.shape.rope_theta)
                    suffix_k = _rotate(suffix_k, cos.to(keys.dtype), sin.to(keys.dtype))
                parts_k.append(suffix_k)
                parts_v.append(values[:, :, C - back:])
                width += back
            suffixes.append((suffix_at[back, shift], back))
        pad = keys.new_zeros(L, heads, padded(width, KEYS) - width, d)
        context_k, context_v = torch.cat(parts_k + [pad], dim=2), torch.cat(parts_v + [pad], dim=2)  # (L, kv, W, d)
        W = context_k.shape[2]
        sizes = [end - start for start, end in spans]
        rows = padded(sum(sizes), GAP_ROWS)
        ids = torch.cat([row[start:end] for row, (start, end) in zip(canvases, spans)])
        positions = torch.cat([torch.arange(start, end) for start, end in spans])
        reads = torch.zeros(rows, W + rows, dtype=torch.bool)                 # (query, key): context, then rows
        at = [0, *itertools.accumulate(sizes)][:-1]                            # each canvas's first row
        for (start, _), (suffix, back), a, A in zip(spans, suffixes, at, sizes):
            reads[a:a + A, :start] = True                                      # the prefix before its part
            reads[a:a + A, suffix:suffix + back] = True                        # its suffix
            reads[a:a + A, W + a:W + a + A] = True                             # its own part
        tail = torch.arange(sum(sizes), rows)
        reads[tail, W + tail] = True                                           # padding reads itself only
        ids = torch.cat([ids, ids.new_zeros(rows - len(ids))])[None]           # (1, rows)
        positions = torch.cat([positions, positions.new_zeros(rows - len(positions))])[None]
        kv = [{"context_k": context_k[i:i + 1], "context_v": context_v[i:i + 1]} for i in range(L)]
        hidden = self.decoder.hidden_beside(ids, positions, kv, reads[None])[0]  # (rows, H)
        self.since_full += 1
        self.partial_passes += 1
        return hidden, at
