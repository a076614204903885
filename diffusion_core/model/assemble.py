"""Base + delta: build a servable denoiser from the converted base and a model directory's delta.

A delta model directory holds ``config.json`` (``diffill_base`` names the base, plus the engine's
calibrated ``diffill_*`` values), ``delta.safetensors`` (see ``adapter.py``) and a model card.
The tokenizer and the frozen weights come from the converted base (``base.py``), which is
fetched and converted on first use when it is missing.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from diffusion_core.model.base import BASES, BaseError, BaseSpec, base_dir, ensure_base, is_converted

DELTA_FILE = "delta.safetensors"


def load_base(spec: BaseSpec, fetch: bool = True, dtype=None, delta: Path | None = None):
    """(NativeLlamaDenoiser with the base weights in ``dtype`` (default fp32), its FastTokenizer, the base's GGUF
    SHA-256); with ``delta``, the delta file at that path folded in (``adapter.merged_weights``).

    Each weight is read into private memory, merged and cast before the next is read (``base.read_tensors``),
    and the model is built on the meta device and takes those tensors as its weights: no random init, no
    copy, no fp32 model beside a bf16 one."""
    import torch

    from diffusion_core.model.adapter import merged_weights
    from diffusion_core.model.base import read_tensors
    from diffusion_core.model.llama import NativeLlamaDenoiser
    from diffusion_core.model.tokenizer import FastTokenizer
    if not is_converted(spec):
        if not fetch:
            raise BaseError(f"the base {spec.name} is not in {base_dir(spec)}; run `diffill fetch-base` "
                            "(scripts/setup.sh does) to fetch and convert it once")
        ensure_base(spec)
    path = base_dir(spec)
    config = json.loads((path / "config.json").read_text())
    sha = json.loads((path / "diffill_base.json").read_text())["gguf_sha256"]
    dtype = dtype or torch.float32
    tensors = read_tensors(path / "model.safetensors")
    state = merged_weights(tensors, delta, sha, dtype) if delta else {name: w.to(dtype) for name, w in tensors}
    with torch.device("meta"), _no_init(torch):
        model = NativeLlamaDenoiser(config)
    model.load_weights(state)
    return model, FastTokenizer(path), sha


@contextlib.contextmanager
def _no_init(torch):
    """Modules skip drawing their random initial weights: the loaded ones replace them, and drawing them on the
    meta device imports ``torch._dynamo`` (0.9 s of a server's 3.2 s start-up, measured 2026-12-07)."""
    names = [n for n in ("normal_", "uniform_", "kaiming_uniform_") if hasattr(torch.nn.init, n)]
    drawn = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, f in drawn.items():
            setattr(torch.nn.init, n, f)


def base_spec_of(config: dict) -> BaseSpec:
    name = config.get("diffill_base")
    if name not in BASES:
        raise BaseError(f"unknown base {name!r} (known: {', '.join(sorted(BASES))})")
    return BASES[name]


def load_delta_model(path: Path, config: dict, dtype=None):
    """(merged NativeLlamaDenoiser in ``dtype`` (default fp32), tokenizer) for a delta model directory."""
    # Never fetched implicitly: serving a model must not reach the network; set-up fetches the base.
    model, tokenizer, _ = load_base(base_spec_of(config), fetch=False, dtype=dtype, delta=path / DELTA_FILE)
    model.config.__dict__.update(config)
    model.denoiser.set_layout(config.get("diffill_attention", "full"), tokenizer.mask_token_id)
    return model, tokenizer
