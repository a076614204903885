"""Dev gaps as selection refills: the prior knows the answer's token count (no `unlike`)."""
import json, sys, statistics as st, torch
from diffusion_core.eval.evaluate import score_one
from diffusion_core.infer.engine import InfillEngine, Prior
from diffusion_core.model.loading import load_model
torch.set_num_threads(1)
e = InfillEngine(load_model()); s = e.settings
kinds = sys.argv[2].split(",")
items = [json.loads(l) for l in open(sys.argv[1])]
items = [i for i in items if i["kind"] in kinds]
lo = float(sys.argv[3]); hi = float(sys.argv[4])
res = {}
for it in items:
    n = len(e.tokenizer(it["answer"], add_special_tokens=False).input_ids)
    prior = Prior(max(2, round(hi * n)), min_tokens=max(1, round(lo * n)))
    f = e._grow_gaps([it["prefix"], it["suffix"]], 1, None, s, [True if "\n" not in it["suffix"].split("\n")[0] and it["suffix"].split("\n")[0].strip() else False], None, prior)[0]
    res.setdefault(it["kind"], []).append(score_one(f.text, it["answer"]))
for k, sc in res.items():
    print(lo, hi, k, "exact %.1f sim %.1f ratio %.2f" % (100 * st.fmean(x["exact"] for x in sc), 100 * st.fmean(x["char_sim"] for x in sc), st.median(x["length_ratio"] for x in sc)), flush=True)
