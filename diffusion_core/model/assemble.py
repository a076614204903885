"""Base + delta: build a servable denoiser from the converted base and a model directory's delta.

A delta model directory holds ``config.json`` (``diffill_base`` names the base, plus the engine's
calibrated ``diffill_*`` values), ``delta.safetensors`` (see ``adapter.py``) and a model card.
The tokenizer and the frozen weights come from the converted base (``base.py``), which is
fetched and converted on first use when it is missing.
"""
from __future__ import annotations

import json
from pathlib import Path

from diffusion_core.model.base import BASES, BaseError, BaseSpec, base_dir, ensure_base, is_converted

DELTA_FILE = "delta.safetensors"


def load_base(spec: BaseSpec, fetch: bool = True):
    """(NativeLlamaDenoiser with the base weights, its FastTokenizer, the base's GGUF SHA-256)."""
    from safetensors.torch import load_file

    from diffusion_core.model.tokenizer import FastTokenizer
    from diffusion_core.model.llama import NativeLlamaDenoiser
    if not is_converted(spec):
        if not fetch:
            raise BaseError(f"the base {spec.name} is not in {base_dir(spec)}; run `diffill fetch-base` "
                            "(scripts/setup.sh does) to fetch and convert it once")
        ensure_base(spec)
    path = base_dir(spec)
    config = json.loads((path / "config.json").read_text())
    model = NativeLlamaDenoiser(config)
    model.load_weights(load_file(str(path / "model.safetensors")))
    sha = json.loads((path / "diffill_base.json").read_text())["gguf_sha256"]
    return model, FastTokenizer(path), sha


def base_spec_of(config: dict) -> BaseSpec:
    name = config.get("diffill_base")
    if name not in BASES:
        raise BaseError(f"unknown base {name!r} (known: {', '.join(sorted(BASES))})")
    return BASES[name]


def load_delta_model(path: Path, config: dict):
    """(merged NativeLlamaDenoiser, tokenizer) for a delta model directory."""
    from diffusion_core.model.adapter import apply_delta
    # Never fetched implicitly: serving a model must not reach the network; set-up fetches the base.
    model, tokenizer, sha = load_base(base_spec_of(config), fetch=False)
    model = apply_delta(model, path / DELTA_FILE, sha)
    model.config.__dict__.update(config)
    model.denoiser.set_layout(config.get("diffill_attention", "full"), tokenizer.mask_token_id)
    return model, tokenizer
