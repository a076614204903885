"""How the null token behaves in a gap while it is denoised.

Training pads every infill span with trailing null tokens (span first, then
nulls), so the engine keeps fills in that shape.  ``NullRules`` wraps the
model's forward (to ban or force the null token per slot) and supplies the
sampler's ``settle`` hook (slots whose value is already decided are filled
without a pass).  Modes:

* ``exact``: the length is given; null is banned everywhere.
* ``open``: nulls are decided slot by slot as denoising goes: the first slot
  is never null, no slot before a committed real token is null, every slot
  after a committed null is null.
* ``marginal``: the first pass decides each gap's length L from the null
  probabilities (``lengths.median_length``); slots from L on are then null
  at once and null is banned before L.  The same pass also commits the first
  tokens, so knowing the length costs no extra pass.

The mode may differ per row (a list, one per row): the engine's ``hybrid``
length mode denoises fixed-length rows next to a marginal row in one batch.
"""
from __future__ import annotations

import torch

from .lengths import median_length

MODES = ("exact", "open", "marginal")


class NullRules:
    def __init__(self, forward, gaps: list[list[tuple[int, int]]], null_id: int, mask_id: int,
                 mode: str | list[str], threshold: float = 0.5):
        modes = [mode] * len(gaps) if isinstance(mode, str) else list(mode)
        if len(modes) != len(gaps) or any(m not in MODES for m in modes):
            raise ValueError(f"null mode(s) {mode!r}: want one of {', '.join(MODES)} (or one per row)")
        self._forward, self.gaps, self.null, self.mask = forward, gaps, null_id, mask_id
        self.modes, self.threshold = modes, threshold
        self.lengths: list[list[int] | None] | None = None  # marginal rows: per gap, once decided

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        logits = self._forward(ids, positions)                          # (N, V)
        if self.lengths is None and "marginal" in self.modes:
            self._decide(logits, positions)
        ban, force, quiet = self._masks(ids)                            # (B, T) each
        logits[ban[positions], self.null] = float("-inf")
        forced = force[positions]
        logits[forced] = float("-inf")
        logits[forced, self.null] = 0.0
        # Slots past a decided length are settled right after this pass; a near-uniform row keeps them
        # from taking the commit budget of the real slots (their argmax is still null).
        q = quiet[positions]
        logits[q] = 0.0
        logits[q, self.null] = 1e-3
        return logits

    def settle(self, ids: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Fill the masked slots whose value is decided (null); returns the (B, T) mask filled."""
        filled = torch.zeros_like(masked)
        for row, gaps in enumerate(self.gaps):
            for g, (a, b) in enumerate(gaps):
                end = self._end(ids, row, g, a, b)
                if end is not None:
                    filled[row, end:b] = masked[row, end:b]
        ids[filled] = self.null
        return filled

    # -- internals --------------------------------------------------------------
    def _decide(self, logits: torch.Tensor, positions: torch.Tensor) -> None:
        p_null = torch.zeros(positions.shape)                           # (B, T)
        p_null[positions] = logits.float().softmax(-1)[:, self.null]
        self.lengths = [[median_length(p_null[row, a:b].tolist(), self.threshold) for a, b in gaps]
                        if self.modes[row] == "marginal" else None for row, gaps in enumerate(self.gaps)]

    def _end(self, ids, row, g, a, b) -> int | None:
        """First slot known to be null in gap g of ``row`` (absolute index), or None."""
        if self.modes[row] == "marginal":
            return a + self.lengths[row][g] if self.lengths is not None else None
        if self.modes[row] == "open":
            nulls = (ids[row, a:b] == self.null).nonzero()
            return a + int(nulls[0]) if len(nulls) else None
        return None

    def _masks(self, ids: torch.Tensor):
        ban = torch.zeros(ids.shape, dtype=torch.bool)
        force = torch.zeros(ids.shape, dtype=torch.bool)
        quiet = torch.zeros(ids.shape, dtype=torch.bool)
        for row, gaps in enumerate(self.gaps):
            for g, (a, b) in enumerate(gaps):
                if self.modes[row] == "exact":
                    ban[row, a:b] = True
                elif self.modes[row] == "marginal":
                    end = a + self.lengths[row][g]
                    ban[row, a:end] = True
                    quiet[row, end:b] = True
                else:
                    slot = ids[row, a:b]
                    real = ((slot != self.null) & (slot != self.mask)).nonzero()
                    ban[row, a:a + 1 + (int(real[-1]) if len(real) else 0)] = True
                    end = self._end(ids, row, g, a, b)
                    if end is not None:
                        force[row, end:b] = True
        return ban, force, quiet
