"""Turn the results dict into targets (MET / MISSED), Markdown tables and the quality-vs-passes plot."""
from __future__ import annotations

import statistics
from pathlib import Path

NOT_MEASURED = "NOT MEASURED"


def _find(rows, **match):
    for row in rows or []:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _case(res, name):
    return _find((res.get("lsp") or {}).get("round_trips"), case=name)


def _target(name, goal, measured, ok, note=""):
    status = NOT_MEASURED if ok is None else ("MET" if ok else "MISSED")
    return {"target": name, "goal": goal, "measured": measured, "status": status, "note": note}


def targets(res: dict) -> list[dict]:
    """Every target from the brief, judged on the numbers (never asserted)."""
    out = []
    prose, code = _case(res, "short prose gap"), _case(res, "code-line gap")
    out.append(_target("short prose gap, unknown length, through the server: p50", "<= 80 ms",
                       prose and f"{prose['lsp']['p50_ms']} ms", prose and prose["lsp"]["p50_ms"] <= 80))
    out.append(_target("short prose gap, unknown length, through the server: p95", "<= 150 ms",
                       prose and f"{prose['lsp']['p95_ms']} ms", prose and prose["lsp"]["p95_ms"] <= 150))
    out.append(_target("code-line gap, through the server: p50", "<= 120 ms",
                       code and f"{code['lsp']['p50_ms']} ms", code and code["lsp"]["p50_ms"] <= 120))

    sweep = res.get("quality") or []
    ref = _find(sweep, strategy="diffusion", tokens_per_step=1, threshold=None)
    if ref is None:
        out.append(_target("passes per filled token at <= 1 point exact-match cost vs one token per pass",
                           "<= 0.5", None, None, "the sweep has no 1 token/pass, threshold-off reference"))
    else:
        ok = [r for r in sweep if r["strategy"] == "diffusion" and r["passes_per_token"] <= 0.5
              and r["exact"] >= ref["exact"] - 1]
        best = max(ok, key=lambda r: r["exact"]) if ok else \
            min((r for r in sweep if r["strategy"] == "diffusion"), key=lambda r: r["passes_per_token"])
        out.append(_target("passes per filled token at <= 1 point exact-match cost vs one token per pass", "<= 0.5",
                           f"{best['passes_per_token']} ({best['label']}: EM {best['exact']} vs {ref['exact']})",
                           bool(ok), "" if ok else "shown: the setting with the fewest passes per token"))
    default, l2r = _find(sweep, default=True), _find(sweep, strategy="left-to-right")
    if default and l2r:
        speed = l2r["mean_ms"] / max(1e-9, default["mean_ms"])
        out.append(_target("faster than left-to-right at equal or better exact match (dev subset, default settings)",
                           ">= 2.5x", f"{speed:.2f}x, EM {default['exact']} vs {l2r['exact']}",
                           speed >= 2.5 and default["exact"] >= l2r["exact"]))
    else:
        out.append(_target("faster than left-to-right at equal or better exact match", ">= 2.5x", None, None))

    trips = (res.get("lsp") or {}).get("round_trips") or []
    worst = max((t["overhead_p50_ms"] for t in trips), default=None)
    out.append(_target("protocol overhead (median, worst case)", "<= 5 ms",
                       worst is not None and f"{worst} ms", worst is not None and worst <= 5) if trips else
               _target("protocol overhead", "<= 5 ms", None, None))
    start = (res.get("lsp") or {}).get("startup") or {}
    out.append(_target("start-up: process start to ready (median)", "<= 2.5 s",
                       start.get("p50_ms") and f"{start['p50_ms'] / 1000:.2f} s",
                       start.get("p50_ms") and start["p50_ms"] <= 2500))
    rss = (res.get("lsp") or {}).get("peak_rss_mb")
    out.append(_target("peak RSS of the server (VmHWM)", "<= 500 MB", rss and f"{rss} MB", rss and rss <= 500))

    floor = res.get("floor") or {}
    job = _find(res.get("jobs"), job="short prose gap", strategy="diffusion")
    out.append(_target("short prose job time within 3x of its FLOP floor (p50 of time / floor)", "<= 3x",
                       job and job["x_floor_p50"] and f"{job['x_floor_p50']}x",
                       job and job["x_floor_p50"] and job["x_floor_p50"] <= 3))
    out.append(_target("one forward pass (typical canvas) within 3x of its FLOP floor", "<= 3x",
                       floor.get("x_floor") and f"{floor['x_floor']}x", floor.get("x_floor") and floor["x_floor"] <= 3))
    return out


# -- Markdown ------------------------------------------------------------------------------------------
def _table(head: list[str], rows: list[list]) -> str:
    fmt = lambda v: "–" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _ratio(a, b, digits=2):
    if a is None or b is None:
        return None
    return "n/a (÷0)" if b == 0 else f"{a / b:.{digits}f}"


def markdown(res: dict) -> str:
    meta, cfg = res["meta"], res["settings"]
    parts = [f"# Diffill benchmark — {meta['date']}", "",
             f"Model `{meta['model']}` ({meta.get('params_m', '?')}M parameters); {meta['cpu']}, {meta['nproc']} CPUs; "
             f"torch {meta['torch']}, {cfg['threads']} thread(s); {cfg['reps']} repetitions per job "
             f"(median and nearest-rank p95); git {meta['git']}.",
             f"Load average at start / end: {meta['loadavg_start']} / {meta.get('loadavg_end', '?')}."]
    if meta.get("busy_machine"):
        parts.append("\n**Warning: the machine was busy (load average above half the core count at the start) — latencies are "
                     "inflated; rerun on a quiet machine for numbers to quote.**")
    parts += ["", "## Targets", "",
              _table(["target", "goal", "measured", "status"],
                     [[t["target"], t["goal"], t["measured"], f"**{t['status']}**" + (f" ({t['note']})" if t["note"] else "")]
                      for t in res["targets"]])]

    jobs = res.get("jobs") or []
    if jobs:
        parts += ["", "## 1. Engine latency per job (in-process, diffusion, engine defaults, 1 candidate)", "",
                  _table(["job", "inputs", "p50 ms", "p95 ms", "passes", "tokens", "passes/token", "exact % (job inputs)",
                          "x FLOP floor (p50)"],
                         [[j["job"], res["job_inputs"][j["job"]]["about"], j["p50_ms"], j["p95_ms"], j["passes"],
                           j["tokens"], j["passes_per_token"], j["exact"], j["x_floor_p50"]]
                          for j in jobs if j["strategy"] == "diffusion"])]
        given, unknown = _find(jobs, job="short prose gap, given length", strategy="diffusion"), \
            _find(jobs, job="short prose gap", strategy="diffusion")
        if given and unknown:
            parts.append(f"\nUnknown vs given length (short prose): p50 {unknown['p50_ms']} vs {given['p50_ms']} ms "
                         f"(x{_ratio(unknown['p50_ms'], given['p50_ms'])}), passes {unknown['passes']} vs {given['passes']}.")
    sweep = res.get("quality") or []
    if sweep:
        parts += ["", f"## 2. Quality against forward passes (dev subset: {sweep[0]['n']} gaps, unknown length)", "",
                  "passes/token counts every sequential pass; the default (hybrid) length mode denoises 1-, 2- "
                  "and 3-token rows beside the marginal row in the same passes and stops the rows that can no "
                  "longer win, so a sure one-token fill costs one or two passes (denoise passes/token leaves "
                  "out the probe pass only in probe mode).", "",
                  _table(["setting", "exact %", "char sim %", "passes", "passes/token", "denoise passes/token",
                          "mean ms", "p95 ms"],
                         [[r["label"] + (" (default)" if r["default"] else ""), r["exact"], r["char_sim"], r["passes"],
                           r["passes_per_token"], r["denoise_passes_per_token"], r["mean_ms"], r["p95_ms"]]
                          for r in sweep])]
        parts.append("\n![quality vs passes](quality_vs_passes.png)" if res.get("plot") else
                     f"\n(No plot: {res.get('plot_note', 'matplotlib missing')}.)")

    if jobs or sweep:
        parts += ["", "## 3. Diffusion against the baselines (same model, same process, same inputs)", "",
                  "Ratios are diffusion / baseline: latency and passes below 1 mean diffusion is cheaper; exact match "
                  "above 1 means diffusion is more often right.", ""]
        rows = []
        for j in (j for j in jobs if j["strategy"] == "diffusion"):
            for base in ("left-to-right", "one-shot"):
                b = _find(jobs, job=j["job"], strategy=base)
                if b:
                    rows.append([j["job"], base, f"{j['p50_ms']} / {b['p50_ms']}", _ratio(j["p50_ms"], b["p50_ms"]),
                                 f"{j['passes']} / {b['passes']}", _ratio(j["passes"], b["passes"]),
                                 None if j["exact"] is None else f"{j['exact']} / {b['exact']}",
                                 _ratio(j["exact"], b["exact"])])
        default = _find(sweep, default=True)
        for base in ("left-to-right", "one-shot"):
            b = _find(sweep, strategy=base)
            if default and b:
                rows.append([f"dev subset ({default['n']} gaps, mean)", base, f"{default['mean_ms']} / {b['mean_ms']}",
                             _ratio(default["mean_ms"], b["mean_ms"]), f"{default['passes']} / {b['passes']}",
                             _ratio(default["passes"], b["passes"]), f"{default['exact']} / {b['exact']}",
                             _ratio(default["exact"], b["exact"])])
        parts.append(_table(["job", "baseline", "p50 ms (diff / base)", "latency ratio", "passes (diff / base)",
                             "passes ratio", "exact % (diff / base)", "exact ratio"], rows))

    lsp = res.get("lsp")
    if lsp:
        s = lsp["server_settings"]
        parts += ["", "## 4. Through the language server (stdio, one request at a time)", "",
                  f"Server settings: candidates {s['candidates']}, maxTokens {s['maxTokens']}, threads {s['threads']} "
                  "(the server's defaults but the thread count). Engine = the same job run in-process just before "
                  "each request; overhead = median of (request − engine) per repetition.", "",
                  _table(["case", "server p50 ms", "server p95 ms", "engine p50 ms", "engine p95 ms",
                          "overhead ms (median)", "same suggestions"],
                         [[t["case"], t["lsp"]["p50_ms"], t["lsp"]["p95_ms"], t["engine"]["p50_ms"],
                           t["engine"]["p95_ms"], t["overhead_p50_ms"], t["same_texts"]] for t in lsp["round_trips"]])]
        if lsp.get("null_request", {}).get("n"):
            parts.append(f"\nA request with no model work (`diffill.status` command): p50 {lsp['null_request']['p50_ms']} ms, "
                         f"p95 {lsp['null_request']['p95_ms']} ms — JSON-RPC over stdio alone.")
        st = lsp["startup"]
        parts += ["", "## 5. Start-up and memory", "",
                  _table(["figure", "value"], [
                      ["process start → initialize answered (median)",
                       f"{statistics.median(r['to_initialize_ms'] for r in st['runs']):.0f} ms"],
                      [f"process start → `ready` (median / max of {st['n']})", f"{st['p50_ms']:.0f} / "
                       f"{max(r['to_ready_ms'] for r in st['runs']):.0f} ms"],
                      ["server RSS at ready (first start)", f"{st['runs'][0].get('VmRSS_at_ready_mb')} MB"],
                      ["server peak RSS (VmHWM, after the round trips)", f"{lsp['peak_rss_mb']} MB"],
                      ["in-process load_model, first call (imports included)", f"{res['load']['first_ms']:.0f} ms"],
                      ["in-process load_model, again (median)", f"{res['load']['again_p50_ms']:.0f} ms"]])]
    elif res.get("load"):
        parts += ["", "## 5. Start-up", "", f"in-process load_model, first call: {res['load']['first_ms']:.0f} ms"]

    floor = res.get("floor")
    if floor:
        sh, mm = res["shape"], res["matmul"]
        parts += ["", "## 6. The compute floor", "",
                  f"Matmul rate ({mm['n']}x{mm['n']} fp32, {mm['threads']} thread(s)): best {mm['best_gflops']} GFLOP/s, "
                  f"median {mm['median_gflops']} GFLOP/s; the floor uses the best.",
                  f"Model: {sh['params_encoder'] / 1e6:.2f}M encoder parameters (embeddings excluded), hidden {sh['hidden']}, "
                  f"{sh['layers']} layers, vocabulary {sh['vocab']}; head {'only at masked slots' if sh['head_only_at_masked_slots'] else 'at every position'}.",
                  "", _table(["pass", "rows x tokens", "masked slots", "MFLOP", "floor ms", "measured ms (p50)", "x floor"],
                             [["typical canvas (first denoising pass of the short prose gap)",
                               f"{floor['rows']} x {floor['tokens']}", floor["masked"], round(floor["flops"] / 1e6, 1),
                               floor["floor_ms"], floor["measured"]["p50_ms"], floor["x_floor"]]]),
                  "", "Per job (section 1, diffusion): x FLOP floor = p50 over repetitions of job time / the summed floor "
                  "of every pass the job ran. The floor uses the float32 matrix-multiply rate, so int8 passes can run "
                  "below 1x of it."]
    parts += ["", f"Section wall times (s): {res.get('section_seconds')}", ""]
    return "\n".join(parts)


# -- plot ----------------------------------------------------------------------------------------------
def plot(sweep: list[dict], path: Path) -> str | None:
    """Exact match against passes per filled token; returns None when done, else why not."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120)
    diffusion = [r for r in sweep if r["strategy"] == "diffusion"]
    for ax, key, name in ((axes[0], "exact", "exact match, %"), (axes[1], "char_sim", "character similarity, %")):
        for k in sorted({r["tokens_per_step"] for r in diffusion}):
            line = [r for r in diffusion if r["tokens_per_step"] == k]
            ax.plot([r["passes_per_token"] for r in line], [r[key] for r in line], "o-", label=f"{k:g} tok/pass")
            for r in line:
                ax.annotate("off" if r["threshold"] is None else f"{r['threshold']:g}", (r["passes_per_token"], r[key]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
        for r, marker in ((_find(sweep, strategy="left-to-right"), "s"), (_find(sweep, strategy="one-shot"), "^")):
            if r:
                ax.plot([r["passes_per_token"]], [r[key]], marker, color="black", label=r["strategy"])
        ax.axvline(0.5, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(0, max(5.0, 1.1 * max(r[key] for r in sweep)))
        ax.set_xlabel("forward passes per filled token (every pass, log scale)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Quality vs passes ({sweep[0]['n']} dev gaps, unknown length; point labels: confidence threshold)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
