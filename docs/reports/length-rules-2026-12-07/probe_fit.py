"""Ridge probe: predict log(answer tokens) from grow's first-pass states; fit on ARG1, report on ARG2 per kind."""
from probe_io import load
import sys, torch, statistics as st
cal = load(sys.argv[1]); dev = load(sys.argv[2])
def xy(d):
    return d["x"], torch.tensor([m["tokens"] for m in d["meta"]], dtype=torch.float).log()
xc, yc = xy(cal); xd, yd = xy(dev)
mu, sd = xc.mean(0), xc.std(0) + 1e-3
xc, xd = (xc - mu) / sd, (xd - mu) / sd
ym = yc.mean()
def auc(p, a, b):
    pa, pb = p[a], p[b]
    return float((pa[:, None] < pb[None, :]).float().mean())
kinds = [m["kind"] for m in dev["meta"]]
short = torch.tensor([k == "prose-short" for k in kinds]); long = torch.tensor([k == "prose-long" for k in kinds])
for lam in [1, 10, 100, 1000, 10000]:
    w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(xc.shape[1]), xc.T @ (yc - ym))
    p = xd @ w + ym
    r = torch.corrcoef(torch.stack([p, yd]))[0, 1]
    out = []
    for k in sorted(set(kinds)):
        i = [j for j, m in enumerate(kinds) if m == k]
        ratio = st.median([float((p[j] - yd[j]).exp()) for j in i])
        out.append(f"{k} {st.median(float(p[j].exp()) for j in i):.1f}/{st.median(float(yd[j].exp()) for j in i):.1f}")
    # within prose: AUC short vs long
    print(lam, f"r={r:.2f} auc(short<long)={auc(p, short, long):.2f}", " | ".join(out))
