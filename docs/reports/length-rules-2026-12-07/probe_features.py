"""The states that predict grow's two masked slots on its first pass, per gap. Usage: probe_features.py GAPS.jsonl OUT.safetensors (and OUT.safetensors.meta.json)"""
import json, sys, time
import torch
from probe_io import save
from diffusion_core.infer.engine import EngineSettings, InfillEngine
from diffusion_core.model.loading import load_model
torch.set_num_threads(1)
engine = InfillEngine(load_model())
s = EngineSettings()
model = engine.loaded.model
mask = engine.tokenizer.mask_token_id
rows, meta = [], []
t0 = time.time()
for n, line in enumerate(open(sys.argv[1])):
    it = json.loads(line)
    before, after, anchor = engine._grow_sides(it["prefix"], [it["suffix"]], engine._context(s, 16, 1))
    ids = torch.tensor(list(before) + [mask, mask] + list(after))[None]
    with torch.no_grad():
        h = model.denoiser(ids)[0]            # (T, H) shifted
        a = len(before)
        feats = h[a:a + 2].float()            # states predicting the two slots
        lp = model.lm_head(h[a:a + 2]).float().log_softmax(-1)
    ans = len(engine.tokenizer(it["answer"], add_special_tokens=False).input_ids)
    rows.append(torch.cat([feats.reshape(-1)]))
    meta.append({"id": it["id"], "kind": it["kind"], "tokens": ans, "words": len(it["answer"].split()), "chars": len(it["answer"])})
    if n % 100 == 0: print(n, round(time.time() - t0), file=sys.stderr)
save(sys.argv[2], torch.stack(rows), meta)
