"""Score cut rules offline on collected grow rows.  Usage: analyse.py CALIB.rows DEV.rows"""
import difflib
import json
import math
import statistics
import sys


def load(path):
    rows = []
    for line in open(path):
        r = json.loads(line)
        r["claims"] = {int(k): v for k, v in r["claims"].items()}
        r["texts"] = {int(k): v for k, v in r["texts"].items()}
        cum, run = [0.0], 0.0
        for lp in r["logp"]:
            run += lp
            cum.append(run)
        r["pend"] = {L: c - cum[L] for L, c in r["claims"].items()}
        r["cum"] = cum
        rows.append(r)
    return rows


def pick(r, rule, p):
    Ls = sorted(r["claims"])
    ok = [L for L in Ls if r["texts"][L].strip()] or Ls
    if rule == "claim":          # today: the best P(tokens) x P(end), with a per-token bonus p
        return max(ok, key=lambda L: r["claims"][L] + p * L)
    if rule == "logbonus":       # a bonus growing with log length
        return max(ok, key=lambda L: r["claims"][L] + p * math.log(L))
    if rule == "first_end":      # the first length where P(end) reaches p (llama.cpp-style end test)
        for L in ok:
            if r["pend"][L] >= math.log(p):
                return L
        return max(ok, key=lambda L: r["claims"][L])
    if rule == "end_vs_next":    # end when p * P(end) beats the next token's probability
        for L in ok:
            nxt = r["tops"][L] if L < len(r["tops"]) else -99
            if math.log(p) + r["pend"][L] >= nxt:
                return L
        return max(ok, key=lambda L: r["claims"][L])
    if rule == "mean_claim":     # per-token mean log-prob plus P(end) weighted by p
        return max(ok, key=lambda L: r["cum"][L] / L + p * r["pend"][L])
    raise ValueError(rule)


def score(rows, rule, p):
    by = {}
    for r in rows:
        t = r["texts"][pick(r, rule, p)].strip()
        a = r["answer"].strip()
        by.setdefault(r["kind"], []).append((float(t == a), difflib.SequenceMatcher(None, t, a).ratio(),
                                             len(t) / max(1, len(a))))
    out = {}
    for k, v in sorted(by.items()):
        out[k] = (100 * statistics.fmean(x[0] for x in v), 100 * statistics.fmean(x[1] for x in v),
                  statistics.median(x[2] for x in v))
    allv = [x for v in by.values() for x in v]
    out["overall"] = (100 * statistics.fmean(x[0] for x in allv), 100 * statistics.fmean(x[1] for x in allv),
                      statistics.median(x[2] for x in allv))
    return out


GRID = {"claim": [0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5], "logbonus": [0, 0.5, 1, 2, 3, 4],
        "first_end": [0.05, 0.1, 0.2, 0.3, 0.5, 0.7], "end_vs_next": [0.25, 0.5, 1, 2, 3, 5],
        "mean_claim": [0.1, 0.25, 0.5, 1.0]}


def show(name, res):
    cells = " | ".join(f"{k} {e:.1f}/{s:.1f}/{q:.2f}" for k, (e, s, q) in res.items())
    print(f"{name:22s} {cells}")


if __name__ == "__main__":
    calib, dev = load(sys.argv[1]), load(sys.argv[2])
    print("rule p | kind exact/similarity/median length ratio  (calibration split)")
    best = {}
    for rule, ps in GRID.items():
        for p in ps:
            res = score(calib, rule, p)
            show(f"{rule} {p}", res)
            # the objective: overall similarity, and the worst kind's length ratio toward 1
            worst = min(min(q, 1 / q) if q > 0 else 0 for k, (e, s, q) in res.items() if k != "overall")
            best[(rule, p)] = res["overall"][1] + res["overall"][0] + 20 * worst
    (rule, p), _ = max(best.items(), key=lambda kv: kv[1])
    print(f"\nchosen on calibration: {rule} {p}\n\ndev split:")
    show("today (claim 0)", score(dev, "claim", 0))
    show(f"chosen {rule} {p}", score(dev, rule, p))
    for rule2, ps in GRID.items():
        show(f"dev {rule2} best-cal", score(dev, rule2, max(ps, key=lambda q: best[(rule2, q)])))
