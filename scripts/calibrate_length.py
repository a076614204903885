#!/usr/bin/env python3
"""Calibrate a model's length choices on held-out gaps and store them in its config.json.

Three numbers: the probe's length-bias correction ``beta`` (swept in probe mode), and, together on a
grid in the default hybrid mode, the null threshold (which sets the length of the hybrid's marginal row,
and of the marginal mode) and the short-fill confidence bar.

Each is swept on calibration gaps (data/eval/calib.jsonl: cut from documents the evaluation set does
not use, see make_eval_set.py --exclude) and the value with the best exact match wins, ties broken by
character similarity.  The results go into the model's config.json as ``diffill_length_beta``,
``diffill_null_threshold`` and ``diffill_short_confidence``.

Usage: calibrate_length.py MODEL_DIR CALIB.jsonl [--limit N_PER_KIND] [--betas ...] [--null-thresholds ...]
                           [--short-confidences ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffusion_core.engine import EngineSettings, InfillEngine
from diffusion_core.evaluate import per_kind, read_items, run_eval
from diffusion_core.model.loading import load_model


def _sweep(engine, items, name, values, setter, settings):
    """Evaluate each value; returns (best value by exact match then similarity, {value: (exact, sim)})."""
    scores = {}
    for v in values:
        setter(v)
        rep = run_eval(engine, items, settings, oracle_length=False, progress=False)["overall"]
        scores[v] = (rep["exact"], rep["char_sim"])
        print(f"{name} {v}: exact {rep['exact']} char_sim {rep['char_sim']}", file=sys.stderr)
    return max(scores, key=lambda v: scores[v]), scores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data")
    ap.add_argument("--limit", type=int, default=None, help="items per kind (default: all)")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.15, 0.3, 0.5, 1.0])
    ap.add_argument("--null-thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    ap.add_argument("--short-confidences", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2])
    args = ap.parse_args(argv)
    items = per_kind(read_items(args.data), args.limit)
    engine = InfillEngine(load_model(args.model, threads=2, precision="int8"))
    # beta scores candidate lengths in the probe (bridge, --length-mode probe); the null threshold and
    # the short-fill bar act together in the default hybrid mode, so they are swept as pairs.
    beta, beta_scores = _sweep(engine, items, "beta", args.betas, lambda v: setattr(engine, "beta", v),
                               EngineSettings(length_mode="probe"))
    pairs = [(n, c) for n in args.null_thresholds for c in args.short_confidences]

    def set_pair(pair):
        engine.null_threshold, engine.short_confidence = pair
    (null_t, short_c), pair_scores = _sweep(engine, items, "null threshold, short confidence", pairs, set_pair,
                                            EngineSettings(length_mode="hybrid"))
    cfg_path = args.model / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["diffill_length_beta"] = beta
    cfg["diffill_null_threshold"] = null_t
    cfg["diffill_short_confidence"] = short_c
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    print(json.dumps({"beta": beta, "null_threshold": null_t, "short_confidence": short_c, "beta_scores": {str(k): v for k, v in beta_scores.items()},
                      "pair_scores": {str(k): v for k, v in pair_scores.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
