"""Wall-clock timing and the two statistics every table reports: median and p95 (nearest rank)."""
from __future__ import annotations

import math
import statistics
import time


def now_ms() -> float:
    return 1000.0 * time.perf_counter()


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile: with 20 values it is the 19th smallest; with 2, the larger."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summary(ms: list[float]) -> dict:
    """{n, p50_ms, p95_ms, mean_ms, min_ms} of a list of milliseconds (empty list: n only)."""
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(p95(ms), 2),
            "mean_ms": round(statistics.fmean(ms), 2), "min_ms": round(min(ms), 2)}
