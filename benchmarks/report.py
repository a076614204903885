"""Turn the results dict into targets (MET / MISSED), Markdown tables and the quality-vs-passes plot."""
from __future__ import annotations

import json
import re
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
    """A target row; ``ok`` None marks an informational row (no goal of an open issue)."""
    status = "INFO" if ok is None else "MET" if ok else "MISSED"
    return {"target": name, "goal": goal, "measured": measured, "status": status, "note": note}


def _precision(res: dict) -> dict:
    """Which precision the run used, whether this CPU has fast bf16, and why ``auto`` picks what it picks."""
    meta, asked = res["meta"], res["settings"]["precision"]
    used = (res.get("lsp") or {}).get("precision") or meta["precision"]
    why = (f"asked for {asked}" if asked != "auto" else
           "auto: int8, which this model allows" if used == "int8" else
           "auto: int8 hurts this model, and this CPU runs bf16 fast" if used == "bf16" else
           "auto: int8 hurts this model, and this CPU has no fast bf16" if used == "fp32" else "")
    flags = ", ".join(f"{f} {'yes' if meta.get(f) else 'no'}" for f in ("avx512_bf16", "amx_bf16"))
    return _target(f"precision (asked: {asked})", "report", f"{used}; fast bf16: "
                   f"{'yes' if meta.get('fast_bf16') else 'no'} ({flags})", None, why)


def targets(res: dict) -> list[dict]:
    """Issue 33's targets whose section ran, judged on the numbers (never asserted), then informational rows."""
    out = []
    lsp = res.get("lsp") or {}
    prose, code = _case(res, "short prose gap"), _case(res, "code-line gap")
    if prose:
        out.append(_target("short prose gap at the cursor, through the server: p50", "<= 150 ms",
                           f"{prose['lsp']['p50_ms']} ms", prose["lsp"]["p50_ms"] <= 150))
        out.append(_target("short prose gap at the cursor, through the server: p95", "<= 300 ms",
                           f"{prose['lsp']['p95_ms']} ms", prose["lsp"]["p95_ms"] <= 300))
    if code:
        out.append(_target("code line, through the server: p50", "<= 200 ms",
                           f"{code['lsp']['p50_ms']} ms", code["lsp"]["p50_ms"] <= 200))
    first, again = lsp.get("first_request_ms"), lsp.get("first_request_again_ms")
    if first is not None and again:
        # "no slow first calls": the first request against the same request made again once warm (inputs differ
        # in cost: the first prose input is a 7-pass fill, twice the median one, however warm the engine is)
        out.append(_target("first request after start-up, against the same request again", "<= 1.5x",
                           f"{first} ms = {first / again:.2f}x ({again} ms again)", first / again <= 1.5))
    if prose and first is not None:
        out.append(_target("first request after start-up, against the prose p50", "–",
                           f"{first} ms = {first / prose['lsp']['p50_ms']:.2f}x", None))
    gaps = res.get("gaps")
    if gaps:
        out.append(_target("fill of 3 gaps against 1 in the same text (difference of p50s)", "<= +0.5 s",
                           f"{gaps['extra_s']:+.3f} s ({gaps['three']['p50_ms']} vs {gaps['one']['p50_ms']} ms)",
                           gaps["extra_s"] <= 0.5))
    if lsp:
        start, rss = lsp["startup"], lsp["peak_rss_mb"]
        out.append(_target("start-up: process start to ready (median)", "<= 3 s",
                           f"{start['p50_ms'] / 1000:.2f} s", start["p50_ms"] <= 3000))
        out.append(_target("peak RSS of the server (VmHWM)", "<= 800 MB", f"{rss} MB", rss is not None and rss <= 800))
    per = res.get("pertoken") or {}
    if "ratio" in per:
        d, a = per["default"], per["autoregressive"]
        out.append(_target(f"ms per filled token: the default (length unknown) / autoregressive with the length "
                           f"given ({per['n']} gaps)", "<= 1", f"{d['ms_per_token']} / {a['ms_per_token']} ms = "
                           f"{per['ratio']:.2f}", per["ratio"] <= 1))
    dev = res.get("dev_exact")
    if dev:
        got, ref = dev["report"], dev["reference"]
        other = got.get("model") and ref.get("model") and got["model"] != ref["model"]
        out.append(_target("dev exact match (diffusion, length unknown), from the quality report",
                           f"within 1 point of {ref['exact']} % ({ref['source']})",
                           f"{got['exact']} % ({got['source']}, {got.get('n') or '?'} gaps)",
                           abs(got["exact"] - ref["exact"]) <= 1,
                           "read from the report, not measured in this run" +
                           (f"; the reference is of {ref['model']}" if other else "")))
    if res.get("meta", {}).get("precision"):
        out.append(_precision(res))

    trips = lsp.get("round_trips") or []
    if trips:
        worst = max(t["overhead_p50_ms"] for t in trips)
        out.append(_target("protocol overhead (median, worse case)", "–", f"{worst} ms", None))
    floor = res.get("floor")
    if floor:
        out.append(_target("one full forward pass against its FLOP floor", "–", f"{floor['x_floor']}x", None))
    return out


def not_judged(res: dict) -> list[str]:
    """Issue 33's targets this run could not judge, and why."""
    skipped = set(res["settings"].get("skipped") or ())
    out = [f"{what}: section `{s}` skipped" for s, what in (
        ("lsp", "latency through the server, first request, start-up, peak RSS"),
        ("gaps", "3 gaps against 1"), ("pertoken", "ms per filled token against the autoregressive baseline"))
        if s in skipped]
    if (res.get("pertoken") or {}).get("error"):
        out.append(f"ms per filled token: no autoregressive baseline ({res['pertoken']['error']})")
    if not res.get("dev_exact"):
        out.append("dev exact match: no --quality-report given (the benchmark does not run the full dev eval; "
                   "python -m diffusion_core.eval.quality_report writes one)")
    return out


def dev_exact(path: str | Path) -> dict:
    """Overall dev exact match of diffusion, length unknown, from a report of diffusion_core.eval.quality_report:
    its JSON (a .md's twin when there is one), else the Markdown's first table (**exact match %**)."""
    path = Path(path)
    if path.with_suffix(".json").exists():
        data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        overall = data["results"]["diffusion/unknown"]["overall"]
        return {"exact": overall["exact"], "n": overall["n"], "model": Path(data["meta"]["model"]).name,
                "source": path.with_suffix(".json").name}
    lines = path.read_text(encoding="utf-8").splitlines()
    head = re.match(r"Model `([^`]+)`.*?, (\d+) gaps", lines[0]) if lines else None
    table = lines[lines.index("**exact match %**") + 2:]
    cols = [c.strip() for c in table[0].strip("|").split("|")]
    for line in table[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "diffusion/unknown":
            return {"exact": float(cells[cols.index("overall")]), "n": head and int(head.group(2)),
                    "model": head and head.group(1), "source": path.name}
    raise ValueError(f"{path}: no diffusion/unknown row in its exact match table")


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
    status = lambda t: "info" if t["status"] == "INFO" else f"**{t['status']}**"  # noqa: E731
    parts += ["", "## Targets (issue 33)", "",
              _table(["target", "goal", "measured", "status"],
                     [[t["target"], t["goal"], t["measured"], status(t) + (f" ({t['note']})" if t["note"] else "")]
                      for t in res["targets"]])]
    if not_judged(res):
        parts += [""] + [f"- not judged: {line}." for line in not_judged(res)]

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
    gaps, per = res.get("gaps"), res.get("pertoken") or {}
    if gaps or "ratio" in per:
        parts += ["", "## 7. Side by side (in-process, engine defaults, the two sides alternating input by input)", ""]
    if gaps:
        parts.append(_table(["fill_gaps of the same text", "fills", "p50 ms", "p95 ms", "passes"],
                            [[f"{k} gap{'s' if k == 'three' else ''}", gaps[k]["n"], gaps[k]["p50_ms"],
                              gaps[k]["p95_ms"], gaps[f"{k}_passes"]] for k in ("three", "one")]))
        parts.append(f"\nThree gaps cost {gaps['extra_s']:+.3f} s over one (difference of the medians); inputs: the "
                     "job '3 gaps jointly', and the same texts with only the first gap.\n")
    if "ratio" in per:
        parts.append(_table(["side", "gaps", "ms per filled token", "filled tokens", "passes/token", "p50 ms",
                             "exact % (these gaps)"],
                            [[name, per["n"], per[k]["ms_per_token"], per[k]["tokens"], per[k]["passes_per_token"],
                              per[k]["p50_ms"], per[k]["exact"]] for k, name in (
                                ("default", "default (diffusion, grown, length unknown)"),
                                ("autoregressive", f"autoregressive, length given ({per['baseline_precision']})"))]))
        parts.append(f"\nRatio default / autoregressive: {per['ratio']:.2f} (ms per filled token = all ms / all filled "
                     "tokens; an empty fill counts as one token).")
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
