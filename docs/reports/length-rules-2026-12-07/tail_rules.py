"""Score line-end ending rules offline on grow rows of code-tail gaps."""
import json, re, sys, difflib, statistics as st
sys.path.insert(0, "/work/main")
from diffusion_core.eval.evaluate import score_one

OPEN, CLOSE = "([{", ")]}"
NEEDS_MORE = re.compile(r"(?:[=+\-*/%<>|&^~.@\\]|->|\b(?:and|or|not|in|is|if|else|for|lambda|from|import|as|return|with|the|a|an|of|to|by|If|The|A|An)\b)\s*$")
CONNECT = re.compile(r"\b(?:and|or|not|in|is|if|else|for|the|a|an|of|to|by|with|that|which|If|The|A|An|When|This)\s*$")

def scan(text, state=None):
    """(string quote open or None, bracket depth) after ``text``."""
    quote, depth = state or (None, 0)
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\": i += 2; continue
            if text.startswith(quote, i): i += len(quote); quote = None; continue
        else:
            if c == "#": break
            if text.startswith('"""', i) or text.startswith("'''", i): quote = text[i:i+3]; i += 3; continue
            if c in "\"'": quote = c
            elif c in OPEN: depth += 1
            elif c in CLOSE: depth -= 1
        i += 1
    return quote, depth

def in_docstring(prefix):
    return (prefix.count('"""') + prefix.count("'''")) % 2 == 1

PROSE, WRAP = 'connect', 12
def closed(prefix, fill):
    line = prefix[prefix.rfind("\n") + 1:]
    if in_docstring(prefix) or "#" in line:  # prose inside code
        if PROSE == "connect":
            return not CONNECT.search(fill)
        lines = [l for l in prefix.splitlines()[-4:-1] if l.strip()]
        width = max((len(l) for l in lines), default=0)
        return (len(line + fill) >= width - WRAP or bool(re.search(r"[.!?:]\s*$", fill))) and not CONNECT.search(fill)
    q0, d0 = scan(line)
    q1, d1 = scan(fill, (q0, 0))
    return q1 == q0 and (d1 <= 0 or fill.rstrip()[-1:] in OPEN) and not NEEDS_MORE.search(fill)

def pick(row, rule, cap=16):
    ok = [L for L in row["claims"] if int(L) <= cap and rule(row, row["texts"][L])]
    pool = ok or [L for L in row["claims"] if int(L) <= cap]
    return max(pool, key=lambda L: row["claims"][L])

for split in sys.argv[1:]:
    rows = [json.loads(l) for l in open(split)]
    items = {json.loads(l)["id"]: json.loads(l) for l in open(split.replace("-rows", ""))}
    for name, rule in [("today", lambda r, t: True), ("closed", lambda r, t: closed(items[r["id"]]["prefix"], t))]:
      for PROSE, WRAP in ([("connect", 0)] if name == "today" else [("connect", 0), ("wrap", 8), ("wrap", 12), ("wrap", 20)]):
        globals().update(PROSE=PROSE, WRAP=WRAP)
        sc = [score_one(r["texts"][pick(r, rule)], r["answer"]) for r in rows]
        print(split.split("/")[-1], name, PROSE, WRAP, "exact %.1f sim %.1f ratio %.2f" % (100 * st.fmean(s["exact"] for s in sc), 100 * st.fmean(s["char_sim"] for s in sc), st.median(s["length_ratio"] for s in sc)))

if __name__ == "__main__" and len(sys.argv) > 1:
    split = sys.argv[1]
    rows = [json.loads(l) for l in open(split)]
    items = {json.loads(l)["id"]: json.loads(l) for l in open(split.replace("-rows", ""))}
    for r in rows:
        a, b = pick(r, lambda r, t: True), pick(r, lambda r, t: closed(items[r["id"]]["prefix"], t))
        if a != b:
            line = items[r["id"]]["prefix"]; line = line[line.rfind("\n") + 1:]
            print(repr(line[-40:]).ljust(44), "|", repr(r["texts"][a]).ljust(30), "->", repr(r["texts"][b]).ljust(40), "| ans", repr(r["answer"]))
