"""Inference precision on the CPU: float32, bfloat16 weights, or int8 dynamic quantization.

int8 dynamic quantization replaces every ``nn.Linear`` with one whose
weights are int8 and whose activations are quantized per batch; on a 2-core
AVX-512 machine it makes a pass about 2.5x faster than float32 (see the
performance table in docs/performance.md, which also gives its exact-match cost).  Each
mode is checked against what this build of torch and this CPU can do, and
falls back to float32 with a logged reason rather than failing.
"""
from __future__ import annotations

import logging
import warnings

import torch

from diffusion_core.settings import PRECISIONS  # noqa: F401  (the choices are the user's setting's)
log = logging.getLogger(__name__)


def resolve(model: torch.nn.Module, precision: str) -> str:
    """``auto``: int8 unless the model says dynamic int8 hurts it (``int8_safe = False``, measured on
    SmolLM2: +1.9 nats of cross-entropy), then bf16 where the CPU runs it fast, else fp32."""
    if precision != "auto":
        return precision
    if getattr(model, "int8_safe", True):
        return "int8"
    return "bf16" if supported("bf16")[0] else "fp32"


def supported(precision: str) -> tuple[bool, str]:
    """(can this machine run ``precision``, why not)."""
    if precision in ("fp32", "auto"):  # auto always resolves to something runnable
        return True, ""
    if precision == "int8":
        engines = [e for e in torch.backends.quantized.supported_engines if e in ("x86", "fbgemm", "qnnpack", "onednn")]
        if not engines or not hasattr(torch, "ao"):
            return False, "this torch build has no quantized CPU engine"
        return True, ""
    if precision == "bf16":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        if check is None or not check():
            return False, "this CPU has no fast bfloat16 support"
        return True, ""
    return False, f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"


def weights_dtype(model_class: type, precision: str) -> torch.dtype:
    """The dtype to read a model's weights in: bf16 where ``precision`` will run it in bf16 (so no fp32 copy is
    ever held beside the bf16 one), else fp32 (int8 quantizes from fp32)."""
    return torch.bfloat16 if resolve(model_class, precision) == "bf16" and supported("bf16")[0] else torch.float32


def apply_precision(model: torch.nn.Module, precision: str) -> tuple[torch.nn.Module, str]:
    """Return (model converted for inference, the precision actually used)."""
    precision = resolve(model, precision)
    ok, why = supported(precision)
    if not ok:
        log.warning("precision %s not available (%s); using fp32", precision, why)
        return model.float(), "fp32"
    if precision == "bf16":
        return model.to(torch.bfloat16), "bf16"
    if precision == "int8":
        with warnings.catch_warnings():  # torch >= 2.9 points eager quantization users at torchao
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), "int8"
    return model, "fp32"
