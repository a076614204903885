"""Gaps of the evaluation kinds cut from the training corpus (never the eval splits): a length probe's training set.
Usage: probe_gaps.py PER_KIND CORPUS/train.jsonl > gaps.jsonl"""
import json, random, sys
from diffusion_core.eval.make_eval_set import prose_gap, code_gap
rng = random.Random(11)
docs = [json.loads(l) for l in open(sys.argv[2])]
print(docs[0].keys(), file=sys.stderr)
code = [d["text"] for d in docs if d.get("kind", d.get("source", "")) in ("code", "cpython-stdlib") or d.get("source") == "cpython-stdlib"]
prose = [d["text"] for d in docs if d not in code and not d["text"].lstrip().startswith(("import ", "from ", "#", '"""'))]
prose = [d["text"] for d in docs if d["text"] not in set(code)][:]
print(len(code), len(prose), file=sys.stderr)
makers = {"prose-short": (prose, lambda t: prose_gap(t, rng, 1, 3)), "prose-long": (prose, lambda t: prose_gap(t, rng, 4, 10)),
          "code-ident": (code, lambda t: code_gap(t, rng, "code-ident")), "code-tail": (code, lambda t: code_gap(t, rng, "code-tail"))}
n = int(sys.argv[1])
for kind, (pool, make) in makers.items():
    made = 0
    while made < n:
        it = make(rng.choice(pool))
        if it and it["answer"].strip():
            print(json.dumps({"id": f"{kind}-{made}", "kind": kind, **it})); made += 1
