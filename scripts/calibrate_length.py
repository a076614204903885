#!/usr/bin/env python3
"""Calibrate a model's length choices on held-out gaps and store them in its config.json.

Three numbers: the probe's length-bias correction ``beta`` (swept in probe mode), and, together on a
grid in the default hybrid mode, the null threshold (which sets the length of the hybrid's marginal row,
and of the marginal mode) and the short-fill confidence bar.

Each is swept on calibration gaps (data/eval/calib.jsonl: cut from documents the evaluation set does
not use, see make_eval_set.py --exclude) and the value with the best exact match wins, ties broken by
character similarity.  The results go into the model's config.json as ``diffill_length_beta``,
``diffill_null_threshold`` and ``diffill_short_confidence``.

The hybrid grid costs one run per null threshold, not one per pair: the hybrid's rows are independent,
so each gap's best short fill is computed once (a hybrid run with the bar at zero, where the short rows
always win and the race stops the marginal row early) and its marginal fill once per threshold (marginal
mode: the same row, the same sampler); the hybrid's choice for any bar is then ``hybrid.rank``'s rule, the
best short fill if its mean log-probability reaches log(bar), else the marginal fill.

Usage: calibrate_length.py MODEL_DIR CALIB.jsonl [--limit N_PER_KIND] [--betas ...] [--null-thresholds ...]
                           [--short-confidences ...] [--dry-run] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from diffusion_core.engine import EngineSettings, InfillEngine
from diffusion_core.evaluate import per_kind, read_items, run_eval, score_one
from diffusion_core.model.loading import load_model


def _figures(rows: list[dict]) -> tuple[float, float]:
    """(exact match %, character similarity %) over score_one rows."""
    return (round(100 * statistics.fmean(r["exact"] for r in rows), 2),
            round(100 * statistics.fmean(r["char_sim"] for r in rows), 2))


def sweep_beta(engine, items, betas) -> tuple[float, dict]:
    scores = {}
    for v in betas:
        engine.beta = v
        rep = run_eval(engine, items, EngineSettings(length_mode="probe"), oracle_length=False, progress=False)
        scores[v] = (rep["overall"]["exact"], rep["overall"]["char_sim"])
        print(f"beta {v}: exact {scores[v][0]} char_sim {scores[v][1]}", file=sys.stderr)
    return max(scores, key=lambda v: scores[v]), scores


def sweep_hybrid(engine, items, thresholds, bars) -> tuple[tuple[float, float], dict, dict]:
    """Best (null threshold, short bar) by exact match then similarity; the grid's figures overall and per kind."""
    base = EngineSettings(length_mode="hybrid")
    shorts, marginals = [], {t: [] for t in thresholds}
    for item in tqdm(items, file=sys.stderr, unit="gap", dynamic_ncols=True):
        pieces = [item["prefix"], item["suffix"]]
        shorts.append(engine.fill_gaps(pieces, settings=replace(base, short_confidence=0.0))[0])
        for t in thresholds:
            marginals[t].append(engine.fill_gaps(pieces, settings=replace(base, length_mode="marginal",
                                                                          null_threshold=t))[0])
    grid, by_kind = {}, {}
    for t in thresholds:
        for bar in bars:
            log_bar = math.log(max(bar, 1e-9))
            rows = [dict(score_one(s.text if s.score >= log_bar else m.text, it["answer"]), kind=it["kind"])
                    for it, s, m in zip(items, shorts, marginals[t])]
            grid[(t, bar)] = _figures(rows)
            by_kind[(t, bar)] = {k: _figures([r for r in rows if r["kind"] == k])[0]
                                 for k in dict.fromkeys(it["kind"] for it in items)}
            print(f"null threshold {t}, short bar {bar}: exact {grid[(t, bar)][0]} char_sim {grid[(t, bar)][1]} "
                  f"{by_kind[(t, bar)]}", file=sys.stderr)
    return max(grid, key=lambda k: grid[k]), grid, by_kind


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data")
    ap.add_argument("--limit", type=int, default=None, help="items per kind (default: all)")
    ap.add_argument("--betas", type=float, nargs="*", default=[0.0, 0.15, 0.3, 0.5, 1.0],
                    help="probe-mode betas to sweep (none: keep the model's)")
    ap.add_argument("--null-thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--short-confidences", type=float, nargs="+",
                    default=[0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0],
                    help="short-fill bars (1.0: a short fill wins only when certain)")
    ap.add_argument("--dry-run", action="store_true", help="print the figures, leave config.json alone")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (1 beside a training run on 2 cores: "
                    "two processes' thread pools on the same cores stall each other)")
    args = ap.parse_args(argv)
    items = per_kind(read_items(args.data), args.limit)
    engine = InfillEngine(load_model(args.model, threads=args.threads, precision="auto"))
    out: dict = {}
    if args.betas:
        beta, beta_scores = sweep_beta(engine, items, args.betas)
        out.update(beta=beta, beta_scores={str(k): v for k, v in beta_scores.items()})
    (null_t, short_c), grid, by_kind = sweep_hybrid(engine, items, args.null_thresholds, args.short_confidences)
    out.update(null_threshold=null_t, short_confidence=short_c,
               pair_scores={str(k): v for k, v in grid.items()}, pair_exact_by_kind={str(k): v for k, v in by_kind.items()})
    if not args.dry_run:
        cfg_path = args.model / "config.json"
        cfg = json.loads(cfg_path.read_text())
        if "beta" in out:
            cfg["diffill_length_beta"] = out["beta"]
        cfg["diffill_null_threshold"] = null_t
        cfg["diffill_short_confidence"] = short_c
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
