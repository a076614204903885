"""Turn a training checkpoint into a model directory to ship or register.

Keeps config.json, tokenizer files and the weights (optionally as float16,
which halves the size; loading casts back to float32); drops optimizer and
trainer state.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

KEEP = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def export_model(checkpoint: str | Path, dest: str | Path, dtype: torch.dtype | None = None) -> Path:
    checkpoint, dest = Path(checkpoint), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        if (checkpoint / name).exists():
            shutil.copy2(checkpoint / name, dest / name)
    weights = load_file(str(checkpoint / "model.safetensors"))
    if dtype is not None:
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest
