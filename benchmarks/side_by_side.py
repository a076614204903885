"""Two of issue 33's targets are differences, so both sides run in one process, input by input.

* 3 gaps against 1: ``fill_gaps`` (as ``diffill fill`` calls it) on a text with three gaps and on the same
  text with only the first of them (the other two written out); the target is the difference of the medians.
* ms per filled token: the default (diffusion, grown, length unknown) against the autoregressive baseline
  with the length given (the pretrained base writing left to right with its key/value cache, one token a
  pass: ``diffill eval --strategy autoregressive --oracle-length``) on the same dev gaps.

The two sides alternate which goes first from one input to the next, so a machine that drifts or is shared
slows both alike; one untimed call of each side warms the kernels first.
"""
from __future__ import annotations

import statistics

from diffusion_core.infer.engine import EngineSettings

from .engine_jobs import _fill, _fill_gaps, _fill_given_length, exact
from .timing import now_ms, summary


def _pair(first, second, i: int) -> tuple[tuple[float, object], tuple[float, object]]:
    """(ms, fill) of ``first()`` and of ``second()``, run in that order for even ``i``, swapped for odd."""
    def timed(call):
        t0 = now_ms()
        fill = call()
        return now_ms() - t0, fill
    if i % 2:
        b = timed(second)
        return timed(first), b
    a = timed(first)
    return a, timed(second)


def three_against_one(engine, inputs: list[dict], reps: int) -> dict:
    """Repetition ``r`` fills input ``r % n`` with its three gaps and with its first gap alone."""
    s = EngineSettings()
    three = lambda x: _fill_gaps(engine, x, s)  # noqa: E731
    one = lambda x: _fill_gaps(engine, {"pieces": x["one"]}, s)  # noqa: E731
    three(inputs[0])  # warm-up, untimed
    one(inputs[0])
    rows = []
    for r in range(reps):
        x = inputs[r % len(inputs)]
        (ms3, f3), (ms1, f1) = _pair(lambda: three(x), lambda: one(x), r)
        rows.append({"input": x["id"], "three_ms": round(ms3, 3), "one_ms": round(ms1, 3),
                     "three_passes": f3.passes, "one_passes": f1.passes})
    three_s, one_s = summary([r["three_ms"] for r in rows]), summary([r["one_ms"] for r in rows])
    return {"three": three_s, "one": one_s, "extra_s": round((three_s["p50_ms"] - one_s["p50_ms"]) / 1000, 3),
            "three_passes": round(statistics.fmean(r["three_passes"] for r in rows), 2),
            "one_passes": round(statistics.fmean(r["one_passes"] for r in rows), 2), "rows": rows}


def per_token(engine, baseline, inputs: list[dict]) -> dict:
    """Each input once per side (inputs carry the oracle ``length``, which only the baseline gets).
    ms per filled token = all ms / all filled tokens (an empty fill counts as one token)."""
    s = EngineSettings()
    ours = lambda x: _fill(engine, x, s)  # noqa: E731
    theirs = lambda x: _fill_given_length(baseline, x, s)  # noqa: E731
    ours(inputs[0])  # warm-up, untimed
    theirs(inputs[0])
    rows = []
    for i, x in enumerate(inputs):
        (ms_d, fd), (ms_a, fa) = _pair(lambda: ours(x), lambda: theirs(x), i)
        row = {"input": x["id"], "length": x["length"]}
        for k, ms, fill in (("default", ms_d, fd), ("autoregressive", ms_a, fa)):
            row |= {f"{k}_ms": round(ms, 3), f"{k}_tokens": max(1, fill.tokens), f"{k}_passes": fill.passes,
                    f"{k}_exact": exact(fill, x["answers"]), f"{k}_text": fill.text}
        rows.append(row)

    def side(k: str) -> dict:
        tokens = sum(r[f"{k}_tokens"] for r in rows)
        return {"ms_per_token": round(sum(r[f"{k}_ms"] for r in rows) / tokens, 2), "tokens": tokens,
                "passes_per_token": round(sum(r[f"{k}_passes"] for r in rows) / tokens, 3),
                "exact": round(100 * statistics.fmean(r[f"{k}_exact"] for r in rows), 1),
                **summary([r[f"{k}_ms"] for r in rows])}
    default, ar = side("default"), side("autoregressive")
    return {"n": len(rows), "default": default, "autoregressive": ar,
            "ratio": round(default["ms_per_token"] / ar["ms_per_token"], 3), "rows": rows}
