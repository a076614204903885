"""Measure ``proofread`` on held-out text we corrupt ourselves (issue 15).

Usage: python -m diffusion_core.eval.proofread_eval CORPUS_DEV.jsonl OUT_PREFIX [--model M] [--passages N]
    [--rates 0 0.01 0.05 0.1] [--errors word typo] [--readings visible masked] [--below P] [--threads T]

Passages of about ``--words`` words are cut at line ends from the records of each kind (prose, code) of a
corpus JSONL (``python -m diffusion_core.train.build_corpus`` writes one; its dev split is held out from
training).  In each, a share ``rate`` of the words (at least one when the rate is above 0) is corrupted:

* ``word``: replaced by another word of the same record (a plausible wrong word);
* ``typo``: two neighbouring letters swapped, a letter dropped or a letter doubled.

``engine.proofread`` then runs on the corrupted passage, and each change is scored against the corruption:
precision (changes at a corrupted word / all changes), recall (corrupted words changed / corrupted words),
restored (corrupted words changed back exactly / corrupted words).  Rate 0 counts false alarms on clean
text (changes per 100 words).  Each change's probability is kept, so the figures for any bar below the
one run (``--below``) are read off one run (``bars`` in the JSON; approximate, as a change made earlier in
a passage can alter the later ones' context).  Writes OUT_PREFIX.json and OUT_PREFIX.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import time
from pathlib import Path

from diffusion_core.infer.engine import InfillEngine
from diffusion_core.model.loading import load_model

WORD = re.compile(r"\w+(?:['’]\w+)*")
BARS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)  # a visible reading sees the word itself: higher bars


def passages(path: str, kind: str, n: int, words: int, rng: random.Random) -> list[tuple[str, list[str]]]:
    """(passage, the words of its whole record) for ``n`` passages of about ``words`` words of ``kind``."""
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    records = [r for r in records if r.get("kind") == kind and len(WORD.findall(r["text"])) > words]
    out = []
    while records and len(out) < n:
        r = rng.choice(records)
        lines = r["text"].splitlines(keepends=True)
        start = rng.randrange(len(lines))
        chunk, count = [], 0
        for line in lines[start:]:
            chunk.append(line)
            count += len(WORD.findall(line))
            if count >= words:
                break
        text = "".join(chunk)
        if count >= words // 2 and text.strip():
            out.append((text, WORD.findall(r["text"])))
    return out


def typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    op = rng.choice(("swap", "drop", "double"))
    if op == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "drop":
        return word[:i] + word[i + 1:]
    return word[:i + 1] + word[i] + word[i + 1:]


def corrupt(text: str, vocabulary: list[str], rate: float, error: str, rng: random.Random):
    """(corrupted text, [(start, end, original) of each corrupted word in it])."""
    spans = [m for m in WORD.finditer(text) if (error == "word" or len(m.group()) >= 3 and m.group().isalpha())]
    k = 0 if rate == 0 else max(1, round(rate * len(WORD.findall(text))))
    chosen = sorted(rng.sample(spans, min(k, len(spans))), key=lambda m: m.start())
    out, at, shift, marks = [], 0, 0, []
    for m in chosen:
        old = m.group()
        others = [w for w in vocabulary if w != old]
        new = rng.choice(others) if error == "word" and others else typo(old, rng)
        if new == old:
            continue
        out += [text[at:m.start()], new]
        start = m.start() + shift
        marks.append((start, start + len(new), old))
        shift += len(new) - len(old)
        at = m.end()
    return "".join(out + [text[at:]]), marks


def score(cases: list[dict], bar: float) -> dict:
    """Precision, recall and restored share of the changes whose old word was less likely than ``bar``."""
    changes = true_changes = hits = restored = corrupted = words = 0
    for c in cases:
        kept = [ch for ch in c["changes"] if ch["probability"] < bar]
        overlaps = lambda ch, s, e: ch["start"] < e and ch["end"] > s  # noqa: E731
        changes += len(kept)
        true_changes += sum(any(overlaps(ch, s, e) for s, e, _ in c["marks"]) for ch in kept)
        corrupted += len(c["marks"])
        words += c["words"]
        for s, e, orig in c["marks"]:
            at = [ch for ch in kept if overlaps(ch, s, e)]
            hits += bool(at)
            restored += any(ch["new"] == orig for ch in at)
    return {"precision": round(100 * true_changes / changes, 1) if changes else None,
            "recall": round(100 * hits / corrupted, 1) if corrupted else None,
            "restored": round(100 * restored / corrupted, 1) if corrupted else None,
            "changes_per_100_words": round(100 * changes / max(1, words), 2), "changes": changes,
            "corrupted": corrupted}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--model")
    ap.add_argument("--passages", type=int, default=20, help="per kind")
    ap.add_argument("--words", type=int, default=120, help="about this many words per passage")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.01, 0.05, 0.1])
    ap.add_argument("--errors", nargs="+", choices=["word", "typo"], default=["word", "typo"])
    ap.add_argument("--readings", nargs="+", choices=["visible", "masked"], default=None,
                    help="default: the engine's (masked)")
    ap.add_argument("--below", type=float, default=0.03, help="the run's bar; lower ones are read off it")
    ap.add_argument("--kinds", nargs="+", default=["prose", "code"])
    ap.add_argument("--threads", type=int)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    engine = InfillEngine(load_model(args.model, threads=args.threads, precision="auto"))  # as the CLI and server
    rng = random.Random(args.seed)
    cases, t0 = [], time.time()
    readings = args.readings or [None]
    for kind in args.kinds:
        for text, vocabulary in passages(args.data, kind, args.passages, args.words, rng):
            for rate in args.rates:
                for error in (args.errors if rate > 0 else ["none"]):
                    bad, marks = corrupt(text, vocabulary, rate, error, rng)
                    for reading in readings:
                        t = time.time()
                        out = engine.proofread("", bad, "", below=args.below, reading=reading)
                        cases.append({"kind": kind, "rate": rate, "error": error, "reading": reading or "default",
                                      "words": len(WORD.findall(bad)), "marks": marks, "passes": out.passes,
                                      "seconds": round(time.time() - t, 2),
                                      "changes": [vars(c) for c in out.changes], "text": bad})
            print(f"{kind}: {len(cases)} runs, {time.time() - t0:.0f} s", file=sys.stderr)
    groups: dict[str, dict] = {}
    for c in cases:
        for key in (f"{c['reading']} | {c['kind']} | {c['error']} | {c['rate']}", f"{c['reading']} | all | {c['error']} | {c['rate']}"):
            groups.setdefault(key, []).append(c)
    table = {key: {str(bar): score(group, bar) for bar in sorted({*BARS, args.below}) if bar <= args.below} for key, group in groups.items()}
    meta = {"model": str(engine.loaded.path), "precision": engine.loaded.precision, "machine": platform.processor()
            or platform.machine(), "date": time.strftime("%Y-%m-%d"), "passages_per_kind": args.passages,
            "seconds": round(time.time() - t0), "mean_passes": round(sum(c["passes"] for c in cases) / max(1, len(cases)), 2),
            "mean_seconds": round(sum(c["seconds"] for c in cases) / max(1, len(cases)), 2)}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "bars": table, "cases": cases}, indent=1) + "\n")
    lines = [f"Proofreading, model `{Path(meta['model']).name}` ({meta['precision']}), {meta['date']}, "
             f"{args.passages} passages of ~{args.words} words per kind, {meta['mean_passes']} passes and "
             f"{meta['mean_seconds']} s per passage on average.", "",
             "| reading | kind | error | rate | bar | precision % | recall % | restored % | changes / 100 words |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(table):
        for bar, s in table[key].items():
            lines.append(f"| {' | '.join(key.split(' | '))} | {bar} | {s['precision']} | {s['recall']} | "
                         f"{s['restored']} | {s['changes_per_100_words']} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
