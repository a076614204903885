"""In-process engine benchmarks: latency per job, and quality against forward passes.

Every job is timed with each strategy (diffusion and the two baselines) on the
same engine, in the same process, over the same fixed inputs: repetition ``r``
uses input ``r % len(inputs)``, after one untimed warm-up call.
"""
from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

from diffusion_core.engine import EngineSettings, Fill, InfillEngine
from diffusion_core.evaluate import score_one

from . import inputs as inp
from .floor import PassRecorder, floor_ms
from .timing import now_ms, summary

MULTI_LINE_TOKENS = 64  # longest multi-line gap probed (the engine's default stops at 32)


@dataclass
class Job:
    name: str
    about: str
    inputs: list[dict]
    call: Callable[[InfillEngine, dict, EngineSettings], Fill]
    server_case: bool = False  # also timed through the language server (lsp_roundtrip.py)


def _fill(engine, x, s):
    return engine.fill(x["prefix"], x["suffix"], settings=s)[0]


def _fill_given_length(engine, x, s):
    return engine.fill(x["prefix"], x["suffix"], length=x["length"], settings=s)[0]


def _fill_long(engine, x, s):
    wide = replace(s, max_tokens=max(s.max_tokens, MULTI_LINE_TOKENS), null_slots=MULTI_LINE_TOKENS,
                   length_candidates=tuple(sorted(set(s.length_candidates) | {48, MULTI_LINE_TOKENS})))
    return engine.fill(x["prefix"], x["suffix"], settings=wide)[0]


def _fill_gaps(engine, x, s):
    return engine.fill_gaps(x["pieces"], settings=s)[0]


def _rewrite(engine, x, s):
    return engine.rewrite(x["prefix"], x["passage"], x["suffix"], settings=s)


def make_jobs(items: list[dict], tokenizer, n: int) -> list[Job]:
    """The benchmark's jobs, each over ``n`` fixed inputs from the dev set."""
    prose = inp.first(inp.of_kind(items, "prose-short"), inp.single_gap, n)
    given = [dict(x, id=x["id"] + "/oracle",
                  length=max(1, len(tokenizer(x["answers"][0], add_special_tokens=False).input_ids)))
             for x in prose]
    code = inp.of_kind(items, "code-tail")
    return [
        Job("short prose gap", "prose-short, unknown length", prose, _fill, server_case=True),
        Job("short prose gap, given length", "same gaps, oracle token count", given, _fill_given_length),
        Job("code-line gap", "code-tail, unknown length", inp.first(code, inp.single_gap, n), _fill,
            server_case=True),
        Job("multi-line gap", "2-3 whole code lines cut out, unknown length (up to 64 tokens)",
            inp.first(code + inp.of_kind(items, "code-ident"), inp.multi_line_gap, n), _fill_long),
        Job("3 gaps jointly", "prose-short gap + two 2-word gaps after it, fill_gaps",
            inp.first(inp.of_kind(items, "prose-short"), inp.three_gaps, n), _fill_gaps),
        Job("rewrite ~40 words", "rewrite(strength=0.3) of a 40-word prose-long selection",
            inp.first(inp.of_kind(items, "prose-long"), inp.rewrite_selection, n), _rewrite),
    ]


def exact(fill: Fill, answers: list[str] | None) -> float | None:
    """1.0 when every gap's text matches its answer (trimmed), 0.0 otherwise, None when unscored."""
    if answers is None:
        return None
    texts = fill.texts or [fill.text]
    return float(len(texts) == len(answers) and all(score_one(t, a)["exact"] for t, a in zip(texts, answers)))


def time_job(engine: InfillEngine, job: Job, settings: EngineSettings, reps: int, gflops: float,
             shape: dict) -> dict:
    """Latency, passes, exact match and compute floor of ``job`` under ``settings``."""
    recorder = PassRecorder(engine.runner)
    job.call(engine, job.inputs[0], settings)  # warm-up, untimed
    rows = []
    engine.runner = recorder
    try:
        for r in range(reps):
            x = job.inputs[r % len(job.inputs)]
            recorder.take()
            t0 = now_ms()
            fill = job.call(engine, x, settings)
            ms = now_ms() - t0
            rows.append({"input": x["id"], "ms": round(ms, 3), "passes": fill.passes, "tokens": fill.tokens,
                         "exact": exact(fill, x["answers"]), "text": fill.text,
                         "floor_ms": round(floor_ms(shape, recorder.take(), gflops), 4)})
    finally:
        engine.runner = recorder.runner
    scored = {row["input"]: row["exact"] for row in rows if row["exact"] is not None}
    return {"job": job.name, "strategy": settings.strategy, **summary([row["ms"] for row in rows]),
            "passes": round(statistics.fmean(row["passes"] for row in rows), 2),
            "tokens": round(statistics.fmean(row["tokens"] for row in rows), 2),
            "passes_per_token": round(sum(row["passes"] for row in rows) /
                                      max(1, sum(max(1, row["tokens"]) for row in rows)), 3),
            "exact": round(100 * statistics.fmean(scored.values()), 1) if scored else None,
            "x_floor_p50": _x_floor(rows),
            "rows": rows}


def _x_floor(rows: list[dict]) -> float | None:
    ratios = [row["ms"] / row["floor_ms"] for row in rows if row["floor_ms"] > 0]
    return round(statistics.median(ratios), 2) if ratios else None


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
            # the same without the batched length-probe pass a probe-mode fill starts with (the hybrid and
            # marginal modes decide the length inside their denoising passes: nothing to leave out)
            "denoise_passes_per_token": round((passes - (len(rows) if settings.length_mode == "probe" else 0))
                                              / tokens, 3),
            **{k: v for k, v in summary([r["ms"] for r in rows]).items() if k != "n"}}


def sweep_settings(thresholds: list[float | None], tokens_per_step: list[float]) -> list[EngineSettings]:
    """The diffusion grid (every tokens-per-step x threshold), then the two baselines."""
    grid = [EngineSettings(tokens_per_step=k, threshold=t) for k in tokens_per_step for t in thresholds]
    return grid + [EngineSettings(strategy="left-to-right"), EngineSettings(strategy="one-shot")]


def label(s: EngineSettings) -> str:
    if s.strategy != "diffusion":
        return s.strategy
    return f"diffusion {s.tokens_per_step:g} tok/pass, threshold {'off' if s.threshold is None else s.threshold}"


def run_sweep(engine: InfillEngine, items: list[dict], settings: list[EngineSettings]) -> list[dict]:
    out = []
    for i, s in enumerate(settings, 1):
        print(f"  quality {i}/{len(settings)}: {label(s)}", file=sys.stderr, flush=True)
        out.append({"label": label(s), "strategy": s.strategy, "tokens_per_step": s.tokens_per_step,
                    "threshold": s.threshold, "default": s == EngineSettings(), **quality(engine, items, s)})
    return out
