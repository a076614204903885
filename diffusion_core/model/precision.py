"""Inference precision on the CPU: float32, bfloat16 weights, or int8 dynamic quantization.

int8 dynamic quantization replaces every ``nn.Linear`` with one whose
weights are int8 and whose activations are quantized per batch; on a 2-core
AVX-512 machine it makes a pass about 2.5x faster than float32 (see the
performance table in docs/performance.md, which also gives its exact-match cost).  Each
mode is checked against what this build of torch and this CPU can do, and
falls back to float32 with a logged reason rather than failing.
"""
from __future__ import annotations

import ctypes
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


class PackedLinear(torch.nn.Module):
    """``x @ weight.T`` with the weight laid out once, at load, in oneDNN's blocked format for this CPU's matrix
    units.  ``F.linear`` on a bf16 weight reorders it on every call: prepacked, a pass of smollm2-diffill takes
    about a quarter less time, with the same bits out (docs/performance.md)."""

    def __init__(self, weight: torch.Tensor):                   # (out, in)
        super().__init__()
        _return_freed_memory()  # the weights replaced so far: else the packed copies pile up beside them
        # a Parameter so that parameters() still counts it; the batch-size hint only picks a layout
        self.weight = torch.nn.Parameter(torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 8),
                                         requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:         # (..., in) -> (..., out)
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, None, "none", [], "")


def _return_freed_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's ``malloc_trim``; elsewhere nothing): freed weights
    of a few MB stay in the heap, where the differently sized packed ones do not reuse them (peak RSS at load
    846 -> 636 MB for 40 ms)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc
        return None


_LIBC = _glibc()  # opened once: the trim runs for every projection packed at load


def packing_works() -> bool:
    """Whether this torch build prepacks bf16 weights (oneDNN) and gives what ``F.linear`` gives."""
    try:
        w, x = torch.randn(16, 8).bfloat16(), torch.randn(3, 8).bfloat16()
        return torch.equal(PackedLinear(w)(x), torch.nn.functional.linear(x, w))
    except (AttributeError, RuntimeError):  # no mkldnn ops in this build, or not for this CPU
        return False


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
        model = model.to(torch.bfloat16)
        if hasattr(model, "fuse") and packing_works():
            model.fuse(PackedLinear)
        return model, "bf16"
    if precision == "int8":
        with warnings.catch_warnings():  # torch >= 2.9 points eager quantization users at torchao
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), "int8"
    return model, "fp32"
