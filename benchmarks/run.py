"""Diffill benchmark: latency, passes, quality, server overhead, start-up and the compute floor.

    python benchmarks/run.py --model M --out benchmarks/results

writes results.json (every number, per-repetition rows included), results.md
(tables, each target marked MET / MISSED) and quality_vs_passes.png.  Without
--model it measures the shipped default model.  See benchmarks/README.md.
This is a measurement, not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path.pop(0)  # our module names (timing, report, ...) must not shadow anything else
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks import engine_jobs, floor, inputs, lsp_roundtrip, report  # noqa: E402
from benchmarks.timing import now_ms, summary  # noqa: E402
from diffusion_core.engine import STRATEGIES, EngineSettings, InfillEngine  # noqa: E402
from diffusion_core.model.loading import load_model  # noqa: E402

SECTIONS = ("jobs", "floor", "quality", "lsp")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model path or name (default: the shipped default model)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions per job and per server case")
    ap.add_argument("--threads", type=int, default=2, help="torch threads, in-process and in the server")
    ap.add_argument("--precision", default="auto", help="auto | int8 | bf16 | fp32, in-process and in the server")
    ap.add_argument("--quality-items", type=int, default=100, help="dev gaps in the quality sweep (kind-balanced)")
    ap.add_argument("--inputs-per-job", type=int, default=5, help="distinct fixed inputs each job cycles through")
    ap.add_argument("--startup-reps", type=int, default=5, help="server starts timed (process start -> ready)")
    ap.add_argument("--thresholds", default="none,0.5,0.7,0.9,0.95", help="confidence thresholds swept")
    ap.add_argument("--tokens-per-step", default="1,2,4,8", help="tokens committed per pass, swept")
    ap.add_argument("--data", default=str(inputs.DEV), help="eval gaps (JSON lines)")
    ap.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {','.join(SECTIONS)}")
    args = ap.parse_args(argv)
    args.skip = {s for s in args.skip.split(",") if s}
    if args.skip - set(SECTIONS):
        ap.error(f"unknown section(s) {sorted(args.skip - set(SECTIONS))}; choose from {', '.join(SECTIONS)}")
    args.threshold_list = [None if t.strip().lower() in ("none", "off") else float(t) for t in args.thresholds.split(",")]
    args.tps_list = [float(k) for k in args.tokens_per_step.split(",")]
    return args


def _sh(*cmd) -> str:
    try:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
               platform.processor() or "unknown CPU")
    import pygls
    import transformers
    commit = _sh("git", "rev-parse", "--short", "HEAD") or "unknown"
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "nproc": os.cpu_count(),
            "cpu": cpu, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "pygls": getattr(pygls, "__version__", "?"),
            "git": commit + (" (dirty tree)" if _sh("git", "status", "--porcelain") else ""),
            "loadavg_start": os.getloadavg()[0]}


def step(name: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)


def timed_loads(model: str | None, threads: int, precision: str):
    """load_model three times: the first call pays the imports, the others show the load itself."""
    loads = []
    for _ in range(3):
        t0 = now_ms()
        loaded = load_model(model, threads=threads, precision=precision)
        loads.append(now_ms() - t0)
    return loaded, {"first_ms": round(loads[0], 1), "again_p50_ms": round(statistics.median(loads[1:]), 1),
                    "all_ms": [round(x, 1) for x in loads]}


def typical_pass(engine: InfillEngine, job: engine_jobs.Job, shape: dict, gflops: float, reps: int) -> dict:
    """The first single-row (denoising) pass of ``job``'s first input, replayed and timed alone."""
    recorder = floor.PassRecorder(engine.runner, capture_rows=1)
    engine.runner = recorder
    try:
        # marginal mode: its passes after the first are single-row (hybrid batches short rows beside it)
        job.call(engine, job.inputs[0], EngineSettings(length_mode="marginal"))
    finally:
        engine.runner = recorder.runner
    if recorder.captured is None:
        return {}
    ids, _, positions = recorder.captured
    rows, tokens, masked = ids.shape[0], ids.shape[1], int(positions.sum())
    flops = floor.pass_flops(shape, rows, tokens, masked)
    measured = summary(floor.time_pass(engine.runner, recorder.captured, max(reps, 5)))
    floor_ms = flops / (gflops * 1e9) * 1000
    return {"rows": rows, "tokens": tokens, "masked": masked, "flops": flops, "floor_ms": round(floor_ms, 3),
            "measured": measured, "x_floor": round(measured["p50_ms"] / floor_ms, 2)}


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    seconds: dict[str, float] = {}
    res: dict = {"meta": machine(), "section_seconds": seconds,
                 "settings": {k: getattr(args, k) for k in ("reps", "threads", "quality_items", "inputs_per_job",
                                                            "startup_reps", "data", "precision")}
                 | {"thresholds": args.threshold_list, "tokens_per_step": args.tps_list, "skipped": sorted(args.skip)}}
    res["meta"]["busy_machine"] = res["meta"]["loadavg_start"] > 0.5 * (os.cpu_count() or 1)

    t = time.perf_counter()
    step("loading the model (3 times)")
    loaded, res["load"] = timed_loads(args.model, args.threads, args.precision)
    torch.set_num_threads(args.threads)
    engine = InfillEngine(loaded)
    res["meta"]["model"] = str(loaded.path)
    res["meta"]["precision"] = loaded.precision
    res["meta"]["backend"] = type(loaded.model).__name__
    # Shapes and FLOPs come from a float32 copy: int8 Linear layers hide their weights from parameters().
    plain = InfillEngine(load_model(args.model, threads=args.threads, precision="fp32"))
    res["meta"]["params_m"] = round(sum(p.numel() for p in plain.loaded.model.parameters()) / 1e6, 1)
    res["matmul"] = floor.matmul_rate(args.threads)
    res["shape"] = shape = floor.model_shape(plain.runner)
    del plain
    gflops = res["matmul"]["best_gflops"]
    items = inputs.load_dev(args.data)
    jobs = engine_jobs.make_jobs(items, engine.tokenizer, args.inputs_per_job)
    res["job_inputs"] = {j.name: {"about": j.about, "ids": [x["id"] for x in j.inputs]} for j in jobs}
    seconds["setup"] = round(time.perf_counter() - t, 1)

    if "jobs" not in args.skip:
        t = time.perf_counter()
        res["jobs"] = []
        for strategy in STRATEGIES:
            for job in jobs:
                step(f"job '{job.name}' with {strategy}")
                res["jobs"].append(engine_jobs.time_job(engine, job, EngineSettings(strategy=strategy), args.reps,
                                                        gflops, shape))
        seconds["jobs"] = round(time.perf_counter() - t, 1)

    if "floor" not in args.skip:
        t = time.perf_counter()
        step("typical pass against the FLOP floor")
        res["floor"] = typical_pass(engine, jobs[0], shape, gflops, args.reps)
        seconds["floor"] = round(time.perf_counter() - t, 1)

    if "quality" not in args.skip:
        t = time.perf_counter()
        step(f"quality sweep on {args.quality_items} dev gaps")
        subset = inputs.quality_subset(items, args.quality_items)
        res["quality_ids"] = [it["id"] for it in subset]
        res["quality"] = engine_jobs.run_sweep(engine, subset, engine_jobs.sweep_settings(args.threshold_list,
                                                                                          args.tps_list))
        seconds["quality"] = round(time.perf_counter() - t, 1)
        res["plot_note"] = report.plot(res["quality"], out / "quality_vs_passes.png")
        res["plot"] = res["plot_note"] is None
        if not res["plot"]:
            step(f"no plot: {res['plot_note']}")

    if "lsp" not in args.skip:
        t = time.perf_counter()
        step("language server: start-up, round trips, memory")
        cases = [{"name": j.name, "language": "python" if "code" in j.name else "plaintext", "inputs": j.inputs}
                 for j in jobs if j.server_case]
        res["lsp"] = lsp_roundtrip.run_sync(args.model, engine, cases, args.threads, args.reps, args.startup_reps,
                                            loaded.precision)
        seconds["lsp"] = round(time.perf_counter() - t, 1)

    res["matmul_end"] = floor.matmul_rate(args.threads)
    res["meta"]["loadavg_end"] = os.getloadavg()[0]
    res["targets"] = report.targets(res)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "results.md").write_text(report.markdown(res), encoding="utf-8")
    step(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    for t_ in res["targets"]:
        print(f"  {t_['status']:>12}  {t_['target']}: {t_['measured']} (goal {t_['goal']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
