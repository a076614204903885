"""``diffill eval``: score fills against answers, per kind of gap and overall.

Input lines: ``{"id", "kind", "prefix", "suffix", "answer"}``.  Figures:
exact match after trimming whitespace, the same ignoring case, character
similarity (difflib ratio), the fill's length against the answer's (median ratio of their characters),
forward passes, passes per filled token, latency.
"""
from __future__ import annotations

import difflib
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path


def read_items(path: str | Path, limit: int | None = None) -> list[dict]:
    items = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                missing = {"prefix", "suffix", "answer"} - item.keys()
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from exc
            if missing:
                raise ValueError(f"{path}:{n}: missing field(s) {sorted(missing)}")
            item.setdefault("id", str(n))
            item.setdefault("kind", "all")
            items.append(item)
            if limit and len(items) >= limit:
                break
    return items


def per_kind(items: list[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` items of every kind (all of them when ``limit`` is None), kinds in file order."""
    if not limit:
        return items
    groups: dict[str, list[dict]] = {}
    for it in items:
        groups.setdefault(it["kind"], []).append(it)
    return [it for group in groups.values() for it in group[:limit]]


def score_one(prediction: str, answer: str) -> dict:
    p, a = prediction.strip(), answer.strip()
    return {"exact": float(p == a), "exact_ci": float(p.lower() == a.lower()),
            "char_sim": difflib.SequenceMatcher(None, p, a).ratio(), "length_ratio": len(p) / max(1, len(a))}


def summarize(rows: list[dict]) -> dict:
    tokens = sum(r["tokens"] for r in rows)
    return {
        "n": len(rows),
        "exact": round(100 * statistics.fmean(r["exact"] for r in rows), 2),
        "exact_ci": round(100 * statistics.fmean(r["exact_ci"] for r in rows), 2),
        "char_sim": round(100 * statistics.fmean(r["char_sim"] for r in rows), 2),
        "length_ratio": round(statistics.median(r["length_ratio"] for r in rows), 2),
        "passes": round(statistics.fmean(r["passes"] for r in rows), 2),
        "passes_per_token": round(sum(r["passes"] for r in rows) / max(1, tokens), 3),
        "latency_ms": round(statistics.fmean(r["latency_ms"] for r in rows), 1),
        "latency_p50_ms": round(statistics.median(r["latency_ms"] for r in rows), 1),
    }


def run_eval(engine, items: list[dict], settings, oracle_length: bool, progress: bool = True,
             predictions: list | None = None) -> dict:
    """Fill every item; returns {kind: figures, ..., "overall": figures}."""
    from tqdm import tqdm
    tok = engine.tokenizer
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for item in tqdm(items, disable=not progress, file=sys.stderr, unit="gap", dynamic_ncols=True):
        length = None
        if oracle_length:
            length = max(1, len(tok(item["answer"], add_special_tokens=False).input_ids))
        t0 = time.perf_counter()
        fill = engine.fill(item["prefix"], item["suffix"], length=length, settings=settings)[0]
        ms = 1000 * (time.perf_counter() - t0)
        row = dict(score_one(fill.text, item["answer"]), passes=fill.passes, tokens=max(1, fill.tokens), latency_ms=ms)
        by_kind[item["kind"]].append(row)
        if predictions is not None:
            predictions.append({"id": item["id"], "kind": item["kind"], "prediction": fill.text, "answer": item["answer"]})
    report = {kind: summarize(rows) for kind, rows in sorted(by_kind.items())}
    report["overall"] = summarize([r for rows in by_kind.values() for r in rows])
    return report


def format_table(report: dict) -> str:
    cols = ["n", "exact", "exact_ci", "char_sim", "length_ratio", "passes", "passes_per_token", "latency_ms"]
    head = f"{'kind':<18}" + "".join(f"{c:>17}" for c in cols)
    lines = [head, "-" * len(head)]
    for kind, fig in report.items():
        lines.append(f"{kind:<18}" + "".join(f"{fig[c]:>17}" for c in cols))
    return "\n".join(lines)
