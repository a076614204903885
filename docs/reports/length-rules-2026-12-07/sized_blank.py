"""Dev gaps with a length hint in characters, off by a random factor in [1/F, F] (log-uniform): what a
marker sized by a writer could tell.  Tokens = characters x the context's own tokens per character."""
import json, math, random, sys, statistics as st, torch
from diffusion_core.eval.evaluate import score_one
from diffusion_core.infer.engine import InfillEngine, Prior
from diffusion_core.model.loading import load_model
torch.set_num_threads(1)
e = InfillEngine(load_model()); s = e.settings
items = [json.loads(l) for l in open(sys.argv[1])]
kinds = sys.argv[2].split(","); F = float(sys.argv[3])
items = [i for i in items if i["kind"] in kinds]
rng = random.Random(5)
res = {}
for it in items:
    ctx = it["prefix"][-200:]
    per_char = len(e.tokenizer(ctx, add_special_tokens=False).input_ids) / max(1, len(ctx))
    hint = len(it["answer"]) * math.exp(rng.uniform(-math.log(F), math.log(F)))
    n = max(1, round(hint * per_char))
    prior = Prior(max(2, 2 * n), min_tokens=max(1, round(0.75 * n)))
    line = it["suffix"].split("\n")[0]
    f = e._grow_gaps([it["prefix"], it["suffix"]], 1, None, s, [bool(line.strip())], None, prior)[0]
    res.setdefault(it["kind"], []).append(score_one(f.text, it["answer"]))
for k, sc in res.items():
    print("F", F, k, "exact %.1f sim %.1f ratio %.2f" % (100 * st.fmean(x["exact"] for x in sc), 100 * st.fmean(x["char_sim"] for x in sc), st.median(x["length_ratio"] for x in sc)), flush=True)
