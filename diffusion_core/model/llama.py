"""A Llama-family decoder run as a bidirectional masked-diffusion denoiser, in plain torch.

Same parameter names as transformers' ``LlamaForCausalLM`` (``model.layers.N.self_attn.q_proj.weight``
...), so a converted base loads with ``load_state_dict(strict=True)``; tests compare its logits with
``LlamaForCausalLM`` under the same attention mask.  RMSNorm, rotary positions (rotate-half layout),
grouped-query attention, SwiGLU.

Two things make a left-to-right LM a denoiser (the DiffuLLaMA / Dream recipe):

* attention reads the whole canvas (``causal=False``), padding excluded -- or, with the
  ``prefix-causal`` layout, only the slots being filled (mask tokens) and the token just before each
  run of them read everything, while every other token reads the known tokens before it, causally,
  exactly as in pretraining (so the context keeps the base's states and never depends on the gap);
* the **shift**: the hidden state at position i-1 predicts the token at i, as in pretraining, so
  the pretrained head's knowledge carries over.  ``denoiser(ids, attention)`` returns the hidden
  states already shifted (row i holds position i-1's state), so ``lm_head(hidden[positions])`` gives
  the logits *for* the masked positions, which is what ``MaskedLMRunner`` expects.  Position 0 (the
  start token) is never predicted.

Adaptation state (LoRA factors, retrained norms, the rows of the mask and null tokens) lives in
``adapter.py``; this module is only the network.
"""
from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LAYOUTS = ("full", "prefix-causal")  # attention layouts of the denoiser (config ``diffill_attention``)


@dataclass(frozen=True)
class LlamaShape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 8192

    @classmethod
    def from_config(cls, cfg: dict) -> "LlamaShape":
        names = cls.__dataclass_fields__
        return cls(**{k: cfg[k] for k in names if k in cfg})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in fp32, as the base was trained; one fused op, not five (small ops are much of a pass at the cursor)
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


def rotary(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (..., T, head_dim) for integer ``positions`` (..., T)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # (d/2,)
    freqs = positions.float()[..., None] * inv_freq                                              # (..., T, d/2)
    emb = torch.cat([freqs, freqs], dim=-1)                                                      # (..., T, d)
    return emb.cos(), emb.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class _Attention(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = s.num_attention_heads, s.num_key_value_heads, s.head_dim
        self.q_proj = nn.Linear(s.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(s.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(s.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, s.hidden_size, bias=False)
        self.qkv: nn.Module | None = None  # q, k and v as one projection, for inference (NativeLlamaDenoiser.fuse)

    def forward(self, x, cos, sin, mask, cache: dict | None = None, kv: dict | None = None):
        """x (B, T, H); mask (B, 1, T, S) bool.  ``cache``: causal decoding (keys/values of earlier positions
        are kept and grow).  ``kv``: this pass's own rotated keys/values are left in ``kv["k"]``/``["v"]``,
        and keys/values in ``kv["context_k"]``/``["context_v"]`` (other positions) are read beside them."""
        B, T, _ = x.shape
        if self.qkv is None:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
            q = _rotate(q.view(B, T, self.heads, self.head_dim), cos.unsqueeze(-2), sin.unsqueeze(-2)).transpose(1, 2)
            k = _rotate(k.view(B, T, self.kv_heads, self.head_dim), cos.unsqueeze(-2), sin.unsqueeze(-2)).transpose(1, 2)
            v = v.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, kv, T, d); q (B, h, T, d)
        else:  # fused: q and k turned in one go (fewer small ops: they are half a pass's time at the cursor)
            qkv = self.qkv(x).view(B, T, self.heads + 2 * self.kv_heads, self.head_dim)      # (B, T, h+2kv, d)
            qk = _rotate(qkv[:, :, :self.heads + self.kv_heads], cos.unsqueeze(-2), sin.unsqueeze(-2))  # (B, T, h+kv, d)
            q, k = qk[:, :, :self.heads].transpose(1, 2), qk[:, :, self.heads:].transpose(1, 2)
            v = qkv[:, :, self.heads + self.kv_heads:].transpose(1, 2)                     # (B, kv, T, d)
        if cache is not None:  # causal decoding: keys and values of earlier positions are kept
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)  # (B, kv, S, d)
            cache["k"], cache["v"] = k, v
        if kv is not None:
            kv["k"], kv["v"] = k, v
            if "context_k" in kv:  # rotary positions live in the keys, so their order does not matter
                k, v = torch.cat([kv["context_k"], k], dim=2), torch.cat([kv["context_v"], v], dim=2)  # (B, kv, S, d)
        if not torch.is_grad_enabled():
            # Inference: the fused kernel reads the grouped keys as they are, 2-3x faster than the three
            # products below for a gap's few rows or a canvas (measured, bf16, 2026-12-07: 32 vs 108 us a layer)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)  # (B, h, T, d)
            return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))
        groups = self.heads // self.kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, h, T, d)
        # Training: plain matmul-softmax-matmul: on the CPU, for canvases of a few hundred tokens, it runs 4x
        # faster under bf16 autocast than scaled_dot_product_attention's flash kernel (measured, forward+backward).
        scores = (q @ k.transpose(-1, -2)) * self.head_dim ** -0.5                      # (B, h, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        y = scores.softmax(-1) @ v                                                      # (B, h, T, d)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class _MLP(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.gate_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.up_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.down_proj = nn.Linear(s.intermediate_size, s.hidden_size, bias=False)
        self.gate_up: nn.Module | None = None  # gate and up as one projection, for inference (NativeLlamaDenoiser.fuse)

    def forward(self, x):
        gate, up = (self.gate_proj(x), self.up_proj(x)) if self.gate_up is None else self.gate_up(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class _Layer(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.self_attn = _Attention(s)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.mlp = _MLP(s)

    def forward(self, x, cos, sin, mask, cache=None, kv=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class _Decoder(nn.Module):
    """Embeddings, layers and the final norm: ``forward`` returns *shifted*, normalised hidden states."""

    def __init__(self, s: LlamaShape):
        super().__init__()
        self.shape = s
        self.embed_tokens = nn.Embedding(s.vocab_size, s.hidden_size)
        self.layers = nn.ModuleList(_Layer(s) for _ in range(s.num_hidden_layers))
        self.norm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.causal = False
        self.layout, self.mask_id = "full", None  # see set_layout
        self.embedding_override = None  # set by the adapter while training its own token rows

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               cache: list[dict] | None = None) -> torch.Tensor:
        """Unshifted final hidden states (B, T, H).  With ``cache`` (causal only, no padding), the ids
        continue the cached positions: one new token reads every earlier one, and the cache grows."""
        T = input_ids.shape[1]
        offset = cache[0]["k"].shape[2] if cache and "k" in cache[0] else 0
        table = self.embed_tokens.weight if self.embedding_override is None else self.embedding_override()
        x = F.embedding(input_ids, table)                                          # (B, T, H)
        if offset and T > 1:
            raise ValueError("a cached causal pass takes one new token at a time")
        mask = None if offset else self._attention_mask(input_ids, attention_mask)  # (B, 1, T, T) or None
        positions = torch.arange(offset, offset + T, device=input_ids.device)
        cos, sin = rotary(positions, self.shape.head_dim, self.shape.rope_theta)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, None if cache is None else cache[i])
        return self.norm(x)

    def hidden_beside(self, input_ids: torch.Tensor, positions: torch.Tensor, kv: list[dict],
                      reads: torch.Tensor | None = None) -> torch.Tensor:
        """Unshifted final hidden states (B, A, H) of ``input_ids`` (B, A) at ``positions`` (B, A), full attention,
        reading each layer's ``kv[i]["context_k"/"context_v"]`` (B, kv, C, d) beside their own (none: the canvas
        alone); each ``kv[i]["k"/"v"]`` is left holding this pass's own rotated keys/values (context_cache.py).
        ``reads`` (B, C + A) or (B, A, C + A) bool: the keys each row (or each query) reads, context first (None:
        all; padding: not)."""
        table = self.embed_tokens.weight if self.embedding_override is None else self.embedding_override()
        x = F.embedding(input_ids, table)                                          # (B, A, H)
        cos, sin = rotary(positions, self.shape.head_dim, self.shape.rope_theta)   # (B, A, d)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        mask = None
        if reads is not None:
            mask = reads[:, None] if reads.dim() == 3 else reads[:, None, None, :]  # (B, 1, A or 1, C + A)
        for layer, layer_kv in zip(self.layers, kv):
            x = layer(x, cos, sin, mask, None, layer_kv)
        return self.norm(x)

    def set_layout(self, layout: str, mask_id: int | None) -> None:
        """``full`` or ``prefix-causal`` (which needs the id of the mask token, whose slots it finds)."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown attention layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        if layout == "prefix-causal" and mask_id is None:
            raise ValueError("the prefix-causal layout needs the mask token's id")
        self.layout, self.mask_id = layout, mask_id

    def _attention_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        """Which keys each query reads (B, 1, T, T): every non-padding key, causally if ``causal``, as the
        layout says otherwise; None = all of them."""
        B, T = input_ids.shape
        prefix_causal = not self.causal and self.layout == "prefix-causal"
        if attention_mask is None or bool(attention_mask.bool().all()):
            if not (self.causal or prefix_causal):
                return None  # no mask at all: the fast attention kernel
            keep = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
        else:
            keep = attention_mask.bool()
        mask = keep[:, None, None, :].expand(B, 1, T, T)
        if self.causal or prefix_causal:
            causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()  # (T, T)
        if self.causal:
            mask = mask & causal
        elif prefix_causal:
            slot = input_ids == self.mask_id                                          # (B, T)
            reads_all = slot.clone()
            reads_all[:, :-1] |= slot[:, 1:]  # the token before a slot predicts it (the shift)
            context = ~reads_all
            # a context query reads context keys at or before it; a slot (or its predictor) reads every key
            mask = mask & (reads_all[:, None, :, None] | (context[:, None, None, :] & causal))
        # A query row that may read nothing (causal padding) would give NaN; let it read itself.
        return mask | torch.eye(T, dtype=torch.bool, device=input_ids.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.hidden(input_ids, attention_mask)                                  # (B, T, H)
        return torch.cat([h[:, :1], h[:, :-1]], dim=1)  # row i: position i-1's state (row 0: unused)


class _TiedHead(nn.Module):
    def __init__(self, embedding: nn.Embedding, decoder: _Decoder):
        super().__init__()
        self._embedding = [embedding]  # not a submodule: the weight belongs to the embedding
        self._decoder = [decoder]

    def forward(self, h: torch.Tensor) -> torch.Tensor:          # (N, H) -> (N, V)
        d = self._decoder[0]
        table = self._embedding[0].weight if d.embedding_override is None else d.embedding_override()
        return h @ table.to(h.dtype).T


class NativeLlamaDenoiser(nn.Module):
    """``denoiser`` returns shifted hidden states (B, T, H); ``lm_head`` maps them to logits (tied)."""

    base_model_prefix = "denoiser"
    int8_safe = False  # dynamic int8 (per-tensor activations) costs SmolLM2 1.9 nats; precision "auto" uses bf16

    def __init__(self, config: dict):
        super().__init__()
        self.config = types.SimpleNamespace(**config)
        self.shape = LlamaShape.from_config(config)
        self.denoiser = _Decoder(self.shape)
        self.lm_head = _TiedHead(self.denoiser.embed_tokens, self.denoiser)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a ``LlamaForCausalLM`` state dict (``model.*`` names; a tied ``lm_head.weight`` is ignored)."""
        renamed = {("denoiser." + k[len("model."):]): v for k, v in state.items() if k.startswith("model.")}
        extra = sorted(k for k in state if not k.startswith("model.") and k != "lm_head.weight")
        expected = set(self.state_dict())
        missing = sorted(expected - set(renamed))
        unexpected = sorted(set(renamed) - expected) + extra
        if missing or unexpected:
            raise ValueError(f"weights do not match this Llama shape (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
        self.load_state_dict(renamed, strict=True, assign=True)  # the tensors become the weights: no copy

    @torch.no_grad()
    def fuse(self, linear: Callable[[torch.Tensor], nn.Module]) -> None:
        """For inference: q, k and v become one projection, gate and up another (fewer, larger matrix products),
        and every projection and the head (from the embedding table, which the embedding keeps) are rebuilt as
        ``linear(weight (out, in))`` (precision.py's prepacked bf16 projection).  Training and the adapter need
        the separate projections, so only a loaded model for serving is fused."""
        for layer in self.denoiser.layers:
            attn, mlp = layer.self_attn, layer.mlp
            attn.qkv = linear(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
            mlp.gate_up = linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
            attn.o_proj, mlp.down_proj = linear(attn.o_proj.weight), linear(mlp.down_proj.weight)
            del attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj
        self.lm_head = linear(self.denoiser.embed_tokens.weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Full logits (B, T, V) for every position (row i predicts token i)."""
        return types.SimpleNamespace(logits=self.lm_head(self.denoiser(input_ids, attention_mask)))

    def causal_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      cache: list[dict] | None = None, last_only: bool = False) -> torch.Tensor:
        """The base as pretrained: causal attention, row i predicts token i+1 (B, T, V), or (B, V) for
        the last position only.  ``cache`` (from ``new_cache()``) keeps keys/values for greedy decoding."""
        was, self.denoiser.causal = self.denoiser.causal, True
        try:
            h = self.denoiser.hidden(input_ids, attention_mask, cache)
            return self.lm_head(h[:, -1] if last_only else h)
        finally:
            self.denoiser.causal = was

    def new_cache(self) -> list[dict]:
        return [{} for _ in self.denoiser.layers]
