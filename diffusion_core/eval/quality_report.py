"""Run ``diffill eval`` for every strategy with oracle and unknown length; write JSON and a Markdown table.

Usage: python -m diffusion_core.eval.quality_report DATA.jsonl OUT_PREFIX [--model M] [--limit N]
    [--threads T] [--strategies S ...] [--only RUN ...] [--old REPORT.json]
Writes OUT_PREFIX.json (all figures) and OUT_PREFIX.md (tables per kind, exact match and similarity).
``autoregressive`` (models on a pretrained base) is the base as it was pretrained; ``--old`` names an
earlier report of another model on the same data, for the new-default bar (issue 13).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

from diffusion_core.infer.engine import EngineSettings, InfillEngine
from diffusion_core.eval.evaluate import per_kind, read_items, run_eval, score_one
from diffusion_core.model.loading import load_model

STRATEGIES = ("diffusion", "one-shot", "left-to-right", "autoregressive")


def base_bar(results: dict, kinds: list[str], old: dict | None) -> list[str]:
    """Issue 13's bar for a model on a pretrained base (exact match, length unknown, per kind)."""
    lines = ["**quality bar for a new default** (exact match %, length unknown)", ""]
    ours = results.get("diffusion/unknown")
    if ours is None:
        return lines + ["- not measured: needs diffusion/unknown", ""]
    per_kind = [k for k in kinds if k != "overall"]
    if old is not None:
        theirs = old["results"]["diffusion/unknown"]
        lost = [k for k in per_kind if not ours[k]["exact"] > theirs[k]["exact"]]
        ratio = ours["overall"]["exact"] / max(1e-9, theirs["overall"]["exact"])
        lines.append(f"- beats the old model ({Path(old['meta']['model']).name}) on every kind: "
                     + ("met" if not lost else "not on " + ", ".join(lost))
                     + f"; overall {ours['overall']['exact']} vs {theirs['overall']['exact']} = {ratio:.2f}x "
                       f"({'met' if ratio >= 2 else 'not met'}, needs 2x)")
    if "autoregressive/unknown" in results:
        ar = results["autoregressive/unknown"]
        lost = [k for k in per_kind if not ours[k]["exact"] > ar[k]["exact"]]
        lines.append("- beats autoregressive (the base as pretrained) on every kind: "
                     + ("met" if not lost else "not on " + ", ".join(lost)))
    if "left-to-right/unknown" in results:
        l2r, ppt = results["left-to-right/unknown"]["overall"]["exact"], ours["overall"]["passes_per_token"]
        ok = ours["overall"]["exact"] >= l2r - 1 and ppt <= 0.6
        lines.append(f"- diffusion {ours['overall']['exact']} vs left-to-right {l2r} (needs >= {l2r - 1:.2f}) at "
                     f"{ppt} passes per token (needs <= 0.6): {'met' if ok else 'not met'}")
    if "diffusion/oracle" in results:
        o = results["diffusion/oracle"]["overall"]["exact"]
        ratio = ours["overall"]["exact"] / o if o else float("nan")
        lines.append(f"- unknown-length exact match {ours['overall']['exact']} vs oracle {o}: {ratio:.0%} "
                     f"({'met' if ratio >= 0.8 else 'not met'}, needs 80 %)")
    return lines + [""]


def quality_bar(results: dict, kinds: list[str]) -> list[str]:
    """The issue's bar, checked: diffusion beats both baselines on every kind (unknown length),
    and unknown-length exact match is within 80 % of the oracle-length one."""
    lines = ["**quality bar** (unknown length; a kind where all three tie is not a win)", ""]
    if not all(f"{b}/unknown" in results for b in ("diffusion", "one-shot", "left-to-right")):
        return []
    for metric in ("exact", "char_sim"):
        lost = [k for k in kinds if k != "overall" and not all(
            results["diffusion/unknown"][k][metric] > results[f"{b}/unknown"][k][metric]
            for b in ("one-shot", "left-to-right"))]
        lines.append(f"- diffusion beats one-shot and left-to-right on {metric}: "
                     + ("every kind" if not lost else "not on " + ", ".join(lost)))
    if "diffusion/oracle" not in results:
        return lines + [""]
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
    for base, length in [(b, n) for n in ("unknown", "oracle") for b in ("one-shot", "left-to-right", "autoregressive")]:
        if f"{base}/{length}" not in samples or f"diffusion/{length}" not in samples:
            continue
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
    ap.add_argument("--precision", default="auto", help="auto | int8 | bf16 | fp32")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--old", help="an earlier report (JSON) of the model a new default must beat")
    ap.add_argument("--only", nargs="+", metavar="RUN", help="only these runs (e.g. diffusion/oracle)")
    ap.add_argument("--resume", metavar="PARTIAL.json",
                    help="keep the runs already in this (partial) report and add the missing ones")
    args = ap.parse_args(argv)
    items = per_kind(read_items(args.data), args.limit)  # the same number of items of every kind
    engine = InfillEngine(load_model(args.model, threads=args.threads, precision=args.precision))
    baseline = None
    if "autoregressive" in args.strategies:
        from diffusion_core.eval.autoregressive import load_baseline
        baseline = load_baseline(args.model, threads=args.threads, precision=args.precision)
    results, samples = {}, {}
    if args.resume:
        done = json.loads(Path(args.resume).read_text())
        results, samples = done["results"], done["predictions"]
    runs = [(f"{strategy}/{'oracle' if oracle else 'unknown'}", strategy, oracle)
            for oracle in (False, True) for strategy in args.strategies]  # unknown first: the bar's metric
    runs = [r for r in runs if r[0] not in results and (not args.only or r[0] in args.only)]
    for name, strategy, oracle in runs:
        preds: list = []
        t0 = time.time()
        runner, settings = (baseline, EngineSettings()) if strategy == "autoregressive" else \
            (engine, EngineSettings(strategy=strategy))
        results[name] = run_eval(runner, items, settings, oracle, progress=False, predictions=preds)
        samples[name] = preds
        print(f"{name}: {results[name]['overall']} ({time.time() - t0:.0f}s)", file=sys.stderr)
        Path(args.out + ".partial.json").write_text(json.dumps({"results": results, "predictions": samples},
                                                               ensure_ascii=False))  # survives an interruption
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
            f"{args.threads} threads", "model": str(engine.loaded.path), "items": len(items),
            "precision": engine.loaded.precision, "settings": repr(EngineSettings())}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "results": results, "predictions": samples},
                                                   indent=1, ensure_ascii=False))
    Path(args.out + ".partial.json").unlink(missing_ok=True)
    kinds = [k for k in results[next(iter(results))] if k != "overall"] + ["overall"]
    lines = [f"Model `{Path(meta['model']).name}` ({meta['precision']}), {meta['items']} gaps, {meta['date']}, "
             f"{meta['machine']}.", ""]
    for metric, label in (("exact", "exact match %"), ("exact_ci", "exact match, any case %"),
                          ("char_sim", "character similarity %"),
                          ("length_ratio", "median fill length / answer length (characters)"),
                          ("passes", "passes per gap"), ("passes_per_token", "passes per filled token"),
                          ("latency_p50_ms", "latency p50 ms")):
        lines += [f"**{label}**", "", "| strategy / length | " + " | ".join(kinds) + " |",
                  "|---" * (len(kinds) + 1) + "|"]
        for name, rep in results.items():
            lines.append(f"| {name} | " + " | ".join(str(rep[k][metric]) for k in kinds) + " |")
        lines.append("")
    lines += ["**time per forward pass, ms** (mean latency / mean passes)", "",
              "| strategy / length | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for name, rep in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{rep[k]['latency_ms'] / max(1e-9, rep[k]['passes']):.0f}"
                                                 for k in kinds) + " |")
    lines.append("")
    lines += quality_bar(results, kinds)
    if baseline is not None or args.old:
        lines += base_bar(results, kinds, json.loads(Path(args.old).read_text()) if args.old else None)
    lines += paired(samples, kinds)
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
