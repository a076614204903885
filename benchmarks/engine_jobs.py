"""In-process engine benchmarks: latency per job, and quality against forward passes.

Every job is timed with diffusion and the baselines on the same engine, in the
same process, over the same fixed inputs: repetition ``r`` uses input
``r % len(inputs)``, after one untimed warm-up call.  A gap of unknown length is
grown (diffusion_core/infer/grow.py) and both baselines grow it one token per pass, so
one-shot runs only on the jobs whose lengths are given (see ``strategies``).
"""
from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

from diffusion_core.infer.engine import STRATEGIES, EngineSettings, Fill, InfillEngine
from diffusion_core.eval.evaluate import score_one

from . import inputs as inp
from .timing import now_ms, summary

MULTI_LINE_TOKENS = 64  # longest multi-line fill (the engine's default stops at 16)


@dataclass
class Job:
    name: str
    about: str
    inputs: list[dict]
    call: Callable[[InfillEngine, dict, EngineSettings], Fill]
    given: bool = False  # the lengths are given, so one-shot differs from left-to-right

    def strategies(self) -> tuple[str, ...]:
        return STRATEGIES if self.given else tuple(x for x in STRATEGIES if x != "one-shot")


def _fill(engine, x, s):
    return engine.fill(x["prefix"], x["suffix"], settings=s)[0]


def _fill_given_length(engine, x, s):
    return engine.fill(x["prefix"], x["suffix"], length=x["length"], settings=s)[0]


def _fill_long(engine, x, s):
    return engine.fill(x["prefix"], x["suffix"], settings=replace(s, max_tokens=MULTI_LINE_TOKENS))[0]


def _fill_gaps(engine, x, s):
    return engine.fill_gaps(x["pieces"], settings=s)[0]


def _rewrite(engine, x, s):
    return engine.rewrite(x["prefix"], x["passage"], x["suffix"], settings=s)


def make_jobs(items: list[dict], tokenizer, n: int) -> list[Job]:
    """The benchmark's jobs, each over ``n`` fixed inputs from the dev set."""
    prose = inp.first(inp.of_kind(items, "prose-short"), inp.single_gap, n)
    given = [dict(inp.with_length(x, tokenizer), id=x["id"] + "/oracle") for x in prose]
    code = inp.of_kind(items, "code-tail")
    return [
        Job("short prose gap", "prose-short, unknown length", prose, _fill),
        Job("short prose gap, given length", "same gaps, oracle token count", given, _fill_given_length, given=True),
        Job("code-line gap", "code-tail, unknown length", inp.first(code, inp.single_gap, n), _fill),
        Job("multi-line gap", "2-3 whole code lines cut out, unknown length (up to 64 tokens)",
            inp.first(code + inp.of_kind(items, "code-ident"), inp.multi_line_gap, n), _fill_long),
        Job("3 gaps jointly", "prose-short gap + two 2-word gaps after it, fill_gaps",
            inp.first(inp.of_kind(items, "prose-short"), inp.three_gaps, n), _fill_gaps),
        Job("rewrite ~40 words", "rewrite(strength=0.3) of a 40-word prose-long selection",
            inp.first(inp.of_kind(items, "prose-long"), inp.rewrite_selection, n), _rewrite, given=True),
    ]


def exact(fill: Fill, answers: list[str] | None) -> float | None:
    """1.0 when every gap's text matches its answer (trimmed), 0.0 otherwise, None when unscored."""
    if answers is None:
        return None
    texts = fill.texts or [fill.text]
    return float(len(texts) == len(answers) and all(score_one(t, a)["exact"] for t, a in zip(texts, answers)))


def time_job(engine: InfillEngine, job: Job, settings: EngineSettings, reps: int) -> dict:
    """Latency, passes and exact match of ``job`` under ``settings``."""
    job.call(engine, job.inputs[0], settings)  # warm-up, untimed
    rows = []
    for r in range(reps):
        x = job.inputs[r % len(job.inputs)]
        t0 = now_ms()
        fill = job.call(engine, x, settings)
        ms = now_ms() - t0
        rows.append({"input": x["id"], "ms": round(ms, 3), "passes": fill.passes, "tokens": fill.tokens,
                     "exact": exact(fill, x["answers"]), "text": fill.text})
    scored = {row["input"]: row["exact"] for row in rows if row["exact"] is not None}
    return {"job": job.name, "strategy": settings.strategy, **summary([row["ms"] for row in rows]),
            "passes": round(statistics.fmean(row["passes"] for row in rows), 2),
            "tokens": round(statistics.fmean(row["tokens"] for row in rows), 2),
            "passes_per_token": round(sum(row["passes"] for row in rows) /
                                      max(1, sum(max(1, row["tokens"]) for row in rows)), 3),
            "exact": round(100 * statistics.fmean(scored.values()), 1) if scored else None,
            "rows": rows}


def quality(engine: InfillEngine, items: list[dict], settings: EngineSettings) -> dict:
    """Exact match and passes per filled token over ``items`` (unknown length, as the editor asks)."""
    rows = []
    for it in items:
        t0 = now_ms()
        fill = engine.fill(it["prefix"], it["suffix"], settings=settings)[0]
        ms = now_ms() - t0
        rows.append({"id": it["id"], **score_one(fill.text, it["answer"]), "passes": fill.passes,
                     "tokens": max(1, fill.tokens), "ms": ms})
    passes, tokens = sum(r["passes"] for r in rows), sum(r["tokens"] for r in rows)
    return {"n": len(rows), "exact": round(100 * statistics.fmean(r["exact"] for r in rows), 2),
            "char_sim": round(100 * statistics.fmean(r["char_sim"] for r in rows), 2),
            "passes": round(passes / len(rows), 2), "passes_per_token": round(passes / tokens, 3),
            **{k: v for k, v in summary([r["ms"] for r in rows]).items() if k != "n"}}


def sweep_settings(thresholds: list[float]) -> list[EngineSettings]:
    """Left-to-right (one token per pass), then diffusion at each confidence threshold.  A grown fill commits
    one token per pass plus the slots after it at least ``threshold`` sure; tokens_per_step and steps only
    apply to given lengths, so they are not swept."""
    return [EngineSettings(strategy="left-to-right")] + [EngineSettings(threshold=t) for t in thresholds]


def label(s: EngineSettings) -> str:
    return s.strategy if s.strategy != "diffusion" else f"diffusion, threshold {s.threshold:g}"


def run_sweep(engine: InfillEngine, items: list[dict], settings: list[EngineSettings]) -> list[dict]:
    out = []
    for i, s in enumerate(settings, 1):
        print(f"  quality {i}/{len(settings)}: {label(s)}", file=sys.stderr, flush=True)
        out.append({"label": label(s), "strategy": s.strategy, "threshold": s.threshold,
                    "default": s == EngineSettings(), **quality(engine, items, s)})
    return out
