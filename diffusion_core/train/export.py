"""Turn a training checkpoint into a model directory to ship or register.

A full-weights checkpoint keeps config.json, tokenizer files and the weights
(optionally as float16, which halves the size; loading casts back to
float32).  A delta checkpoint (an adaptation of a pretrained base) keeps
config.json and delta.safetensors, as the shipped smollm2-diffill does: the
tokenizer and the frozen weights come from the base.  Optimizer and trainer
state are dropped either way.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffusion_core.model.assemble import DELTA_FILE

KEEP = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def export_model(checkpoint: str | Path, dest: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write the model in ``checkpoint`` into ``dest``; ``dtype`` casts full weights (a delta is float16)."""
    checkpoint, dest = Path(checkpoint), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if (checkpoint / DELTA_FILE).is_file():
        for name in ("config.json", DELTA_FILE):
            shutil.copy2(checkpoint / name, dest / name)
        return dest
    for name in KEEP:
        if (checkpoint / name).exists():
            shutil.copy2(checkpoint / name, dest / name)
    weights = load_file(str(checkpoint / "model.safetensors"))
    if dtype is not None:
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def install_model(checkpoint: str | Path, dest: str | Path) -> Path:
    """Export ``checkpoint`` as the model directory ``dest``, all or nothing.

    The model is built in a hidden folder beside ``dest`` and renamed into place, so a failed export
    never leaves a half-written model under the name (which loading would then refuse); a model
    already there is replaced only once the new one is complete.
    """
    dest = Path(dest)
    # Named by process (not mkdtemp, whose folder would stay private to its owner whatever the umask).
    staged = dest.with_name(f".{dest.name}.{os.getpid()}.new")
    retired = staged.with_suffix(".old")
    for stale in (staged, retired):  # left by a crashed process that had this id
        shutil.rmtree(stale, ignore_errors=True)
    try:
        export_model(checkpoint, staged)
        if dest.exists():
            dest.rename(retired)
        staged.rename(dest)
    except BaseException:
        if retired.exists() and not dest.exists():
            retired.rename(dest)  # the model that was there stays
        shutil.rmtree(staged, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return dest
