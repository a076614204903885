#!/usr/bin/env python3
"""Calibrate a model's length-bias correction ``beta`` on held-out gaps and store it in its config.json.

The unknown-length probe scores each candidate length by mean top-1 log-probability + beta * log(length).
This tries several beta values on calibration gaps (never the evaluation set) and keeps the one whose
chosen lengths give the best exact match, then writes ``diffill_length_beta`` into the model's config.

Usage: calibrate_length.py MODEL_DIR CALIB.jsonl [--limit N] [--betas 0 0.25 0.5 ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffusion_core.engine import EngineSettings, InfillEngine
from diffusion_core.evaluate import read_items, run_eval
from diffusion_core.loading import load_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data")
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.15, 0.3, 0.5, 0.75, 1.0])
    args = ap.parse_args(argv)
    items = read_items(args.data, args.limit)
    engine = InfillEngine(load_model(args.model, threads=2, precision="int8"))
    scores = {}
    for beta in args.betas:
        engine.beta = beta
        # beta matters only to the probe (bridge, and --length-mode probe); slots mode needs no length score
        rep = run_eval(engine, items, EngineSettings(length_mode="probe"), oracle_length=False,
                       progress=False)["overall"]
        scores[beta] = (rep["exact"], rep["char_sim"])
        print(f"beta {beta}: exact {rep['exact']} char_sim {rep['char_sim']}", file=sys.stderr)
    best = max(scores, key=lambda b: scores[b])
    cfg_path = args.model / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["diffill_length_beta"] = best
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    print(json.dumps({"beta": best, "scores": {str(k): v for k, v in scores.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
