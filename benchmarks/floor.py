"""The compute floor: how fast a forward pass could be on this machine if it ran at matmul speed.

FLOPs of one pass over ``rows`` canvases of ``T`` tokens with ``N`` masked slots:

    rows * (2 * P * T + 4 * T^2 * H * L)  +  2 * W_head * N

P: the model's parameters without its embeddings, H: hidden size, L: layers,
W_head: the vocabulary head's matrix weights (it runs only at the masked slots,
see diffusion_core/model/mlm_head.py).  The machine's rate is the best of several
``torch.matmul`` calls (n x n) at the benchmark's thread count, in the model's
dtype (bf16 for a bf16 model, else fp32).  floor ms = FLOPs / rate;
"x floor" = measured ms / floor ms.

The pass timed is a full one: the first pass of the first short prose gap at its
given length (one row, the context on both sides and the gap's slots).  Grown
fills (unknown length) run such passes and, on a Llama denoiser, cheaper
partial ones that reuse the context's keys and values (context_cache.py), which
this formula does not describe.
"""
from __future__ import annotations

import statistics
import time

import torch

from .timing import summary


def matmul_rate(threads: int, dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 20) -> dict:
    """Measured matmul throughput (GFLOP/s) with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b)
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        seconds.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"n": n, "threads": threads, "dtype": str(dtype).removeprefix("torch."), "reps": reps,
            "best_gflops": round(flops / min(seconds) / 1e9, 2),
            "median_gflops": round(flops / statistics.median(seconds) / 1e9, 2)}


def model_shape(runner) -> dict:
    """Sizes the FLOP formula needs, read from a ``MaskedLMRunner`` (diffusion_core/model/mlm_head.py) over a
    float model (int8 layers hide their weights from ``parameters()``)."""
    model, cfg = runner.model, runner.model.config
    base = runner.base if runner.split else getattr(model, getattr(model, "base_model_prefix", ""), model)
    emb = getattr(base, "embeddings", None) or getattr(base, "embed_tokens", None)  # BERT-style, Llama
    emb_params = sum(p.numel() for p in emb.parameters()) if emb is not None else 0
    # a head tied to the embeddings owns no weights: its matrix is the vocabulary x hidden table
    head = sum(p.numel() for p in runner.head.parameters() if p.dim() == 2) if runner.split else 0
    return {"params_total": sum(p.numel() for p in model.parameters()), "params_embeddings": emb_params,
            "params_body": sum(p.numel() for p in base.parameters()) - emb_params,
            "head_matrix_weights": head or cfg.hidden_size * cfg.vocab_size,
            "hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers, "vocab": cfg.vocab_size,
            "head_only_at_masked_slots": bool(runner.split)}


def pass_flops(shape: dict, rows: int, tokens: int, masked: int) -> float:
    """FLOPs of one forward pass (see the module docstring). Without a split head, the head runs everywhere."""
    head_slots = masked if shape["head_only_at_masked_slots"] else rows * tokens
    body = 2 * shape["params_body"] * tokens + 4 * tokens * tokens * shape["hidden"] * shape["layers"]
    return rows * body + 2 * shape["head_matrix_weights"] * head_slots


class FirstPass:
    """Stands in for ``engine.runner`` and keeps the inputs of the first pass it sees."""

    def __init__(self, runner):
        self.runner = runner
        self.captured: tuple | None = None

    def __call__(self, ids, attention, positions):
        if self.captured is None:
            self.captured = (ids.clone(), attention.clone(), positions.clone())
        return self.runner(ids, attention, positions)


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


def typical_pass(engine, job, shape: dict, gflops: float, reps: int) -> dict:
    """The first pass of ``job``'s first input (a job of given length, so it runs on ``engine.runner``),
    replayed and timed alone, against its floor."""
    first = FirstPass(engine.runner)
    engine.runner = first
    try:
        job.call(engine, job.inputs[0], engine.settings)
    finally:
        engine.runner = first.runner
    ids, _, positions = first.captured
    rows, tokens, masked = ids.shape[0], ids.shape[1], int(positions.sum())
    flops = pass_flops(shape, rows, tokens, masked)
    measured = summary(time_pass(engine.runner, first.captured, max(reps, 5)))
    floor_ms = flops / (gflops * 1e9) * 1000
    return {"rows": rows, "tokens": tokens, "masked": masked, "flops": flops, "floor_ms": round(floor_ms, 3),
            "measured": measured, "x_floor": round(measured["p50_ms"] / floor_ms, 2)}
