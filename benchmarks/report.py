"""Turn the results dict into targets (MET / MISSED), Markdown tables and the quality-vs-passes plot."""
from __future__ import annotations

import statistics
from pathlib import Path


def _find(rows, **match):
    for row in rows or []:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _case(res, name):
    return _find((res.get("lsp") or {}).get("round_trips"), case=name)


def _target(name, goal, measured, ok, note=""):
    return {"target": name, "goal": goal, "measured": measured, "status": "MET" if ok else "MISSED", "note": note}


def targets(res: dict) -> list[dict]:
    """Every target whose section ran, judged on the numbers (never asserted)."""
    out = []
    lsp = res.get("lsp") or {}
    prose, code = _case(res, "short prose gap"), _case(res, "code-line gap")
    if prose:
        out.append(_target("short prose gap, unknown length, through the server: p50", "<= 80 ms",
                           f"{prose['lsp']['p50_ms']} ms", prose["lsp"]["p50_ms"] <= 80))
        out.append(_target("short prose gap, unknown length, through the server: p95", "<= 150 ms",
                           f"{prose['lsp']['p95_ms']} ms", prose["lsp"]["p95_ms"] <= 150))
    if code:
        out.append(_target("code-line gap, through the server: p50", "<= 120 ms",
                           f"{code['lsp']['p50_ms']} ms", code["lsp"]["p50_ms"] <= 120))

    sweep = res.get("quality") or []
    ref, default = _find(sweep, strategy="left-to-right"), _find(sweep, default=True)
    diffusion = [r for r in sweep if r["strategy"] == "diffusion"]
    if ref and diffusion:
        ok = [r for r in diffusion if r["passes_per_token"] <= 0.5 and r["exact"] >= ref["exact"] - 1]
        best = max(ok, key=lambda r: r["exact"]) if ok else min(diffusion, key=lambda r: r["passes_per_token"])
        out.append(_target("passes per filled token at <= 1 point exact-match cost vs one token per pass", "<= 0.5",
                           f"{best['passes_per_token']} ({best['label']}: EM {best['exact']} vs {ref['exact']})",
                           bool(ok), "" if ok else "shown: the setting with the fewest passes per token"))
    if ref and default:
        speed = ref["mean_ms"] / max(1e-9, default["mean_ms"])
        out.append(_target("faster than left-to-right at equal or better exact match (dev subset, default settings)",
                           ">= 2.5x", f"{speed:.2f}x, EM {default['exact']} vs {ref['exact']}",
                           speed >= 2.5 and default["exact"] >= ref["exact"]))

    trips = lsp.get("round_trips") or []
    if trips:
        worst = max(t["overhead_p50_ms"] for t in trips)
        out.append(_target("protocol overhead (median, worst case)", "<= 5 ms", f"{worst} ms", worst <= 5))
    if lsp:
        start, rss = lsp["startup"], lsp["peak_rss_mb"]
        out.append(_target("start-up: process start to ready (median)", "<= 2.5 s",
                           f"{start['p50_ms'] / 1000:.2f} s", start["p50_ms"] <= 2500))
        out.append(_target("peak RSS of the server (VmHWM)", "<= 500 MB", f"{rss} MB", rss is not None and rss <= 500))
    floor = res.get("floor")
    if floor:
        out.append(_target("one full forward pass within 3x of its FLOP floor", "<= 3x", f"{floor['x_floor']}x",
                           floor["x_floor"] <= 3))
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
    yes = lambda flag: "yes" if meta.get(flag) else "no"  # noqa: E731
    parts = [f"# Diffill benchmark — {meta['date']}", "",
             f"Model `{meta['model']}` ({meta['backend']}), precision {meta['precision']} (asked: {cfg['precision']}); "
             f"{meta['cpu']}, {meta['nproc']} CPUs, avx512_bf16 {yes('avx512_bf16')}, amx_bf16 {yes('amx_bf16')} "
             f"(all `lscpu` flags in the JSON); torch {meta['torch']}, {meta['torch_threads']} thread(s); "
             f"median and nearest-rank p95; git {meta['git']}.",
             f"Load average at start / end: {meta['loadavg_start']:.2f} / {meta['loadavg_end']:.2f}."]
    if res.get("note"):
        parts.append(f"\n**Note:** {res['note']}")
    if meta.get("busy_machine"):
        parts.append("\n**Warning: the machine was busy (load average above half the core count at the start) — latencies are "
                     "inflated; rerun on a quiet machine for numbers to quote.**")
    parts += ["", "## Targets", "",
              _table(["target", "goal", "measured", "status"],
                     [[t["target"], t["goal"], t["measured"], f"**{t['status']}**" + (f" ({t['note']})" if t["note"] else "")]
                      for t in res["targets"]])]

    jobs = res.get("jobs") or []
    if jobs:
        parts += ["", f"## 1. Engine latency per job (in-process, diffusion, engine defaults, 1 candidate, "
                  f"{cfg['reps']} repetitions)", "",
                  _table(["job", "inputs", "p50 ms", "p95 ms", "passes", "tokens", "passes/token", "exact % (job inputs)"],
                         [[j["job"], res["job_inputs"][j["job"]]["about"], j["p50_ms"], j["p95_ms"], j["passes"],
                           j["tokens"], j["passes_per_token"], j["exact"]]
                          for j in jobs if j["strategy"] == "diffusion"])]
        given, unknown = _find(jobs, job="short prose gap, given length", strategy="diffusion"), \
            _find(jobs, job="short prose gap", strategy="diffusion")
        if given and unknown:
            parts.append(f"\nUnknown vs given length (short prose): p50 {unknown['p50_ms']} vs {given['p50_ms']} ms "
                         f"(x{_ratio(unknown['p50_ms'], given['p50_ms'])}), passes {unknown['passes']} vs {given['passes']}.")
    sweep = res.get("quality") or []
    if sweep:
        parts += ["", f"## 2. Quality against forward passes (dev subset: {sweep[0]['n']} gaps, unknown length)", "",
                  "Every fill is grown (diffusion_core/infer/grow.py): left-to-right commits one token per pass; "
                  "diffusion also commits the slots after it that are at least `threshold` sure. passes/token "
                  "counts every pass (an empty fill counts as one token).", "",
                  _table(["setting", "exact %", "char sim %", "passes", "passes/token", "mean ms", "p95 ms"],
                         [[r["label"] + (" (default)" if r["default"] else ""), r["exact"], r["char_sim"], r["passes"],
                           r["passes_per_token"], r["mean_ms"], r["p95_ms"]] for r in sweep])]
        parts.append(f"\n![quality vs passes]({res['plot']})" if res.get("plot") else
                     f"\n(No plot: {res.get('plot_note')}.)")

    if jobs or sweep:
        parts += ["", "## 3. Diffusion against the baselines (same model, same process, same inputs)", "",
                  "Ratios are diffusion / baseline: latency and passes below 1 mean diffusion is cheaper; exact match "
                  "above 1 means diffusion is more often right. One-shot runs only where the lengths are given "
                  "(a grown fill takes one token per pass under both baselines).", ""]
        rows = []
        for j in (j for j in jobs if j["strategy"] == "diffusion"):
            for base in ("left-to-right", "one-shot"):
                b = _find(jobs, job=j["job"], strategy=base)
                if b:
                    rows.append([j["job"], base, f"{j['p50_ms']} / {b['p50_ms']}", _ratio(j["p50_ms"], b["p50_ms"]),
                                 f"{j['passes']} / {b['passes']}", _ratio(j["passes"], b["passes"]),
                                 None if j["exact"] is None else f"{j['exact']} / {b['exact']}",
                                 _ratio(j["exact"], b["exact"])])
        default, b = _find(sweep, default=True), _find(sweep, strategy="left-to-right")
        if default and b:
            rows.append([f"dev subset ({default['n']} gaps, mean)", b["strategy"], f"{default['mean_ms']} / {b['mean_ms']}",
                         _ratio(default["mean_ms"], b["mean_ms"]), f"{default['passes']} / {b['passes']}",
                         _ratio(default["passes"], b["passes"]), f"{default['exact']} / {b['exact']}",
                         _ratio(default["exact"], b["exact"])])
        parts.append(_table(["job", "baseline", "p50 ms (diff / base)", "latency ratio", "passes (diff / base)",
                             "passes ratio", "exact % (diff / base)", "exact ratio"], rows))

    lsp = res.get("lsp")
    if lsp:
        s = lsp["server_settings"]
        parts += ["", "## 4. Through the language server (stdio, one request at a time)", "",
                  f"Server: model `{lsp['server_model']}`, precision {lsp['precision']} (setting {s['precision']}), "
                  f"threads {s['threads']}, candidates {s['candidates']}, maxTokens {s['maxTokens']} (the server's "
                  "defaults but the thread count). Each request is an inline completion on a freshly opened document, "
                  "on its own input. First = the case's first request (the prose one is the first after start-up), "
                  "left out of p50/p95. Engine = the same job run in-process just before each request; overhead = "
                  "median of (request − engine).", "",
                  _table(["case", "requests", "first ms", "server p50 ms", "server p95 ms", "engine p50 ms",
                          "engine p95 ms", "overhead ms (median)", "same suggestions"],
                         [[t["case"], t["lsp"]["n"], t["first_ms"], t["lsp"]["p50_ms"], t["lsp"]["p95_ms"],
                           t["engine"]["p50_ms"], t["engine"]["p95_ms"], t["overhead_p50_ms"], t["same_texts"]]
                          for t in lsp["round_trips"]])]
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
                      ["server peak RSS at ready (VmHWM, first start: the load's peak)",
                       f"{st['runs'][0].get('VmHWM_at_ready_mb')} MB"],
                      ["server peak RSS (VmHWM, after the round trips)", f"{lsp['peak_rss_mb']} MB"],
                      ["first inline completion after `ready`", f"{lsp['first_request_ms']} ms"],
                      ["in-process load_model, first call (imports included)", f"{res['load']['first_ms']:.0f} ms"],
                      ["in-process load_model, again (median)", f"{res['load']['again_p50_ms']:.0f} ms"]])]
    elif res.get("load"):
        parts += ["", "## 5. Start-up", "", f"in-process load_model, first call: {res['load']['first_ms']:.0f} ms"]

    floor = res.get("floor")
    if floor:
        sh, mm = res["shape"], res["matmul"]
        parts += ["", "## 6. The compute floor", "",
                  f"Matmul rate ({mm['n']}x{mm['n']} {mm['dtype']}, {mm['threads']} thread(s)): best {mm['best_gflops']} "
                  f"GFLOP/s, median {mm['median_gflops']} GFLOP/s; the floor uses the best.",
                  f"Model: {sh['params_body'] / 1e6:.2f}M parameters without the embeddings, hidden {sh['hidden']}, "
                  f"{sh['layers']} layers, vocabulary {sh['vocab']}; head {'only at masked slots' if sh['head_only_at_masked_slots'] else 'at every position'}.",
                  "", _table(["pass", "rows x tokens", "masked slots", "MFLOP", "floor ms", "measured ms (p50)", "x floor"],
                             [["first pass of the short prose gap at its given length",
                               f"{floor['rows']} x {floor['tokens']}", floor["masked"], round(floor["flops"] / 1e6, 1),
                               floor["floor_ms"], floor["measured"]["p50_ms"], floor["x_floor"]]]),
                  "", "An int8 model is held to the float32 rate, so its passes can run below 1x of it."]
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
    diffusion = sorted((r for r in sweep if r["strategy"] == "diffusion"), key=lambda r: r["threshold"])
    l2r = _find(sweep, strategy="left-to-right")
    for ax, key, name in ((axes[0], "exact", "exact match, %"), (axes[1], "char_sim", "character similarity, %")):
        ax.plot([r["passes_per_token"] for r in diffusion], [r[key] for r in diffusion], "o-", label="diffusion")
        for r in diffusion:
            ax.annotate(f"{r['threshold']:g}", (r["passes_per_token"], r[key]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        if l2r:
            ax.plot([l2r["passes_per_token"]], [l2r[key]], "s", color="black", label="left-to-right")
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
