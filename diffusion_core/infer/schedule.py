"""Noise schedules for masked diffusion.

A schedule maps diffusion time ``t`` in [0, 1] to the fraction of tokens that
are masked at that time (``mask_ratio``): 0 at t=0 (clean text), 1 at t=1 (all
masks).  Training draws ``t`` per sequence and weights the loss on masked
tokens by ``loss_weight(t)`` (the continuous-time ELBO weight, MDLM eq. 10:
``-alpha'(t) / (1 - alpha(t))`` with ``alpha = 1 - mask_ratio``).  Sampling
walks ``t`` from 1 down to 0 and uses ``masked_after_step`` to decide how many
positions may still be masked after each step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("linear", "cosine", "log-linear")


@dataclass(frozen=True)
class NoiseSchedule:
    name: str = "linear"
    eps: float = 1e-3  # keeps log-linear finite at t=1 and weights finite at t=0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {self.name!r}; choose one of {', '.join(SCHEDULES)}")

    def mask_ratio(self, t: float) -> float:
        t = min(max(t, 0.0), 1.0)
        if self.name == "linear":
            return t
        if self.name == "cosine":
            return 1.0 - math.cos(math.pi * t / 2)
        # log-linear (MDLM): sigma(t) = -log(1 - (1-eps) t), ratio = 1 - exp(-sigma)
        return (1.0 - self.eps) * t

    def loss_weight(self, t: float) -> float:
        """Weight of a masked token's cross-entropy at time t (larger when few are masked)."""
        t = max(t, self.eps)
        if self.name == "cosine":
            d_ratio = (math.pi / 2) * math.sin(math.pi * t / 2)
            return d_ratio / max(self.mask_ratio(t), self.eps)
        return 1.0 / t  # linear and log-linear share the 1/t weight

    def masked_after_step(self, n_masked: int, step: int, steps: int) -> int:
        """How many of ``n_masked`` initial masks may remain after ``step`` of ``steps`` (1-based).

        Always strictly fewer than before the step (so sampling terminates) and 0 after the last.
        """
        if step >= steps or n_masked == 0:
            return 0
        t = 1.0 - step / steps
        remaining = round(n_masked * self.mask_ratio(t) / self.mask_ratio(1.0))
        previous = n_masked if step == 1 else self.masked_after_step(n_masked, step - 1, steps)
        return max(0, min(remaining, previous - 1))


SUBSTITUTIONS = ("none", "mid", "constant")


@dataclass(frozen=True)
class SubstitutionSchedule:
    """The forward process's second kind of noise: visible tokens replaced by wrong ones.

    ``share(t)`` is the probability that a token the mask left visible at time ``t`` is replaced
    by a token taken from elsewhere in the same text.  ``mid`` peaks at ``rate`` half-way and
    vanishes at both ends (clean text at t=0, all masks at t=1), as in interpolating mask+uniform
    diffusion; ``constant`` is BERT's fixed share of random replacements; ``none`` is masking only.
    Written ``name:rate`` on the command line (``mid:0.2``).
    """
    name: str = "none"
    rate: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SUBSTITUTIONS:
            raise ValueError(f"unknown substitution schedule {self.name!r}; choose one of {', '.join(SUBSTITUTIONS)}")
        if not 0.0 <= self.rate <= 0.5:  # as many kept tokens as replaced ones are asked about: 2 * rate <= 1
            raise ValueError(f"substitution rate must be in [0, 0.5], not {self.rate}")
        if (self.name == "none") != (self.rate == 0.0):
            raise ValueError("a substitution schedule other than 'none' needs a rate above 0 (e.g. mid:0.2)")

    @classmethod
    def parse(cls, text: str) -> "SubstitutionSchedule":
        name, _, rate = text.partition(":")
        try:
            return cls(name, float(rate) if rate else 0.0)
        except ValueError as exc:
            raise ValueError(f"--substitute {text!r}: {exc}") from None

    def share(self, t: float) -> float:
        t = min(max(t, 0.0), 1.0)
        if self.name == "mid":
            return self.rate * 4.0 * t * (1.0 - t)
        return self.rate  # constant; 0 for none

    def __str__(self) -> str:
        return "none" if self.name == "none" else f"{self.name}:{self.rate:g}"
