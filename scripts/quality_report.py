#!/usr/bin/env python3
"""Run ``diffill eval`` for every strategy with oracle and unknown length; write JSON and a Markdown table.

Usage: quality_report.py DATA.jsonl OUT_PREFIX [--model M] [--limit N] [--threads T]
Writes OUT_PREFIX.json (all figures) and OUT_PREFIX.md (tables per kind, exact match and similarity).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

from diffusion_core.engine import EngineSettings, InfillEngine
from diffusion_core.evaluate import per_kind, read_items, run_eval, score_one
from diffusion_core.model.loading import load_model

STRATEGIES = ("diffusion", "one-shot", "left-to-right")


def quality_bar(results: dict, kinds: list[str]) -> list[str]:
    """The issue's bar, checked: diffusion beats both baselines on every kind (unknown length),
    and unknown-length exact match is within 80 % of the oracle-length one."""
    lines = ["**quality bar** (unknown length; a kind where all three tie is not a win)", ""]
    for metric in ("exact", "char_sim"):
        lost = [k for k in kinds if k != "overall" and not all(
            results["diffusion/unknown"][k][metric] > results[f"{b}/unknown"][k][metric]
            for b in ("one-shot", "left-to-right"))]
        lines.append(f"- diffusion beats one-shot and left-to-right on {metric}: "
                     + ("every kind" if not lost else "not on " + ", ".join(lost)))
    oracle, unknown = results["diffusion/oracle"]["overall"]["exact"], results["diffusion/unknown"]["overall"]["exact"]
    ratio = unknown / oracle if oracle else float("nan")
    lines.append(f"- unknown-length exact match {unknown} vs oracle {oracle}: {ratio:.0%} of oracle "
                 f"({'met' if ratio >= 0.8 else 'not met'}, needs 80 %)")
    return lines + [""]


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: how likely a split at least this uneven is between two equal methods."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def paired(samples: dict, kinds: list[str]) -> list[str]:
    """Gap by gap, diffusion against each baseline (character similarity): the means hide how often
    the fills are identical, and whether a difference between them is more than chance."""
    lines = ["**diffusion against each baseline, gap by gap** (character similarity: diffusion better / worse / "
             "same; p = two-sided sign test)", "",
             "| baseline / length | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    def sims(name: str) -> list[float]:
        return [score_one(p["prediction"], p["answer"])["char_sim"] for p in samples[name]]
    for base, length in [(b, n) for n in ("unknown", "oracle") for b in ("one-shot", "left-to-right")]:
        ours, theirs = sims(f"diffusion/{length}"), sims(f"{base}/{length}")
        item_kinds = [p["kind"] for p in samples[f"diffusion/{length}"]]
        cells = []
        for kind in kinds:
            pairs = [(x, y) for x, y, k in zip(ours, theirs, item_kinds) if kind in ("overall", k)]
            wins = sum(x > y for x, y in pairs)
            losses = sum(x < y for x, y in pairs)
            cells.append(f"{wins} / {losses} / {len(pairs) - wins - losses} (p {sign_test(wins, losses):.2f})")
        lines.append(f"| {base} / {length} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--model")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="int8", help="int8 | bf16 | fp32")
    args = ap.parse_args(argv)
    items = per_kind(read_items(args.data), args.limit)  # the same number of items of every kind
    engine = InfillEngine(load_model(args.model, threads=args.threads, precision=args.precision))
    results, samples = {}, {}
    runs = [(f"{strategy}/{'oracle' if oracle else 'unknown'}", EngineSettings(strategy=strategy), oracle)
            for oracle in (True, False) for strategy in STRATEGIES]
    # the other ways of choosing an unknown length (the default is "hybrid")
    runs += [(f"diffusion/unknown ({mode})", EngineSettings(length_mode=mode), False)
             for mode in ("marginal", "slots", "probe")]
    for name, settings, oracle in runs:
        preds: list = []
        t0 = time.time()
        results[name] = run_eval(engine, items, settings, oracle, progress=False, predictions=preds)
        samples[name] = preds
        print(f"{name}: {results[name]['overall']} ({time.time() - t0:.0f}s)", file=sys.stderr)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
            f"{args.threads} threads", "model": str(engine.loaded.path), "items": len(items),
            "precision": engine.loaded.precision, "settings": repr(EngineSettings()),
            "length_beta": engine.beta, "null_threshold": engine.null_threshold,
            "short_confidence": engine.short_confidence}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "results": results, "predictions": samples},
                                                   indent=1, ensure_ascii=False))
    kinds = [k for k in results[next(iter(results))] if k != "overall"] + ["overall"]
    lines = [f"Model `{Path(meta['model']).name}` ({meta['precision']}), {meta['items']} gaps, {meta['date']}, "
             f"{meta['machine']}.", ""]
    for metric, label in (("exact", "exact match %"), ("exact_ci", "exact match, any case %"),
                          ("char_sim", "character similarity %"), ("passes_per_token", "passes per filled token"),
                          ("latency_p50_ms", "latency p50 ms")):
        lines += [f"**{label}**", "", "| strategy / length | " + " | ".join(kinds) + " |",
                  "|---" * (len(kinds) + 1) + "|"]
        for name, rep in results.items():
            lines.append(f"| {name} | " + " | ".join(str(rep[k][metric]) for k in kinds) + " |")
        lines.append("")
    lines += quality_bar(results, kinds)
    lines += paired(samples, kinds)
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
