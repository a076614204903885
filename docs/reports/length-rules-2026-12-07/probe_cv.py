"""5-fold cross-validated AUC, prose-short against prose-long, of the ridge probe on the corpus gaps (train.safetensors)."""
from probe_io import load
import torch
d = load("train.safetensors"); x = d["x"]; kinds = [m["kind"] for m in d["meta"]]
y = torch.tensor([m["tokens"] for m in d["meta"]], dtype=torch.float).log()
idx = [i for i, k in enumerate(kinds) if k.startswith("prose")]
x, y = x[idx], y[idx]; lab = torch.tensor([kinds[i] == "prose-long" for i in idx])
g = torch.Generator().manual_seed(0); perm = torch.randperm(len(idx), generator=g)
for lam in [10, 100, 1000, 10000]:
    aucs = []
    for f in range(5):
        te = perm[f::5]; tr = torch.tensor([i for i in perm.tolist() if i not in set(te.tolist())])
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-3
        a, b = (x[tr] - mu) / sd, (x[te] - mu) / sd
        w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ (y[tr] - y[tr].mean()))
        p = b @ w; L = lab[te]
        aucs.append(float((p[~L][:, None] < p[L][None, :]).float().mean()))
    print(lam, "in-domain 5-fold AUC prose short<long", round(sum(aucs) / 5, 3))
