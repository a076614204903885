"""The compute floor: how fast a forward pass could be on this machine if it ran at matmul speed.

FLOPs of one pass over ``rows`` canvases of ``T`` tokens with ``N`` masked slots:

    rows * (2 * P * T + 4 * T^2 * H * L)  +  2 * W_head * N

P: encoder parameters (all of the base model except its embeddings), H: hidden
size, L: layers, W_head: the vocabulary head's matrix weights (it runs only at
masked slots, see diffusion_core/mlm_head.py).  The machine's rate is the best
of several fp32 ``torch.matmul`` calls (n x n) at the benchmark's thread count.
floor ms = FLOPs / rate; "x floor" = measured ms / floor ms.
"""
from __future__ import annotations

import statistics
import time

import torch


def matmul_rate(threads: int, n: int = 1024, reps: int = 20) -> dict:
    """Measured fp32 matmul throughput (GFLOP/s) with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.matmul(a, b)
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        seconds.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"n": n, "threads": threads, "reps": reps, "best_gflops": round(flops / min(seconds) / 1e9, 2),
            "median_gflops": round(flops / statistics.median(seconds) / 1e9, 2)}


def model_shape(runner) -> dict:
    """Sizes the FLOP formula needs, read from a ``MaskedLMRunner`` (diffusion_core/mlm_head.py)."""
    model = runner.model
    cfg = model.config
    base = runner.base if runner.split else getattr(model, getattr(model, "base_model_prefix", ""), model)
    emb = getattr(base, "embeddings", None)
    emb_params = sum(p.numel() for p in emb.parameters()) if emb is not None else 0
    encoder_params = sum(p.numel() for p in base.parameters()) - emb_params
    head = runner.head
    head_weights = sum(p.numel() for p in head.parameters() if p.dim() == 2) if head is not None else \
        cfg.hidden_size * cfg.vocab_size
    return {"params_total": sum(p.numel() for p in model.parameters()), "params_embeddings": emb_params,
            "params_encoder": encoder_params, "head_matrix_weights": head_weights,
            "hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers, "vocab": cfg.vocab_size,
            "head_only_at_masked_slots": bool(runner.split)}


def pass_flops(shape: dict, rows: int, tokens: int, masked: int) -> float:
    """FLOPs of one forward pass (see the module docstring). Without a split head, the head runs everywhere."""
    head_slots = masked if shape["head_only_at_masked_slots"] else rows * tokens
    body = 2 * shape["params_encoder"] * tokens + 4 * tokens * tokens * shape["hidden"] * shape["layers"]
    return rows * body + 2 * shape["head_matrix_weights"] * head_slots


class PassRecorder:
    """Stands in for ``engine.runner`` and notes each pass's (rows, tokens, masked slots).

    ``capture`` keeps the inputs of the first pass whose batch has exactly that many
    rows, so a typical pass can be replayed and timed on its own.
    """

    def __init__(self, runner, capture_rows: int | None = None):
        self.runner = runner
        self.calls: list[tuple[int, int, int]] = []
        self.capture_rows = capture_rows
        self.captured: tuple | None = None

    def __call__(self, ids, attention, positions):
        rows, tokens = ids.shape
        self.calls.append((rows, tokens, int(positions.sum())))
        if self.captured is None and self.capture_rows == rows:
            self.captured = (ids.clone(), attention.clone(), positions.clone())
        return self.runner(ids, attention, positions)

    def take(self) -> list[tuple[int, int, int]]:
        calls, self.calls = self.calls, []
        return calls


def floor_ms(shape: dict, calls: list[tuple[int, int, int]], gflops: float) -> float:
    return sum(pass_flops(shape, r, t, m) for r, t, m in calls) / (gflops * 1e9) * 1000.0


@torch.no_grad()
def time_pass(runner, captured: tuple, reps: int) -> list[float]:
    """Milliseconds of ``reps`` forward passes over captured inputs (after one warm-up)."""
    runner(*captured)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        runner(*captured)
        out.append(1000.0 * (time.perf_counter() - t0))
    return out
