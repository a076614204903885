"""The fixed inputs every benchmark uses, all taken from data/eval/dev.jsonl.

Nothing here is random: each job uses the first ``n`` suitable items of one
kind, in file order, so two runs (or two machines) time exactly the same
text.  Jobs the eval set has no ready-made gaps for (a multi-line gap, three
gaps in one text, a ~40-word selection) are cut from the items' full text
(``prefix + answer + suffix``) by the rules below.
"""
from __future__ import annotations

import re
from pathlib import Path

from diffusion_core.eval.evaluate import read_items

DEV = Path(__file__).resolve().parents[1] / "data" / "eval" / "dev.jsonl"
WORD = re.compile(r"\S+")


def full_text(item: dict) -> str:
    return item["prefix"] + item["answer"] + item["suffix"]


def of_kind(items: list[dict], kind: str) -> list[dict]:
    return [it for it in items if it["kind"] == kind]


def single_gap(item: dict) -> dict:
    """A dev item as a one-gap input: prefix, suffix, the answer to score against."""
    return {"id": item["id"], "prefix": item["prefix"], "suffix": item["suffix"], "answers": [item["answer"]]}


def multi_line_gap(item: dict) -> dict | None:
    """Cut whole lines out of a code item: the first non-blank line after the one holding the
    original gap, and the one or two lines after it (3 lines, or 2 when 3 exceed 240 characters)."""
    lines = full_text(item).split("\n")
    start = item["prefix"].count("\n") + 1
    while start < len(lines) and not lines[start].strip():
        start += 1
    for n in (3, 2):
        cut = lines[start:start + n]
        if len(cut) == n and start + n < len(lines) and len("\n".join(cut)) <= 240:
            return {"id": f"{item['id']}/lines{start}-{start + n - 1}",
                    "prefix": "\n".join(lines[:start]) + "\n",
                    "suffix": "\n" + "\n".join(lines[start + n:]),
                    "answers": ["\n".join(cut)]}
    return None


def three_gaps(item: dict, spans=((6, 7), (14, 15))) -> dict | None:
    """Three gaps in one text: the item's own gap, and two 2-word spans of its suffix
    (words 7-8 and 15-16 after the gap, counting from 1).  ``one``: the same text with the item's own gap
    only (the two spans written), for 3 gaps against 1."""
    words = list(WORD.finditer(item["suffix"]))
    if len(words) <= spans[-1][1] + 1:
        return None
    suffix = item["suffix"]
    cuts = [(words[a].start(), words[b].end()) for a, b in spans]
    pieces = [item["prefix"], suffix[:cuts[0][0]], suffix[cuts[0][1]:cuts[1][0]], suffix[cuts[1][1]:]]
    answers = [item["answer"]] + [suffix[a:b] for a, b in cuts]
    return {"id": f"{item['id']}/3gaps", "pieces": pieces, "answers": answers, "one": [item["prefix"], suffix]}


def rewrite_selection(item: dict, words: int = 40) -> dict | None:
    """A ~40-word selection starting where the item's gap starts (the answer and the words after it)."""
    text = full_text(item)
    start = len(item["prefix"])
    found = list(WORD.finditer(text, start))
    if len(found) < words + 1:
        return None
    end = found[words - 1].end()
    return {"id": f"{item['id']}/rewrite{words}", "prefix": text[:start], "passage": text[start:end],
            "suffix": text[end:], "answers": None}


def first(items: list[dict], build, n: int) -> list[dict]:
    """The first ``n`` items (in file order) that ``build`` can turn into an input."""
    out = []
    for it in items:
        built = build(it)
        if built is not None:
            out.append(built)
        if len(out) >= n:
            break
    return out


def with_length(x: dict, tokenizer) -> dict:
    """A one-gap input with its answer's token count as ``length`` (the oracle, at least 1)."""
    return dict(x, length=max(1, len(tokenizer(x["answers"][0], add_special_tokens=False).input_ids)))


def quality_subset(items: list[dict], n: int) -> list[dict]:
    """A fixed, kind-balanced subset: the first items of each kind, interleaved kind by kind."""
    kinds = sorted({it["kind"] for it in items})
    per_kind = [of_kind(items, k) for k in kinds]
    out = []
    for i in range(max(len(p) for p in per_kind)):
        for p in per_kind:
            if i < len(p):
                out.append(p[i])
    return out[:n]


def server_cases(items: list[dict], n: int) -> list[dict]:
    """What the server is timed on: inline completion at the first ``n`` short prose gaps (text on both
    sides of the cursor) and at the first ``n`` code-line ends (``code-tail``: the gap ends its line)."""
    return [{"name": "short prose gap", "language": "plaintext",
             "inputs": first(of_kind(items, "prose-short"), single_gap, n)},
            {"name": "code-line gap", "language": "python", "inputs": first(of_kind(items, "code-tail"), single_gap, n)}]


def per_token_inputs(items: list[dict], tokenizer, n: int) -> list[dict]:
    """ms per filled token is compared on the first ``n`` ``prose-short`` and the first ``n`` ``code-tail``
    gaps, each with its answer's token count (the baseline's length)."""
    return [with_length(x, tokenizer) for kind in ("prose-short", "code-tail")
            for x in first(of_kind(items, kind), single_gap, n)]


def load_dev(path: str | Path = DEV) -> list[dict]:
    return read_items(path)
