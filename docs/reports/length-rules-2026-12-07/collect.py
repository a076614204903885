"""Grow every gap of a split to MAX tokens with no early stop; record per length the claim's parts and the
fitted text, so that any cut rule can be scored offline.  Usage: collect.py SPLIT.jsonl OUT.jsonl"""
import json
import sys
import time

import torch

import diffusion_core.infer.engine as E
from diffusion_core.infer.engine import EngineSettings, InfillEngine
from diffusion_core.model.loading import load_model

MAX = 24
torch.set_num_threads(1)
engine = InfillEngine(load_model())
seen = {}
real_grow = E.grow


def spy(forward, before, after, mask, ends, never, max_tokens, window, threshold, ban, on_step, keep, may_end=None):
    # per pass: the top token's probability at the first slot (what writing on would cost)
    tops = []

    def fwd(ids, positions):
        logits = forward(ids, positions)
        tops.append(float(logits.float().log_softmax(-1)[0].max()))
        return logits
    grown = real_grow(fwd, before, after, mask, ends, never, max_tokens, window, threshold, ban, on_step, MAX + 1, may_end)
    seen["grown"], seen["tops"] = grown, tops
    return grown


E.grow = spy
s = EngineSettings(strategy="one-shot", max_tokens=MAX)
out = open(sys.argv[2], "w")
t0 = time.time()
for n, line in enumerate(open(sys.argv[1])):
    it = json.loads(line)
    fills = engine.fill(it["prefix"], it["suffix"], candidates=MAX, settings=s)
    g = seen["grown"]
    before, after, anchor = engine._grow_sides(it["prefix"], [it["suffix"]], engine._context(s, MAX, 1))
    texts = {L: E.fit(it["prefix"], E.decode_fill(engine.tokenizer, anchor, g.tokens[:L]), it["suffix"]) for L in g.claims}
    out.write(json.dumps({"id": it["id"], "kind": it["kind"], "answer": it["answer"], "logp": g.logp,
                          "claims": {str(k): v for k, v in g.claims.items()}, "tops": seen["tops"],
                          "texts": {str(k): v for k, v in texts.items()}}) + "\n")
    out.flush()
    if n % 50 == 0:
        print(n, round(time.time() - t0), file=sys.stderr)
