"""Run a masked LM's encoder once and its vocabulary head only where it is needed.

The output projection (hidden -> vocabulary) costs as much as several encoder
layers on a small model, and infilling needs logits only at masked slots.
``MaskedLMRunner`` splits the known Hugging Face masked-LM families into
encoder and head; an unknown family falls back to full logits, which is
correct, just slower.
"""
from __future__ import annotations

import torch
from torch import nn


def _head_of(model: nn.Module) -> nn.Module | None:
    for name in ("cls", "lm_head", "head_and_decoder"):  # BERT/ModernBERT-style, RoBERTa/XLM-R
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name)
    if hasattr(model, "vocab_projector"):  # DistilBERT
        return nn.Sequential(model.vocab_transform, model.activation, model.vocab_layer_norm, model.vocab_projector)
    if hasattr(model, "generator_lm_head"):  # ELECTRA generator
        return nn.Sequential(model.generator_predictions, model.generator_lm_head)
    if hasattr(model, "head") and hasattr(model, "decoder"):  # ModernBERT
        return nn.Sequential(model.head, model.decoder)
    return None


class MaskedLMRunner(nn.Module):
    """``forward(ids, attention, positions) -> logits`` at ``positions`` only.

    ids, attention: (B, T); positions: (B, T) bool. Returns (N, V) for the N
    selected positions, in row-major order.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.head = _head_of(model)
        self.base = getattr(model, getattr(model, "base_model_prefix", ""), None) if self.head is not None else None
        if self.base is None:
            self.head = None

    @property
    def split(self) -> bool:
        return self.head is not None

    def forward(self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            logits = self.model(input_ids=ids, attention_mask=attention).logits  # (B, T, V)
            return logits[positions]
        out = self.base(input_ids=ids, attention_mask=attention)
        hidden = out if isinstance(out, torch.Tensor) else out.last_hidden_state  # (B, T, H)
        return self.head(hidden[positions])  # (N, V)
