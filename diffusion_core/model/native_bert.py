"""A BERT masked LM for inference in plain torch, loaded straight from a Hugging Face directory.

Why: importing ``transformers.models.bert`` costs about 1.7 s and 100 MB on
the 2-core machine, more than the model itself, and the language server pays
it at every start.  This module reads the same ``config.json`` and
``model.safetensors`` (same parameter names, so ``load_state_dict`` is
strict) and computes the same logits (tests compare it with
``BertForMaskedLM``).  Only what the shipped model family needs is here:
absolute positions, erf GELU, post-layer-norm, tied or untied decoder.  Any
other configuration raises ``Unsupported`` and the loader uses transformers.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


class Unsupported(ValueError):
    """This config needs the transformers implementation."""


def check_config(cfg: dict) -> None:
    problems = []
    if cfg.get("model_type") != "bert":
        problems.append(f"model_type {cfg.get('model_type')!r}")
    if cfg.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {cfg.get('hidden_act')!r}")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type {cfg.get('position_embedding_type')!r}")
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        problems.append("decoder configuration")
    if problems:
        raise Unsupported("native BERT cannot run " + ", ".join(problems))


class _Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:               # (B, T) -> (B, T, H)
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _Dense(nn.Module):  # dense + residual + LayerNorm ("BertSelfOutput" / "BertOutput")
    def __init__(self, c, d_in):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class _Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c.num_attention_heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, nn.Linear(c.hidden_size, c.hidden_size))
        self.attention.output = _Dense(c, c.hidden_size)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.output = _Dense(c, c.intermediate_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:  # x (B, T, H), keep (B, 1, 1, T)
        B, T, H = x.shape
        att = self.attention.self
        q, k, v = (getattr(att, n)(x).view(B, T, self.heads, H // self.heads).transpose(1, 2)
                   for n in ("query", "key", "value"))                  # (B, h, T, d)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)     # (B, h, T, d)
        x = self.attention.output(y.transpose(1, 2).reshape(B, T, H), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = _Embeddings(c)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embeddings(input_ids)                                  # (B, T, H)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        keep = attention_mask.bool()[:, None, None, :]                  # (B, 1, 1, T)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return x


class _Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = nn.Module()
        self.predictions.transform = nn.Module()
        self.predictions.transform.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.predictions.transform.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.predictions.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.predictions.decoder = nn.Linear(c.hidden_size, c.vocab_size)
        self.predictions.decoder.bias = self.predictions.bias

    def forward(self, h: torch.Tensor) -> torch.Tensor:                 # (N, H) -> (N, V)
        p = self.predictions
        return p.decoder(p.transform.LayerNorm(F.gelu(p.transform.dense(h))))


class NativeBertForMaskedLM(nn.Module):
    """``BertForMaskedLM`` for inference; ``bert`` returns hidden states (B, T, H), ``cls`` maps them to logits."""

    base_model_prefix = "bert"

    def __init__(self, config: dict):
        super().__init__()
        check_config(config)
        defaults = dict(type_vocab_size=2, layer_norm_eps=1e-12, max_position_embeddings=512)
        self.config = types.SimpleNamespace(**{**defaults, **config})
        self.bert = _Encoder(self.config)
        self.cls = _Head(self.config)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a ``BertForMaskedLM`` state dict (any float dtype; copied into float32 parameters).

        As in transformers, the decoder weight is the word-embedding matrix unless the config
        says ``tie_word_embeddings: false`` and the file has its own.
        """
        state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
        p = self.cls.predictions
        own_decoder = "cls.predictions.decoder.weight" in state and not getattr(self.config, "tie_word_embeddings",
                                                                                 True)
        if own_decoder:
            p.decoder.weight = nn.Parameter(torch.empty_like(p.decoder.weight))
        else:
            state["cls.predictions.decoder.weight"] = state.get("bert.embeddings.word_embeddings.weight")
        state.setdefault("cls.predictions.decoder.bias", state.get("cls.predictions.bias"))
        expected = self.state_dict()
        missing = sorted(k for k in expected if state.get(k) is None)
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise Unsupported(f"weights do not match a BERT masked LM (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})")
        self.load_state_dict(state, strict=True)  # copies with dtype conversion: no float32 copy of the file

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return types.SimpleNamespace(logits=self.cls(self.bert(input_ids, attention_mask)))  # (B, T, V)
