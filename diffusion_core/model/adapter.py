"""What the adaptation trains on top of a frozen base, and the delta file that ships it.

Trainable state: LoRA factors on every projection of every layer (``A`` (r, in), ``B`` (out, r),
``W + (alpha / r) · B A``), every RMSNorm weight, and the embedding rows of the mask and null
tokens (the head is tied, so those rows are also their output rows).  Everything else is the base
as converted.  ``delta.safetensors`` holds exactly that state (float16) and its metadata names
the base by the SHA-256 of its GGUF, so a delta is never applied to another base.

``merged_weights()`` folds the delta into the base's weights for inference, tensor by tensor as they are
read, each cast to the serving dtype at once (no full fp32 model is ever held): the served model is a
plain ``NativeLlamaDenoiser``.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from diffusion_core.model.llama import NativeLlamaDenoiser

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class DeltaError(ValueError):
    """A delta that cannot be applied: wrong base, wrong shape or a damaged file."""


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update; B starts at zero (no change at step 0)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features ** 0.5)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.to(x.dtype).T) @ (self.lora_B.to(x.dtype).T * self.scale)


class Adapter:
    """Attach trainable state to a loaded base denoiser; ``state()`` / ``load()`` / ``save()`` the delta."""

    def __init__(self, model: NativeLlamaDenoiser, token_ids: dict[str, int], rank: int = 32, alpha: float = 32.0):
        if rank < 1:
            raise ValueError(f"the LoRA rank must be at least 1, not {rank}")
        self.model, self.rank, self.alpha = model, rank, alpha
        self.token_ids = dict(token_ids)  # token name -> id whose embedding row is trained
        self.info: dict = {}              # what the delta it was loaded from says of itself (tokens trained)
        for p in model.parameters():
            p.requires_grad_(False)
        d = model.denoiser
        for layer in d.layers:
            for parent in (layer.self_attn, layer.mlp):
                for name in PROJECTIONS:
                    if hasattr(parent, name):
                        setattr(parent, name, LoRALinear(getattr(parent, name), rank, alpha))
            layer.input_layernorm.weight.requires_grad_(True)
            layer.post_attention_layernorm.weight.requires_grad_(True)
        d.norm.weight.requires_grad_(True)
        # The trained rows live on the model (so they move with it to a device); the embedding table is
        # read with them in place, out of place, so the base table stays frozen.
        d.register_buffer("token_row_ids", torch.tensor(list(self.token_ids.values())), persistent=False)
        d.token_rows = nn.Parameter(d.embed_tokens.weight[d.token_row_ids].detach().clone())  # (n_tokens, H)
        d.embedding_override = lambda: d.embed_tokens.weight.index_put((d.token_row_ids,), d.token_rows.to(
            d.embed_tokens.weight.dtype))

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def state(self) -> dict[str, torch.Tensor]:
        """Every trained tensor by name (LoRA factors, norms, token rows)."""
        return {name: p.detach() for name, p in self.model.named_parameters() if p.requires_grad}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        own = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                own[name].copy_(value)

    def save(self, path: Path, base_sha256: str, info: dict | None = None) -> None:
        meta = {"base_sha256": base_sha256, "rank": str(self.rank), "alpha": str(self.alpha),
                # every layer; kept in the metadata because earlier releases read which layers carry factors
                "trained_layers": json.dumps(list(range(len(self.model.denoiser.layers)))),
                "token_ids": json.dumps(self.token_ids), "info": json.dumps(info or {})}
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.to("cpu", torch.float16).contiguous() for k, v in self.state().items()}, str(tmp),
                  metadata=meta)
        tmp.replace(path)


def read_delta(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a delta file, or ``DeltaError`` saying what is wrong with it."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # missing, truncated or not safetensors
        raise DeltaError(f"{path}: cannot read the delta ({exc})") from exc
    for key in ("base_sha256", "rank", "alpha", "trained_layers", "token_ids"):
        if key not in meta:
            raise DeltaError(f"{path}: delta metadata has no {key!r}")
    return meta, tensors


def _checked_delta(path: Path, base_sha256: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """``read_delta``, refusing a delta trained on another base or a retired whole-weight one."""
    meta, tensors = read_delta(path)
    if meta["base_sha256"] != base_sha256:
        raise DeltaError(f"{path} was trained on the base with GGUF SHA-256 {meta['base_sha256']}, but the base "
                         f"found has {base_sha256}; run `diffill fetch-base` to get the base this delta needs")
    if int(meta["rank"]) < 1:  # a whole-weight delta (--lora-rank 0, retired): say so, not "rank must be ..."
        raise DeltaError(f"{path}: a whole-weight delta (rank 0), which Diffill no longer loads")
    return meta, tensors


def apply_delta(model: NativeLlamaDenoiser, path: Path, base_sha256: str) -> Adapter:
    """The live ``Adapter`` of the delta at ``path`` on ``model`` (a freshly loaded base), to resume training;
    refuses a delta for another base.  Serving folds a delta in with ``merged_weights`` instead."""
    meta, tensors = _checked_delta(path, base_sha256)
    adapter = Adapter(model, json.loads(meta["token_ids"]), rank=int(meta["rank"]), alpha=float(meta["alpha"]))
    own = adapter.state()
    problems = [k for k in own if k not in tensors or tensors[k].shape != own[k].shape]
    if problems or set(tensors) - set(own):
        raise DeltaError(f"{path}: delta does not fit this base (mismatched {sorted(problems)[:3]}, "
                         f"unknown {sorted(set(tensors) - set(own))[:3]})")
    adapter.load_state({k: v.float() for k, v in tensors.items()})
    adapter.info = json.loads(meta.get("info", "{}"))
    return adapter


def merged_weights(base: Iterable[tuple[str, torch.Tensor]], path: Path, base_sha256: str,
                   dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The base's weights (``model.*`` names, fp32, as ``base.read_tensors`` yields them) with the delta at
    ``path`` folded in, each cast to ``dtype`` as soon as it is merged, so only one fp32 tensor is held at a
    time: a projection ``W + (alpha / r) · B A`` (in fp32, as training saw it), a norm the delta's own, the
    embedding with the delta's token rows.  Refuses a delta for another base or of another shape."""
    meta, delta = _checked_delta(path, base_sha256)
    scale = float(meta["alpha"]) / int(meta["rank"])
    token_ids = torch.tensor(list(json.loads(meta["token_ids"]).values()), dtype=torch.long)
    merged = {}
    for name, weight in base:
        key = "denoiser." + name.removeprefix("model.").removesuffix(".weight")
        if key + ".lora_A" in delta:
            lora_A, lora_B = delta.pop(key + ".lora_A").float(), delta.pop(key + ".lora_B").float()  # (r, in), (out, r)
            if lora_B.shape[-1] == lora_A.shape[0] and (lora_B.shape[0], lora_A.shape[1]) == weight.shape:
                new = weight.addmm_(lora_B, lora_A, alpha=scale)  # W += scale · B A, in place: one pass over W
            else:
                new = lora_A  # the shape check below refuses it
        elif key + ".weight" in delta:  # a retrained norm
            new = delta.pop(key + ".weight").float()
        elif name == "model.embed_tokens.weight" and "denoiser.token_rows" in delta:
            rows = delta.pop("denoiser.token_rows").float()                                  # (n_tokens, H)
            new = weight.index_put_((token_ids,), rows) if rows.shape == (len(token_ids), weight.shape[1]) else rows
        else:
            new = weight
        if new.shape != weight.shape:  # (a (1, in) update would broadcast silently)
            raise DeltaError(f"{path}: delta does not fit this base ({key}: {tuple(new.shape)} for "
                             f"{tuple(weight.shape)})")
        merged[name] = new.to(dtype)
        del weight, new  # one fp32 tensor at a time
    if delta:
        raise DeltaError(f"{path}: delta does not fit this base (unknown {sorted(delta)[:3]})")
    return merged
