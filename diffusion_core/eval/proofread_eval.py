"""Measure ``proofread`` on passages we corrupt ourselves, beside a dictionary spell-checker (issues 15, 34).

Usage: python -m diffusion_core.eval.proofread_eval OUT_PREFIX [--split dev|calib] [--passages N]
    [--rate 0.05] [--margins 0 1 2 4] [--costs JSON] [--threads T]

Passages are the texts of the gap records of ``data/eval/{split}.jsonl`` (prefix + answer + suffix, about 100
words each): prose (prose-short, prose-long, docs-short) and the comments and docstrings of code (code-ident,
code-tail).  ``dev`` is held out for reporting; ``calib`` is where the channel's costs and the margin are
fitted (``--split calib --costs ...``), never the other way round.  In each prose passage a share ``rate`` of
the words is corrupted, one kind of error at a time:

* ``typo``: one edit (two neighbouring letters swapped, a letter dropped, doubled or replaced);
* ``real``: a word replaced by a real word one edit away or a homophone (``their`` -> ``there``);
* ``swap``: a word replaced by another word of the same passage.

Clean prose and clean comments count false alarms (changes per 100 words).  Each change is scored against the
corruption: precision (changes at a corrupted word / all changes), recall (corrupted words changed), restored
(changed back exactly).  One run at the lowest margin gives the figures for every higher one (each change
keeps its gain; approximate, as a change made earlier can alter a later one's context).  The baseline is
Debian's ``hunspell -d en_US`` (every word it rejects replaced by its first suggestion) when it is installed;
the report says so when it is not.  Writes OUT_PREFIX.json and OUT_PREFIX.md.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from diffusion_core.infer import channel

ROOT = Path(__file__).resolve().parents[2]
WORD = re.compile(r"\w+(?:['’]\w+)*")
PROSE, CODE = ("prose-short", "prose-long", "docs-short"), ("code-ident", "code-tail")
ERRORS = ("typo", "real", "swap")
HOMOPHONES = [("their", "there"), ("there", "their"), ("its", "it's"), ("it's", "its"), ("your", "you're"),
              ("then", "than"), ("than", "then"), ("to", "too"), ("affect", "effect"), ("effect", "affect"),
              ("lose", "loose"), ("whose", "who's"), ("were", "where"), ("weather", "whether"), ("know", "no")]
CUT_START, CUT_END = re.compile(r"^\w+"), re.compile(r"\w+$")   # a word at either end of a record
COMMENT = re.compile(r"#[^\n]*|\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|//[^\n]*|/\*[\s\S]*?\*/")


def passages(split: str, kinds: tuple[str, ...], n: int) -> list[str]:
    """The first ``n`` texts of ``kinds`` in the split (code: its comments and docstrings, one a line)."""
    out = []
    for line in open(ROOT / "data" / "eval" / f"{split}.jsonl", encoding="utf-8"):
        r = json.loads(line)
        if r["kind"] in kinds:
            text = whole_words(r["prefix"] + r["answer"] + r["suffix"])
            if kinds == CODE:
                text = "\n".join(m.group().strip() for m in COMMENT.finditer(text))
            if len(WORD.findall(text)) >= 20:
                out.append(text)
    return out[:n]


def whole_words(text: str) -> str:
    """``text`` without the word at either end when the record starts or ends in a word: the records were cut
    anywhere, and half a word (``overnment``) would be a false alarm no writer makes (a whole word there goes
    too)."""
    return CUT_END.sub("", CUT_START.sub("", text))


def typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    op = rng.choice(("swap", "drop", "double", "replace"))
    if op == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "drop":
        return word[:i] + word[i + 1:]
    if op == "replace":
        return word[:i] + rng.choice([x for x in channel.LETTERS if x != word[i].lower()]) + word[i + 1:]
    return word[:i + 1] + word[i] + word[i + 1:]


def real_word(word: str, rng: random.Random) -> str | None:
    """A common real word one edit from ``word`` (or its homophone), cased like it; None when there is none."""
    low = word.lower()
    options = [b for a, b in HOMOPHONES if a == low]
    words = channel.lexicon()
    options += [c for c in channel.one_edit(low) if words.get(c, 0) >= 20_000 and "'" not in c]
    return channel.cased(rng.choice(sorted(options)), word) if options else None


def corrupt(text: str, rate: float, error: str, rng: random.Random):
    """(corrupted text, [(start, end, original) of each corrupted word in it])."""
    spans = [m for m in WORD.finditer(text) if channel.checked(m.group()) and len(m.group()) >= 3]
    others = sorted({m.group() for m in spans})
    k = max(1, round(rate * len(WORD.findall(text))))
    chosen = {}
    for m in rng.sample(spans, len(spans)):
        if len(chosen) == k:
            break
        old = m.group()
        new = typo(old, rng) if error == "typo" else real_word(old, rng) if error == "real" else rng.choice(others)
        if new and new.lower() != old.lower():
            chosen[m] = new
    out, at, shift, marks = [], 0, 0, []
    for m in sorted(chosen, key=lambda m: m.start()):
        new = chosen[m]
        out += [text[at:m.start()], new]
        start = m.start() + shift
        marks.append((start, start + len(new), m.group()))
        shift += len(new) - len(m.group())
        at = m.end()
    return "".join(out + [text[at:]]), marks


def hunspell(text: str) -> list[dict] | None:
    """The dictionary checker's changes: each word hunspell rejects, replaced by its first suggestion."""
    if shutil.which("hunspell") is None:
        return None
    spans = list(WORD.finditer(text))
    got = subprocess.run(["hunspell", "-d", "en_US", "-a"], input="".join(f"^{m.group()}\n" for m in spans),
                         capture_output=True, text=True, check=True).stdout
    answers = got.split("\n", 1)[1].split("\n\n")   # per input line, its answers (a word may be read as two)
    changes = []
    for m, answer in zip(spans, answers):
        wrong = [line for line in answer.split("\n") if line[:1] in "&#"]
        if wrong:
            first = wrong[0].split(": ", 1)[1].split(", ")[0] if wrong[0].startswith("&") else m.group()
            changes.append({"start": m.start(), "end": m.end(), "new": first, "gain": float("inf")})
    return changes


def score(cases: list[dict], margin: float) -> dict:
    """Precision, recall and restored share of the changes that beat ``margin``; changes per 100 words."""
    changes = true_changes = hits = restored = corrupted = words = 0
    for c in cases:
        kept = [ch for ch in c["changes"] if ch["gain"] > margin]
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
            "per_100_words": round(100 * changes / max(1, words), 2), "changes": changes, "corrupted": corrupted}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--split", choices=["dev", "calib"], default="dev")
    ap.add_argument("--model")
    ap.add_argument("--passages", type=int, default=20, help="per kind (prose, code comments)")
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 4.0, 6.0])
    ap.add_argument("--costs", help="JSON of channel costs to try in place of channel.COSTS (fitting)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from diffusion_core.infer.engine import InfillEngine
    from diffusion_core.model.loading import load_model
    if args.costs:
        channel.COSTS.update(json.loads(args.costs))
    engine = InfillEngine(load_model(args.model, threads=args.threads, precision="auto"))  # as the CLI and server
    rng = random.Random(args.seed)
    runs = [(kind, error, text) for kind, kinds in (("prose", PROSE), ("code", CODE))
            for text in passages(args.split, kinds, args.passages)
            for error in ((*ERRORS, "clean") if kind == "prose" else ("clean",))]
    cases, t0, low = [], time.time(), min(args.margins)
    for n, (kind, error, text) in enumerate(runs):
        bad, marks = (text, []) if error == "clean" else corrupt(text, args.rate, error, rng)
        t = time.time()
        out = engine.proofread("", bad, "", margin=low)
        case = {"kind": kind, "error": error, "words": len(WORD.findall(bad)), "marks": marks, "text": bad,
                "seconds": round(time.time() - t, 2), "changes": [vars(c) for c in out.changes],
                "hunspell": hunspell(bad)}
        cases.append(case)
        if n % 10 == 9:
            print(f"{n + 1}/{len(runs)} passages, {time.time() - t0:.0f} s", file=sys.stderr)
    groups = {}
    for c in cases:
        groups.setdefault(f"{c['kind']} {c['error']}", []).append(c)
    table = {g: {str(m): score(cs, m) for m in args.margins} for g, cs in groups.items()}
    checker = {g: score([{**c, "changes": c["hunspell"]} for c in cs], 0.0) for g, cs in groups.items()
               if all(c["hunspell"] is not None for c in cs)}
    words = sum(c["words"] for c in cases)
    meta = {"model": str(engine.loaded.path), "precision": engine.loaded.precision, "split": args.split,
            "date": time.strftime("%Y-%m-%d"), "passages_per_kind": args.passages, "rate": args.rate,
            "costs": channel.COSTS, "seconds_per_100_words": round(100 * sum(c["seconds"] for c in cases) / words, 2)}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "table": table, "hunspell": checker,
                                                    "cases": cases}, indent=1) + "\n")
    lines = [f"Proofreading, model `{Path(meta['model']).name}` ({meta['precision']}), split {args.split}, "
             f"{meta['date']}, {args.passages} passages per kind, {args.rate:.0%} of the words corrupted, "
             f"{meta['seconds_per_100_words']} s per 100 words; costs {json.dumps(channel.COSTS)}.", "",
             "| passages | errors | margin | precision % | recall % | restored % | changes / 100 words |",
             "|---|---|---|---|---|---|---|"]
    for g in sorted(table):
        for m, s in table[g].items():
            lines.append(f"| {g.replace(' ', ' | ')} | {m} | {s['precision']} | {s['recall']} | {s['restored']} | "
                         f"{s['per_100_words']} |")
        if g in checker:
            s = checker[g]
            lines.append(f"| {g.replace(' ', ' | ')} | hunspell | {s['precision']} | {s['recall']} | "
                         f"{s['restored']} | {s['per_100_words']} |")
    if not checker:
        lines.append("\nhunspell is not installed (apt-get install hunspell hunspell-en-us): no baseline.")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
